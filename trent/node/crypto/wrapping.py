"""Imported key material in transit: the wrapping algorithms AWS documents (RSA-OAEP directly, or RSA-OAEP of an
ephemeral AES key followed by AES key wrap with padding, RFC 5649), and what imported bytes must be for each key
spec. Pure functions; nothing here logs, formats or raises with secret bytes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding

from trent.node.crypto.handles import SecretBytes
from trent.node.model.key import SYMMETRIC_DEFAULT

OAEP_SHA_1, OAEP_SHA_256 = "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"
AES_WRAP_SHA_1, AES_WRAP_SHA_256 = "RSA_AES_KEY_WRAP_SHA_1", "RSA_AES_KEY_WRAP_SHA_256"
WRAPPING_ALGORITHMS = (OAEP_SHA_1, OAEP_SHA_256, AES_WRAP_SHA_1, AES_WRAP_SHA_256)
WRAPPING_KEY_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")
_MODULUS_BYTES: Mapping[str, int] = MappingProxyType({"RSA_2048": 256, "RSA_3072": 384, "RSA_4096": 512})
_HASH: Mapping[str, Callable[[], hashes.HashAlgorithm]] = MappingProxyType({
    OAEP_SHA_1: hashes.SHA1, OAEP_SHA_256: hashes.SHA256, AES_WRAP_SHA_1: hashes.SHA1, AES_WRAP_SHA_256: hashes.SHA256,
})
# The bytes an HMAC key may have (AWS's "requirements for imported key material").
HMAC_IMPORT_BYTES: Mapping[str, tuple[int, int]] = MappingProxyType({
    "HMAC_224": (28, 64), "HMAC_256": (32, 64), "HMAC_384": (48, 128), "HMAC_512": (64, 128),
})
_RSA_BITS: Mapping[str, int] = MappingProxyType({"RSA_2048": 2048, "RSA_3072": 3072, "RSA_4096": 4096})
_CURVES: Mapping[str, type[ec.EllipticCurve]] = MappingProxyType({
    "ECC_NIST_P256": ec.SECP256R1, "ECC_NIST_P384": ec.SECP384R1, "ECC_NIST_P521": ec.SECP521R1,
    "ECC_SECG_P256K1": ec.SECP256K1,
})
_OTHER: Mapping[str, type] = MappingProxyType({
    "ECC_NIST_EDWARDS25519": ed25519.Ed25519PrivateKey, "ML_DSA_44": mldsa.MLDSA44PrivateKey,
    "ML_DSA_65": mldsa.MLDSA65PrivateKey, "ML_DSA_87": mldsa.MLDSA87PrivateKey,
    "ML_KEM_768": mlkem.MLKEM768PrivateKey, "ML_KEM_1024": mlkem.MLKEM1024PrivateKey,
})


class UnwrapFailed(Exception):
    """The wrapped bytes do not open under the wrapping key with the token's algorithm (no detail: an oracle)."""


class BadMaterial(Exception):
    """The unwrapped bytes are not key material of the key's spec; the message says why, never what they were."""


def combination_error(algorithm: str, wrapping_spec: str, key_spec: str) -> str | None:
    """Why AWS refuses this wrapping algorithm and wrapping key for material of ``key_spec`` (None: allowed)."""
    direct = algorithm in (OAEP_SHA_1, OAEP_SHA_256)
    if direct and key_spec in _RSA_BITS:
        return (f"The wrapping algorithm {algorithm} cannot wrap {key_spec} key material (an RSA private key); "
                "use RSA_AES_KEY_WRAP_SHA_1 or RSA_AES_KEY_WRAP_SHA_256.")
    if direct and key_spec == "ECC_NIST_P521" and wrapping_spec == "RSA_2048":
        return (f"The wrapping algorithm {algorithm} with wrapping key spec RSA_2048 cannot wrap ECC_NIST_P521 "
                "key material; use an RSA_AES wrapping algorithm or a longer wrapping key.")
    return None


def _oaep(algorithm: str) -> padding.OAEP:
    hash_ = _HASH[algorithm]()
    return padding.OAEP(mgf=padding.MGF1(hash_), algorithm=hash_, label=None)


def unwrap(wrapping_private: SecretBytes, wrapping_spec: str, algorithm: str, wrapped: bytes) -> SecretBytes:
    """The key material ``wrapped`` carries. RSA_AES_KEY_WRAP_*: the first modulus-length bytes are the OAEP-wrapped
    AES key, the rest the RFC 5649 wrap of the material (what `openssl enc -id-aes256-wrap-pad` makes)."""
    key = serialization.load_der_private_key(wrapping_private.reveal(), None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UnwrapFailed
    try:
        if algorithm in (OAEP_SHA_1, OAEP_SHA_256):
            return SecretBytes(key.decrypt(wrapped, _oaep(algorithm)), label="imported-material")
        if algorithm not in (AES_WRAP_SHA_1, AES_WRAP_SHA_256):
            raise UnwrapFailed
        size = _MODULUS_BYTES[wrapping_spec]
        if len(wrapped) <= size:
            raise UnwrapFailed
        aes_key = key.decrypt(wrapped[:size], _oaep(algorithm))
        if len(aes_key) not in (16, 24, 32):
            raise UnwrapFailed
        return SecretBytes(aes_key_unwrap_with_padding(aes_key, wrapped[size:]), label="imported-material")
    except (ValueError, InvalidUnwrap):
        raise UnwrapFailed from None


def _is_pkcs8(raw: bytes) -> bool:
    """PKCS #8 (RFC 5208/5958): SEQUENCE { INTEGER version 0|1, SEQUENCE algorithm, ... }. The library also loads
    PKCS #1 and SEC1 private keys; AWS takes PKCS #8 only (in PKCS #1 the version is followed by an INTEGER, in
    SEC1 by an OCTET STRING)."""
    if len(raw) < 8 or raw[0] != 0x30:
        return False
    at = 2 if raw[1] < 0x80 else 2 + (raw[1] & 0x7F)
    return raw[at:at + 3] in (b"\x02\x01\x00", b"\x02\x01\x01") and raw[at + 3:at + 4] == b"\x30"


def _load_private(raw: bytes, key_spec: str) -> PrivateKeyTypes:
    if not _is_pkcs8(raw):
        raise BadMaterial(f"The key material is not a DER-encoded PKCS #8 private key of key spec {key_spec}.")
    try:
        key = serialization.load_der_private_key(raw, None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BadMaterial(f"The key material is not a DER-encoded PKCS #8 private key of key spec {key_spec}."
                          ) from None
    if key_spec in _RSA_BITS:
        ok = isinstance(key, rsa.RSAPrivateKey) and key.key_size == _RSA_BITS[key_spec]
    elif key_spec in _CURVES:
        ok = isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, _CURVES[key_spec])
    else:
        ok = isinstance(key, _OTHER[key_spec])
    if not ok:
        raise BadMaterial(f"The key material is a private key, but not one of key spec {key_spec}.")
    return key


def canonical_material(raw: SecretBytes, key_spec: str) -> SecretBytes:
    """The material to store for imported bytes of ``key_spec``: the 32 AES bytes, the HMAC key as imported, or
    the private key re-encoded as this cluster's PKCS#8 DER (so the same key in another DER layout is the same
    material, with the same id)."""
    value = raw.reveal()
    if key_spec == SYMMETRIC_DEFAULT:
        if len(value) != 32:
            raise BadMaterial("Key material for a SYMMETRIC_DEFAULT key must be exactly 256 bits (32 bytes).")
        return raw
    if key_spec in HMAC_IMPORT_BYTES:
        low, high = HMAC_IMPORT_BYTES[key_spec]
        if not low <= len(value) <= high:
            raise BadMaterial(f"Key material for an {key_spec} key must be {low} to {high} bytes.")
        return raw
    key = _load_private(value, key_spec)
    try:
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # An ML-DSA or ML-KEM key given without its seed cannot be kept in the seed form this cluster stores.
        raise BadMaterial(f"The {key_spec} private key must carry its seed (PKCS #8 seed form).") from None
    return SecretBytes(der, label="imported-material")


def importable(key_spec: str) -> bool:
    return key_spec == SYMMETRIC_DEFAULT or key_spec in HMAC_IMPORT_BYTES or key_spec in _RSA_BITS \
        or key_spec in _CURVES or key_spec in _OTHER
