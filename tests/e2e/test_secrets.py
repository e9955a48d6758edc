"""Secret hygiene of a real cluster: plaintexts, data keys and root keys never reach the data directory or the
log, and the files that matter are private. (Key material at rest is checked in-process, where its bytes are
known: tests/unit/test_store.py.)"""

from __future__ import annotations

import base64
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.e2e.harness import RunningCluster

Fresh = Callable[..., RunningCluster]


def forms(secret: bytes) -> dict[str, bytes]:
    """Every encoding a careless implementation might write a secret in."""
    return {
        "raw": secret,
        "base64": base64.b64encode(secret),
        "base64 unpadded": base64.b64encode(secret).rstrip(b"="),
        "urlsafe base64": base64.urlsafe_b64encode(secret).rstrip(b"="),
        "hex": secret.hex().encode(),
        "HEX": secret.hex().upper().encode(),
        "repr": repr(secret).encode()[2:-1],
    }


def files_under(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path


def find(secrets: dict[str, bytes], paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        data = path.read_bytes()
        for label, secret in secrets.items():
            for form, needle in forms(secret).items():
                if needle in data:
                    found.append(f"{label} ({form}) in {path}")
    return found


def test_plaintexts_and_data_keys_never_reach_disk_or_log(fresh_cluster: Fresh) -> None:
    c = fresh_cluster(regions=("us-east-1", "eu-west-1"))
    kms = c.client("us-east-1")
    key = kms.create_key(Description="hygiene")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/hygiene", TargetKeyId=key)
    secrets: dict[str, bytes] = {
        "random plaintext": os.urandom(64),
        "marker plaintext": f"TRENT-SECRET-MARKER-{uuid.uuid4().hex}".encode(),
    }
    blobs = []
    for label in list(secrets):
        blob = kms.encrypt(KeyId="alias/hygiene", Plaintext=secrets[label],
                           EncryptionContext={"purpose": "hygiene"})["CiphertextBlob"]
        blobs.append(blob)
        assert kms.decrypt(CiphertextBlob=blob, EncryptionContext={"purpose": "hygiene"})["Plaintext"] == secrets[label]
    data_key = kms.generate_data_key(KeyId=key, KeySpec="AES_256")
    secrets["AES_256 data key"] = data_key["Plaintext"]
    secrets["64-byte data key"] = kms.generate_data_key(KeyId=key, NumberOfBytes=64)["Plaintext"]
    secrets["random bytes"] = kms.generate_random(NumberOfBytes=48)["Plaintext"]
    kms.rotate_key_on_demand(KeyId=key)
    # Re-encrypting under the new material and decrypting through the other paths handles the secrets again.
    again = kms.re_encrypt(CiphertextBlob=blobs[0], SourceEncryptionContext={"purpose": "hygiene"},
                           DestinationKeyId=key)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=again)["Plaintext"] == secrets["random plaintext"]
    assert kms.decrypt(CiphertextBlob=data_key["CiphertextBlob"])["Plaintext"] == secrets["AES_256 data key"]
    # Failing calls that carry a secret must not write or log it either.
    eu = c.client("eu-west-1")
    eu.encrypt(KeyId=eu.create_key()["KeyMetadata"]["KeyId"], Plaintext=secrets["marker plaintext"])
    with pytest.raises(ClientError) as exc:  # too long: the validation message must not echo it
        kms.encrypt(KeyId=key, Plaintext=secrets["marker plaintext"] * 200)
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert secrets["marker plaintext"].decode() not in str(exc.value.response)
    with pytest.raises(ClientError):
        eu.encrypt(KeyId="alias/hygiene", Plaintext=secrets["random plaintext"])  # no such alias there
    assert c.stop() == 0

    paths = [*files_under(c.data_dir), c.log_path]
    names = {p.name for p in paths}
    assert {"kms.db", "root.key", f"{c.data_dir.name}.log"} <= names  # the scan covers what matters
    assert c.log_path.read_text().strip(), "the log is empty: the scan would prove nothing"
    assert find(secrets, paths) == []


def test_root_keys_stay_in_their_files_and_files_are_private(fresh_cluster: Fresh) -> None:
    c = fresh_cluster()
    blobs = {}
    for region in c.regions:
        kms = c.client(region)
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blobs[region] = kms.encrypt(KeyId=key, Plaintext=region.encode())["CiphertextBlob"]
        kms.rotate_key_on_demand(KeyId=key)
    assert c.stop() == 0

    roots: dict[str, bytes] = {}
    for region in c.regions:
        region_dir = c.data_dir / region
        assert stat.S_IMODE(region_dir.stat().st_mode) == 0o700, region
        root_file = region_dir / "root.key"
        assert stat.S_IMODE(root_file.stat().st_mode) == 0o600, region
        roots[region] = root_file.read_bytes()
        assert len(roots[region]) == 32
    assert len(set(roots.values())) == len(roots), "regions must not share a root key"
    assert stat.S_IMODE((c.data_dir / "admin.token").stat().st_mode) == 0o600
    assert stat.S_IMODE(c.data_dir.stat().st_mode) == 0o700  # created by trent, so private too
    others = [p for p in [*files_under(c.data_dir), c.log_path] if p.name != "root.key"]
    assert find({f"{r} root key": k for r, k in roots.items()}, others) == []

    c.start()  # a restart reuses the root keys as they are: old ciphertexts still decrypt
    for region in c.regions:
        assert (c.data_dir / region / "root.key").read_bytes() == roots[region]
        assert stat.S_IMODE((c.data_dir / region / "root.key").stat().st_mode) == 0o600
        assert c.client(region, via="region").decrypt(CiphertextBlob=blobs[region])["Plaintext"] == region.encode()
