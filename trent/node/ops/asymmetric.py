"""Asymmetric keys: GetPublicKey, and the RSA-OAEP branch of Encrypt, Decrypt and ReEncrypt (node/ops/encryption.py
calls in here only when the key is not SYMMETRIC_DEFAULT, so the symmetric path stays as it was).

An asymmetric ciphertext is the bare RSA-OAEP output (KMS-REFERENCE.md §5.1): it names no key, so Decrypt needs
KeyId and EncryptionAlgorithm, and there is no encryption context to bind.
"""

from __future__ import annotations

from trent.node.crypto.asymmetric import oaep_decrypt, oaep_encrypt, public_key_der
from trent.node.crypto.handles import SecretBytes
from trent.node.model.errors import unsupported, validation
from trent.node.model.key import ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT, KeyRecord
from trent.node.model.key_specs import (
    ENCAPSULATE_DECAPSULATE,
    KEY_AGREEMENT,
    SIGN_VERIFY,
    algorithm_lists,
    encryption_algorithms,
    is_asymmetric,
    oaep_max_plaintext,
)
from trent.node.model.operations import KeyAction, Operation, keys_for
from trent.node.model.states import OpClass
from trent.node.ops.common import key_for, reject_encryption_context, require_algorithm, require_usage
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region


def private_key(key: KeyRecord) -> SecretBytes:
    """The key pair's private half (or HMAC key). Such keys never rotate: their material is the current one."""
    return key.current_material().material.secret


def usable_key(region: Region, params: Params, usage: str, operation: str) -> KeyRecord:
    """Resolve KeyId (aliases allowed), then the state table, then the key usage — AWS's order of checks."""
    key = key_for(region, params, OpClass.CRYPTO, allow_alias=True)
    require_usage(key, usage, operation)
    return key


def is_asymmetric_algorithm(algorithm: str | None) -> bool:
    """Whether an EncryptionAlgorithm parameter selects the asymmetric branch (checked before any key lookup)."""
    return algorithm is not None and algorithm != SYMMETRIC_DEFAULT


def check_encrypt(key: KeyRecord, algorithm: str | None, operation: str, params: Params, ec_field: str) -> str:
    """Usage, algorithm and encryption context of an RSA encryption; returns the algorithm."""
    require_usage(key, ENCRYPT_DECRYPT, operation)
    chosen = require_algorithm(key, algorithm or SYMMETRIC_DEFAULT, encryption_algorithms(key.key_spec))
    reject_encryption_context(params, ec_field)
    return chosen


def check_plaintext_length(key: KeyRecord, algorithm: str, plaintext: bytes) -> None:
    limit = oaep_max_plaintext(key.key_spec, algorithm)
    if len(plaintext) > limit:
        # Says the limit, never the plaintext.
        raise validation(f"Plaintext is {len(plaintext)} bytes; {algorithm} with key spec {key.key_spec} "
                         f"encrypts at most {limit} bytes.")


def rsa_encrypt(key: KeyRecord, algorithm: str, plaintext: bytes) -> bytes:
    return oaep_encrypt(private_key(key), algorithm, plaintext)


def open_rsa(
    region: Region, params: Params, operation: str, *, key_field: str, ec_field: str, alg_field: str,
    skip_ciphertext: bool,
) -> tuple[KeyRecord, bytes, str]:
    """Decrypt half of Decrypt/ReEncrypt for a raw RSA ciphertext: key → state → usage → algorithm → context →
    OAEP. ``skip_ciphertext``: a DryRun with IGNORE_CIPHERTEXT (nothing is decrypted)."""
    key = key_for(region, params, OpClass.CRYPTO, allow_alias=True, field=key_field)
    algorithm = check_encrypt(key, params[alg_field], operation, params, ec_field)
    if skip_ciphertext:
        return key, b"", algorithm
    if "CiphertextBlob" not in params:
        raise validation("1 validation error detected: Value null at 'ciphertextBlob' failed to satisfy "
                         "constraint: Member must not be null")
    return key, oaep_decrypt(private_key(key), algorithm, params["CiphertextBlob"]), algorithm


def get_public_key(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.CRYPTO, allow_alias=True)
    if not is_asymmetric(key.key_spec):
        kind = "a symmetric encryption" if key.key_spec == SYMMETRIC_DEFAULT else "an HMAC"
        raise unsupported(f"{key.arn} is {kind} key ({key.key_spec}); GetPublicKey needs an asymmetric key.")
    return {
        "KeyId": key.arn, "PublicKey": public_key_der(private_key(key)), "CustomerMasterKeySpec": key.key_spec,
        "KeySpec": key.key_spec, "KeyUsage": key.key_usage, **algorithm_lists(key.key_spec, key.key_usage),
    }


def register(registry: Registry) -> None:
    # Any key with a public key: asymmetric keys of every usage but MACs.
    public = keys_for(SIGN_VERIFY, KEY_AGREEMENT, ENCAPSULATE_DECAPSULATE, ENCRYPT_DECRYPT, symmetric=False)
    registry.add(Operation(name="GetPublicKey", handler=get_public_key, read_only=True, cross_account=True,
                           keys=(KeyAction("KeyId", "GetPublicKey", grant=public),)))
