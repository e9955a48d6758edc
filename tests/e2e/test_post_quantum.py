"""Post-quantum keys end to end: ML-DSA signing (RAW and EXTERNAL_MU, verified locally with `cryptography`) and
ML-KEM Encapsulate/Decapsulate (shared secrets agree with a local peer; wrong-length blobs are
InvalidCiphertextException; other blobs of the right length give an unrelated secret, FIPS 203 implicit
rejection)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem

from tests.e2e.harness import error

# spec -> (public key class, raw public key bytes, signature bytes) per FIPS 204.
ML_DSA = {"ML_DSA_44": (mldsa.MLDSA44PublicKey, 1312, 2420), "ML_DSA_65": (mldsa.MLDSA65PublicKey, 1952, 3309),
          "ML_DSA_87": (mldsa.MLDSA87PublicKey, 2592, 4627)}
# spec -> (public key class, ciphertext bytes) per FIPS 203.
ML_KEM = {"ML_KEM_768": (mlkem.MLKEM768PublicKey, 1088), "ML_KEM_1024": (mlkem.MLKEM1024PublicKey, 1568)}


def external_mu(public_raw: bytes, message: bytes) -> bytes:
    """FIPS 204 μ computed independently: SHAKE256(SHAKE256(pk, 64) || 0x00 || len(ctx)=0 || message, 64)."""
    tr = hashlib.shake_256(public_raw).digest(64)
    return hashlib.shake_256(tr + b"\x00\x00" + message).digest(64)


@pytest.fixture(scope="module")
def pq_keys(kms: Any) -> dict[str, dict[str, Any]]:
    made = {spec: kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"] for spec in ML_DSA}
    made.update({spec: kms.create_key(KeySpec=spec, KeyUsage="ENCAPSULATE_DECAPSULATE")["KeyMetadata"]
                 for spec in ML_KEM})
    return made


def public_of(kms: Any, key_id: str) -> Any:
    return serialization.load_der_public_key(kms.get_public_key(KeyId=key_id)["PublicKey"])


# -- ML-DSA -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", sorted(ML_DSA))
def test_ml_dsa_raw_signature_verifies_locally(kms: Any, pq_keys: dict[str, dict[str, Any]], spec: str) -> None:
    meta = pq_keys[spec]
    cls, raw_len, sig_len = ML_DSA[spec]
    assert meta["SigningAlgorithms"] == ["ML_DSA_SHAKE_256"] and "CurrentKeyMaterialId" not in meta
    out = kms.get_public_key(KeyId=meta["KeyId"])
    assert (out["KeySpec"], out["KeyUsage"], out["SigningAlgorithms"]) == (spec, "SIGN_VERIFY", ["ML_DSA_SHAKE_256"])
    public = serialization.load_der_public_key(out["PublicKey"])
    assert isinstance(public, mldsa.MLDSA44PublicKey | mldsa.MLDSA65PublicKey | mldsa.MLDSA87PublicKey)
    assert isinstance(public, cls) and len(public.public_bytes_raw()) == raw_len
    message = b"post-quantum " * 300
    signed = kms.sign(KeyId=meta["KeyId"], Message=message, SigningAlgorithm="ML_DSA_SHAKE_256")
    assert (signed["KeyId"], signed["SigningAlgorithm"], len(signed["Signature"])) == (
        meta["Arn"], "ML_DSA_SHAKE_256", sig_len)
    public.verify(signed["Signature"], message)  # empty context, as KMS signs
    with pytest.raises(InvalidSignature):
        public.verify(signed["Signature"], message + b"!")
    assert kms.verify(KeyId=meta["KeyId"], Message=message, Signature=signed["Signature"],
                      SigningAlgorithm="ML_DSA_SHAKE_256")["SignatureValid"] is True


@pytest.mark.parametrize("spec", sorted(ML_DSA))
def test_ml_dsa_external_mu(kms: Any, pq_keys: dict[str, dict[str, Any]], spec: str) -> None:
    key_id = pq_keys[spec]["KeyId"]
    public = public_of(kms, key_id)
    message = b"hashed by the caller"
    mu = external_mu(public.public_bytes_raw(), message)
    assert len(mu) == 64
    sig = kms.sign(KeyId=key_id, Message=mu, MessageType="EXTERNAL_MU", SigningAlgorithm="ML_DSA_SHAKE_256")[
        "Signature"]
    # A signature over μ is a signature over the message μ represents.
    public.verify(sig, message)
    assert kms.verify(KeyId=key_id, Message=message, Signature=sig,
                      SigningAlgorithm="ML_DSA_SHAKE_256")["SignatureValid"] is True
    raw = kms.sign(KeyId=key_id, Message=message, SigningAlgorithm="ML_DSA_SHAKE_256")["Signature"]
    assert kms.verify(KeyId=key_id, Message=mu, MessageType="EXTERNAL_MU", Signature=raw,
                      SigningAlgorithm="ML_DSA_SHAKE_256")["SignatureValid"] is True


def test_ml_dsa_message_type_and_algorithm_rules(kms: Any, pq_keys: dict[str, dict[str, Any]]) -> None:
    key_id = pq_keys["ML_DSA_65"]["KeyId"]
    err = error(kms.sign, KeyId=key_id, Message=b"d" * 32, MessageType="DIGEST", SigningAlgorithm="ML_DSA_SHAKE_256")
    assert err == {"Code": "ValidationException", "Status": 400,
                   "Message": "Message type DIGEST is incompatible with key spec ML_DSA_65."}
    for length in (32, 63, 65):
        err = error(kms.sign, KeyId=key_id, Message=b"m" * length, MessageType="EXTERNAL_MU",
                    SigningAlgorithm="ML_DSA_SHAKE_256")
        assert (err["Code"], err["Status"]) == ("ValidationException", 400)
        assert "64" in err["Message"]
    assert error(kms.sign, KeyId=key_id, Message=b"m", SigningAlgorithm="ECDSA_SHA_256") == {
        "Code": "InvalidKeyUsageException", "Status": 400,
        "Message": "Algorithm ECDSA_SHA_256 is incompatible with key spec ML_DSA_65."}
    sig = kms.sign(KeyId=key_id, Message=b"m", SigningAlgorithm="ML_DSA_SHAKE_256")["Signature"]
    tampered = sig[:-1] + bytes([sig[-1] ^ 1])
    for message, signature in ((b"m", tampered), (b"n", sig), (b"m", sig[:100])):
        assert error(kms.verify, KeyId=key_id, Message=message, Signature=signature,
                     SigningAlgorithm="ML_DSA_SHAKE_256")["Code"] == "KMSInvalidSignatureException"
    for usage in ("ENCRYPT_DECRYPT", "KEY_AGREEMENT", "ENCAPSULATE_DECAPSULATE"):
        assert error(kms.create_key, KeySpec="ML_DSA_44", KeyUsage=usage)["Code"] == "ValidationException"


# -- ML-KEM -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", sorted(ML_KEM))
def test_encapsulate_then_decapsulate(kms: Any, pq_keys: dict[str, dict[str, Any]], spec: str) -> None:
    meta = pq_keys[spec]
    cls, ct_len = ML_KEM[spec]
    assert meta["EncapsulationAlgorithms"] == ["ML_KEM"] and "CurrentKeyMaterialId" not in meta
    public_out = kms.get_public_key(KeyId=meta["KeyId"])
    assert public_out["EncapsulationAlgorithms"] == ["ML_KEM"]
    assert isinstance(serialization.load_der_public_key(public_out["PublicKey"]), cls)
    enc = kms.encapsulate(KeyId=meta["KeyId"], EncapsulationAlgorithm="ML_KEM", GrantTokens=[])
    assert (enc["KeyId"], enc["EncapsulationAlgorithm"]) == (meta["Arn"], "ML_KEM")
    assert (len(enc["SharedSecret"]), len(enc["SharedSecretCiphertextBlob"])) == (32, ct_len)
    dec = kms.decapsulate(KeyId=meta["KeyId"], EncapsulationAlgorithm="ML_KEM",
                          SharedSecretCiphertextBlob=enc["SharedSecretCiphertextBlob"])
    assert (dec["KeyId"], dec["EncapsulationAlgorithm"], dec["SharedSecret"]) == (
        meta["Arn"], "ML_KEM", enc["SharedSecret"])
    again = kms.encapsulate(KeyId=meta["KeyId"], EncapsulationAlgorithm="ML_KEM")
    assert again["SharedSecret"] != enc["SharedSecret"]  # a fresh secret every time


@pytest.mark.parametrize("spec", sorted(ML_KEM))
def test_a_peer_encapsulating_locally_shares_the_secret(kms: Any, pq_keys: dict[str, dict[str, Any]],
                                                        spec: str) -> None:
    key_id = pq_keys[spec]["KeyId"]
    public = public_of(kms, key_id)
    shared, ciphertext = public.encapsulate()
    out = kms.decapsulate(KeyId=key_id, EncapsulationAlgorithm="ML_KEM", SharedSecretCiphertextBlob=ciphertext)
    assert out["SharedSecret"] == shared


def test_decapsulate_wrong_length_and_implicit_rejection(kms: Any, pq_keys: dict[str, dict[str, Any]]) -> None:
    key_id = pq_keys["ML_KEM_768"]["KeyId"]
    enc = kms.encapsulate(KeyId=key_id, EncapsulationAlgorithm="ML_KEM")
    blob = enc["SharedSecretCiphertextBlob"]
    for wrong in (blob[:-1], blob + b"\x00", blob[:32], b"\x01" * 1568):
        err = error(kms.decapsulate, KeyId=key_id, EncapsulationAlgorithm="ML_KEM", SharedSecretCiphertextBlob=wrong)
        assert (err["Code"], err["Status"]) == ("InvalidCiphertextException", 400)
    # Right length, altered or made for another key: a 32-byte secret that simply does not match.
    altered = blob[:10] + bytes([blob[10] ^ 0x40]) + blob[11:]
    other = kms.encapsulate(KeyId=pq_keys["ML_KEM_1024"]["KeyId"], EncapsulationAlgorithm="ML_KEM")
    for candidate in (altered, bytes(1088)):
        out = kms.decapsulate(KeyId=key_id, EncapsulationAlgorithm="ML_KEM", SharedSecretCiphertextBlob=candidate)
        assert len(out["SharedSecret"]) == 32 and out["SharedSecret"] != enc["SharedSecret"]
    err = error(kms.decapsulate, KeyId=key_id, EncapsulationAlgorithm="ML_KEM",
                SharedSecretCiphertextBlob=other["SharedSecretCiphertextBlob"])
    assert err["Code"] == "InvalidCiphertextException"  # 1568 bytes: the ML_KEM_1024 size


def test_ml_kem_usage_state_and_dry_run(kms: Any, pq_keys: dict[str, dict[str, Any]]) -> None:
    signing = pq_keys["ML_DSA_44"]
    for call, op, extra in ((kms.encapsulate, "Encapsulate", {}),
                            (kms.decapsulate, "Decapsulate", {"SharedSecretCiphertextBlob": b"x" * 1088})):
        assert error(call, KeyId=signing["KeyId"], EncapsulationAlgorithm="ML_KEM", **extra) == {
            "Code": "InvalidKeyUsageException", "Status": 400,
            "Message": f"{signing['Arn']} key usage is SIGN_VERIFY which is not valid for {op}."}
    meta = kms.create_key(KeySpec="ML_KEM_1024", KeyUsage="ENCAPSULATE_DECAPSULATE")["KeyMetadata"]
    enc = kms.encapsulate(KeyId=meta["KeyId"], EncapsulationAlgorithm="ML_KEM")
    assert error(kms.encapsulate, KeyId=meta["KeyId"], EncapsulationAlgorithm="ML_KEM", DryRun=True)[
        "Status"] == 412
    assert error(kms.decapsulate, KeyId=meta["KeyId"], EncapsulationAlgorithm="ML_KEM", DryRun=True,
                 SharedSecretCiphertextBlob=enc["SharedSecretCiphertextBlob"])["Code"] == "DryRunOperationException"
    assert error(kms.decapsulate, KeyId=meta["KeyId"], EncapsulationAlgorithm="ML_KEM", DryRun=True,
                 SharedSecretCiphertextBlob=b"short")["Code"] == "InvalidCiphertextException"
    for usage in ("ENCRYPT_DECRYPT", "SIGN_VERIFY", "KEY_AGREEMENT"):
        assert error(kms.create_key, KeySpec="ML_KEM_768", KeyUsage=usage)["Code"] == "ValidationException"
    kms.disable_key(KeyId=meta["KeyId"])
    assert error(kms.encapsulate, KeyId=meta["KeyId"], EncapsulationAlgorithm="ML_KEM")["Code"] == \
        "DisabledException"
    assert error(kms.decapsulate, KeyId=meta["KeyId"], EncapsulationAlgorithm="ML_KEM",
                 SharedSecretCiphertextBlob=enc["SharedSecretCiphertextBlob"])["Code"] == "DisabledException"


def test_ml_kem_512_is_refused_clearly(kms: Any) -> None:
    err = error(kms.create_key, KeySpec="ML_KEM_512", KeyUsage="ENCAPSULATE_DECAPSULATE")
    assert (err["Code"], err["Status"]) == ("UnsupportedOperationException", 400)
    assert "ML_KEM_512" in err["Message"] and "ML_KEM_768" in err["Message"]
