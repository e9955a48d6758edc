"""Sign and Verify with asymmetric SIGN_VERIFY keys (KMS-REFERENCE.md §4.2).

MessageType RAW hashes the message with the algorithm's hash; DIGEST takes an already hashed message of exactly
that length (so signing sha256(m) as DIGEST equals signing m as RAW); EXTERNAL_MU takes ML-DSA's 64-byte μ.
A signature that does not verify is KMSInvalidSignatureException, never SignatureValid false.
"""

from __future__ import annotations

from dataclasses import dataclass

from trent.node.crypto import asymmetric as crypto
from trent.node.model.errors import KmsError, unsupported, validation
from trent.node.model.key import KeyRecord
from trent.node.model.key_specs import (
    DIGEST,
    DIGEST_LENGTH,
    EXTERNAL_MU,
    EXTERNAL_MU_LENGTH,
    ML_DSA_SPECS,
    RAW,
    SIGN_VERIFY,
    UNSUPPORTED_SIGNING,
    signing_algorithms,
)
from trent.node.model.operations import KeyAction, Operation, keys_for
from trent.node.ops.asymmetric import private_key, usable_key
from trent.node.ops.common import finish_dry_run, require_algorithm
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region

# Ed25519: the pure scheme signs the message itself; the pre-hash scheme takes a SHA-512 digest.
_ED25519_MESSAGE_TYPE = {"ED25519_SHA_512": RAW, "ED25519_PH_SHA_512": DIGEST}


@dataclass(frozen=True)
class SigningRequest:
    key: KeyRecord
    algorithm: str
    message_type: str
    message: bytes


def _incompatible(message_type: str, what: str) -> KmsError:
    return validation(f"Message type {message_type} is incompatible with {what}.")


def check_message(key: KeyRecord, algorithm: str, message_type: str, message: bytes) -> None:
    """The message type must suit the key and algorithm, and a digest or μ must have its exact length."""
    if key.key_spec in ML_DSA_SPECS:
        if message_type == DIGEST:  # ML-DSA hashes with SHAKE-256 internally; a pre-hash is EXTERNAL_MU
            raise _incompatible(message_type, f"key spec {key.key_spec}")
        if message_type == EXTERNAL_MU and len(message) != EXTERNAL_MU_LENGTH:
            raise validation(f"Message of type EXTERNAL_MU must be {EXTERNAL_MU_LENGTH} bytes for algorithm "
                             f"{algorithm}.")
        return
    if message_type == EXTERNAL_MU:
        raise _incompatible(message_type, f"key spec {key.key_spec}")
    required = _ED25519_MESSAGE_TYPE.get(algorithm)
    if required is not None and message_type != required:
        raise _incompatible(message_type, f"algorithm {algorithm}")
    if message_type == DIGEST and len(message) != DIGEST_LENGTH[algorithm]:
        raise validation(f"Digest is invalid length for algorithm {algorithm}.")


def signing_request(region: Region, params: Params, operation: str) -> SigningRequest:
    key = usable_key(region, params, SIGN_VERIFY, operation)
    algorithm = require_algorithm(key, params["SigningAlgorithm"], signing_algorithms(key.key_spec))
    message_type = params.get("MessageType") or RAW
    message: bytes = params["Message"]
    check_message(key, algorithm, message_type, message)
    if algorithm in UNSUPPORTED_SIGNING:
        raise unsupported(UNSUPPORTED_SIGNING[algorithm])
    return SigningRequest(key, algorithm, message_type, message)


def sign(region: Region, params: Params, ctx: RequestContext) -> Response:
    req = signing_request(region, params, "Sign")
    finish_dry_run(params)
    signature = crypto.sign(private_key(req.key), req.algorithm, req.message, req.message_type)
    return {"KeyId": req.key.arn, "Signature": signature, "SigningAlgorithm": req.algorithm}


def verify(region: Region, params: Params, ctx: RequestContext) -> Response:
    req = signing_request(region, params, "Verify")
    # Checked before DryRun: a request with a bad signature would not have succeeded.
    if not crypto.verify(private_key(req.key), req.algorithm, req.message, req.message_type, params["Signature"]):
        raise KmsError("KMSInvalidSignatureException")
    finish_dry_run(params)
    return {"KeyId": req.key.arn, "SignatureValid": True, "SigningAlgorithm": req.algorithm}


def register(registry: Registry) -> None:
    for name, handler in (("Sign", sign), ("Verify", verify)):
        registry.add(Operation(name=name, handler=handler, read_only=True, cross_account=True, usage_tracked=True,
                               keys=(KeyAction("KeyId", name, grant=keys_for(SIGN_VERIFY)),)))
