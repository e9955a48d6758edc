"""Region: the in-memory view over a store, the one write path (all or nothing), lookups with AWS's NotFound
messages, the change log hook, and key material that never reaches the database in clear."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_store import declared
from trent.node.auth.principals import Principal
from trent.node.clock import FixedClock
from trent.node.crypto.handles import new_material
from trent.node.crypto.rootkey import RootKey
from trent.node.model.errors import KmsError
from trent.node.model.key import AliasRecord, KeyRecord, MaterialVersion
from trent.node.model.mrk import ReplicaGone
from trent.node.model.states import KeyState
from trent.node.ops import aliases as alias_ops
from trent.node.ops import encryption
from trent.node.ops import keys as key_ops
from trent.node.ops import rotation as rotation_ops
from trent.node.ops.registry import RequestContext
from trent.node.service import Region, RegionIdentity
from trent.node.store.base import Batch, StoreError
from trent.node.store.memory import MemoryStore
from trent.node.store.sqlite import SqliteStore

ACCOUNT = "111122223333"
ROOT_BYTES = bytes(range(100, 132))
CTX = RequestContext("req-1", "Test", Principal("test", "test", f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT), "127.0.0.1",
                     "unit")


def make_region(store: Any = None, name: str = "us-east-1", **kwargs: Any) -> Region:
    return Region(RegionIdentity(name, ACCOUNT), store if store is not None else MemoryStore(),
                  RootKey.from_bytes(ROOT_BYTES), FixedClock(), **kwargs)


def make_key(region: Region, key_id: str) -> KeyRecord:
    material = MaterialVersion(new_material(key_id), region.now())
    return KeyRecord(key_id=key_id, region=region.name, account=ACCOUNT, created=region.now(),
                     state=KeyState.ENABLED, materials=(material,), current_material_id=material.material_id)


K1 = "11111111-1111-1111-1111-111111111111"
K2 = "22222222-2222-2222-2222-222222222222"
K3 = "33333333-3333-3333-3333-333333333333"


def populated() -> tuple[Region, MemoryStore]:
    store = MemoryStore()
    region = make_region(store)
    region.commit(keys=[make_key(region, K1), make_key(region, K2)],
                  aliases=[AliasRecord("alias/one", K1, 1.0, 1.0), AliasRecord("alias/two", K2, 1.0, 1.0)])
    return region, store


def view(region: Region) -> tuple[Any, ...]:
    return (dict(region.keys), dict(region.aliases), {k: region.aliases_of(k) for k in (K1, K2, K3)})


# -- a failed commit changes nothing ---------------------------------------------------------------------------


@pytest.mark.parametrize("change", [
    {"keys": "new"},
    {"keys": "update"},
    {"delete_keys": [K1], "delete_aliases": ["alias/one"]},
    {"aliases": [AliasRecord("alias/one", K2, 1.0, 2.0)]},  # re-point
    {"aliases": [AliasRecord("alias/three", K1, 3.0, 3.0)]},
    {"delete_aliases": ["alias/two"]},
])
def test_failed_commit_leaves_memory_and_store_unchanged(change: dict[str, Any]) -> None:
    region, store = populated()
    if change.get("keys") == "new":
        change = {"keys": [make_key(region, K3)]}
    elif change.get("keys") == "update":
        change = {"keys": [region.keys[K1].with_changes(description="changed", state=KeyState.DISABLED)]}
    before, stored = view(region), {t: dict(d) for t, d in store.tables.items()}
    store.fail_commits = 1
    with pytest.raises(StoreError):
        region.commit(**change)
    assert view(region) == before
    assert store.tables == stored
    region.commit(**change)  # the next commit works and applies the same change
    assert view(region) != before
    assert make_region(store).keys.keys() == region.keys.keys()
    assert make_region(store).aliases == region.aliases


def test_failed_commit_through_an_operation_changes_nothing() -> None:
    region, store = populated()
    before = view(region)
    store.fail_commits = 1
    with pytest.raises(StoreError):
        key_ops.disable_key(region, {"KeyId": K1}, CTX)
    store.fail_commits = 1
    with pytest.raises(StoreError):
        alias_ops.create_alias(region, {"AliasName": "alias/new", "TargetKeyId": K2}, CTX)
    assert view(region) == before
    key_ops.disable_key(region, {"KeyId": K1}, CTX)
    assert region.keys[K1].state is KeyState.DISABLED


def test_commit_updates_the_alias_index() -> None:
    region, _ = populated()
    region.commit(aliases=[AliasRecord("alias/one", K2, 1.0, 2.0)])
    assert [a.name for a in region.aliases_of(K2)] == ["alias/one", "alias/two"]
    assert region.aliases_of(K1) == []
    region.commit(delete_aliases=["alias/two", "alias/never"])
    assert [a.name for a in region.aliases_of(K2)] == ["alias/one"]
    region.commit(delete_keys=[K2], delete_aliases=["alias/one"])
    assert (region.keys.keys(), region.aliases, region.aliases_of(K2)) == ({K1}, {}, [])


def test_region_loads_its_state_from_the_store() -> None:
    region, store = populated()
    again = make_region(store)
    assert again.keys == region.keys
    assert again.aliases == region.aliases
    assert [a.name for a in again.aliases_of(K1)] == ["alias/one"]


# -- lookups ---------------------------------------------------------------------------------------------------


def test_resolve_by_every_form_of_reference() -> None:
    region, _ = populated()
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{K1}"
    for ref in (K1, arn, "alias/one", f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/one"):
        assert region.resolve(ref, allow_alias=True).key_id == K1
    assert region.resolve(arn, allow_alias=False).key_id == K1


@pytest.mark.parametrize("ref, message", [
    (K3, f"Key 'arn:aws:kms:us-east-1:{ACCOUNT}:key/{K3}' does not exist"),
    (f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{K1}", f"Key 'arn:aws:kms:eu-west-1:{ACCOUNT}:key/{K1}' does not exist"),
    (f"arn:aws:kms:us-east-1:444455556666:key/{K1}",
     f"Key 'arn:aws:kms:us-east-1:444455556666:key/{K1}' does not exist"),
    ("alias/missing", f"Alias arn:aws:kms:us-east-1:{ACCOUNT}:alias/missing is not found."),
    (f"arn:aws:kms:eu-west-1:{ACCOUNT}:alias/one", f"Alias arn:aws:kms:eu-west-1:{ACCOUNT}:alias/one is not found."),
])
def test_resolve_not_found_messages(ref: str, message: str) -> None:
    region, _ = populated()
    with pytest.raises(KmsError) as exc:
        region.resolve(ref, allow_alias=True)
    assert (exc.value.code, exc.value.message, exc.value.status) == ("NotFoundException", message, 400)


def test_alias_is_not_accepted_where_only_keys_are() -> None:
    region, _ = populated()
    with pytest.raises(KmsError) as exc:
        region.resolve("alias/one", allow_alias=False)
    assert exc.value.code == "NotFoundException"


def test_identity_and_arns() -> None:
    region = make_region(name="ap-northeast-2", cluster_regions=("us-east-1", "ap-northeast-2"))
    assert (region.name, region.account) == ("ap-northeast-2", ACCOUNT)
    assert region.key_arn(K1) == f"arn:aws:kms:ap-northeast-2:{ACCOUNT}:key/{K1}"
    assert region.key_arn_in("us-east-1", K1) == f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{K1}"
    assert region.alias_arn("alias/x") == f"arn:aws:kms:ap-northeast-2:{ACCOUNT}:alias/x"
    assert region.cluster_regions == ("us-east-1", "ap-northeast-2")
    assert make_region().cluster_regions == ("us-east-1",)


# -- the change log hook ---------------------------------------------------------------------------------------


class RecordingLog:
    def __init__(self) -> None:
        self.events: list[str] = []
        self.seq = 0

    def append(self, batch: Batch, command: Any) -> None:
        self.seq += 1
        batch.put("outbox", f"{self.seq:016d}", repr(command).encode())
        self.events.append("append")

    def committed(self) -> None:
        self.events.append("committed")

    def rolled_back(self) -> None:
        self.events.append("rolled_back")


def test_commands_commit_in_the_same_batch_as_the_change() -> None:
    store, log = declared(MemoryStore()), RecordingLog()
    region = make_region(store, change_log=log)
    command = ReplicaGone(K1, "eu-west-1")
    region.commit(keys=[make_key(region, K1)], commands=[command])
    assert log.events == ["append", "committed"]
    assert list(store.tables["outbox"]) == [f"{1:016d}"]
    store.fail_commits = 1
    with pytest.raises(StoreError):
        region.commit(keys=[make_key(region, K2)], commands=[command])
    assert log.events[-2:] == ["append", "rolled_back"]
    assert list(store.tables["outbox"]) == [f"{1:016d}"]
    assert K2 not in region.keys
    region.commit(keys=[make_key(region, K3)])  # no commands: the log is not involved
    assert log.events[-1] == "rolled_back"


def test_commands_without_a_change_log_are_dropped() -> None:
    store = declared(MemoryStore())
    region = make_region(store)
    region.commit(keys=[make_key(region, K1)], commands=[ReplicaGone(K1, "eu-west-1")])
    assert store.tables["outbox"] == {}
    assert K1 in region.keys


# -- key material never reaches the database in clear ----------------------------------------------------------


def _forms(secret: bytes) -> list[bytes]:
    return [secret, secret.hex().encode(), secret.hex().upper().encode(), base64.b64encode(secret)]


def test_material_and_plaintexts_never_reach_the_sqlite_files(tmp_path: Path) -> None:
    store = declared(SqliteStore(tmp_path / "kms.db"))
    region = make_region(store)
    key_id = key_ops.create_key(region, {"Description": "at rest"}, CTX)["KeyMetadata"]["KeyId"]
    alias_ops.create_alias(region, {"AliasName": "alias/at-rest", "TargetKeyId": key_id}, CTX)
    plaintext = b"PLAINTEXT-MARKER-" + bytes(range(48))
    blob = encryption.encrypt(region, {"KeyId": "alias/at-rest", "Plaintext": plaintext}, CTX)["CiphertextBlob"]
    data_key = encryption.generate_data_key(region, {"KeyId": key_id, "KeySpec": "AES_256"}, CTX)["Plaintext"]
    rotation_ops.rotate_key_on_demand(region, {"KeyId": key_id}, CTX)
    rotation_ops.enable_key_rotation(region, {"KeyId": key_id}, CTX)
    assert encryption.decrypt(region, {"CiphertextBlob": blob}, CTX)["Plaintext"] == plaintext
    key = region.keys[key_id]
    materials = [v.material.secret.reveal() for v in key.materials]
    assert len(materials) == 2
    assert key.current_material().material.secret.reveal() == materials[1]
    files = sorted(p for p in tmp_path.iterdir() if p.is_file())
    contents = b"".join(p.read_bytes() for p in files)  # kms.db, and -wal/-shm while open
    store.close()
    contents += b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()) if p.is_file())
    assert key.current_material_id in contents  # the scan does see what the store wrote
    for secret in [*materials, plaintext, data_key, ROOT_BYTES]:
        for needle in _forms(secret):
            assert needle not in contents
    # ... and the material is recoverable only with the root key
    reopened = make_region(declared(SqliteStore(tmp_path / "kms.db")))
    assert [v.material.secret.reveal() for v in reopened.keys[key_id].materials] == materials
    assert encryption.decrypt(reopened, {"CiphertextBlob": blob}, CTX)["Plaintext"] == plaintext
    reopened.store.close()
