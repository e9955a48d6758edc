"""Bring your own key: key material made here, imported into a KMS key, rotated on demand, deleted and imported
again — and data encrypted at every step still decrypts.

The client side follows AWS's developer guide with `cryptography`: wrap the 32 bytes with RSA-OAEP (SHA-256)
under the wrapping public key GetParametersForImport returns, and send them with its import token.

    .venv/bin/python examples/bring_your_own_key.py        (or: make demo-byok)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from examples._cluster import demo_cluster

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def import_bytes(kms: Any, key_id: str, material: bytes, **options: Any) -> str:
    """One import, as the guide does it: parameters, wrap, import. Returns the KeyMaterialId."""
    params = kms.get_parameters_for_import(KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256",
                                           WrappingKeySpec="RSA_4096")
    public = serialization.load_der_public_key(params["PublicKey"])
    assert isinstance(public, rsa.RSAPublicKey)
    done = kms.import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                                   EncryptedKeyMaterial=public.encrypt(material, OAEP),
                                   ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE", **options)
    material_id: str = done["KeyMaterialId"]
    return material_id


def main() -> int:
    with demo_cluster() as cluster:
        kms = cluster.client("eu-west-1")
        key_id = kms.create_key(Origin="EXTERNAL", Description="byok demo")["KeyMetadata"]["KeyId"]
        print(f"created {key_id}: {kms.describe_key(KeyId=key_id)['KeyMetadata']['KeyState']}")
        first, second = os.urandom(32), os.urandom(32)  # kept by their owner, outside KMS
        m1 = import_bytes(kms, key_id, first)
        print(f"imported material {m1[:16]}...: {kms.describe_key(KeyId=key_id)['KeyMetadata']['KeyState']}")
        old = kms.encrypt(KeyId=key_id, Plaintext=b"written under the first material")["CiphertextBlob"]

        m2 = import_bytes(kms, key_id, second, ImportType="NEW_KEY_MATERIAL", KeyMaterialDescription="2026 rotation")
        listed = kms.list_key_rotations(KeyId=key_id, IncludeKeyMaterial="ALL_KEY_MATERIAL")["Rotations"]
        print("before rotation: " + ", ".join(f"{r['KeyMaterialId'][:8]} {r['KeyMaterialState']}" for r in listed))
        kms.rotate_key_on_demand(KeyId=key_id)
        current = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
        print(f"rotated on demand: current material {current[:16]}...")
        assert current == m2
        new = kms.encrypt(KeyId=key_id, Plaintext=b"written under the second material")["CiphertextBlob"]
        opened = kms.decrypt(CiphertextBlob=old)
        assert opened["KeyMaterialId"] == m1
        print(f"old data still decrypts (material {opened['KeyMaterialId'][:8]}): {opened['Plaintext'].decode()}")

        kms.delete_imported_key_material(KeyId=key_id, KeyMaterialId=m1)
        print(f"deleted the first material: {kms.describe_key(KeyId=key_id)['KeyMetadata']['KeyState']}")
        try:
            kms.decrypt(CiphertextBlob=new)
            raise AssertionError("a key pending import decrypted")
        except kms.exceptions.KMSInvalidStateException:
            print("decrypt refused while material is missing (KMSInvalidStateException)")
        assert import_bytes(kms, key_id, first) == m1
        print(f"re-imported the same bytes: {kms.describe_key(KeyId=key_id)['KeyMetadata']['KeyState']}")
        for blob in (old, new):
            print(f"decrypted again: {kms.decrypt(CiphertextBlob=blob)['Plaintext'].decode()}")
        print("bring your own key demo OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
