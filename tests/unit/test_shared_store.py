"""Several processes over one region's SQLite store: the change feed, the data version, conditional commits that
refuse to write over changes their writer has not seen, and Region.sync catching up with another connection."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_service import K1, K2, K3, make_key, make_region
from tests.unit.test_store import declared
from trent.cluster.replication.commands import CommandCodec
from trent.cluster.replication.log import Outbox
from trent.node.clock import FixedClock
from trent.node.crypto.rootkey import RootKey
from trent.node.model.grants import GrantRecord
from trent.node.model.key import AliasRecord
from trent.node.model.mrk import ReplicaGone
from trent.node.store.base import Batch, StaleState
from trent.node.store.sqlite import SqliteStore


def two(tmp_path: Path) -> tuple[SqliteStore, SqliteStore]:
    return declared(SqliteStore(tmp_path / "kms.db", feed=True)), declared(SqliteStore(tmp_path / "kms.db", feed=True))


def test_feed_records_state_changes_in_the_same_transaction(tmp_path: Path) -> None:
    a, b = two(tmp_path)
    assert a.change_head() == 0
    a.commit(Batch().put("keys", "k1", b"x").put("aliases", "alias/a", b"y").put("meta", "m", b"z"))
    a.commit(Batch().delete("keys", "k1").put("grants", "g", b"w"))
    oldest, changes = b.changes_after(0)
    assert oldest == 1
    # meta is nobody's in-memory state: not in the feed
    assert [(t, i) for _, t, i in changes] == [("keys", "k1"), ("aliases", "alias/a"), ("grants", "g"), ("keys", "k1")]
    assert [s for s, _, _ in changes] == [1, 2, 3, 4]
    assert b.changes_after(3)[1] == [(4, "keys", "k1")]
    assert b.change_head() == 4


def test_data_version_moves_only_for_other_connections_commits(tmp_path: Path) -> None:
    a, b = two(tmp_path)
    va, vb = a.data_version(), b.data_version()
    a.commit(Batch().put("keys", "k1", b"x"))
    assert a.data_version() == va  # its own commit
    assert b.data_version() != vb
    vb = b.data_version()
    assert b.data_version() == vb  # nothing new: stays


def test_conditional_commit_refuses_unseen_changes_and_writes_nothing(tmp_path: Path) -> None:
    a, b = two(tmp_path)
    seen = a.commit_if(Batch().put("keys", "k1", b"1"), 0)
    assert seen == 1
    b.commit(Batch().put("keys", "k2", b"2"))  # a has not seen this one
    with pytest.raises(StaleState):
        a.commit_if(Batch().put("keys", "k1", b"changed").put("outbox", "0000000000000001", b"r"), seen)
    assert a.get("keys", "k1") == b"1"
    assert a.get("outbox", "0000000000000001") is None
    assert a.change_head() == 2
    # Once caught up it goes through; the connection is usable afterwards (no transaction left open).
    assert a.commit_if(Batch().put("keys", "k1", b"changed"), 2) == 3
    assert b.get("keys", "k1") == b"changed"


def test_trimmed_feed_keeps_the_newest_changes(tmp_path: Path) -> None:
    a, _ = two(tmp_path)
    for i in range(10):
        a.commit(Batch().put("keys", f"k{i}", b"x"))
    assert a.trim_changes(keep=3) == 7
    oldest, changes = a.changes_after(0)
    assert oldest == 8 and [s for s, _, _ in changes] == [8, 9, 10]
    assert a.change_head() == 10


def shared_pair(tmp_path: Path) -> tuple[object, object]:
    a, b = two(tmp_path)
    ra, rb = make_region(a), make_region(b)
    return ra, rb


def test_region_sync_picks_up_keys_aliases_and_grants_from_another_process(tmp_path: Path) -> None:
    ra, rb = shared_pair(tmp_path)
    assert not rb.sync()  # nothing changed: nothing to do
    ra.commit(keys=[make_key(ra, K1), make_key(ra, K2)], aliases=[AliasRecord("alias/one", K1, 1.0, 1.0)],
              grants=[GrantRecord("g" * 64, K1, 1.0, ("Encrypt",), "arn:aws:iam::111122223333:root", "arn:x")])
    assert rb.sync()
    assert set(rb.keys) == {K1, K2}
    assert rb.aliases["alias/one"].key_id == K1 and [a.name for a in rb.aliases_of(K1)] == ["alias/one"]
    assert [g.grant_id for g in rb.grants_of(K1)] == ["g" * 64]
    # Changes: a key disabled, the alias re-pointed, the grant revoked with its key's deletion.
    ra.commit(keys=[ra.keys[K2].with_changes(description="changed")],
              aliases=[AliasRecord("alias/one", K2, 1.0, 2.0)])
    ra.commit(delete_keys=[K1])
    assert rb.sync()
    assert set(rb.keys) == {K2} and rb.keys[K2].description == "changed"
    assert rb.aliases_of(K1) == [] and [a.name for a in rb.aliases_of(K2)] == ["alias/one"]
    assert rb.grants == {} and rb.grants_of(K1) == []
    ra.commit(delete_aliases=["alias/one"])
    rb.sync()
    assert rb.aliases == {} and rb.aliases_of(K2) == []


def test_a_stale_region_commit_writes_nothing_and_succeeds_after_sync(tmp_path: Path) -> None:
    ra, rb = shared_pair(tmp_path)
    ra.commit(keys=[make_key(ra, K1)])
    # rb has not synced: its write must not land over ra's
    with pytest.raises(StaleState):
        rb.commit(keys=[make_key(rb, K2)])
    assert K2 not in rb.keys
    rb.sync()
    rb.commit(keys=[make_key(rb, K2)])
    assert ra.sync() and set(ra.keys) == {K1, K2}


def test_a_region_far_behind_a_trimmed_feed_loads_everything(tmp_path: Path) -> None:
    ra, rb = shared_pair(tmp_path)
    for key_id in (K1, K2, K3):
        ra.commit(keys=[make_key(ra, key_id)])
    ra.commit(delete_keys=[K1])
    assert ra.store.trim_changes(keep=1) == 3
    assert rb.sync()
    assert set(rb.keys) == {K2, K3}
    assert rb.follower is not None and rb.follower.seen == 4


def test_outbox_numbering_follows_other_processes(tmp_path: Path) -> None:
    a, b = two(tmp_path)
    codec = CommandCodec(RootKey.from_bytes(bytes(32)))
    oa, ob = Outbox("us-east-1", a, codec, FixedClock()), Outbox("us-east-1", b, codec, FixedClock())
    ra, rb = make_region(a, change_log=oa), make_region(b, change_log=ob)
    oa.follow(ra.follower)  # as replication registers its outbox (RegionReplication)
    ob.follow(rb.follower)
    ra.commit(keys=[make_key(ra, K1)], commands=[ReplicaGone(K1, "eu-west-1")])
    assert oa.head == 1
    rb.sync()
    assert ob.head == 1
    rb.commit(keys=[make_key(rb, K2)], commands=[ReplicaGone(K2, "eu-west-1")])
    assert ob.head == 2 and [s for s, _ in ob.read_after(0, 10)] == [1, 2]
    ra.sync()
    assert oa.head == 2


def test_a_decision_that_lost_a_race_is_made_again_on_the_caught_up_region(tmp_path: Path) -> None:
    a, b = two(tmp_path)
    ra, rb = make_region(a), make_region(b)
    seen: list[set[str]] = []
    rechecks: list[int] = []

    def add_key_beside_what_is_there(key_id: str) -> str:
        seen.append(set(rb.keys))
        rb.commit(keys=[make_key(rb, key_id)])
        return key_id

    ra.commit(keys=[make_key(ra, K1)])  # b has not seen it: its first try is stale
    assert rb.run_fresh(lambda: add_key_beside_what_is_there(K2), after_sync=lambda: rechecks.append(1)) == K2
    assert seen == [set(), {K1}] and rechecks == [1]
    assert set(rb.keys) == {K1, K2}

    def always_stale() -> None:
        raise StaleState("another process again")

    with pytest.raises(StaleState):
        rb.run_fresh(always_stale, attempts=3, after_sync=lambda: rechecks.append(1))
    assert rechecks == [1] * 4


def test_an_outbox_that_missed_records_never_overwrites_one(tmp_path: Path) -> None:
    # Had a process not heard of another's records (no follower registered), its next record took an existing
    # number and replaced that record. Now its write loses the race instead, and is decided again once caught up.
    a, b = two(tmp_path)
    codec = CommandCodec(RootKey.from_bytes(bytes(32)))
    oa, ob = Outbox("us-east-1", a, codec, FixedClock()), Outbox("us-east-1", b, codec, FixedClock())
    ra, rb = make_region(a, change_log=oa), make_region(b, change_log=ob)  # neither outbox follows the feed
    ra.commit(keys=[make_key(ra, K1)], commands=[ReplicaGone(K1, "eu-west-1")])
    first = oa.read_after(0, 10)
    rb.sync()
    with pytest.raises(StaleState):
        rb.commit(keys=[make_key(rb, K2)], commands=[ReplicaGone(K2, "eu-west-1")])
    assert oa.read_after(0, 10) == first and K2 not in rb.keys
