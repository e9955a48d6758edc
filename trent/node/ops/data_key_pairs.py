"""GenerateDataKeyPair(+WithoutPlaintext): a fresh key pair for use outside KMS, its PKCS#8 private half sealed
under a symmetric KMS key as an ordinary TRENT-V1 blob (so Decrypt opens it, encryption context and all)."""

from __future__ import annotations

from typing import Any

from trent.node.crypto.asymmetric import can_generate, generate_key_pair
from trent.node.crypto.blob import encode_encryption_context, seal
from trent.node.crypto.handles import SecretBytes
from trent.node.keystores.records import STORE_ID
from trent.node.model.errors import unsupported
from trent.node.model.key import ENCRYPT_DECRYPT
from trent.node.model.key_specs import UNSUPPORTED_SPECS
from trent.node.model.operations import KeyAction, Operation, keys_for
from trent.node.model.states import OpClass
from trent.node.ops.common import finish_dry_run, key_for, reject_recipient, require_symmetric_encryption
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region


def _generate(region: Region, params: Params, operation: str) -> tuple[SecretBytes, dict[str, Any]]:
    key = key_for(region, params, OpClass.CRYPTO, allow_alias=True)
    # The usage rules of KMS keys do not apply to data key pairs; the wrapping key must be symmetric.
    require_symmetric_encryption(key, operation)
    if key.extra and STORE_ID in key.extra:
        # AWS: "You cannot use an asymmetric KMS key or a KMS key in a custom key store."
        raise unsupported(f"{key.arn} is in a custom key store, which is not valid for {operation}.")
    spec: str = params["KeyPairSpec"]
    if spec in UNSUPPORTED_SPECS or not can_generate(spec):
        raise unsupported(f"KeyPairSpec {UNSUPPORTED_SPECS.get(spec, spec + ' is not available in this cluster.')}")
    reject_recipient(params)
    encode_encryption_context(params.get("EncryptionContext"))  # an invalid context fails a DryRun too
    finish_dry_run(params)
    private, public = (region.key_pairs or generate_key_pair)(spec)
    version = key.current_material()
    blob = seal(key.key_id, version.material, private.reveal(), params.get("EncryptionContext"))
    return private, {"PrivateKeyCiphertextBlob": blob, "PublicKey": public, "KeyId": key.arn, "KeyPairSpec": spec,
                     "KeyMaterialId": version.material_id.hex()}


def generate_data_key_pair(region: Region, params: Params, ctx: RequestContext) -> Response:
    private, out = _generate(region, params, "GenerateDataKeyPair")
    out["PrivateKeyPlaintext"] = private.reveal()  # the one place the private half leaves the handle
    return out


def generate_data_key_pair_without_plaintext(region: Region, params: Params, ctx: RequestContext) -> Response:
    return _generate(region, params, "GenerateDataKeyPairWithoutPlaintext")[1]


def register(registry: Registry) -> None:
    for name, handler in (("GenerateDataKeyPair", generate_data_key_pair),
                          ("GenerateDataKeyPairWithoutPlaintext", generate_data_key_pair_without_plaintext)):
        registry.add(Operation(name=name, handler=handler, read_only=True, cross_account=True, usage_tracked=True,
                               keys=(KeyAction("KeyId", name, "EncryptionContext",
                                               keys_for(ENCRYPT_DECRYPT, symmetric=True)),)))
