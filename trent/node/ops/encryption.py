"""Encrypt, Decrypt, ReEncrypt, GenerateDataKey(+WithoutPlaintext), GenerateRandom.

Symmetric keys take the TRENT-V1 path here; an RSA encryption key (asymmetric) branches to node/ops/asymmetric.py
after one comparison, so the symmetric hot path is unchanged.
"""

from __future__ import annotations

import os
from typing import Any

from trent.node.crypto.blob import BlobHeader, open_blob, parse_header, seal
from trent.node.deferred import Deferred
from trent.node.model.errors import KmsError, invalid_ciphertext, validation
from trent.node.model.key import ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT, KeyRecord, MaterialVersion
from trent.node.model.operations import KeyAction, Operation, keys_for
from trent.node.model.states import OpClass, check_state
from trent.node.ops import asymmetric, key_store_keys
from trent.node.ops.common import (
    finish_dry_run,
    key_for,
    reject_recipient,
    require_symmetric_algorithm,
    require_symmetric_encryption,
)
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region

DATA_KEY_BYTES = {"AES_128": 16, "AES_256": 32}
FOREIGN_BLOB_MESSAGE = (
    "The ciphertext refers to a customer master key that does not exist, does not exist in this region, "
    "or you are not allowed to access."
)


def _encryption_key(region: Region, params: Params, operation: str, field: str = "KeyId") -> KeyRecord:
    key = key_for(region, params, OpClass.CRYPTO, allow_alias=True, field=field)
    require_symmetric_encryption(key, operation)
    return key


def _ignore_ciphertext(params: Params) -> bool:
    return "IGNORE_CIPHERTEXT" in (params.get("DryRunModifiers") or ())


def _open_source(
    region: Region, params: Params, operation: str, *, key_field: str, ec_field: str, alg_field: str
) -> tuple[KeyRecord, bytes, MaterialVersion | None, str, bool]:
    """Decrypt half shared by Decrypt and ReEncrypt: header → key → state → usage → material → AEAD open.

    The material version is None for an RSA ciphertext (no versions) and for a DryRun that ignores the blob. The
    last member is True when the blob is to be opened in the key's custom key store (by the caller: plaintext and
    version are empty then).
    """
    blob: bytes = params.get("CiphertextBlob") or b""
    ignore = bool(params.get("DryRun")) and _ignore_ciphertext(params)
    if ignore and params.get(key_field) is None:
        raise validation(f"{key_field} is required when DryRunModifiers includes IGNORE_CIPHERTEXT.")
    if asymmetric.is_asymmetric_algorithm(params.get(alg_field)) and params.get(key_field) is not None:
        # A raw RSA ciphertext names no key: the request's KeyId and EncryptionAlgorithm select it.
        key, plaintext, algorithm = asymmetric.open_rsa(
            region, params, operation, key_field=key_field, ec_field=ec_field, alg_field=alg_field,
            skip_ciphertext=ignore)
        return key, plaintext, None, algorithm, False
    if "CiphertextBlob" not in params and not ignore:
        raise validation("1 validation error detected: Value null at 'ciphertextBlob' failed to satisfy "
                         "constraint: Member must not be null")
    header: BlobHeader | None = None if ignore else parse_header(blob)
    if params.get(key_field) is not None:
        key = region.resolve(params[key_field], allow_alias=True)
        if header is not None and key.key_id != header.key_id:
            raise KmsError("IncorrectKeyException", "The key ID in the request does not identify a CMK that can "
                           "perform this operation.")
    else:
        assert header is not None
        found = region.keys.get(header.key_id)
        if found is None:
            raise KmsError("AccessDeniedException", FOREIGN_BLOB_MESSAGE)
        key = found
    check_state(OpClass.CRYPTO, key.state, key.arn)
    require_symmetric_encryption(key, operation)
    algorithm = require_symmetric_algorithm(key, params.get(alg_field))
    if header is None:
        return key, b"", None, algorithm, False
    if header.key_store:
        if not key_store_keys.is_store_key(key):
            raise invalid_ciphertext()
        return key, b"", None, algorithm, True
    version = key.material(header.material_id)
    # An external key store's key has material of its own only for the inner layer: its blobs open through the proxy.
    if version is None or (key.extra and key_store_keys.is_store_key(key)):
        raise invalid_ciphertext()
    # A DryRun without IGNORE_CIPHERTEXT validates the ciphertext too (wrong context, tampering): open it.
    return key, open_blob(blob, version.material, params.get(ec_field)), version, algorithm, False


def encrypt(region: Region, params: Params, ctx: RequestContext) -> Response | Deferred:
    key = key_for(region, params, OpClass.CRYPTO, allow_alias=True)
    if key.key_spec != SYMMETRIC_DEFAULT:
        return _encrypt_asymmetric(key, params)
    # The checks' own calls only when they would refuse (the usual request passes both: a call fewer each).
    if key.key_usage != ENCRYPT_DECRYPT:
        require_symmetric_encryption(key, "Encrypt")
    algorithm = params.get("EncryptionAlgorithm") or SYMMETRIC_DEFAULT
    if algorithm != SYMMETRIC_DEFAULT:
        require_symmetric_algorithm(key, algorithm)
    if params.get("DryRun"):
        finish_dry_run(params)
    if key.extra and key_store_keys.is_store_key(key):
        return key_store_keys.encrypt(region, key, params["Plaintext"], params.get("EncryptionContext"), lambda blob: {
            "CiphertextBlob": blob, "KeyId": key.arn, "EncryptionAlgorithm": algorithm})
    version = key.current_material()
    blob = seal(key.key_id, version.material, params["Plaintext"], params.get("EncryptionContext"))
    return {"CiphertextBlob": blob, "KeyId": key.arn, "EncryptionAlgorithm": algorithm}


def _encrypt_asymmetric(key: KeyRecord, params: Params) -> Response:
    algorithm = asymmetric.check_encrypt(key, params.get("EncryptionAlgorithm"), "Encrypt", params,
                                         "EncryptionContext")
    asymmetric.check_plaintext_length(key, algorithm, params["Plaintext"])
    finish_dry_run(params)
    blob = asymmetric.rsa_encrypt(key, algorithm, params["Plaintext"])
    return {"CiphertextBlob": blob, "KeyId": key.arn, "EncryptionAlgorithm": algorithm}


def decrypt(region: Region, params: Params, ctx: RequestContext) -> Response | Deferred:
    key, plaintext, version, algorithm, in_store = _open_source(
        region, params, "Decrypt", key_field="KeyId", ec_field="EncryptionContext", alg_field="EncryptionAlgorithm"
    )
    reject_recipient(params)
    if in_store:
        def opened(plaintext: bytes) -> Response:
            finish_dry_run(params)
            return {"KeyId": key.arn, "Plaintext": plaintext, "EncryptionAlgorithm": algorithm,
                    "KeyMaterialId": key.current_material_id.hex()}
        return key_store_keys.decrypt(region, key, params["CiphertextBlob"], params.get("EncryptionContext"), opened)
    finish_dry_run(params)
    # None (omitted on the wire) for an RSA key: only symmetric keys have material versions.
    material_id = version.material_id.hex() if version is not None else None
    return {"KeyId": key.arn, "Plaintext": plaintext, "EncryptionAlgorithm": algorithm, "KeyMaterialId": material_id}


def re_encrypt(region: Region, params: Params, ctx: RequestContext) -> Response | Deferred:
    source, plaintext, source_version, source_alg, in_store = _open_source(
        region, params, "ReEncrypt", key_field="SourceKeyId", ec_field="SourceEncryptionContext",
        alg_field="SourceEncryptionAlgorithm",
    )
    dest = key_for(region, params, OpClass.CRYPTO, allow_alias=True, field="DestinationKeyId")
    if in_store or (dest.extra and key_store_keys.is_store_key(dest)):
        return _re_encrypt_with_stores(region, params, source, source_alg, in_store, plaintext, dest)
    dest_alg = _destination_algorithm(dest, params, plaintext)
    finish_dry_run(params)
    dest_version: MaterialVersion | None = None
    if dest.key_spec == SYMMETRIC_DEFAULT:
        dest_version = dest.current_material()
        blob = seal(dest.key_id, dest_version.material, plaintext, params.get("DestinationEncryptionContext"))
    else:
        blob = asymmetric.rsa_encrypt(dest, dest_alg, plaintext)
    return {
        "CiphertextBlob": blob, "SourceKeyId": source.arn, "KeyId": dest.arn,
        "SourceEncryptionAlgorithm": source_alg, "DestinationEncryptionAlgorithm": dest_alg,
        "SourceKeyMaterialId": source_version.material_id.hex() if source_version is not None else None,
        "DestinationKeyMaterialId": dest_version.material_id.hex() if dest_version is not None else None,
    }


def _re_encrypt_with_stores(region: Region, params: Params, source: KeyRecord, source_alg: str, source_in_store: bool,
                            plaintext: bytes, dest: KeyRecord) -> Response | Deferred:
    """ReEncrypt where the source or the destination key (or both) lives in a custom key store: each one's part
    in its own token, one after the other."""
    source_material = source.current_material_id.hex() if source_in_store else None

    def answer(blob: bytes, dest_material: str | None, dest_alg: str) -> Response:
        return {"CiphertextBlob": blob, "SourceKeyId": source.arn, "KeyId": dest.arn,
                "SourceEncryptionAlgorithm": source_alg, "DestinationEncryptionAlgorithm": dest_alg,
                "SourceKeyMaterialId": source_material, "DestinationKeyMaterialId": dest_material}

    def seal_in_destination(opened: bytes) -> Response | Deferred:
        dest_alg = _destination_algorithm(dest, params, opened)
        finish_dry_run(params)
        context = params.get("DestinationEncryptionContext")
        if key_store_keys.is_store_key(dest):
            material = dest.current_material_id.hex()
            return key_store_keys.encrypt(region, dest, opened, context,
                                          lambda blob: answer(blob, material, dest_alg))
        if dest.key_spec == SYMMETRIC_DEFAULT:
            version = dest.current_material()
            return answer(seal(dest.key_id, version.material, opened, context), version.material_id.hex(), dest_alg)
        return answer(asymmetric.rsa_encrypt(dest, dest_alg, opened), None, dest_alg)

    if source_in_store:
        return key_store_keys.decrypt(region, source, params["CiphertextBlob"], params.get("SourceEncryptionContext"),
                                      seal_in_destination)
    return seal_in_destination(plaintext)


def _destination_algorithm(dest: KeyRecord, params: Params, plaintext: bytes) -> str:
    algorithm = params.get("DestinationEncryptionAlgorithm")
    if dest.key_spec == SYMMETRIC_DEFAULT:
        require_symmetric_encryption(dest, "ReEncrypt")
        return require_symmetric_algorithm(dest, algorithm)
    chosen = asymmetric.check_encrypt(dest, algorithm, "ReEncrypt", params, "DestinationEncryptionContext")
    asymmetric.check_plaintext_length(dest, chosen, plaintext)
    return chosen


def _data_key_length(params: Params) -> int:
    spec, size = params.get("KeySpec"), params.get("NumberOfBytes")
    if (spec is None) == (size is None):
        raise validation("Please specify either number of bytes or key spec.")
    return DATA_KEY_BYTES[spec] if spec is not None else int(size or 0)


def _generate_data_key(region: Region, params: Params, operation: str, with_plaintext: bool) -> Response | Deferred:
    key = _encryption_key(region, params, operation)
    length = _data_key_length(params)
    reject_recipient(params)
    finish_dry_run(params)
    if key.extra and key_store_keys.is_store_key(key):
        material = key.current_material_id.hex()

        def answer(made: tuple[bytes, bytes]) -> Response:
            out: dict[str, Any] = {"CiphertextBlob": made[1], "KeyId": key.arn, "KeyMaterialId": material}
            if with_plaintext:
                out["Plaintext"] = made[0]
            return out
        return key_store_keys.data_key(region, key, length, params.get("EncryptionContext"), answer)
    version = key.current_material()
    plaintext = os.urandom(length)
    blob = seal(key.key_id, version.material, plaintext, params.get("EncryptionContext"))
    out = {"CiphertextBlob": blob, "KeyId": key.arn, "KeyMaterialId": version.material_id.hex()}
    if with_plaintext:
        out["Plaintext"] = plaintext
    return out


def generate_data_key(region: Region, params: Params, ctx: RequestContext) -> Response | Deferred:
    return _generate_data_key(region, params, "GenerateDataKey", True)


def generate_data_key_without_plaintext(region: Region, params: Params, ctx: RequestContext) -> Response | Deferred:
    return _generate_data_key(region, params, "GenerateDataKeyWithoutPlaintext", False)


def generate_random(region: Region, params: Params, ctx: RequestContext) -> Response | Deferred:
    size = params.get("NumberOfBytes")
    if size is None:
        raise validation("1 validation error detected: Value null at 'numberOfBytes' failed to satisfy "
                         "constraint: Member must not be null")
    reject_recipient(params)
    if params.get("CustomKeyStoreId") is not None:
        return key_store_keys.random_from_store(region, params["CustomKeyStoreId"], size)
    return {"Plaintext": os.urandom(size)}


def register(registry: Registry) -> None:
    encryption = keys_for(ENCRYPT_DECRYPT)
    for name, handler in (("Encrypt", encrypt), ("Decrypt", decrypt)):
        registry.add(Operation(name=name, handler=handler, read_only=True, cross_account=True, usage_tracked=True,
                               keys=(KeyAction("KeyId", name, "EncryptionContext", encryption),)))
    registry.add(Operation(name="ReEncrypt", handler=re_encrypt, read_only=True, cross_account=True,
                           usage_tracked=True,
                           keys=(KeyAction("SourceKeyId", "ReEncryptFrom", "SourceEncryptionContext", encryption),
                                 KeyAction("DestinationKeyId", "ReEncryptTo", "DestinationEncryptionContext",
                                           encryption))))
    data_keys = keys_for(ENCRYPT_DECRYPT, symmetric=True)
    for name, handler in (("GenerateDataKey", generate_data_key),
                          ("GenerateDataKeyWithoutPlaintext", generate_data_key_without_plaintext)):
        registry.add(Operation(name=name, handler=handler, read_only=True, cross_account=True, usage_tracked=True,
                               keys=(KeyAction("KeyId", name, "EncryptionContext", data_keys),)))
    registry.add(Operation(name="GenerateRandom", handler=generate_random, read_only=True))
