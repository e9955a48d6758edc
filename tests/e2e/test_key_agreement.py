"""DeriveSharedSecret end to end (KMS-REFERENCE.md §4.3): ECDH between a KEY_AGREEMENT KMS key and a peer public
key (DER SPKI on the same curve) gives the raw shared secret that the peer computes locally."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.e2e.harness import error, spki_of

CURVES: dict[str, tuple[Callable[[], ec.EllipticCurve], int]] = {
    "ECC_NIST_P256": (ec.SECP256R1, 32), "ECC_NIST_P384": (ec.SECP384R1, 48), "ECC_NIST_P521": (ec.SECP521R1, 66)}




@pytest.fixture(scope="module")
def agreement_keys(kms: Any) -> dict[str, dict[str, Any]]:
    return {spec: kms.create_key(KeySpec=spec, KeyUsage="KEY_AGREEMENT")["KeyMetadata"] for spec in CURVES}


@pytest.mark.parametrize("spec", sorted(CURVES))
def test_shared_secret_equals_the_one_computed_locally(kms: Any, agreement_keys: dict[str, dict[str, Any]],
                                                       spec: str) -> None:
    meta = agreement_keys[spec]
    curve, length = CURVES[spec]
    peer = ec.generate_private_key(curve())
    out = kms.derive_shared_secret(KeyId=meta["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=spki_of(peer),
                                   GrantTokens=[])
    assert (out["KeyId"], out["KeyAgreementAlgorithm"], out["KeyOrigin"]) == (meta["Arn"], "ECDH", "AWS_KMS")
    kms_public = serialization.load_der_public_key(kms.get_public_key(KeyId=meta["KeyId"])["PublicKey"])
    assert isinstance(kms_public, ec.EllipticCurvePublicKey)
    local = peer.exchange(ec.ECDH(), kms_public)
    assert out["SharedSecret"] == local
    assert len(local) == length  # the raw x coordinate, no KDF


def test_two_kms_keys_agree_with_each_other(kms: Any, agreement_keys: dict[str, dict[str, Any]]) -> None:
    alice = agreement_keys["ECC_NIST_P256"]
    bob = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]
    alice_public = kms.get_public_key(KeyId=alice["KeyId"])["PublicKey"]
    bob_public = kms.get_public_key(KeyId=bob["KeyId"])["PublicKey"]
    a = kms.derive_shared_secret(KeyId=alice["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=bob_public)
    b = kms.derive_shared_secret(KeyId=bob["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=alice_public)
    assert a["SharedSecret"] == b["SharedSecret"]


def test_peer_key_on_another_curve_or_not_ec_is_refused(kms: Any, agreement_keys: dict[str, dict[str, Any]]) -> None:
    key_id = agreement_keys["ECC_NIST_P256"]["KeyId"]
    peers = [spki_of(ec.generate_private_key(ec.SECP384R1())), spki_of(ec.generate_private_key(ec.SECP256K1())),
             spki_of(ed25519.Ed25519PrivateKey.generate()), spki_of(rsa.generate_private_key(65537, 2048)),
             b"\x30\x03\x02\x01\x01", b"not DER at all"]
    for peer in peers:
        err = error(kms.derive_shared_secret, KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=peer)
        assert (err["Code"], err["Status"]) == ("ValidationException", 400)
        assert "PublicKey" in err["Message"] and "ECC_NIST_P256" in err["Message"]
    # PEM is not DER (a classic interop mistake): refused too.
    pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert error(kms.derive_shared_secret, KeyId=key_id, KeyAgreementAlgorithm="ECDH", PublicKey=pem)[
        "Code"] == "ValidationException"


def test_derive_needs_a_key_agreement_key(kms: Any) -> None:
    peer = spki_of(ec.generate_private_key(ec.SECP256R1()))
    signing = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    symmetric = kms.create_key()["KeyMetadata"]
    for meta in (signing, symmetric):
        assert error(kms.derive_shared_secret, KeyId=meta["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=peer) == {
            "Code": "InvalidKeyUsageException", "Status": 400,
            "Message": f"{meta['Arn']} key usage is {meta['KeyUsage']} which is not valid for DeriveSharedSecret."}
    # Key agreement is for the NIST curves only.
    for spec in ("ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519", "RSA_2048"):
        assert error(kms.create_key, KeySpec=spec, KeyUsage="KEY_AGREEMENT")["Code"] == "ValidationException"


def test_dry_run_recipient_and_states(kms: Any) -> None:
    meta = kms.create_key(KeySpec="ECC_NIST_P384", KeyUsage="KEY_AGREEMENT")["KeyMetadata"]
    peer = spki_of(ec.generate_private_key(ec.SECP384R1()))
    err = error(kms.derive_shared_secret, KeyId=meta["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=peer,
                DryRun=True)
    assert (err["Code"], err["Status"]) == ("DryRunOperationException", 412)
    wrong_curve = spki_of(ec.generate_private_key(ec.SECP256R1()))
    assert error(kms.derive_shared_secret, KeyId=meta["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=wrong_curve,
                 DryRun=True)["Code"] == "ValidationException"
    recipient = {"KeyEncryptionAlgorithm": "RSAES_OAEP_SHA_256", "AttestationDocument": b"doc"}
    assert error(kms.derive_shared_secret, KeyId=meta["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=peer,
                 Recipient=recipient)["Code"] == "UnsupportedOperationException"
    kms.disable_key(KeyId=meta["KeyId"])
    assert error(kms.derive_shared_secret, KeyId=meta["KeyId"], KeyAgreementAlgorithm="ECDH", PublicKey=peer) == {
        "Code": "DisabledException", "Status": 400, "Message": f"{meta['Arn']} is disabled."}
