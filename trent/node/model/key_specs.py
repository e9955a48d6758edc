"""Key specs as data (KMS-REFERENCE.md §4): the usages each spec allows, the algorithms each (spec, usage)
advertises, message limits, and what this cluster's cryptography library cannot do. Facts only; the crypto is in
node/crypto/asymmetric.py."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from trent.node.model.key import ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT

SIGN_VERIFY = "SIGN_VERIFY"
GENERATE_VERIFY_MAC = "GENERATE_VERIFY_MAC"
KEY_AGREEMENT = "KEY_AGREEMENT"
ENCAPSULATE_DECAPSULATE = "ENCAPSULATE_DECAPSULATE"

RAW = "RAW"
DIGEST = "DIGEST"
EXTERNAL_MU = "EXTERNAL_MU"
ECDH = "ECDH"
ML_KEM = "ML_KEM"

RSA_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")
NIST_CURVES = ("ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521")
HMAC_SPECS = ("HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512")
ML_DSA_SPECS = ("ML_DSA_44", "ML_DSA_65", "ML_DSA_87")
ML_KEM_SPECS = ("ML_KEM_512", "ML_KEM_768", "ML_KEM_1024")

USAGES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    SYMMETRIC_DEFAULT: (ENCRYPT_DECRYPT,),
    **{s: (GENERATE_VERIFY_MAC,) for s in HMAC_SPECS},
    **{s: (ENCRYPT_DECRYPT, SIGN_VERIFY) for s in RSA_SPECS},
    **{s: (SIGN_VERIFY, KEY_AGREEMENT) for s in NIST_CURVES},
    "ECC_SECG_P256K1": (SIGN_VERIFY,),
    "ECC_NIST_EDWARDS25519": (SIGN_VERIFY,),
    **{s: (SIGN_VERIFY,) for s in ML_DSA_SPECS},
    **{s: (ENCAPSULATE_DECAPSULATE,) for s in ML_KEM_SPECS},
    "SM2": (ENCRYPT_DECRYPT, SIGN_VERIFY, KEY_AGREEMENT),
})

# AWS's order (the DescribeKey example of the model): PKCS#1 v1.5 first, then PSS.
_RSA_SIGNING = ("RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
                "RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512")
_SIGNING: Mapping[str, tuple[str, ...]] = MappingProxyType({
    **{s: _RSA_SIGNING for s in RSA_SPECS},
    "ECC_NIST_P256": ("ECDSA_SHA_256",),
    "ECC_NIST_P384": ("ECDSA_SHA_384",),
    "ECC_NIST_P521": ("ECDSA_SHA_512",),
    "ECC_SECG_P256K1": ("ECDSA_SHA_256",),
    "ECC_NIST_EDWARDS25519": ("ED25519_SHA_512", "ED25519_PH_SHA_512"),
    **{s: ("ML_DSA_SHAKE_256",) for s in ML_DSA_SPECS},
    "SM2": ("SM2DSA",),
})
_ENCRYPTION: Mapping[str, tuple[str, ...]] = MappingProxyType({
    SYMMETRIC_DEFAULT: (SYMMETRIC_DEFAULT,),
    **{s: ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256") for s in RSA_SPECS},
    "SM2": ("SM2PKE",),
})
MAC_ALGORITHM: Mapping[str, str] = MappingProxyType({s: "HMAC_SHA_" + s.removeprefix("HMAC_") for s in HMAC_SPECS})
HMAC_KEY_BYTES: Mapping[str, int] = MappingProxyType({"HMAC_224": 28, "HMAC_256": 32, "HMAC_384": 48,
                                                       "HMAC_512": 64})

# Specs KMS has but the installed `cryptography` cannot do: refused with the reason rather than faked.
UNSUPPORTED_SPECS: Mapping[str, str] = MappingProxyType({
    "SM2": "SM2 (a China-Regions-only spec) is not available: the cryptography library this cluster uses has no SM2.",
    "ML_KEM_512": "ML_KEM_512 is not available: the cryptography library this cluster uses has no ML-KEM-512 "
                  "(ML_KEM_768 and ML_KEM_1024 are).",
})
UNSUPPORTED_SIGNING: Mapping[str, str] = MappingProxyType({
    "ED25519_PH_SHA_512": "ED25519_PH_SHA_512 (Ed25519ph) is not available: the cryptography library this cluster "
                          "uses has no Ed25519ph. ED25519_SHA_512 with MessageType RAW is.",
    "SM2DSA": "SM2DSA is not available: the cryptography library this cluster uses has no SM2.",
})

# The hash each signing algorithm applies to a RAW message; a DIGEST message must be exactly this long.
DIGEST_LENGTH: Mapping[str, int] = MappingProxyType({
    **{a: int(a[-3:]) // 8 for a in _RSA_SIGNING},
    "ECDSA_SHA_256": 32, "ECDSA_SHA_384": 48, "ECDSA_SHA_512": 64,
    "ED25519_PH_SHA_512": 64, "SM2DSA": 32,
})
EXTERNAL_MU_LENGTH = 64
MODULUS_BYTES: Mapping[str, int] = MappingProxyType({"RSA_2048": 256, "RSA_3072": 384, "RSA_4096": 512})
_OAEP_HASH_BYTES: Mapping[str, int] = MappingProxyType({"RSAES_OAEP_SHA_1": 20, "RSAES_OAEP_SHA_256": 32})


def algorithm_lists(spec: str, usage: str) -> dict[str, list[str]]:
    """The KeyMetadata / GetPublicKey algorithm list of a key: exactly one list, named for its usage."""
    if usage == ENCRYPT_DECRYPT:
        return {"EncryptionAlgorithms": list(_ENCRYPTION.get(spec, ()))}
    if usage == SIGN_VERIFY:
        return {"SigningAlgorithms": list(_SIGNING.get(spec, ()))}
    if usage == GENERATE_VERIFY_MAC:
        return {"MacAlgorithms": [MAC_ALGORITHM[spec]]} if spec in MAC_ALGORITHM else {}
    if usage == KEY_AGREEMENT:
        return {"KeyAgreementAlgorithms": [ECDH]}
    if usage == ENCAPSULATE_DECAPSULATE:
        return {"EncapsulationAlgorithms": [ML_KEM]}
    return {}


def signing_algorithms(spec: str) -> tuple[str, ...]:
    return _SIGNING.get(spec, ())


def encryption_algorithms(spec: str) -> tuple[str, ...]:
    return _ENCRYPTION.get(spec, ())


def oaep_max_plaintext(spec: str, algorithm: str) -> int:
    """RFC 8017 §7.1.1: OAEP carries at most k - 2·hLen - 2 bytes (214/342/470 with SHA-1, 190/318/446 with
    SHA-256)."""
    return MODULUS_BYTES[spec] - 2 * _OAEP_HASH_BYTES[algorithm] - 2


def is_asymmetric(spec: str) -> bool:
    return spec != SYMMETRIC_DEFAULT and spec not in MAC_ALGORITHM
