"""Signatures and public keys from the service work with the OpenSSL command line, the tool outside verifiers use."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed")


def _openssl(*args: str) -> subprocess.CompletedProcess[str]:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("spec", "algorithm", "digest", "extra"), [
    ("ECC_NIST_P256", "ECDSA_SHA_256", "-sha256", ()),
    ("ECC_NIST_P384", "ECDSA_SHA_384", "-sha384", ()),
    ("RSA_2048", "RSASSA_PKCS1_V1_5_SHA_256", "-sha256", ()),
    ("RSA_2048", "RSASSA_PSS_SHA_256", "-sha256", ("-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32")),
])
def test_openssl_verifies_service_signatures(kms: Any, tmp_path: Path, spec: str, algorithm: str, digest: str,
                                             extra: tuple[str, ...]) -> None:
    key_id = kms.create_key(KeySpec=spec, KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    message = b"release manifest v1.2.3\n"
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "pub.der").write_bytes(kms.get_public_key(KeyId=key_id)["PublicKey"])
    converted = _openssl("pkey", "-pubin", "-inform", "DER", "-in", str(tmp_path / "pub.der"), "-out",
                         str(tmp_path / "pub.pem"))
    assert converted.returncode == 0, converted.stderr  # the public key is plain DER SubjectPublicKeyInfo
    raw = kms.sign(KeyId=key_id, Message=message, SigningAlgorithm=algorithm)["Signature"]
    (tmp_path / "sig").write_bytes(raw)
    verified = _openssl("dgst", digest, "-verify", str(tmp_path / "pub.pem"), *extra, "-signature",
                        str(tmp_path / "sig"), str(tmp_path / "msg"))
    assert verified.returncode == 0 and "Verified OK" in verified.stdout, verified.stdout + verified.stderr
    # A digest signed as DIGEST is the same signature scheme: OpenSSL verifies it over the original message.
    pre = kms.sign(KeyId=key_id, Message=hashlib.new(digest[1:], message).digest(), MessageType="DIGEST",
                   SigningAlgorithm=algorithm)["Signature"]
    (tmp_path / "sig2").write_bytes(pre)
    again = _openssl("dgst", digest, "-verify", str(tmp_path / "pub.pem"), *extra, "-signature",
                     str(tmp_path / "sig2"), str(tmp_path / "msg"))
    assert again.returncode == 0, again.stdout + again.stderr
    (tmp_path / "msg").write_bytes(message + b"tampered")
    tampered = _openssl("dgst", digest, "-verify", str(tmp_path / "pub.pem"), *extra, "-signature",
                        str(tmp_path / "sig"), str(tmp_path / "msg"))
    assert tampered.returncode != 0


def test_openssl_encrypts_to_an_rsa_key_the_service_decrypts(kms: Any, tmp_path: Path) -> None:
    key_id = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["KeyId"]
    (tmp_path / "pub.der").write_bytes(kms.get_public_key(KeyId=key_id)["PublicKey"])
    (tmp_path / "secret").write_bytes(b"a secret for the service only")
    done = _openssl("pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", str(tmp_path / "pub.der"),
                    "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", "rsa_oaep_md:sha256", "-pkeyopt",
                    "rsa_mgf1_md:sha256", "-in", str(tmp_path / "secret"), "-out", str(tmp_path / "ct"))
    assert done.returncode == 0, done.stderr
    plain = kms.decrypt(KeyId=key_id, CiphertextBlob=(tmp_path / "ct").read_bytes(),
                        EncryptionAlgorithm="RSAES_OAEP_SHA_256")["Plaintext"]
    assert plain == b"a secret for the service only"
