"""What the benchmark calls: one request body per operation, built against keys made for the run."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

from trent.bench.loadgen import Call

OPERATIONS = ("Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncrypt",
              "Sign ECC_NIST_P256", "Verify ECC_NIST_P256", "Sign RSA_2048", "GenerateMac", "DescribeKey",
              "CreateKey")
# The data plane's hot operations (the flat-from-32-to-128 section, bench/flat.py).
HOT_OPERATIONS = ("Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncrypt",
                  "GenerateMac", "VerifyMac", "Sign ECC_NIST_P256", "Verify ECC_NIST_P256", "DescribeKey")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


class Fixtures:
    """Keys and ciphertexts a run needs, created once through boto3 in the target region."""

    def __init__(self, kms: Any) -> None:
        self.kms = kms
        self.symmetric = kms.create_key(Description="bench")["KeyMetadata"]["KeyId"]
        self.other = kms.create_key(Description="bench re-encrypt target")["KeyMetadata"]["KeyId"]
        self.ecc = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        self.rsa = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        self.hmac = kms.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["KeyId"]
        self.message = os.urandom(64)
        self.blob = kms.encrypt(KeyId=self.symmetric, Plaintext=self.message)["CiphertextBlob"]
        digest = hashlib.sha256(self.message).digest()
        self.mac = kms.generate_mac(KeyId=self.hmac, Message=self.message, MacAlgorithm="HMAC_SHA_256")["Mac"]
        self.ecc_signature = kms.sign(KeyId=self.ecc, Message=digest, MessageType="DIGEST",
                                      SigningAlgorithm="ECDSA_SHA_256")["Signature"]

    def call(self, operation: str) -> Call:
        k, m = self.symmetric, _b64(self.message)
        bodies: dict[str, tuple[str, dict[str, Any]]] = {
            "Encrypt": ("Encrypt", {"KeyId": k, "Plaintext": m}),
            "Decrypt": ("Decrypt", {"CiphertextBlob": _b64(self.blob)}),
            "GenerateDataKey": ("GenerateDataKey", {"KeyId": k, "NumberOfBytes": 32}),
            "GenerateDataKeyWithoutPlaintext": ("GenerateDataKeyWithoutPlaintext", {"KeyId": k, "NumberOfBytes": 32}),
            "ReEncrypt": ("ReEncrypt", {"CiphertextBlob": _b64(self.blob), "DestinationKeyId": self.other}),
            "Sign ECC_NIST_P256": ("Sign", {"KeyId": self.ecc, "Message": m, "SigningAlgorithm": "ECDSA_SHA_256"}),
            "Verify ECC_NIST_P256": ("Verify", {
                "KeyId": self.ecc, "Message": _b64(hashlib.sha256(self.message).digest()), "MessageType": "DIGEST",
                "Signature": _b64(self.ecc_signature), "SigningAlgorithm": "ECDSA_SHA_256"}),
            "Sign RSA_2048": ("Sign", {"KeyId": self.rsa, "Message": m,
                                       "SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256"}),
            "GenerateMac": ("GenerateMac", {"KeyId": self.hmac, "Message": m, "MacAlgorithm": "HMAC_SHA_256"}),
            "VerifyMac": ("VerifyMac", {"KeyId": self.hmac, "Message": m, "MacAlgorithm": "HMAC_SHA_256",
                                        "Mac": _b64(self.mac)}),
            "DescribeKey": ("DescribeKey", {"KeyId": k}),
            "CreateKey": ("CreateKey", {"Description": "bench load"}),
        }
        name, doc = bodies[operation]
        return Call(name, _body(doc))


def encrypt_call_for_baseline(message: bytes) -> Call:
    """The baseline server answers Encrypt for any KeyId."""
    return Call("Encrypt", _body({"KeyId": "baseline", "Plaintext": _b64(message)}))
