"""Envelope encryption by hand, as an application would write it.

GenerateDataKey gives a fresh AES-256 key twice: in clear (use it, then forget it) and encrypted under the KMS key
(store it next to the data). Later, Decrypt turns the stored data key back into the AES key that opens the data.

    .venv/bin/python examples/envelope_encryption.py        (or: make demo-envelope)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from examples._cluster import demo_cluster

CONTEXT = {"app": "invoices", "tenant": "acme"}  # bound to the data key: Decrypt must present it again


def seal_record(kms: object, key_id: str, record: dict[str, object]) -> dict[str, str]:
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=CONTEXT)  # type: ignore[attr-defined]
    nonce = os.urandom(12)
    body = AESGCM(data_key["Plaintext"]).encrypt(nonce, json.dumps(record).encode(), None)
    del data_key["Plaintext"]  # the clear key is used once and dropped
    return {"encrypted_key": data_key["CiphertextBlob"].hex(), "nonce": nonce.hex(), "body": body.hex()}


def open_record(kms: object, stored: dict[str, str]) -> dict[str, object]:
    clear = kms.decrypt(CiphertextBlob=bytes.fromhex(stored["encrypted_key"]), EncryptionContext=CONTEXT)  # type: ignore[attr-defined]
    plain = AESGCM(clear["Plaintext"]).decrypt(bytes.fromhex(stored["nonce"]), bytes.fromhex(stored["body"]), None)
    result: dict[str, object] = json.loads(plain)
    return result


def main() -> int:
    with demo_cluster() as cluster:
        kms = cluster.client("eu-west-1")
        key_id = kms.create_key(Description="envelope demo")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/invoices", TargetKeyId=key_id)
        record = {"invoice": 1042, "amount": "129.00", "currency": "EUR"}
        stored = seal_record(kms, "alias/invoices", record)
        print(f"stored: encrypted data key {len(stored['encrypted_key']) // 2} bytes, "
              f"body {len(stored['body']) // 2} bytes")
        kms.rotate_key_on_demand(KeyId=key_id)  # rotation does not strand stored data keys
        opened = open_record(kms, stored)
        print(f"opened after a key rotation: {opened}")
        assert opened == record
        print("envelope encryption round trip OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
