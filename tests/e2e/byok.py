"""What the imported-key-material tests share: wrapping key material the way AWS's developer guide describes it,
with `cryptography` (the openssl/CLI tests do the same with the real tools)."""

from __future__ import annotations

import os
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

HASHES = {"RSAES_OAEP_SHA_1": hashes.SHA1, "RSAES_OAEP_SHA_256": hashes.SHA256,
          "RSA_AES_KEY_WRAP_SHA_1": hashes.SHA1, "RSA_AES_KEY_WRAP_SHA_256": hashes.SHA256}


def wrap(public_der: bytes, algorithm: str, material: bytes) -> bytes:
    """EncryptedKeyMaterial: RSA-OAEP of the material, or (RSA_AES_KEY_WRAP_*) RSA-OAEP of a fresh AES-256 key
    followed by the RFC 5649 wrap of the material under it."""
    public = serialization.load_der_public_key(public_der)
    assert isinstance(public, rsa.RSAPublicKey)
    hash_ = HASHES[algorithm]()
    oaep = padding.OAEP(mgf=padding.MGF1(hash_), algorithm=hash_, label=None)
    if algorithm.startswith("RSAES_OAEP"):
        return public.encrypt(material, oaep)
    aes_key = os.urandom(32)
    return public.encrypt(aes_key, oaep) + aes_key_wrap_with_padding(aes_key, material)


def import_material(kms: Any, key_id: str, material: bytes, algorithm: str = "RSAES_OAEP_SHA_256",
                    wrapping_spec: str = "RSA_2048", **extra: Any) -> dict[str, Any]:
    """GetParametersForImport, wrap, ImportKeyMaterial (never expiring unless ``extra`` says otherwise)."""
    params = kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm=algorithm, WrappingKeySpec=wrapping_spec)
    if "ExpirationModel" not in extra and "ValidTo" not in extra:
        extra["ExpirationModel"] = "KEY_MATERIAL_DOES_NOT_EXPIRE"
    out: dict[str, Any] = kms.import_key_material(
        KeyId=key_id, ImportToken=params["ImportToken"],
        EncryptedKeyMaterial=wrap(params["PublicKey"], algorithm, material), **extra)
    return out


def pkcs8(private: Any) -> bytes:
    der: bytes = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    return der


def external_key(kms: Any, **kwargs: Any) -> dict[str, Any]:
    meta: dict[str, Any] = kms.create_key(Origin="EXTERNAL", **kwargs)["KeyMetadata"]
    return meta


def import_error(kms: Any, key_id: str, material: bytes, algorithm: str = "RSAES_OAEP_SHA_256",
                 wrapping_spec: str = "RSA_2048", **extra: Any) -> dict[str, Any]:
    """The error an import that must fail gets: {Code, Message}."""
    from botocore.exceptions import ClientError

    try:
        import_material(kms, key_id, material, algorithm, wrapping_spec, **extra)
    except ClientError as exc:
        return {"Code": exc.response["Error"]["Code"], "Message": exc.response["Error"].get("Message")}
    raise AssertionError("the import succeeded")
