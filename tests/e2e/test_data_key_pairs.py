"""GenerateDataKeyPair(+WithoutPlaintext) end to end: for every KeyPairSpec the cluster supports, the private half is
PKCS#8 DER, its sealed copy opens with Decrypt (encryption context bound) and matches the public half (DER SPKI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mlkem, rsa

from tests.e2e.harness import RunningCluster, error, spki_of
from tests.e2e.test_multi_region import wait_state

PAIR_SPECS: dict[str, Callable[[Any], bool]] = {
    "RSA_2048": lambda k: isinstance(k, rsa.RSAPrivateKey) and k.key_size == 2048,
    "RSA_3072": lambda k: isinstance(k, rsa.RSAPrivateKey) and k.key_size == 3072,
    "RSA_4096": lambda k: isinstance(k, rsa.RSAPrivateKey) and k.key_size == 4096,
    "ECC_NIST_P256": lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp256r1",
    "ECC_NIST_P384": lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp384r1",
    "ECC_NIST_P521": lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp521r1",
    "ECC_SECG_P256K1": lambda k: isinstance(k, ec.EllipticCurvePrivateKey) and k.curve.name == "secp256k1",
    "ECC_NIST_EDWARDS25519": lambda k: isinstance(k, ed25519.Ed25519PrivateKey),
    "ML_KEM_768": lambda k: isinstance(k, mlkem.MLKEM768PrivateKey),
    "ML_KEM_1024": lambda k: isinstance(k, mlkem.MLKEM1024PrivateKey),
}
EC = {"purpose": "data-key-pair", "tenant": "ü-42"}




@pytest.fixture(scope="module")
def wrapping_key(kms: Any) -> dict[str, Any]:
    meta: dict[str, Any] = kms.create_key(Description="wraps data key pairs")["KeyMetadata"]
    return meta


@pytest.mark.parametrize("spec", list(PAIR_SPECS))
def test_data_key_pair_private_half_opens_and_matches(kms: Any, wrapping_key: dict[str, Any], spec: str) -> None:
    out = kms.generate_data_key_pair(KeyId=wrapping_key["KeyId"], KeyPairSpec=spec, EncryptionContext=EC,
                                     GrantTokens=[])
    assert (out["KeyId"], out["KeyPairSpec"]) == (wrapping_key["Arn"], spec)
    assert out["KeyMaterialId"] == wrapping_key["CurrentKeyMaterialId"]
    private = serialization.load_der_private_key(out["PrivateKeyPlaintext"], None)  # PKCS#8 DER
    assert PAIR_SPECS[spec](private)
    assert private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()) == out["PrivateKeyPlaintext"]
    assert spki_of(private) == out["PublicKey"]
    opened = kms.decrypt(CiphertextBlob=out["PrivateKeyCiphertextBlob"], EncryptionContext=EC)
    assert (opened["Plaintext"], opened["KeyId"]) == (out["PrivateKeyPlaintext"], wrapping_key["Arn"])
    # The context is bound: without it (or with another) the blob does not open.
    for other in (None, {"purpose": "data-key-pair"}, {**EC, "tenant": "other"}):
        kwargs = {} if other is None else {"EncryptionContext": other}
        assert error(kms.decrypt, CiphertextBlob=out["PrivateKeyCiphertextBlob"], **kwargs)["Code"] == \
            "InvalidCiphertextException"


@pytest.mark.parametrize("spec", ["RSA_2048", "ECC_NIST_P384", "ECC_NIST_EDWARDS25519", "ML_KEM_1024"])
def test_without_plaintext_the_private_half_comes_only_sealed(kms: Any, wrapping_key: dict[str, Any],
                                                              spec: str) -> None:
    out = kms.generate_data_key_pair_without_plaintext(KeyId=wrapping_key["KeyId"], KeyPairSpec=spec)
    assert "PrivateKeyPlaintext" not in out
    assert (out["KeyId"], out["KeyPairSpec"], out["KeyMaterialId"]) == (
        wrapping_key["Arn"], spec, wrapping_key["CurrentKeyMaterialId"])
    private = serialization.load_der_private_key(kms.decrypt(CiphertextBlob=out["PrivateKeyCiphertextBlob"])[
        "Plaintext"], None)
    assert PAIR_SPECS[spec](private)
    assert spki_of(private) == out["PublicKey"]


def test_every_pair_is_fresh(kms: Any, wrapping_key: dict[str, Any]) -> None:
    first = kms.generate_data_key_pair(KeyId=wrapping_key["KeyId"], KeyPairSpec="ECC_NIST_P256")
    second = kms.generate_data_key_pair(KeyId=wrapping_key["KeyId"], KeyPairSpec="ECC_NIST_P256")
    assert first["PublicKey"] != second["PublicKey"]
    assert first["PrivateKeyPlaintext"] != second["PrivateKeyPlaintext"]


def test_ml_kem_private_key_is_in_seed_form(kms: Any, wrapping_key: dict[str, Any]) -> None:
    # KMS documents the seed form: the same PKCS#8 length for every ML-KEM spec.
    sizes = {len(kms.generate_data_key_pair(KeyId=wrapping_key["KeyId"], KeyPairSpec=spec)["PrivateKeyPlaintext"])
             for spec in ("ML_KEM_768", "ML_KEM_1024")}
    assert len(sizes) == 1


@pytest.mark.parametrize(("spec", "needle"), [("SM2", "SM2"), ("ML_KEM_512", "ML-KEM-512")])
def test_pair_specs_the_library_cannot_do_are_refused(kms: Any, wrapping_key: dict[str, Any], spec: str,
                                                      needle: str) -> None:
    for call in (kms.generate_data_key_pair, kms.generate_data_key_pair_without_plaintext):
        err = error(call, KeyId=wrapping_key["KeyId"], KeyPairSpec=spec)
        assert (err["Code"], err["Status"]) == ("UnsupportedOperationException", 400)
        assert spec in err["Message"] and needle in err["Message"]


def test_the_wrapping_key_must_be_symmetric(kms: Any) -> None:
    for spec, usage in (("RSA_2048", "ENCRYPT_DECRYPT"), ("ECC_NIST_P256", "SIGN_VERIFY"),
                        ("HMAC_256", "GENERATE_VERIFY_MAC")):
        meta = kms.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]
        for call in (kms.generate_data_key_pair, kms.generate_data_key_pair_without_plaintext):
            err = error(call, KeyId=meta["KeyId"], KeyPairSpec="ECC_NIST_P256")
            assert (err["Code"], err["Status"]) == ("InvalidKeyUsageException", 400)
            assert meta["Arn"] in err["Message"]


def test_dry_run_recipient_and_state(kms: Any) -> None:
    meta = kms.create_key()["KeyMetadata"]
    for call in (kms.generate_data_key_pair, kms.generate_data_key_pair_without_plaintext):
        err = error(call, KeyId=meta["KeyId"], KeyPairSpec="ECC_NIST_P256", DryRun=True)
        assert (err["Code"], err["Status"]) == ("DryRunOperationException", 412)
        assert error(call, KeyId=meta["KeyId"], KeyPairSpec="SM2", DryRun=True)["Code"] == \
            "UnsupportedOperationException"
    recipient = {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": b"doc"}
    assert error(kms.generate_data_key_pair, KeyId=meta["KeyId"], KeyPairSpec="ECC_NIST_P256",
                 Recipient=recipient)["Code"] == "UnsupportedOperationException"
    kms.disable_key(KeyId=meta["KeyId"])
    assert error(kms.generate_data_key_pair, KeyId=meta["KeyId"], KeyPairSpec="ECC_NIST_P256") == {
        "Code": "DisabledException", "Status": 400, "Message": f"{meta['Arn']} is disabled."}


def test_a_multi_region_wrapping_key_opens_the_pair_in_its_replica(cluster: RunningCluster) -> None:
    us, eu = cluster.client("us-east-1"), cluster.client("eu-west-1")
    key_id = us.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    us.replicate_key(KeyId=key_id, ReplicaRegion="eu-west-1")
    wait_state(eu, key_id, "Enabled", timeout=30)  # the replica reaches its region through the log
    out = us.generate_data_key_pair(KeyId=key_id, KeyPairSpec="ECC_NIST_P256", EncryptionContext=EC)
    opened = eu.decrypt(CiphertextBlob=out["PrivateKeyCiphertextBlob"], EncryptionContext=EC)
    assert opened["Plaintext"] == out["PrivateKeyPlaintext"]
