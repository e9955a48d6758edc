"""Asymmetric keys end to end with unmodified boto3: CreateKey specs, KeyMetadata algorithm lists, GetPublicKey,
Sign/Verify (every algorithm of every spec, RAW and DIGEST, checked locally with `cryptography` from the public
key), RSA-OAEP Encrypt/Decrypt/ReEncrypt with the per-size limits, and multi-Region signing keys
(KMS-REFERENCE.md §4, §5.1, §8)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from tests.e2e.harness import RunningCluster, error
from tests.e2e.test_multi_region import wait_state

ACCOUNT = "111122223333"
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "SHA_256": hashes.SHA256, "SHA_384": hashes.SHA384, "SHA_512": hashes.SHA512, "SHA_1": hashes.SHA1}
RSA_SIGNING = ["RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PKCS1_V1_5_SHA_384", "RSASSA_PKCS1_V1_5_SHA_512",
               "RSASSA_PSS_SHA_256", "RSASSA_PSS_SHA_384", "RSASSA_PSS_SHA_512"]
SIGNING = {
    "RSA_2048": RSA_SIGNING, "RSA_3072": RSA_SIGNING, "RSA_4096": RSA_SIGNING,
    "ECC_NIST_P256": ["ECDSA_SHA_256"], "ECC_NIST_P384": ["ECDSA_SHA_384"], "ECC_NIST_P521": ["ECDSA_SHA_512"],
    "ECC_SECG_P256K1": ["ECDSA_SHA_256"],
}
CURVES = {"ECC_NIST_P256": "secp256r1", "ECC_NIST_P384": "secp384r1", "ECC_NIST_P521": "secp521r1",
          "ECC_SECG_P256K1": "secp256k1"}
# RFC 8017 §7.1.1 limits, as KMS-REFERENCE.md §4.2 lists them.
OAEP_LIMITS = {("RSA_2048", "RSAES_OAEP_SHA_1"): 214, ("RSA_3072", "RSAES_OAEP_SHA_1"): 342,
               ("RSA_4096", "RSAES_OAEP_SHA_1"): 470, ("RSA_2048", "RSAES_OAEP_SHA_256"): 190,
               ("RSA_3072", "RSAES_OAEP_SHA_256"): 318, ("RSA_4096", "RSAES_OAEP_SHA_256"): 446}
ALGORITHM_LISTS = {"EncryptionAlgorithms", "SigningAlgorithms", "MacAlgorithms", "KeyAgreementAlgorithms",
                   "EncapsulationAlgorithms"}


def code(call: Callable[..., Any], **kwargs: Any) -> str:
    return str(error(call, **kwargs)["Code"])


def hash_of(algorithm: str) -> hashes.HashAlgorithm:
    return HASHES[algorithm[algorithm.rindex("SHA_"):]]()


def digest(algorithm: str, message: bytes) -> bytes:
    return hashlib.new(hash_of(algorithm).name, message).digest()


def local_verify(public_der: bytes, algorithm: str, message: bytes, signature: bytes) -> None:
    """Verify as any other library would from the DER public key (raises InvalidSignature)."""
    public = serialization.load_der_public_key(public_der)
    if algorithm.startswith("RSASSA_"):
        assert isinstance(public, rsa.RSAPublicKey)
        h = hash_of(algorithm)
        # PSS with salt = digest length exactly (not AUTO): what AWS produces and other verifiers expect.
        pad: padding.AsymmetricPadding = (padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size)
                                          if "_PSS_" in algorithm else padding.PKCS1v15())
        public.verify(signature, message, pad, h)
    elif algorithm.startswith("ECDSA_"):
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(signature, message, ec.ECDSA(hash_of(algorithm)))
    elif algorithm == "ED25519_SHA_512":
        assert isinstance(public, ed25519.Ed25519PublicKey)
        public.verify(signature, message)
    else:
        raise AssertionError(algorithm)


class Keys:
    """Keys created once per module (RSA generation is slow on a shared 2-core box)."""

    def __init__(self, kms: Any) -> None:
        self.kms = kms
        self._made: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, spec: str, usage: str) -> dict[str, Any]:
        if (spec, usage) not in self._made:
            meta = self.kms.create_key(KeySpec=spec, KeyUsage=usage, Description="test_asymmetric")["KeyMetadata"]
            self._made[(spec, usage)] = meta
        return self._made[(spec, usage)]

    def public(self, spec: str, usage: str) -> bytes:
        der: bytes = self.kms.get_public_key(KeyId=self.get(spec, usage)["KeyId"])["PublicKey"]
        return der


@pytest.fixture(scope="module")
def keys(cluster: RunningCluster) -> Iterator[Keys]:
    yield Keys(cluster.client("us-east-1"))


# -- CreateKey and KeyMetadata ----------------------------------------------------------------------------------

EXPECTED_LISTS = [
    ("RSA_2048", "ENCRYPT_DECRYPT", {"EncryptionAlgorithms": ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"]}),
    ("RSA_2048", "SIGN_VERIFY", {"SigningAlgorithms": RSA_SIGNING}),
    ("ECC_NIST_P256", "SIGN_VERIFY", {"SigningAlgorithms": ["ECDSA_SHA_256"]}),
    ("ECC_NIST_P384", "SIGN_VERIFY", {"SigningAlgorithms": ["ECDSA_SHA_384"]}),
    ("ECC_NIST_P521", "SIGN_VERIFY", {"SigningAlgorithms": ["ECDSA_SHA_512"]}),
    ("ECC_NIST_P256", "KEY_AGREEMENT", {"KeyAgreementAlgorithms": ["ECDH"]}),
    ("ECC_SECG_P256K1", "SIGN_VERIFY", {"SigningAlgorithms": ["ECDSA_SHA_256"]}),
    ("ECC_NIST_EDWARDS25519", "SIGN_VERIFY", {"SigningAlgorithms": ["ED25519_SHA_512", "ED25519_PH_SHA_512"]}),
    ("ML_DSA_44", "SIGN_VERIFY", {"SigningAlgorithms": ["ML_DSA_SHAKE_256"]}),
    ("ML_KEM_768", "ENCAPSULATE_DECAPSULATE", {"EncapsulationAlgorithms": ["ML_KEM"]}),
    ("HMAC_224", "GENERATE_VERIFY_MAC", {"MacAlgorithms": ["HMAC_SHA_224"]}),
]


@pytest.mark.parametrize(("spec", "usage", "lists"), EXPECTED_LISTS)
def test_key_metadata_carries_the_algorithm_list_of_its_usage(keys: Keys, spec: str, usage: str,
                                                              lists: dict[str, list[str]]) -> None:
    created = keys.get(spec, usage)
    described = keys.kms.describe_key(KeyId=created["KeyId"])["KeyMetadata"]
    for meta in (created, described):
        assert (meta["KeySpec"], meta["CustomerMasterKeySpec"], meta["KeyUsage"]) == (spec, spec, usage)
        assert (meta["KeyState"], meta["Enabled"], meta["Origin"], meta["MultiRegion"]) == (
            "Enabled", True, "AWS_KMS", False)
        assert {k: meta[k] for k in ALGORITHM_LISTS & set(meta)} == lists
        # Material ids exist only for symmetric encryption keys.
        assert "CurrentKeyMaterialId" not in meta


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"KeySpec": "RSA_2048"}, "KeyUsage"),
    ({"KeySpec": "ECC_NIST_P256"}, "KeyUsage"),
    ({"KeySpec": "ML_DSA_65"}, "KeyUsage"),
    ({"CustomerMasterKeySpec": "ECC_NIST_P384"}, "KeyUsage"),
    ({"KeySpec": "ECC_NIST_P256", "KeyUsage": "ENCRYPT_DECRYPT"}, "ECC_NIST_P256"),
    ({"KeySpec": "ECC_SECG_P256K1", "KeyUsage": "KEY_AGREEMENT"}, "ECC_SECG_P256K1"),
    ({"KeySpec": "ECC_NIST_EDWARDS25519", "KeyUsage": "KEY_AGREEMENT"}, "ECC_NIST_EDWARDS25519"),
    ({"KeySpec": "RSA_3072", "KeyUsage": "KEY_AGREEMENT"}, "RSA_3072"),
    ({"KeySpec": "ML_DSA_44", "KeyUsage": "ENCRYPT_DECRYPT"}, "ML_DSA_44"),
    ({"KeySpec": "ML_KEM_768", "KeyUsage": "SIGN_VERIFY"}, "ML_KEM_768"),
    ({"KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "SIGN_VERIFY"}, "SIGN_VERIFY"),
])
def test_spec_and_usage_table_is_enforced(keys: Keys, kwargs: dict[str, Any], needle: str) -> None:
    err = error(keys.kms.create_key, **kwargs)
    assert (err["Code"], err["Status"]) == ("ValidationException", 400)
    assert needle in err["Message"]


@pytest.mark.parametrize(("spec", "usage", "needle"), [
    ("SM2", "SIGN_VERIFY", "no SM2"),
    ("SM2", "ENCRYPT_DECRYPT", "no SM2"),
    ("ML_KEM_512", "ENCAPSULATE_DECAPSULATE", "no ML-KEM-512"),
])
def test_specs_the_library_cannot_do_are_refused_clearly(keys: Keys, spec: str, usage: str, needle: str) -> None:
    err = error(keys.kms.create_key, KeySpec=spec, KeyUsage=usage)
    assert (err["Code"], err["Status"]) == ("UnsupportedOperationException", 400)
    assert spec in err["Message"] and needle in err["Message"]


def test_asymmetric_keys_do_not_rotate(keys: Keys) -> None:
    key_id = keys.get("ECC_NIST_P256", "SIGN_VERIFY")["KeyId"]
    for call in (keys.kms.enable_key_rotation, keys.kms.get_key_rotation_status, keys.kms.rotate_key_on_demand):
        assert code(call, KeyId=key_id) == "UnsupportedOperationException"


# -- GetPublicKey -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "usage", "check"), [
    ("RSA_2048", "SIGN_VERIFY", lambda k: isinstance(k, rsa.RSAPublicKey) and k.key_size == 2048),
    ("RSA_3072", "ENCRYPT_DECRYPT", lambda k: isinstance(k, rsa.RSAPublicKey) and k.key_size == 3072),
    ("ECC_NIST_P384", "SIGN_VERIFY", lambda k: isinstance(k, ec.EllipticCurvePublicKey)
     and k.curve.name == "secp384r1"),
    ("ECC_NIST_P521", "KEY_AGREEMENT", lambda k: isinstance(k, ec.EllipticCurvePublicKey)
     and k.curve.name == "secp521r1"),
    ("ECC_SECG_P256K1", "SIGN_VERIFY", lambda k: isinstance(k, ec.EllipticCurvePublicKey)
     and k.curve.name == "secp256k1"),
    ("ECC_NIST_EDWARDS25519", "SIGN_VERIFY", lambda k: isinstance(k, ed25519.Ed25519PublicKey)),
])
def test_get_public_key_is_der_spki_with_the_key_fields(keys: Keys, spec: str, usage: str,
                                                         check: Callable[[Any], bool]) -> None:
    meta = keys.get(spec, usage)
    for ident in (meta["KeyId"], meta["Arn"]):
        out = keys.kms.get_public_key(KeyId=ident, GrantTokens=[])
        public = serialization.load_der_public_key(out["PublicKey"])
        assert check(public)
        # DER SubjectPublicKeyInfo exactly (re-encoding gives the same bytes), never PEM or a raw point.
        assert public.public_bytes(serialization.Encoding.DER,
                                   serialization.PublicFormat.SubjectPublicKeyInfo) == out["PublicKey"]
        assert out["KeyId"] == meta["Arn"]
        assert (out["KeySpec"], out["CustomerMasterKeySpec"], out["KeyUsage"]) == (spec, spec, usage)
        expected = {k: meta[k] for k in ALGORITHM_LISTS & set(meta)}
        assert {k: out[k] for k in ALGORITHM_LISTS & set(out)} == expected


def test_get_public_key_of_symmetric_or_hmac_key_is_unsupported(keys: Keys) -> None:
    symmetric = keys.kms.create_key()["KeyMetadata"]["KeyId"]
    hmac_key = keys.get("HMAC_256", "GENERATE_VERIFY_MAC")["KeyId"]
    for key_id in (symmetric, hmac_key):
        err = error(keys.kms.get_public_key, KeyId=key_id)
        assert (err["Code"], err["Status"]) == ("UnsupportedOperationException", 400)
        assert "GetPublicKey" in err["Message"]


# -- Sign / Verify ----------------------------------------------------------------------------------------------

SIGN_CASES = [(spec, alg) for spec, algs in SIGNING.items() for alg in algs]


@pytest.mark.parametrize(("spec", "algorithm"), SIGN_CASES)
def test_every_signing_algorithm_verifies_locally_and_in_kms(keys: Keys, spec: str, algorithm: str) -> None:
    kms, key_id = keys.kms, keys.get(spec, "SIGN_VERIFY")["KeyId"]
    public = keys.public(spec, "SIGN_VERIFY")
    message = f"message for {spec} {algorithm}".encode()
    raw = kms.sign(KeyId=key_id, Message=message, SigningAlgorithm=algorithm)
    assert (raw["KeyId"], raw["SigningAlgorithm"]) == (keys.get(spec, "SIGN_VERIFY")["Arn"], algorithm)
    local_verify(public, algorithm, message, raw["Signature"])
    ok = kms.verify(KeyId=key_id, Message=message, Signature=raw["Signature"], SigningAlgorithm=algorithm)
    assert (ok["SignatureValid"], ok["SigningAlgorithm"], ok["KeyId"]) == (True, algorithm, raw["KeyId"])
    # DIGEST of sha(message) is the same signing operation as RAW of message, both ways round.
    hashed = digest(algorithm, message)
    signed_digest = kms.sign(KeyId=key_id, Message=hashed, MessageType="DIGEST", SigningAlgorithm=algorithm)
    local_verify(public, algorithm, message, signed_digest["Signature"])
    assert kms.verify(KeyId=key_id, Message=message, MessageType="RAW", Signature=signed_digest["Signature"],
                      SigningAlgorithm=algorithm)["SignatureValid"] is True
    assert kms.verify(KeyId=key_id, Message=hashed, MessageType="DIGEST", Signature=raw["Signature"],
                      SigningAlgorithm=algorithm)["SignatureValid"] is True
    # A digest signed as RAW is hashed twice: it verifies only as a signature over the digest bytes.
    double = kms.sign(KeyId=key_id, Message=hashed, MessageType="RAW", SigningAlgorithm=algorithm)["Signature"]
    with pytest.raises(InvalidSignature):
        local_verify(public, algorithm, message, double)
    local_verify(public, algorithm, hashed, double)


def test_ecdsa_signatures_are_der_and_rsa_signatures_are_modulus_sized(keys: Keys) -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    ecc = keys.kms.sign(KeyId=keys.get("ECC_NIST_P521", "SIGN_VERIFY")["KeyId"], Message=b"m",
                        SigningAlgorithm="ECDSA_SHA_512")["Signature"]
    r, s = decode_dss_signature(ecc)  # DER SEQUENCE{r, s}, not the raw r||s form
    assert r > 0 and s > 0
    for spec, size in (("RSA_2048", 256), ("RSA_3072", 384), ("RSA_4096", 512)):
        sig = keys.kms.sign(KeyId=keys.get(spec, "SIGN_VERIFY")["KeyId"], Message=b"m",
                            SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")["Signature"]
        assert len(sig) == size


def test_ed25519_signs_the_raw_message(keys: Keys) -> None:
    kms, key_id = keys.kms, keys.get("ECC_NIST_EDWARDS25519", "SIGN_VERIFY")["KeyId"]
    message = b"pure ed25519 over up to 4096 bytes" * 100
    sig = kms.sign(KeyId=key_id, Message=message, SigningAlgorithm="ED25519_SHA_512")["Signature"]
    assert len(sig) == 64
    local_verify(keys.public("ECC_NIST_EDWARDS25519", "SIGN_VERIFY"), "ED25519_SHA_512", message, sig)
    assert kms.verify(KeyId=key_id, Message=message, Signature=sig, SigningAlgorithm="ED25519_SHA_512",
                      MessageType="RAW")["SignatureValid"] is True
    # Ed25519 is deterministic.
    assert kms.sign(KeyId=key_id, Message=message, SigningAlgorithm="ED25519_SHA_512")["Signature"] == sig


def test_ed25519_message_type_rules(keys: Keys) -> None:
    kms, key_id = keys.kms, keys.get("ECC_NIST_EDWARDS25519", "SIGN_VERIFY")["KeyId"]
    sha512 = hashlib.sha512(b"m").digest()
    err = error(kms.sign, KeyId=key_id, Message=sha512, MessageType="DIGEST", SigningAlgorithm="ED25519_SHA_512")
    assert err == {"Code": "ValidationException", "Status": 400,
                   "Message": "Message type DIGEST is incompatible with algorithm ED25519_SHA_512."}
    err = error(kms.sign, KeyId=key_id, Message=b"m", SigningAlgorithm="ED25519_PH_SHA_512")
    assert (err["Code"], err["Message"]) == (
        "ValidationException", "Message type RAW is incompatible with algorithm ED25519_PH_SHA_512.")
    err = error(kms.sign, KeyId=key_id, Message=sha512[:32], MessageType="DIGEST",
                SigningAlgorithm="ED25519_PH_SHA_512")
    assert (err["Code"], err["Message"]) == (
        "ValidationException", "Digest is invalid length for algorithm ED25519_PH_SHA_512.")
    # A valid Ed25519ph request: the library has no Ed25519ph, and the cluster says so rather than fake it.
    for call, extra in ((kms.sign, {}), (kms.verify, {"Signature": b"\x00" * 64})):
        err = error(call, KeyId=key_id, Message=sha512, MessageType="DIGEST", SigningAlgorithm="ED25519_PH_SHA_512",
                    **extra)
        assert (err["Code"], err["Status"]) == ("UnsupportedOperationException", 400)
        assert "Ed25519ph" in err["Message"]


@pytest.mark.parametrize(("spec", "algorithm", "length"), [
    ("RSA_2048", "RSASSA_PSS_SHA_256", 32), ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_384", 48),
    ("RSA_2048", "RSASSA_PSS_SHA_512", 64), ("ECC_NIST_P256", "ECDSA_SHA_256", 32),
    ("ECC_NIST_P384", "ECDSA_SHA_384", 48), ("ECC_NIST_P521", "ECDSA_SHA_512", 64),
    ("ECC_SECG_P256K1", "ECDSA_SHA_256", 32),
])
def test_digest_of_the_wrong_length_is_a_validation_error(keys: Keys, spec: str, algorithm: str,
                                                          length: int) -> None:
    key_id = keys.get(spec, "SIGN_VERIFY")["KeyId"]
    for wrong in (length - 1, length + 1, 20):
        for call, extra in ((keys.kms.sign, {}), (keys.kms.verify, {"Signature": b"\x01" * 64})):
            err = error(call, KeyId=key_id, Message=b"d" * wrong, MessageType="DIGEST", SigningAlgorithm=algorithm,
                        **extra)
            assert err == {"Code": "ValidationException", "Status": 400,
                           "Message": f"Digest is invalid length for algorithm {algorithm}."}


def test_external_mu_is_only_for_ml_dsa(keys: Keys) -> None:
    key_id = keys.get("ECC_NIST_P256", "SIGN_VERIFY")["KeyId"]
    err = error(keys.kms.sign, KeyId=key_id, Message=b"m" * 64, MessageType="EXTERNAL_MU",
                SigningAlgorithm="ECDSA_SHA_256")
    assert (err["Code"], err["Message"]) == (
        "ValidationException", "Message type EXTERNAL_MU is incompatible with key spec ECC_NIST_P256.")


@pytest.mark.parametrize(("spec", "algorithm"), [
    ("ECC_NIST_P256", "ECDSA_SHA_384"), ("ECC_NIST_P256", "RSASSA_PSS_SHA_256"), ("ECC_NIST_P384", "ECDSA_SHA_256"),
    ("ECC_NIST_P521", "ECDSA_SHA_384"), ("ECC_SECG_P256K1", "ECDSA_SHA_512"), ("RSA_2048", "ECDSA_SHA_256"),
    ("RSA_2048", "ML_DSA_SHAKE_256"), ("RSA_2048", "SM2DSA"), ("ECC_NIST_EDWARDS25519", "ECDSA_SHA_512"),
])
def test_an_algorithm_the_key_does_not_support_is_invalid_key_usage(keys: Keys, spec: str, algorithm: str) -> None:
    key_id = keys.get(spec, "SIGN_VERIFY")["KeyId"]
    for call, extra in ((keys.kms.sign, {}), (keys.kms.verify, {"Signature": b"\x01" * 64})):
        err = error(call, KeyId=key_id, Message=b"m", SigningAlgorithm=algorithm, **extra)
        assert err == {"Code": "InvalidKeyUsageException", "Status": 400,
                       "Message": f"Algorithm {algorithm} is incompatible with key spec {spec}."}


def test_sign_with_a_key_of_another_usage_is_invalid_key_usage(keys: Keys) -> None:
    symmetric = keys.kms.create_key()["KeyMetadata"]
    cases = [(symmetric, "ENCRYPT_DECRYPT"), (keys.get("RSA_2048", "ENCRYPT_DECRYPT"), "ENCRYPT_DECRYPT"),
             (keys.get("HMAC_224", "GENERATE_VERIFY_MAC"), "GENERATE_VERIFY_MAC"),
             (keys.get("ECC_NIST_P256", "KEY_AGREEMENT"), "KEY_AGREEMENT")]
    for meta, usage in cases:
        for call, op, extra in ((keys.kms.sign, "Sign", {}), (keys.kms.verify, "Verify", {"Signature": b"s"})):
            err = error(call, KeyId=meta["KeyId"], Message=b"m", SigningAlgorithm="RSASSA_PSS_SHA_256", **extra)
            assert err == {"Code": "InvalidKeyUsageException", "Status": 400,
                           "Message": f"{meta['Arn']} key usage is {usage} which is not valid for {op}."}


@pytest.mark.parametrize(("spec", "algorithm"), [
    ("RSA_2048", "RSASSA_PSS_SHA_256"), ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_512"),
    ("ECC_NIST_P256", "ECDSA_SHA_256"), ("ECC_SECG_P256K1", "ECDSA_SHA_256"),
    ("ECC_NIST_EDWARDS25519", "ED25519_SHA_512"),
])
def test_a_bad_signature_is_kms_invalid_signature_never_false(keys: Keys, spec: str, algorithm: str) -> None:
    kms, key_id = keys.kms, keys.get(spec, "SIGN_VERIFY")["KeyId"]
    sig = kms.sign(KeyId=key_id, Message=b"original", SigningAlgorithm=algorithm)["Signature"]
    tampered = bytes([sig[0]]) + bytes([sig[1] ^ 0x01]) + sig[2:-1] + bytes([sig[-1] ^ 0x80])
    for message, signature in ((b"original", tampered), (b"0riginal", sig), (b"original", sig[:-1]),
                               (b"original", b"\x00")):
        err = error(kms.verify, KeyId=key_id, Message=message, Signature=signature, SigningAlgorithm=algorithm)
        assert (err["Code"], err["Status"]) == ("KMSInvalidSignatureException", 400)
    # A signature by another key of the same spec is just as invalid.
    other = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    foreign = kms.sign(KeyId=other, Message=b"original", SigningAlgorithm=algorithm)["Signature"]
    assert code(kms.verify, KeyId=key_id, Message=b"original", Signature=foreign,
                SigningAlgorithm=algorithm) == "KMSInvalidSignatureException"


def test_sign_through_an_alias_and_with_grant_tokens(keys: Keys) -> None:
    meta = keys.get("ECC_NIST_P256", "SIGN_VERIFY")
    alias = f"alias/asym-{uuid.uuid4().hex[:12]}"
    keys.kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    for ident in (alias, f"arn:aws:kms:us-east-1:{ACCOUNT}:{alias}"):
        out = keys.kms.sign(KeyId=ident, Message=b"m", SigningAlgorithm="ECDSA_SHA_256", GrantTokens=[])
        assert out["KeyId"] == meta["Arn"]
        assert keys.kms.verify(KeyId=ident, Message=b"m", Signature=out["Signature"],
                               SigningAlgorithm="ECDSA_SHA_256", GrantTokens=[])["SignatureValid"] is True


def test_dry_run_of_sign_and_verify(keys: Keys) -> None:
    kms, key_id = keys.kms, keys.get("ECC_NIST_P256", "SIGN_VERIFY")["KeyId"]
    err = error(kms.sign, KeyId=key_id, Message=b"m", SigningAlgorithm="ECDSA_SHA_256", DryRun=True)
    assert (err["Code"], err["Status"]) == ("DryRunOperationException", 412)
    sig = kms.sign(KeyId=key_id, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    assert code(kms.verify, KeyId=key_id, Message=b"m", Signature=sig, SigningAlgorithm="ECDSA_SHA_256",
                DryRun=True) == "DryRunOperationException"
    # Every check runs first: a DryRun that would fail says why.
    assert code(kms.sign, KeyId=key_id, Message=b"m", SigningAlgorithm="ECDSA_SHA_384",
                DryRun=True) == "InvalidKeyUsageException"
    assert code(kms.verify, KeyId=key_id, Message=b"x", Signature=sig, SigningAlgorithm="ECDSA_SHA_256",
                DryRun=True) == "KMSInvalidSignatureException"


def test_disabled_and_pending_deletion_asymmetric_keys(keys: Keys) -> None:
    kms = keys.kms
    meta = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    key_id, arn = meta["KeyId"], meta["Arn"]
    sig = kms.sign(KeyId=key_id, Message=b"m", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    kms.disable_key(KeyId=key_id)
    calls: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (kms.sign, {"Message": b"m", "SigningAlgorithm": "ECDSA_SHA_256"}),
        (kms.verify, {"Message": b"m", "Signature": sig, "SigningAlgorithm": "ECDSA_SHA_256"}),
        (kms.get_public_key, {}),
    ]
    for call, kwargs in calls:
        assert error(call, KeyId=key_id, **kwargs) == {
            "Code": "DisabledException", "Status": 400, "Message": f"{arn} is disabled."}
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    for call, kwargs in calls:
        assert error(call, KeyId=key_id, **kwargs) == {
            "Code": "KMSInvalidStateException", "Status": 400, "Message": f"{arn} is pending deletion."}
    kms.cancel_key_deletion(KeyId=key_id)
    kms.enable_key(KeyId=key_id)
    assert kms.verify(KeyId=key_id, Message=b"m", Signature=sig, SigningAlgorithm="ECDSA_SHA_256")["SignatureValid"]


# -- RSA-OAEP Encrypt / Decrypt / ReEncrypt ---------------------------------------------------------------------

def oaep(algorithm: str) -> padding.OAEP:
    h = hash_of(algorithm)
    return padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=None)


@pytest.mark.parametrize(("spec", "algorithm"), sorted(OAEP_LIMITS))
def test_rsa_oaep_both_ways_and_the_plaintext_limit(keys: Keys, spec: str, algorithm: str) -> None:
    kms, meta = keys.kms, keys.get(spec, "ENCRYPT_DECRYPT")
    public = serialization.load_der_public_key(keys.public(spec, "ENCRYPT_DECRYPT"))
    assert isinstance(public, rsa.RSAPublicKey)
    limit = OAEP_LIMITS[(spec, algorithm)]
    # Encrypted here with the public key, decrypted by the service (the largest plaintext allowed).
    plaintext = bytes(range(256)) * 2
    local = public.encrypt(plaintext[:limit], oaep(algorithm))
    out = kms.decrypt(KeyId=meta["KeyId"], CiphertextBlob=local, EncryptionAlgorithm=algorithm)
    assert (out["Plaintext"], out["KeyId"], out["EncryptionAlgorithm"]) == (plaintext[:limit], meta["Arn"], algorithm)
    assert "KeyMaterialId" not in out
    # Encrypted by the service: the bare RSA output (modulus-sized), which the service decrypts again.
    enc = kms.encrypt(KeyId=meta["KeyId"], Plaintext=plaintext[:limit], EncryptionAlgorithm=algorithm)
    assert (enc["KeyId"], enc["EncryptionAlgorithm"]) == (meta["Arn"], algorithm)
    assert len(enc["CiphertextBlob"]) == public.key_size // 8
    assert enc["CiphertextBlob"] != local  # OAEP is randomised
    assert kms.decrypt(KeyId=meta["Arn"], CiphertextBlob=enc["CiphertextBlob"],
                       EncryptionAlgorithm=algorithm)["Plaintext"] == plaintext[:limit]
    err = error(kms.encrypt, KeyId=meta["KeyId"], Plaintext=plaintext[:limit + 1], EncryptionAlgorithm=algorithm)
    assert (err["Code"], err["Status"]) == ("ValidationException", 400)
    assert str(limit) in err["Message"] and plaintext[:8].hex() not in err["Message"]


def test_rsa_decrypt_needs_key_id_and_the_right_algorithm(keys: Keys) -> None:
    kms, meta = keys.kms, keys.get("RSA_2048", "ENCRYPT_DECRYPT")
    blob = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"secret", EncryptionAlgorithm="RSAES_OAEP_SHA_256")[
        "CiphertextBlob"]
    # A raw RSA ciphertext names no key, and without the algorithm it is read as a symmetric blob.
    assert code(kms.decrypt, CiphertextBlob=blob) == "InvalidCiphertextException"
    assert code(kms.decrypt, CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_256") == \
        "InvalidCiphertextException"
    assert code(kms.decrypt, CiphertextBlob=blob, KeyId=meta["KeyId"]) == "InvalidCiphertextException"
    # The other OAEP hash, a tampered blob or another RSA key: the same opaque failure.
    assert code(kms.decrypt, CiphertextBlob=blob, KeyId=meta["KeyId"], EncryptionAlgorithm="RSAES_OAEP_SHA_1") == \
        "InvalidCiphertextException"
    tampered = blob[:100] + bytes([blob[100] ^ 1]) + blob[101:]
    assert code(kms.decrypt, CiphertextBlob=tampered, KeyId=meta["KeyId"],
                EncryptionAlgorithm="RSAES_OAEP_SHA_256") == "InvalidCiphertextException"
    other = keys.get("RSA_3072", "ENCRYPT_DECRYPT")["KeyId"]
    assert code(kms.decrypt, CiphertextBlob=blob, KeyId=other, EncryptionAlgorithm="RSAES_OAEP_SHA_256") == \
        "InvalidCiphertextException"
    assert kms.decrypt(CiphertextBlob=blob, KeyId=meta["KeyId"],
                       EncryptionAlgorithm="RSAES_OAEP_SHA_256")["Plaintext"] == b"secret"


def test_rsa_encryption_errors(keys: Keys) -> None:
    kms, meta = keys.kms, keys.get("RSA_2048", "ENCRYPT_DECRYPT")
    # The real message AWS gives when an RSA key is used without naming an algorithm.
    assert error(kms.encrypt, KeyId=meta["KeyId"], Plaintext=b"x") == {
        "Code": "InvalidKeyUsageException", "Status": 400,
        "Message": "Algorithm SYMMETRIC_DEFAULT is incompatible with key spec RSA_2048."}
    assert code(kms.encrypt, KeyId=meta["KeyId"], Plaintext=b"x", EncryptionAlgorithm="SM2PKE") == \
        "InvalidKeyUsageException"
    err = error(kms.encrypt, KeyId=meta["KeyId"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256",
                EncryptionContext={"purpose": "test"})
    assert (err["Code"], err["Status"]) == ("ValidationException", 400)
    blob = kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256")[
        "CiphertextBlob"]
    assert code(kms.decrypt, KeyId=meta["KeyId"], CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_256",
                EncryptionContext={"purpose": "test"}) == "ValidationException"
    signing = keys.get("RSA_2048", "SIGN_VERIFY")
    assert error(kms.encrypt, KeyId=signing["KeyId"], Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_256") == {
        "Code": "InvalidKeyUsageException", "Status": 400,
        "Message": f"{signing['Arn']} key usage is SIGN_VERIFY which is not valid for Encrypt."}
    # Data keys come only from symmetric keys.
    for call in (kms.generate_data_key, kms.generate_data_key_without_plaintext):
        assert code(call, KeyId=meta["KeyId"], KeySpec="AES_256") == "InvalidKeyUsageException"
    # An RSA algorithm on a symmetric key named by KeyId is refused the same way.
    symmetric = kms.create_key()["KeyMetadata"]["KeyId"]
    sym_blob = kms.encrypt(KeyId=symmetric, Plaintext=b"x")["CiphertextBlob"]
    assert code(kms.decrypt, KeyId=symmetric, CiphertextBlob=sym_blob, EncryptionAlgorithm="RSAES_OAEP_SHA_1") == \
        "InvalidKeyUsageException"


def test_rsa_dry_run(keys: Keys) -> None:
    kms, key_id = keys.kms, keys.get("RSA_2048", "ENCRYPT_DECRYPT")["KeyId"]
    assert code(kms.encrypt, KeyId=key_id, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_1",
                DryRun=True) == "DryRunOperationException"
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionAlgorithm="RSAES_OAEP_SHA_1")["CiphertextBlob"]
    assert code(kms.decrypt, KeyId=key_id, CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_1",
                DryRun=True) == "DryRunOperationException"
    assert code(kms.decrypt, KeyId=key_id, CiphertextBlob=b"junk", EncryptionAlgorithm="RSAES_OAEP_SHA_1",
                DryRun=True, DryRunModifiers=["IGNORE_CIPHERTEXT"]) == "DryRunOperationException"
    assert code(kms.decrypt, KeyId=key_id, CiphertextBlob=b"junk", EncryptionAlgorithm="RSAES_OAEP_SHA_1",
                DryRun=True) == "InvalidCiphertextException"
    assert code(kms.encrypt, KeyId=key_id, Plaintext=b"x" * 300, EncryptionAlgorithm="RSAES_OAEP_SHA_1",
                DryRun=True) == "ValidationException"


def test_re_encrypt_between_symmetric_and_rsa_keys(keys: Keys) -> None:
    kms, rsa_meta = keys.kms, keys.get("RSA_2048", "ENCRYPT_DECRYPT")
    symmetric = kms.create_key()["KeyMetadata"]
    blob = kms.encrypt(KeyId=symmetric["KeyId"], Plaintext=b"move me", EncryptionContext={"k": "v"})[
        "CiphertextBlob"]
    to_rsa = kms.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext={"k": "v"},
                            DestinationKeyId=rsa_meta["KeyId"], DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256")
    assert (to_rsa["KeyId"], to_rsa["SourceKeyId"]) == (rsa_meta["Arn"], symmetric["Arn"])
    assert to_rsa["DestinationEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
    assert "SourceKeyMaterialId" in to_rsa and "DestinationKeyMaterialId" not in to_rsa
    back = kms.re_encrypt(CiphertextBlob=to_rsa["CiphertextBlob"], SourceKeyId=rsa_meta["KeyId"],
                          SourceEncryptionAlgorithm="RSAES_OAEP_SHA_256", DestinationKeyId=symmetric["KeyId"])
    assert back["SourceEncryptionAlgorithm"] == "RSAES_OAEP_SHA_256"
    assert "SourceKeyMaterialId" not in back and "DestinationKeyMaterialId" in back
    assert kms.decrypt(CiphertextBlob=back["CiphertextBlob"])["Plaintext"] == b"move me"
    # The destination context of an RSA key is refused, as on Encrypt.
    assert code(kms.re_encrypt, CiphertextBlob=blob, SourceEncryptionContext={"k": "v"},
                DestinationKeyId=rsa_meta["KeyId"], DestinationEncryptionAlgorithm="RSAES_OAEP_SHA_256",
                DestinationEncryptionContext={"a": "b"}) == "ValidationException"


# -- Multi-Region signing keys ----------------------------------------------------------------------------------

def replicate(cluster: RunningCluster, spec: str, usage: str, target: str = "eu-west-1") -> tuple[str, Any, Any]:
    home, away = cluster.client("us-east-1"), cluster.client(target)
    meta = home.create_key(KeySpec=spec, KeyUsage=usage, MultiRegion=True)["KeyMetadata"]
    assert meta["KeyId"].startswith("mrk-")
    home.replicate_key(KeyId=meta["KeyId"], ReplicaRegion=target)
    wait_state(away, meta["KeyId"], "Enabled", timeout=30)  # the replica reaches its region through the log
    return str(meta["KeyId"]), home, away


def test_multi_region_signing_key_signs_in_one_region_and_verifies_in_another(cluster: RunningCluster) -> None:
    key_id, home, away = replicate(cluster, "ECC_NIST_P384", "SIGN_VERIFY")
    replica = away.describe_key(KeyId=key_id)["KeyMetadata"]
    assert (replica["KeySpec"], replica["KeyUsage"], replica["SigningAlgorithms"]) == (
        "ECC_NIST_P384", "SIGN_VERIFY", ["ECDSA_SHA_384"])
    assert "CurrentKeyMaterialId" not in replica
    public_home = home.get_public_key(KeyId=key_id)["PublicKey"]
    public_away = away.get_public_key(KeyId=key_id)
    assert public_away["PublicKey"] == public_home  # the same key pair
    assert public_away["KeyId"] == f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{key_id}"
    message = b"signed in us-east-1"
    sig = home.sign(KeyId=key_id, Message=message, SigningAlgorithm="ECDSA_SHA_384")["Signature"]
    assert away.verify(KeyId=key_id, Message=message, Signature=sig,
                       SigningAlgorithm="ECDSA_SHA_384")["SignatureValid"] is True
    local_verify(public_away["PublicKey"], "ECDSA_SHA_384", message, sig)
    # And the other way round, with DIGEST.
    back = away.sign(KeyId=key_id, Message=digest("ECDSA_SHA_384", message), MessageType="DIGEST",
                     SigningAlgorithm="ECDSA_SHA_384")["Signature"]
    assert home.verify(KeyId=key_id, Message=message, Signature=back,
                       SigningAlgorithm="ECDSA_SHA_384")["SignatureValid"] is True


def test_multi_region_rsa_encryption_key_decrypts_in_the_replica(cluster: RunningCluster) -> None:
    key_id, home, away = replicate(cluster, "RSA_2048", "ENCRYPT_DECRYPT", target="ap-northeast-2")
    blob = home.encrypt(KeyId=key_id, Plaintext=b"across regions", EncryptionAlgorithm="RSAES_OAEP_SHA_1")[
        "CiphertextBlob"]
    out = away.decrypt(KeyId=key_id, CiphertextBlob=blob, EncryptionAlgorithm="RSAES_OAEP_SHA_1")
    assert out["Plaintext"] == b"across regions"
    assert out["KeyId"] == f"arn:aws:kms:ap-northeast-2:{ACCOUNT}:key/{key_id}"
    assert code(away.enable_key_rotation, KeyId=key_id) == "UnsupportedOperationException"
