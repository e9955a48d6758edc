"""The applier between in-process regions wired as cluster/compose.py wires them: records from a peer's outbox apply
exactly once, in any order, all or nothing with the cursor; two-phase rotation across three regions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_store import declared
from trent.cluster.replication.applier import Applier
from trent.cluster.replication.commands import CommandCodec
from trent.cluster.replication.log import Cursors, Outbox
from trent.node.auth.principals import Principal
from trent.node.clock import FixedClock
from trent.node.crypto.rootkey import RootKey
from trent.node.model.key import KeyRecord
from trent.node.model.mrk import HoldsMaterial, KeySnapshot, ReplicaGone
from trent.node.model.states import KeyState
from trent.node.ops.keys import create_key, schedule_key_deletion
from trent.node.ops.multi_region import replicate_key, update_primary_region
from trent.node.ops.registry import RequestContext
from trent.node.ops.rotation import enable_key_rotation, rotate_key_on_demand
from trent.node.scheduler import Scheduler
from trent.node.service import Region, RegionIdentity
from trent.node.store.base import Store, StoreError
from trent.node.store.memory import MemoryStore
from trent.node.store.sqlite import SqliteStore

A, B, C = "us-east-1", "eu-west-1", "ap-northeast-2"
REGIONS = (A, B, C)
ACCOUNT = "111122223333"
TRANSPORT = CommandCodec(RootKey.from_bytes(b"\x5a" * 32))
PRINCIPAL = Principal("test", "test", f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT)


def ctx(operation: str = "Test") -> RequestContext:
    return RequestContext("req-1", operation, PRINCIPAL, "127.0.0.1", "pytest")


class Node:
    """One region wired as cluster/compose.py wires it: its outbox is the region's change log."""

    def __init__(self, name: str, store: Store | None = None, clock: FixedClock | None = None,
                 creating_delay: float = 0) -> None:
        self.name = name
        self.store: Store = store if store is not None else MemoryStore()
        self.clock = clock or FixedClock()
        self.root = RootKey.from_bytes(bytes([REGIONS.index(name) + 1]) * 32)  # each region its own root key
        self.outbox = Outbox(name, self.store, TRANSPORT, self.clock)
        self.region = Region(RegionIdentity(name, ACCOUNT), self.store, self.root, self.clock,
                             change_log=self.outbox, cluster_regions=REGIONS)
        self.cursors = Cursors(self.store)
        self.woken: list[float] = []
        self.applier = Applier(self.region, self.cursors, TRANSPORT, creating_delay, self.woken.append)

    def records(self, after: int = 0) -> list[tuple[int, bytes]]:
        return self.outbox.read_after(after, 1000)

    def pull(self, peer: Node) -> int:
        """Apply every record of ``peer``'s outbox beyond this region's cursor; how many were applied."""
        applied = 0
        for seq, raw in peer.records(self.cursors.get(peer.name)):
            applied += self.applier.apply(peer.name, seq, raw)
        return applied

    def key(self, key_id: str) -> KeyRecord:
        return self.region.keys[key_id]


def sync(nodes: list[Node], rounds: int = 4) -> None:
    for _ in range(rounds):
        for consumer in nodes:
            for producer in nodes:
                if producer is not consumer:
                    consumer.pull(producer)


def new_mrk(node: Node) -> str:
    out = create_key(node.region, {"MultiRegion": True, "Description": "primary"}, ctx("CreateKey"))
    key_id = out["KeyMetadata"]["KeyId"]
    assert isinstance(key_id, str) and key_id.startswith("mrk-")
    return key_id


def replicate(node: Node, key_id: str, target: str, **params: Any) -> None:
    replicate_key(node.region, {"KeyId": key_id, "ReplicaRegion": target, **params}, ctx("ReplicateKey"))


def secrets_of(key: KeyRecord) -> list[tuple[bytes, bytes]]:
    return [(m.material_id, m.material.secret.reveal()) for m in key.materials]


def cursor_rows(store: Store) -> dict[str, bytes]:
    return dict(store.scan("cursors"))


# -- replicas appear with the primary's material ---------------------------------------------------------


def test_replica_gets_the_same_material() -> None:
    a, b = Node(A), Node(B)
    key_id = new_mrk(a)
    assert a.records() == []  # a key without replicas has no one to tell
    replicate(a, key_id, B, Description="replica", Tags=[{"TagKey": "team", "TagValue": "b"}])
    assert len(a.records()) == 1
    assert b.pull(a) == 1 and b.applier.applied == 1
    primary, replica = a.key(key_id), b.key(key_id)
    assert replica.region == B and replica.state is KeyState.ENABLED
    assert replica.description == "replica" and replica.tags == (("team", "b"),)
    assert secrets_of(replica) == secrets_of(primary)
    assert replica.current_material_id == primary.current_material_id
    assert replica.mrk == primary.mrk and replica.mrk is not None and replica.mrk.replica_regions == (B,)
    assert b.cursors.get(A) == 1
    # B's root key differs from A's: the material was re-wrapped for B's own store, and B reloads it.
    reloaded = Region(RegionIdentity(B, ACCOUNT), b.store, b.root, b.clock)
    assert secrets_of(reloaded.keys[key_id]) == secrets_of(primary)


def test_replica_passes_through_creating_and_asks_to_be_woken() -> None:
    a, b = Node(A), Node(B, creating_delay=5.0)
    key_id = new_mrk(a)
    replicate(a, key_id, B)
    b.pull(a)
    replica = b.key(key_id)
    assert replica.state is KeyState.CREATING and replica.ready_at == b.clock.now() + 5.0
    assert b.woken == [5.0]
    b.clock.advance(5.0)
    Scheduler(b.region).run_due()
    assert b.key(key_id).state is KeyState.ENABLED


def test_region_outside_the_topology_records_only_its_cursor() -> None:
    a, b, c = Node(A), Node(B), Node(C)
    key_id = new_mrk(a)
    replicate(a, key_id, B)
    assert c.pull(a) == 1
    assert key_id not in c.region.keys and c.cursors.get(A) == 1
    assert c.records() == []
    assert b.pull(a) == 1


# -- exactly once ----------------------------------------------------------------------------------------


def test_redelivery_is_a_no_op() -> None:
    a, b = Node(A), Node(B)
    key_id = new_mrk(a)
    replicate(a, key_id, B)
    enable_key_rotation(a.region, {"KeyId": key_id}, ctx())
    b.pull(a)
    assert b.applier.applied == 2
    state, commits = b.key(key_id), b.store.commits  # type: ignore[attr-defined]
    for seq, raw in a.records():
        assert b.applier.apply(A, seq, raw) is False
    assert b.pull(a) == 0
    assert b.applier.applied == 2 and b.key(key_id) == state
    assert b.store.commits == commits  # type: ignore[attr-defined]
    assert b.records() == []


def test_newer_snapshot_is_not_undone_by_an_older_one() -> None:
    a, b = Node(A), Node(B)
    key_id = new_mrk(a)
    replicate(a, key_id, B)  # seq 1: version 2, creates B's replica
    enable_key_rotation(a.region, {"KeyId": key_id, "RotationPeriodInDays": 90}, ctx())  # seq 2: version 3
    rotate_key_on_demand(a.region, {"KeyId": key_id}, ctx())  # seq 3: version 4, new material pending
    (s1, r1), (s2, r2), (s3, r3) = a.records()
    assert b.applier.apply(A, s1, r1)
    assert b.applier.apply(A, s3, r3)  # the cursor jumps over 2
    newest = b.key(key_id)
    assert newest.mrk is not None and newest.mrk.version == 4 and len(newest.materials) == 2
    # Record 2 arrives late through another path (its own cursor): it applies, but changes nothing.
    late = Applier(b.region, Cursors(b.store), TRANSPORT, 0)
    assert late.apply(f"{A}/replay", s2, r2)
    assert b.key(key_id) == newest
    assert b.key(key_id).rotation.period_days == 90  # the newer snapshot's settings stay
    # And the ordinary cursor refuses it outright.
    assert b.applier.apply(A, s2, r2) is False


def test_failed_apply_changes_nothing_and_the_retry_applies_once() -> None:
    a, b = Node(A), Node(B)
    key_id = new_mrk(a)
    replicate(a, key_id, B)
    (seq, raw), = a.records()
    b.store.fail_commits = 1  # type: ignore[attr-defined]
    with pytest.raises(StoreError):
        b.applier.apply(A, seq, raw)
    assert b.region.keys == {} and b.store.tables["keys"] == {}  # type: ignore[attr-defined]
    assert b.cursors.get(A) == 0 and cursor_rows(b.store) == {}
    assert b.applier.applied == 0
    assert b.applier.apply(A, seq, raw) is True
    assert b.applier.applied == 1 and key_id in b.region.keys and b.cursors.get(A) == seq
    assert b.applier.apply(A, seq, raw) is False and b.applier.applied == 1


def test_failed_apply_sends_no_acknowledgement() -> None:
    a, b, c = Node(A), Node(B), Node(C)
    key_id = new_mrk(a)
    replicate(a, key_id, B)
    replicate(a, key_id, C)
    sync([a, b, c])
    rotate_key_on_demand(a.region, {"KeyId": key_id}, ctx())
    before = b.key(key_id)
    b.store.fail_commits = 1  # type: ignore[attr-defined]
    with pytest.raises(StoreError):
        b.pull(a)
    assert b.key(key_id) == before and b.records() == [] and b.outbox.head == 0
    assert b.pull(a) == 1
    acks = [TRANSPORT.decode(raw)[0] for _, raw in b.records()]
    assert len(acks) == 1 and isinstance(acks[0], HoldsMaterial) and acks[0].region == B


def test_cursor_is_persisted_with_the_change(tmp_path: Path) -> None:
    a = Node(A)
    path = tmp_path / "b" / "kms.db"
    b = Node(B, declared(SqliteStore(path)))
    key_id = new_mrk(a)
    replicate(a, key_id, B)
    enable_key_rotation(a.region, {"KeyId": key_id}, ctx())
    assert b.pull(a) == 2
    applied = b.key(key_id)
    b.store.close()
    store = declared(SqliteStore(path))
    try:
        again = Node(B, store)
        assert again.cursors.get(A) == 2
        assert again.key(key_id).mrk == applied.mrk
        assert secrets_of(again.key(key_id)) == secrets_of(applied)
        assert again.pull(a) == 0  # nothing is applied twice after a restart
    finally:
        store.close()


def test_cursor_and_change_are_one_commit() -> None:
    a, b = Node(A), Node(B)
    key_id = new_mrk(a)
    replicate(a, key_id, B)
    before = b.store.commits  # type: ignore[attr-defined]
    b.pull(a)
    assert b.store.commits == before + 1  # type: ignore[attr-defined]
    assert key_id in b.store.tables["keys"] and A in cursor_rows(b.store)  # type: ignore[attr-defined]


def test_malformed_record_raises_value_error_and_applies_nothing() -> None:
    b = Node(B)
    other_cluster = CommandCodec(RootKey.from_bytes(b"\x01" * 32))
    a = Node(A)
    key_id = new_mrk(a)
    replicate(a, key_id, B)
    (seq, raw), = a.records()
    snap = TRANSPORT.decode(raw)[0]
    for bad in (b"\x00garbage", other_cluster.encode(snap, A, 1.0)):
        with pytest.raises(ValueError):
            b.applier.apply(A, seq, bad)
    assert b.region.keys == {} and b.cursors.get(A) == 0 and b.applier.applied == 0


# -- two-phase rotation across three regions ------------------------------------------------------------


@pytest.fixture
def three() -> Iterator[tuple[Node, Node, Node, str]]:
    a, b, c = Node(A), Node(B), Node(C)
    key_id = new_mrk(a)
    replicate(a, key_id, B)
    replicate(a, key_id, C)
    sync([a, b, c])
    assert all(key_id in n.region.keys for n in (a, b, c))
    yield a, b, c, key_id


def test_rotation_becomes_current_only_when_every_replica_holds_it(three: tuple[Node, Node, Node, str]) -> None:
    a, b, c, key_id = three
    old = a.key(key_id).current_material_id
    rotate_key_on_demand(a.region, {"KeyId": key_id}, ctx())
    primary = a.key(key_id)
    assert primary.mrk is not None and primary.mrk.pending_material_id is not None
    pending = primary.mrk.pending_material_id
    assert primary.current_material_id == old

    # B receives it and acknowledges; A hears B: still pending, C has not answered.
    b.pull(a)
    assert b.key(key_id).material(pending) is not None and b.key(key_id).current_material_id == old
    a.pull(b)
    after_b = a.key(key_id)
    assert after_b.mrk is not None and after_b.mrk.holders == (B,)
    assert after_b.mrk.pending_material_id == pending and after_b.current_material_id == old

    # C receives it and acknowledges; A hears C: the new material becomes current.
    c.pull(a)
    assert c.key(key_id).current_material_id == old
    a.pull(c)
    flipped = a.key(key_id)
    assert flipped.current_material_id == pending
    assert flipped.mrk is not None and flipped.mrk.pending_material_id is None and flipped.mrk.holders == ()

    # A's flip reaches B and C: every region agrees.
    b.pull(a)
    c.pull(a)
    for node in (a, b, c):
        key = node.key(key_id)
        assert key.current_material_id == pending
        assert secrets_of(key) == secrets_of(flipped)
        assert key.mrk == flipped.mrk
    # Late acknowledgements (C's duplicate from the intermediate snapshot) change nothing.
    sync([a, b, c])
    assert a.key(key_id) == flipped


def test_rotation_waits_for_a_partitioned_replica(three: tuple[Node, Node, Node, str]) -> None:
    a, b, c, key_id = three
    old = a.key(key_id).current_material_id
    rotate_key_on_demand(a.region, {"KeyId": key_id}, ctx())
    sync([a, b])  # C is cut off
    assert a.key(key_id).current_material_id == old
    sync([a, b, c])
    new = a.key(key_id).current_material_id
    assert new != old
    assert {n.key(key_id).current_material_id for n in (a, b, c)} == {new}


def test_hand_off_moves_authority_across_regions(three: tuple[Node, Node, Node, str]) -> None:
    a, b, c, key_id = three
    update_primary_region(a.region, {"KeyId": key_id, "PrimaryRegion": B}, ctx())
    assert a.key(key_id).state is KeyState.UPDATING
    sync([a, b, c])
    for node in (a, b, c):
        key = node.key(key_id)
        assert key.mrk is not None and key.mrk.primary_region == B and key.mrk.epoch == 2
        assert set(key.mrk.replica_regions) == {A, C}
    assert a.key(key_id).state is KeyState.ENABLED
    assert len({n.key(key_id).mrk for n in (a, b, c)}) == 1
    # The new primary rotates; the old primary is now a replica and acknowledges.
    rotate_key_on_demand(b.region, {"KeyId": key_id}, ctx())
    sync([a, b, c])
    currents = {n.key(key_id).current_material_id for n in (a, b, c)}
    assert len(currents) == 1 and len(a.key(key_id).materials) == 2


def test_replica_deletion_leaves_the_topology(three: tuple[Node, Node, Node, str]) -> None:
    a, b, c, key_id = three
    schedule_key_deletion(c.region, {"KeyId": key_id, "PendingWindowInDays": 7}, ctx())
    c.clock.advance(7 * 86400 + 1)
    Scheduler(c.region).run_due()
    assert key_id not in c.region.keys
    assert [type(TRANSPORT.decode(raw)[0]) for _, raw in c.records()] == [ReplicaGone]
    sync([a, b, c])
    for node in (a, b):
        key = node.key(key_id)
        assert key.mrk is not None and key.mrk.replica_regions == (B,)
    assert key_id not in c.region.keys  # later snapshots do not bring it back
    records = [TRANSPORT.decode(raw)[0] for _, raw in a.records()]
    assert isinstance(records[-1], KeySnapshot)


def test_hand_off_during_a_rotation_still_completes_it(three: tuple[Node, Node, Node, str]) -> None:
    a, b, c, key_id = three
    old = a.key(key_id).current_material_id
    rotate_key_on_demand(a.region, {"KeyId": key_id}, ctx())
    b.pull(a)
    a.pull(b)  # A has B's acknowledgement (epoch 1); C has not heard of the rotation yet
    update_primary_region(a.region, {"KeyId": key_id, "PrimaryRegion": B}, ctx())
    # C acknowledges under the old epoch first: the new primary must not lose the rotation over it.
    c.pull(a)
    b.pull(c)
    sync([a, b, c], rounds=6)
    keys = [n.key(key_id) for n in (a, b, c)]
    assert {k.current_material_id for k in keys} != {old}
    assert len({k.current_material_id for k in keys}) == 1
    assert all(k.mrk is not None and k.mrk.pending_material_id is None for k in keys)
    assert len({k.mrk for k in keys}) == 1
    assert keys[0].state is KeyState.ENABLED and keys[1].mrk is not None and keys[1].mrk.primary_region == B


def test_acknowledgement_reaching_a_replica_is_ignored(three: tuple[Node, Node, Node, str]) -> None:
    a, b, c, key_id = three
    rotate_key_on_demand(a.region, {"KeyId": key_id}, ctx())
    c.pull(a)
    before = b.key(key_id)
    assert b.pull(c) == 1  # C's HOLDS: B is not the primary, only its cursor moves
    assert b.key(key_id) == before and b.records() == []
