"""Seed files against a real cluster: keys with fixed ids and material from the first start, ciphertexts that
decrypt after a restart and in a new data directory, idempotent starts, conflicts refused with nothing changed,
local-kms's YAML files, and the seed applied again after a reset."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.e2e.harness import ROOT, RunningCluster, free_port_block, poll

Fresh = Callable[..., RunningCluster]

AES = "8d2f6b0e4c1a3957b2e6d4f0a8c1e3b5d7f9a2c4e6b8d0f1a3c5e7b9d2f4a6c8"
OLD_AES = "1f3e5d7c9b0a2f4e6d8c0b2a4f6e8d0c2b4a6f8e0d2c4b6a8f0e2d4c6b8a0f2e"
HMAC_KEY = "aa" * 32
SYM_ID = "0b7c9e2a-4d6f-4a1b-8c3e-5f7a9b1d3e5f"
ROTATED_ID = "1c8d0f3b-5e7a-4b2c-9d4f-6a8b0c2e4f6a"
HMAC_ID = "2d9e1a4c-6f8b-4c3d-8e5a-7b9c1d3f5a7b"
EC_ID = "3e0f2b5d-7a9c-4d4e-9f6b-8c0d2e4a6b8c"
MRK_ID = "mrk-4f1a3c6e8b0d2f4a6c8e0b2d4f6a8c0e"
OFF_ID = "5a2b4d7f-9c1e-4a5b-8d9f-1c3e5a7b9d1f"
POLICY = {"Version": "2012-10-17", "Statement": [
    {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*",
     "Resource": "*"}]}


def _ec_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def _seed(path: Path, aes: str = AES, pem: str | None = None) -> Path:
    pem = pem or _ec_pem()
    path.write_text(f'''
[[keys]]
key_id = "{SYM_ID}"
description = "orders"
material = "hex:{aes}"
aliases = ["alias/orders"]
tags = {{ team = "payments" }}
policy = '{json.dumps(POLICY)}'
rotation = {{ enabled = true, period_days = 90 }}

[[keys]]
key_id = "{ROTATED_ID}"
region = "eu-west-1"
materials = ["hex:{OLD_AES}", "base64:{__import__("base64").b64encode(bytes.fromhex(AES)).decode()}"]

[[keys]]
key_id = "{HMAC_ID}"
key_spec = "HMAC_256"
material = "hex:{HMAC_KEY}"

[[keys]]
key_id = "{EC_ID}"
key_usage = "SIGN_VERIFY"
private_key_pem = """{pem}"""

[[keys]]
key_id = "{MRK_ID}"
material = "hex:{AES}"
replicas = ["eu-west-1", {{ region = "ap-northeast-2", description = "tokyo copy", aliases = ["alias/global"] }}]

[[keys]]
key_id = "{OFF_ID}"
enabled = false

[[aliases]]
name = "alias/orders-eu"
key_id = "{ROTATED_ID}"
''')
    return path


@pytest.fixture
def seed_file(tmp_path: Path) -> Path:
    return _seed(tmp_path / "keys.toml")


def test_seeded_keys_are_there_from_the_first_start(fresh_cluster: Fresh, seed_file: Path) -> None:
    c = fresh_cluster(extra_args=("--seed", str(seed_file), "--replica-delay", "0"))
    east, west, tokyo = c.client("us-east-1"), c.client("eu-west-1"), c.client("ap-northeast-2")
    meta = east.describe_key(KeyId="alias/orders")["KeyMetadata"]
    assert meta["KeyId"] == SYM_ID and meta["Description"] == "orders" and meta["Enabled"]
    assert east.list_resource_tags(KeyId=SYM_ID)["Tags"] == [{"TagKey": "team", "TagValue": "payments"}]
    assert json.loads(east.get_key_policy(KeyId=SYM_ID, PolicyName="default")["Policy"]) == POLICY
    rotation = east.get_key_rotation_status(KeyId=SYM_ID)
    assert rotation["KeyRotationEnabled"] and rotation["RotationPeriodInDays"] == 90
    assert east.describe_key(KeyId=OFF_ID)["KeyMetadata"]["KeyState"] == "Disabled"
    # A fixed HMAC key: the tag is the one the declared material gives.
    mac = east.generate_mac(KeyId=HMAC_ID, Message=b"m", MacAlgorithm="HMAC_SHA_256")["Mac"]
    assert mac == hmac.digest(bytes.fromhex(HMAC_KEY), b"m", hashlib.sha256)
    # The fixed EC private key: its public key is what GetPublicKey answers.
    pem = seed_file.read_text().split('"""')[1]
    private = serialization.load_pem_private_key(pem.encode(), None)
    assert east.get_public_key(KeyId=EC_ID)["PublicKey"] == private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    signature = east.sign(KeyId=EC_ID, Message=b"doc", SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    private.public_key().verify(signature, b"doc", ec.ECDSA(hashes.SHA256()))
    # Two material versions, the second current: ListKeyRotations shows one rotation.
    assert len(west.list_key_rotations(KeyId=ROTATED_ID)["Rotations"]) == 1
    assert west.describe_key(KeyId="alias/orders-eu")["KeyMetadata"]["KeyId"] == ROTATED_ID
    # The multi-Region key: a primary and two replicas, each usable at once.
    mrk = east.describe_key(KeyId=MRK_ID)["KeyMetadata"]["MultiRegionConfiguration"]
    assert mrk["MultiRegionKeyType"] == "PRIMARY"
    assert sorted(r["Region"] for r in mrk["ReplicaKeys"]) == ["ap-northeast-2", "eu-west-1"]
    assert tokyo.describe_key(KeyId="alias/global")["KeyMetadata"]["Description"] == "tokyo copy"
    blob = east.encrypt(KeyId=MRK_ID, Plaintext=b"everywhere")["CiphertextBlob"]
    assert tokyo.decrypt(CiphertextBlob=blob)["Plaintext"] == b"everywhere"
    assert c.admin("/_trent/status")["consistency"]["consistent"]


def test_ciphertexts_decrypt_after_a_restart_and_in_a_new_cluster(fresh_cluster: Fresh, seed_file: Path) -> None:
    c = fresh_cluster(extra_args=("--seed", str(seed_file)))
    east = c.client("us-east-1")
    blob = east.encrypt(KeyId="alias/orders", Plaintext=b"kept", EncryptionContext={"a": "b"})["CiphertextBlob"]
    mrk_blob = east.encrypt(KeyId=MRK_ID, Plaintext=b"mrk")["CiphertextBlob"]
    east.update_key_description(KeyId=SYM_ID, Description="changed at run time")
    c.restart()
    east = c.client("us-east-1")
    assert east.decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})["Plaintext"] == b"kept"
    # Applied again, idempotently: what the run changed stays, nothing is created twice.
    assert east.describe_key(KeyId=SYM_ID)["KeyMetadata"]["Description"] == "changed at run time"
    assert len([k for k in east.list_keys()["Keys"] if k["KeyId"] == SYM_ID]) == 1
    # Another cluster, another data directory, the same seed file: the same material.
    other = fresh_cluster(extra_args=("--seed", str(seed_file)))
    assert other.client("us-east-1").decrypt(CiphertextBlob=blob, EncryptionContext={"a": "b"})["Plaintext"] == b"kept"
    assert other.client("eu-west-1").decrypt(CiphertextBlob=mrk_blob)["Plaintext"] == b"mrk"


def test_a_conflicting_seed_is_refused_and_changes_nothing(fresh_cluster: Fresh, tmp_path: Path,
                                                          seed_file: Path) -> None:
    c = fresh_cluster(extra_args=("--seed", str(seed_file)))
    blob = c.client("us-east-1").encrypt(KeyId=SYM_ID, Plaintext=b"x")["CiphertextBlob"]
    before = {r: c.client(r).list_keys()["Keys"] for r in c.regions}
    c.stop()
    other_material = "ff" * 32
    conflicting = _seed(tmp_path / "other.toml", aes=other_material)
    new_id = "6b3c5e8a-0d2f-4b6c-9e7a-2d4f6b8c0e1a"
    with conflicting.open("a") as f:  # a key the refused file would have added
        f.write(f'[[keys]]\nkey_id = "{new_id}"\naliases = ["alias/new"]\n')
    run = subprocess.run([sys.executable, "-m", "trent.cluster.cli", "up", "--data-dir", str(c.data_dir), "--port",
                          str(free_port_block(4)), "--seed", str(conflicting)], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1
    assert f"key {SYM_ID} in us-east-1 holds different key material than the seed file gives" in run.stderr
    assert "nothing was changed" in run.stderr
    assert other_material not in run.stderr + run.stdout
    c.start()
    east = c.client("us-east-1")
    assert east.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    assert {r: c.client(r).list_keys()["Keys"] for r in c.regions} == before
    assert "alias/new" not in {a["AliasName"] for a in east.list_aliases()["Aliases"]}


def test_an_alias_naming_another_key_is_a_conflict(fresh_cluster: Fresh, seed_file: Path) -> None:
    c = fresh_cluster(extra_args=("--seed", str(seed_file)))
    east = c.client("us-east-1")
    east.update_alias(AliasName="alias/orders", TargetKeyId=OFF_ID)
    c.stop()
    with pytest.raises(RuntimeError):
        c.start(timeout=30)
    assert f"alias alias/orders in us-east-1 names key {OFF_ID}, the seed file says {SYM_ID}" in \
        c.log_path.read_text()


LOCAL_KMS = """\
Keys:
  Symmetric:
    Aes:
      - Metadata:
          KeyId: bc436485-5092-42b8-92a3-0aa8b93536dc
          Description: from local-kms
        BackingKeys:
          - 34743777217A25432A46294A404E635266556A586E3272357538782F413F4428
          - 5cdaead27fe7da2de47945d73cd6d79e36494e73802f3cd3869f1d2cb0b5d7a9
  Asymmetric:
    Ecc:
      - Metadata:
          KeyId: 800d5768-3fd7-4edd-a4b8-4c81c3e4c147
          KeyUsage: SIGN_VERIFY
          Description: ECC key
        PrivateKeyPem: |
{pem}
Aliases:
  - AliasName: alias/testing
    TargetKeyId: bc436485-5092-42b8-92a3-0aa8b93536dc
"""


def test_a_local_kms_seed_file_loads(fresh_cluster: Fresh, tmp_path: Path) -> None:
    pem = "\n".join("          " + line for line in _ec_pem().strip().splitlines())
    path = tmp_path / "seed.yaml"
    path.write_text(LOCAL_KMS.format(pem=pem))
    c = fresh_cluster(extra_args=("--seed", str(path)))
    east = c.client("us-east-1")
    meta = east.describe_key(KeyId="alias/testing")["KeyMetadata"]
    assert meta["KeyId"] == "bc436485-5092-42b8-92a3-0aa8b93536dc" and meta["Description"] == "from local-kms"
    assert len(east.list_key_rotations(KeyId=meta["KeyId"])["Rotations"]) == 1
    ecc = east.describe_key(KeyId="800d5768-3fd7-4edd-a4b8-4c81c3e4c147")["KeyMetadata"]
    assert (ecc["KeySpec"], ecc["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")


def test_reset_brings_the_seeded_keys_back(fresh_cluster: Fresh, seed_file: Path) -> None:
    c = fresh_cluster(extra_args=("--seed", str(seed_file), "--replica-delay", "0"))
    east = c.client("us-east-1")
    blob = east.encrypt(KeyId=SYM_ID, Plaintext=b"x")["CiphertextBlob"]
    extra = east.create_key()["KeyMetadata"]["KeyId"]
    out = c.trent("reset")
    assert "seed applied again: 6 keys created" in out.stdout
    ids = {k["KeyId"] for k in east.list_keys()["Keys"]}
    assert extra not in ids and SYM_ID in ids
    assert east.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    poll(lambda: c.admin("/_trent/status")["consistency"]["consistent"])


def test_a_bad_seed_file_stops_the_start_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(f'[[keys]]\nkey_id = "{SYM_ID}"\nmaterial = "hex:{AES[:-2]}"\n')
    c = RunningCluster(tmp_path / "data", free_port_block(4), extra_args=("--seed", str(path)))
    with pytest.raises(RuntimeError):
        c.start(timeout=30)
    log = c.log_path.read_text()
    assert "SYMMETRIC_DEFAULT material is 32 bytes (64 hex digits)" in log
    assert AES[:-2] not in log and "Traceback" not in log
    assert not (tmp_path / "data").exists()


def test_clients_see_seeded_keys_through_errors_as_aws_would(fresh_cluster: Fresh, seed_file: Path) -> None:
    c = fresh_cluster(extra_args=("--seed", str(seed_file)))
    with pytest.raises(ClientError) as err:
        c.client("us-east-1").encrypt(KeyId=OFF_ID, Plaintext=b"x")
    assert err.value.response["Error"]["Code"] == "DisabledException"


def test_seeded_keys_with_several_processes(fresh_cluster: Fresh, seed_file: Path) -> None:
    c = fresh_cluster(extra_args=("--seed", str(seed_file), "--workers", "2", "--replica-delay", "0"))
    for _ in range(6):  # new connections land on either process
        client = c.client("us-east-1")
        assert client.describe_key(KeyId="alias/orders")["KeyMetadata"]["KeyId"] == SYM_ID
    c.restart()
    assert c.client("ap-northeast-2").describe_key(KeyId="alias/global")["KeyMetadata"]["KeyId"] == MRK_ID


def test_a_replica_added_to_the_file_later_is_added(fresh_cluster: Fresh, tmp_path: Path) -> None:
    path = tmp_path / "mrk.toml"
    path.write_text(f'[[keys]]\nkey_id = "{MRK_ID}"\nreplicas = ["eu-west-1"]\n')
    c = fresh_cluster(extra_args=("--seed", str(path), "--replica-delay", "0"))
    blob = c.client("us-east-1").encrypt(KeyId=MRK_ID, Plaintext=b"one")["CiphertextBlob"]
    c.stop()
    path.write_text(f'[[keys]]\nkey_id = "{MRK_ID}"\nreplicas = ["eu-west-1", "ap-northeast-2"]\n')
    c.start()
    tokyo = c.client("ap-northeast-2")
    assert tokyo.decrypt(CiphertextBlob=blob)["Plaintext"] == b"one"
    replicas = c.client("us-east-1").describe_key(KeyId=MRK_ID)["KeyMetadata"]["MultiRegionConfiguration"]
    assert sorted(r["Region"] for r in replicas["ReplicaKeys"]) == ["ap-northeast-2", "eu-west-1"]

    def told() -> bool:  # the existing replica hears of its new sibling through the primary's outbox
        meta = c.client("eu-west-1").describe_key(KeyId=MRK_ID)["KeyMetadata"]["MultiRegionConfiguration"]
        return sorted(r["Region"] for r in meta["ReplicaKeys"]) == ["ap-northeast-2", "eu-west-1"]

    poll(told)
    poll(lambda: c.admin("/_trent/status")["consistency"]["consistent"])
