"""Shared secrets: DeriveSharedSecret (ECDH with a KEY_AGREEMENT key) and Encapsulate/Decapsulate (ML-KEM with an
ENCAPSULATE_DECAPSULATE key), KMS-REFERENCE.md §4.3."""

from __future__ import annotations

from trent.node.crypto import asymmetric as crypto
from trent.node.model.errors import invalid_ciphertext, validation
from trent.node.model.key import KeyRecord
from trent.node.model.key_specs import ECDH, ENCAPSULATE_DECAPSULATE, KEY_AGREEMENT, ML_KEM
from trent.node.model.operations import KeyAction, Operation, keys_for
from trent.node.ops.asymmetric import private_key, usable_key
from trent.node.ops.common import finish_dry_run, reject_recipient, require_algorithm
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region


def derive_shared_secret(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = usable_key(region, params, KEY_AGREEMENT, "DeriveSharedSecret")
    algorithm = require_algorithm(key, params["KeyAgreementAlgorithm"], (ECDH,))
    reject_recipient(params)
    try:
        # The peer key is checked (DER SPKI, same curve) by deriving: a DryRun discards the result.
        secret = crypto.ecdh(private_key(key), params["PublicKey"])
    except ValueError as exc:
        raise validation(f"{exc} Key spec {key.key_spec} needs a peer public key on the same curve.") from None
    finish_dry_run(params)
    return {"KeyId": key.arn, "SharedSecret": secret, "KeyAgreementAlgorithm": algorithm, "KeyOrigin": key.origin}


def _ml_kem_key(region: Region, params: Params, operation: str) -> tuple[KeyRecord, str]:
    key = usable_key(region, params, ENCAPSULATE_DECAPSULATE, operation)
    return key, require_algorithm(key, params["EncapsulationAlgorithm"], (ML_KEM,))


def encapsulate(region: Region, params: Params, ctx: RequestContext) -> Response:
    key, algorithm = _ml_kem_key(region, params, "Encapsulate")
    finish_dry_run(params)
    secret, ciphertext = crypto.encapsulate(private_key(key))
    return {"KeyId": key.arn, "SharedSecret": secret, "SharedSecretCiphertextBlob": ciphertext,
            "EncapsulationAlgorithm": algorithm}


def decapsulate(region: Region, params: Params, ctx: RequestContext) -> Response:
    key, algorithm = _ml_kem_key(region, params, "Decapsulate")
    blob: bytes = params["SharedSecretCiphertextBlob"]
    # The only failure KMS reports: any blob of the right length yields a (pseudo-random) secret.
    if len(blob) != crypto.ml_kem_ciphertext_length(key.key_spec):
        raise invalid_ciphertext()
    finish_dry_run(params)
    return {"KeyId": key.arn, "SharedSecret": crypto.decapsulate(private_key(key), blob),
            "EncapsulationAlgorithm": algorithm}


def register(registry: Registry) -> None:
    for name, handler, usage in (("DeriveSharedSecret", derive_shared_secret, KEY_AGREEMENT),
                                 ("Encapsulate", encapsulate, ENCAPSULATE_DECAPSULATE),
                                 ("Decapsulate", decapsulate, ENCAPSULATE_DECAPSULATE)):
        registry.add(Operation(name=name, handler=handler, read_only=True, cross_account=True, usage_tracked=True,
                               keys=(KeyAction("KeyId", name, grant=keys_for(usage)),)))
