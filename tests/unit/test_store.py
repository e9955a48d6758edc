"""The store layer: Batch semantics, MemoryStore (with failure injection), SqliteStore (atomic, durable, reopenable)
and the record codec (round trips, material only ever wrapped)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgpack
import pytest

from trent.node.config import ConfigError, load_config
from trent.node.crypto.handles import SecretBytes, new_material
from trent.node.crypto.rootkey import RootKey
from trent.node.model.key import AliasRecord, KeyRecord, MaterialVersion, RotationSettings
from trent.node.model.mrk import MultiRegionState
from trent.node.model.states import KeyState
from trent.node.store.base import Batch, Store, StoreError
from trent.node.store.codec import FORMAT_VERSION, RecordCodec
from trent.node.store.factory import SqliteStoreFactory, make_store_factory
from trent.node.store.memory import MemoryStore
from trent.node.store.sqlite import SqliteStore

# The tables a region and its replication declare (the store itself knows none): (name, recorded in the feed).
TABLES = (("keys", True), ("aliases", True), ("grants", True), ("meta", False), ("outbox", True),
          ("cursors", False))


def declared(store: Any) -> Any:
    """``store`` with the tables its users would have declared."""
    for table, feed in TABLES:
        store.declare(table, feed=feed)
    return store


KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
MRK_ID = "mrk-1234abcd12ab34cd56ef1234567890ab"


def root() -> RootKey:
    return RootKey.from_bytes(bytes(range(32)))


def make_key(key_id: str = KEY_ID, **changes: Any) -> KeyRecord:
    first = MaterialVersion(new_material(key_id), 1_700_000_000.0)
    second = MaterialVersion(new_material(key_id), 1_700_000_500.5, "ON_DEMAND")
    key = KeyRecord(
        key_id=key_id, region="us-east-1", account="111122223333", created=1_700_000_000.0,
        state=KeyState.ENABLED, description="déscription ✓", policy='{"Statement": []}',
        tags=(("team", "blue"), ("env", "")), materials=(first, second), current_material_id=second.material_id,
        rotation=RotationSettings(True, 90, 1_707_776_000.0, 1),
    )
    return key.with_changes(**changes)


# -- Batch -----------------------------------------------------------------------------------------------------


def test_batch_last_operation_on_an_id_wins() -> None:
    batch = Batch().put("keys", "a", b"1").delete("keys", "a")
    assert (batch.puts["keys"], batch.deletes["keys"]) == ({}, {"a"})
    batch.put("keys", "a", b"2")
    assert (batch.puts["keys"], batch.deletes["keys"]) == ({"a": b"2"}, set())


def test_empty_batch_is_false() -> None:
    assert not Batch()
    assert not Batch(puts={"keys": {}}, deletes={"aliases": set()})
    assert Batch().delete("aliases", "alias/x")


# -- both stores behave the same -------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        yield declared(MemoryStore())
        return
    s = declared(SqliteStore(tmp_path / "region" / "kms.db"))
    yield s
    s.close()


def test_commit_scan_get(store: Store) -> None:
    store.commit(Batch().put("keys", "b", b"B").put("keys", "a", b"A").put("aliases", "alias/x", b"X"))
    assert list(store.scan("keys")) == [("a", b"A"), ("b", b"B")]
    assert store.get("aliases", "alias/x") == b"X"
    assert store.get("keys", "zzz") is None
    store.commit(Batch().delete("keys", "a").put("keys", "b", b"B2").delete("keys", "never-there"))
    assert list(store.scan("keys")) == [("b", b"B2")]


def test_empty_commit_is_a_no_op(store: Store) -> None:
    store.commit(Batch())
    assert all(list(store.scan(t)) == [] for t, _ in TABLES)


def test_unknown_table_is_refused_and_writes_nothing(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown table"):
        store.commit(Batch().put("keys", "a", b"A").put("nope", "x", b"X"))
    assert store.get("keys", "a") is None
    store.commit(Batch().put("keys", "b", b"B"))  # and the store still works
    assert list(store.scan("keys")) == [("b", b"B")]


def test_last_id_and_scan_after(store: Store) -> None:
    assert store.last_id("outbox") is None
    batch = Batch()
    for seq in (3, 1, 2, 10):
        batch.put("outbox", f"{seq:016d}", bytes([seq]))
    store.commit(batch)
    assert store.last_id("outbox") == f"{10:016d}"
    assert store.scan_after("outbox", f"{1:016d}", 2) == [(f"{2:016d}", b"\x02"), (f"{3:016d}", b"\x03")]
    assert store.scan_after("outbox", f"{10:016d}", 5) == []
    assert [i for i, _ in store.scan_after("outbox", "", 100)] == [f"{s:016d}" for s in (1, 2, 3, 10)]


# -- MemoryStore failure injection -----------------------------------------------------------------------------


def test_memory_store_fail_commits_writes_nothing_then_recovers() -> None:
    store = declared(MemoryStore())
    store.commit(Batch().put("keys", "a", b"A"))
    store.fail_commits = 2
    for _ in range(2):
        with pytest.raises(StoreError):
            store.commit(Batch().put("keys", "b", b"B").delete("keys", "a"))
        assert store.tables["keys"] == {"a": b"A"}
    store.commit(Batch().put("keys", "b", b"B"))
    assert store.tables["keys"] == {"a": b"A", "b": b"B"}
    assert (store.commits, store.fail_commits) == (2, 0)


# -- SqliteStore -----------------------------------------------------------------------------------------------


def test_sqlite_survives_reopen_and_uses_wal_and_full_sync(tmp_path: Path) -> None:
    path = tmp_path / "kms.db"
    store = declared(SqliteStore(path))
    store.commit(Batch().put("keys", "k", b"\x00doc\xff").put("aliases", "alias/a", b"A").put("meta", "m", b"M"))
    store.commit(Batch().delete("aliases", "alias/a"))
    store.close()
    again = declared(SqliteStore(path))
    try:
        assert list(again.scan("keys")) == [("k", b"\x00doc\xff")]
        assert list(again.scan("aliases")) == []
        assert again.get("meta", "m") == b"M"
        assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert again._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        again.close()


def test_sqlite_commit_is_visible_to_another_connection_at_once(tmp_path: Path) -> None:
    # "Committed before returning": a second process (another worker) sees the write immediately.
    path = tmp_path / "kms.db"
    store = declared(SqliteStore(path))
    other = sqlite3.connect(str(path))
    try:
        store.commit(Batch().put("keys", "k", b"v"))
        assert other.execute("SELECT doc FROM keys WHERE id = 'k'").fetchone() == (b"v",)
    finally:
        other.close()
        store.close()


def test_sqlite_failure_mid_batch_rolls_back_the_whole_batch(tmp_path: Path) -> None:
    path = tmp_path / "kms.db"
    store = declared(SqliteStore(path))
    store.commit(Batch().put("keys", "kept", b"1"))
    # A trigger makes the second table's write fail after the first table's rows went in.
    other = sqlite3.connect(str(path))
    other.execute("CREATE TRIGGER boom BEFORE INSERT ON aliases WHEN NEW.id = 'alias/boom' "
                  "BEGIN SELECT RAISE(ABORT, 'injected'); END")
    other.commit()
    other.close()
    try:
        with pytest.raises(StoreError, match="injected"):
            store.commit(Batch().put("keys", "new", b"2").delete("keys", "kept").put("aliases", "alias/boom", b"x"))
        assert list(store.scan("keys")) == [("kept", b"1")]
        assert list(store.scan("aliases")) == []
        # No transaction was left open: the next commit works and is durable on its own.
        store.commit(Batch().put("keys", "after", b"3"))
        assert [i for i, _ in store.scan("keys")] == ["after", "kept"]
    finally:
        store.close()
    reopened = declared(SqliteStore(path))
    try:
        assert [i for i, _ in reopened.scan("keys")] == ["after", "kept"]
    finally:
        reopened.close()


def test_sqlite_commit_on_a_closed_store_is_a_store_error(tmp_path: Path) -> None:
    store = declared(SqliteStore(tmp_path / "kms.db"))
    store.close()
    with pytest.raises(StoreError):
        store.commit(Batch().put("keys", "k", b"v"))


def test_sqlite_creates_its_directory(tmp_path: Path) -> None:
    store = declared(SqliteStore(tmp_path / "a" / "b" / "kms.db"))
    store.close()
    assert (tmp_path / "a" / "b" / "kms.db").is_file()


# -- RecordCodec -----------------------------------------------------------------------------------------------


def test_key_round_trip() -> None:
    codec = RecordCodec(root())
    key = make_key(deletion_date=1_700_600_000.0, pending_window_days=7, state=KeyState.PENDING_DELETION,
                   extra={"origin_note": "kept"})
    decoded = codec.decode_key(codec.encode_key(key))
    assert decoded == key
    assert decoded.extra == {"origin_note": "kept"}
    assert [v.material.secret for v in decoded.materials] == [v.material.secret for v in key.materials]
    assert decoded.current_material().material_id == key.current_material_id


def test_multi_region_key_round_trip() -> None:
    codec = RecordCodec(root())
    state = MultiRegionState("us-east-1", ("eu-west-1", "ap-northeast-2"), epoch=2, version=7,
                             pending_material_id=b"\x01" * 32, pending_since=1_700_000_100.0,
                             pending_type="AUTOMATIC", holders=("us-east-1",))
    key = make_key(MRK_ID, multi_region=True, mrk=state, state=KeyState.UPDATING,
                   resume_state=KeyState.DISABLED, ready_at=1_700_000_200.0)
    decoded = codec.decode_key(codec.encode_key(key))
    assert decoded == key
    assert decoded.mrk == state
    assert isinstance(decoded.mrk is not None and decoded.mrk.replica_regions, tuple)


def test_older_records_without_newer_fields_still_decode() -> None:
    codec = RecordCodec(root())
    doc = msgpack.unpackb(codec.encode_key(make_key()), raw=False)
    for name in ("mrs", "resume", "ready", "extra"):
        doc.pop(name)
    decoded = codec.decode_key(msgpack.packb(doc, use_bin_type=True))
    assert (decoded.mrk, decoded.resume_state, decoded.ready_at, decoded.extra) == (None, None, None, {})


def test_alias_round_trip_and_versions_are_checked() -> None:
    alias = AliasRecord("alias/app", KEY_ID, 1.5, 2.5)
    assert RecordCodec.decode_alias(RecordCodec.encode_alias(alias)) == alias
    bad = msgpack.packb({"v": FORMAT_VERSION + 1, "name": "alias/x", "key": KEY_ID, "created": 0, "updated": 0})
    with pytest.raises(ValueError, match="version"):
        RecordCodec.decode_alias(bad)
    codec = RecordCodec(root())
    doc = msgpack.unpackb(codec.encode_key(make_key()), raw=False)
    doc["v"] = 99
    with pytest.raises(ValueError, match="version"):
        codec.decode_key(msgpack.packb(doc, use_bin_type=True))


def test_material_is_stored_only_wrapped() -> None:
    codec = RecordCodec(root())
    key = make_key()
    raw = codec.encode_key(key)
    for version in key.materials:
        secret = version.material.secret.reveal()
        assert secret not in raw
        assert secret.hex().encode() not in raw
        assert version.material_id in raw  # the public id is stored as is
    assert bytes(range(32)) not in raw  # nor the root key


def test_wrapped_material_is_bound_to_its_key_and_root() -> None:
    codec = RecordCodec(root())
    raw = codec.encode_key(make_key())
    with pytest.raises(ValueError):  # another root key cannot unwrap it
        RecordCodec(RootKey.from_bytes(b"\x07" * 32)).decode_key(raw)
    doc = msgpack.unpackb(raw, raw=False)
    doc["id"] = "99999999-12ab-34cd-56ef-1234567890ab"  # moved to another key id: AAD mismatch
    with pytest.raises(ValueError):
        codec.decode_key(msgpack.packb(doc, use_bin_type=True))


def test_secret_handles_do_not_leak_through_the_codec_repr() -> None:
    key = make_key()
    text = repr(key) + str(key)
    for version in key.materials:
        assert version.material.secret.reveal().hex() not in text
        assert isinstance(version.material.secret, SecretBytes)


# -- choosing a backend ----------------------------------------------------------------------------------------


def test_the_config_names_the_store_backend_and_an_unknown_one_is_refused(tmp_path: Path) -> None:
    assert load_config(None, {}).store == "sqlite"
    with pytest.raises(ConfigError, match="store must be one of: etcd, sqlite"):
        load_config(None, {"store": "dynamo"})
    with pytest.raises(ValueError, match="unknown store backend"):
        make_store_factory("dynamo")
    factory = make_store_factory(load_config(None, {"store": "sqlite"}).store)
    assert isinstance(factory, SqliteStoreFactory)
    shared = factory.open("us-east-1", tmp_path / "us-east-1", shared=True)
    alone = factory.open("eu-west-1", tmp_path / "eu-west-1", shared=False)
    try:
        assert shared.change_feed() is not None and alone.change_feed() is None
        assert alone.trim_changes() == 0  # no feed: nothing to trim, and no need to know the backend to ask
        assert (tmp_path / "us-east-1" / "kms.db").is_file()
    finally:
        shared.close()
        alone.close()


def test_a_store_knows_only_the_tables_declared_to_it(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "kms.db")
    try:
        with pytest.raises(ValueError, match="unknown table"):
            store.get("outbox", "1")
        store.declare("outbox", feed=True)
        store.declare("outbox", feed=True)  # again: harmless
        assert store.get("outbox", "1") is None
        with pytest.raises(ValueError, match="bad table name"):
            store.declare("x; DROP TABLE outbox")
    finally:
        store.close()
