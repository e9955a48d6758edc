"""Multi-Region rules as pure functions: snapshots apply once, in any order; rotation is two-phase; hand-off is
fenced by epoch."""

from __future__ import annotations

from dataclasses import replace

from trent.cluster.replication.applier import Applier
from trent.cluster.replication.commands import CommandCodec
from trent.cluster.replication.log import Cursors, Outbox
from trent.node.auth.principals import Principal
from trent.node.clock import FixedClock
from trent.node.crypto.handles import new_material
from trent.node.crypto.rootkey import RootKey
from trent.node.model.key import KeyRecord, MaterialVersion
from trent.node.model.mrk import HoldsMaterial, KeySnapshot, MultiRegionState, ReplicaGone, ReplicaInit
from trent.node.model.mrk_rules import (
    apply_holds,
    apply_replica_gone,
    apply_snapshot,
    awaits_creation,
    bump,
    snapshot_of,
    start_rotation,
)
from trent.node.model.states import KeyState
from trent.node.ops.keys import create_key, schedule_key_deletion
from trent.node.ops.multi_region import replicate_key, update_primary_region
from trent.node.ops.registry import RequestContext
from trent.node.ops.rotation import rotate_key_on_demand
from trent.node.scheduler import Scheduler
from trent.node.service import Region, RegionIdentity
from trent.node.store.memory import MemoryStore

KEY_ID = "mrk-" + "ab" * 16
ACCOUNT = "111122223333"
A, B, C = "us-east-1", "eu-west-1", "ap-northeast-2"


def primary(replicas: tuple[str, ...] = ()) -> KeyRecord:
    version = MaterialVersion(new_material(KEY_ID), 1.0)
    return KeyRecord(key_id=KEY_ID, region=A, account=ACCOUNT, created=1.0, state=KeyState.ENABLED,
                     materials=(version,), current_material_id=version.material_id, multi_region=True,
                     mrk=MultiRegionState(A, replicas, epoch=1, version=1))


def init() -> dict[str, ReplicaInit]:
    return {B: ReplicaInit("replica", "{}", (("team", "b"),), 5.0)}


def test_snapshot_creates_replica_with_its_own_properties() -> None:
    key = bump(primary(), replica_regions=(B,))
    replica, out = apply_snapshot(B, ACCOUNT, None, snapshot_of(key, init()), 10.0, creating_delay=0)
    assert replica is not None and out == []
    assert replica.region == B and replica.state is KeyState.ENABLED
    assert replica.description == "replica" and replica.tags == (("team", "b"),)
    assert replica.current_material_id == key.current_material_id
    assert replica.materials[0].material.secret == key.materials[0].material.secret


def test_replica_passes_through_creating_when_delayed() -> None:
    key = bump(primary(), replica_regions=(B,))
    replica, _ = apply_snapshot(B, ACCOUNT, None, snapshot_of(key, init()), 10.0, creating_delay=3)
    assert replica is not None
    assert replica.state is KeyState.CREATING and replica.ready_at == 13.0 and replica.resume_state is KeyState.ENABLED


def test_redelivery_and_reordering_are_harmless() -> None:
    v2 = bump(primary(), replica_regions=(B,))
    v3 = bump(v2, replica_regions=(B, C))
    replica, _ = apply_snapshot(B, ACCOUNT, None, snapshot_of(v3, init()), 10.0, 0)
    assert replica is not None
    # The older snapshot arrives late, then the newest again: nothing changes.
    assert apply_snapshot(B, ACCOUNT, replica, snapshot_of(v2, init()), 11.0, 0) == (None, [])
    assert apply_snapshot(B, ACCOUNT, replica, snapshot_of(v3, init()), 11.0, 0) == (None, [])


def test_region_outside_the_topology_ignores_snapshots() -> None:
    key = bump(primary(), replica_regions=(B,))
    assert apply_snapshot(C, ACCOUNT, None, snapshot_of(key), 10.0, 0) == (None, [])


def test_rotation_becomes_current_only_when_every_replica_holds_it() -> None:
    key = bump(primary(), replica_regions=(B, C))
    old_current = key.current_material_id
    rotating = start_rotation(key, 20.0, "ON_DEMAND")
    assert rotating.mrk is not None and rotating.mrk.pending_material_id is not None
    assert rotating.current_material_id == old_current
    pending = rotating.mrk.pending_material_id
    # Each replica stores the pending material and answers with HOLDS.
    replica_b, out_b = apply_snapshot(B, ACCOUNT, None, snapshot_of(rotating, init()), 21.0, 0)
    assert replica_b is not None and replica_b.material(pending) is not None
    assert replica_b.current_material_id == old_current
    assert out_b == [HoldsMaterial(KEY_ID, B, pending, 1)]
    after_b = apply_holds(A, rotating, HoldsMaterial(KEY_ID, B, pending, 1), 22.0)
    assert after_b is not None and after_b.current_material_id == old_current  # C has not answered yet
    assert apply_holds(A, after_b, HoldsMaterial(KEY_ID, B, pending, 1), 22.0) is None  # duplicate ack
    done = apply_holds(A, after_b, HoldsMaterial(KEY_ID, C, pending, 1), 23.0)
    assert done is not None and done.current_material_id == pending
    assert done.mrk is not None and done.mrk.pending_material_id is None
    # The replica learns the flip from the next snapshot.
    flipped, out = apply_snapshot(B, ACCOUNT, replica_b, snapshot_of(done), 24.0, 0)
    assert flipped is not None and flipped.current_material_id == pending and out == []


def test_rotation_without_replicas_is_immediate() -> None:
    rotated = start_rotation(primary(), 5.0, "AUTOMATIC")
    assert rotated.mrk is not None and rotated.mrk.pending_material_id is None
    assert rotated.current_material_id == rotated.materials[-1].material_id


def test_stale_epoch_ack_is_ignored() -> None:
    rotating = start_rotation(bump(primary(), replica_regions=(B,)), 5.0, "ON_DEMAND")
    assert rotating.mrk is not None
    stale = HoldsMaterial(KEY_ID, B, rotating.mrk.pending_material_id or b"", epoch=0)
    assert apply_holds(A, rotating, stale, 6.0) is None


def test_hand_off_new_primary_takes_authority_and_old_primary_resumes() -> None:
    key = bump(primary(), replica_regions=(B,))
    replica, _ = apply_snapshot(B, ACCOUNT, None, snapshot_of(key, init()), 10.0, 0)
    assert replica is not None and key.mrk is not None
    handed = replace(key.mrk, primary_region=B, epoch=2, version=key.mrk.version + 1, replica_regions=(A,))
    old = key.with_changes(mrk=handed, state=KeyState.UPDATING, resume_state=KeyState.ENABLED)
    new_primary, out = apply_snapshot(B, ACCOUNT, replica, snapshot_of(old), 11.0, 0)
    assert new_primary is not None and new_primary.mrk is not None
    assert new_primary.mrk.primary_region == B and new_primary.mrk.stamp > handed.stamp
    assert len(out) == 1 and isinstance(out[0], KeySnapshot) and out[0].origin_region == B
    resumed, _ = apply_snapshot(A, ACCOUNT, old, out[0], 12.0, 0)
    assert resumed is not None and resumed.state is KeyState.ENABLED and resumed.resume_state is None
    # The fenced old primary can no longer change shared state.
    assert apply_holds(A, resumed, HoldsMaterial(KEY_ID, B, b"x" * 32, 2), 13.0) is None


def test_last_replica_gone_starts_primary_deletion_window() -> None:
    key = bump(primary(), replica_regions=(B,)).with_changes(
        state=KeyState.PENDING_REPLICA_DELETION, pending_window_days=7)
    gone = apply_replica_gone(A, key, ReplicaGone(KEY_ID, B), 100.0)
    assert gone is not None and gone.state is KeyState.PENDING_DELETION
    assert gone.deletion_date == 100.0 + 7 * 86400
    assert gone.mrk is not None and gone.mrk.replica_regions == ()


def test_commands_round_trip_with_material_wrapped() -> None:
    codec = CommandCodec(RootKey.from_bytes(b"\x07" * 32))
    key = start_rotation(bump(primary(), replica_regions=(B,)), 5.0, "ON_DEMAND")
    snap = snapshot_of(key, init())
    raw = codec.encode(snap, A, 42.0)
    for version in key.materials:  # no material in clear on the wire
        assert version.material.secret.reveal() not in raw
    decoded, origin, at = codec.decode(raw)
    assert (origin, at) == (A, 42.0)
    assert isinstance(decoded, KeySnapshot) and decoded.state == snap.state
    assert [m.material.secret for m in decoded.materials] == [m.material.secret for m in snap.materials]
    assert decoded.replica_init == snap.replica_init
    for cmd in (HoldsMaterial(KEY_ID, B, b"m" * 32, 3), ReplicaGone(KEY_ID, C)):
        assert codec.decode(codec.encode(cmd, B, 1.0))[0] == cmd


def handed_to(key: KeyRecord, target: str) -> KeyRecord:
    """The old primary's record right after UpdatePrimaryRegion(target) (what update_primary_region commits)."""
    assert key.mrk is not None
    st = key.mrk
    handed = replace(st, primary_region=target, epoch=st.epoch + 1, version=st.version + 1, holders=(),
                     replica_regions=(*(r for r in st.replica_regions if r != target), key.region))
    return key.with_changes(mrk=handed, state=KeyState.UPDATING, resume_state=key.state)


def test_replica_keeps_the_creation_date_replicate_key_reported() -> None:
    key = bump(primary(), replica_regions=(B,))
    replica, _ = apply_snapshot(B, ACCOUNT, None, snapshot_of(key, init()), 10.0, 0)
    assert replica is not None and replica.created == 5.0


def test_hand_off_to_a_disabled_replica_is_declined() -> None:
    key = bump(primary(), replica_regions=(B, C))
    replica, _ = apply_snapshot(B, ACCOUNT, None, snapshot_of(key, init()), 10.0, 0)
    assert replica is not None
    disabled = replica.with_changes(state=KeyState.DISABLED)
    old = handed_to(key, B)
    declined, out = apply_snapshot(B, ACCOUNT, disabled, snapshot_of(old), 11.0, 0)
    assert declined is not None and declined.state is KeyState.DISABLED
    assert declined.mrk is not None and declined.mrk.primary_region == A
    assert set(declined.mrk.replica_regions) == {B, C}
    assert len(out) == 1 and isinstance(out[0], KeySnapshot) and out[0].origin_region == B
    assert old.mrk is not None and out[0].state.stamp > old.mrk.stamp
    # The old primary takes authority back, in the newer epoch, and leaves Updating.
    back, out_a = apply_snapshot(A, ACCOUNT, old, out[0], 12.0, 0)
    assert back is not None and back.state is KeyState.ENABLED and back.resume_state is None
    assert back.mrk is not None and back.mrk.primary_region == A and back.mrk.stamp > out[0].state.stamp
    assert len(out_a) == 1 and isinstance(out_a[0], KeySnapshot) and out_a[0].origin_region == A
    # Everyone converges on the old primary's snapshot.
    final_b, _ = apply_snapshot(B, ACCOUNT, declined, out_a[0], 13.0, 0)
    assert final_b is not None and final_b.mrk == back.mrk and final_b.state is KeyState.DISABLED


def test_hand_off_to_a_replica_pending_deletion_is_declined() -> None:
    key = bump(primary(), replica_regions=(B,))
    replica, _ = apply_snapshot(B, ACCOUNT, None, snapshot_of(key, init()), 10.0, 0)
    assert replica is not None
    doomed = replica.with_changes(state=KeyState.PENDING_DELETION, deletion_date=99.0)
    declined, out = apply_snapshot(B, ACCOUNT, doomed, snapshot_of(handed_to(key, B)), 11.0, 0)
    assert declined is not None and declined.mrk is not None and declined.mrk.primary_region == A
    assert declined.state is KeyState.PENDING_DELETION
    assert isinstance(out[0], KeySnapshot) and out[0].state.primary_region == A


def test_hand_off_to_a_deleted_replica_is_declined_and_drops_it() -> None:
    key = bump(primary(), replica_regions=(B, C))
    record, out = apply_snapshot(B, ACCOUNT, None, snapshot_of(handed_to(key, B)), 11.0, 0)
    assert record is None and len(out) == 1 and isinstance(out[0], KeySnapshot)
    assert out[0].state.primary_region == A and out[0].state.replica_regions == (C,)


def test_hand_off_to_a_creating_replica_is_accepted() -> None:
    key = bump(primary(), replica_regions=(B,))
    replica, _ = apply_snapshot(B, ACCOUNT, None, snapshot_of(key, init()), 10.0, creating_delay=5)
    assert replica is not None and replica.state is KeyState.CREATING
    taken, out = apply_snapshot(B, ACCOUNT, replica, snapshot_of(handed_to(key, B)), 11.0, 5)
    assert taken is not None and taken.mrk is not None and taken.mrk.primary_region == B
    assert taken.state is KeyState.CREATING and isinstance(out[0], KeySnapshot) and out[0].origin_region == B


def test_a_hand_off_handed_back_restores_the_updating_region() -> None:
    key = bump(primary(), replica_regions=(B,))
    replica, _ = apply_snapshot(B, ACCOUNT, None, snapshot_of(key, init()), 10.0, 0)
    assert replica is not None
    old = handed_to(key, B)
    new_primary, _ = apply_snapshot(B, ACCOUNT, replica, snapshot_of(old), 11.0, 0)
    assert new_primary is not None
    # B hands straight back to A before A has heard B took over: A is still Updating when named primary again.
    again = handed_to(new_primary, A)
    taken, _ = apply_snapshot(A, ACCOUNT, old, snapshot_of(again), 12.0, 0)
    assert taken is not None and taken.state is KeyState.ENABLED and taken.resume_state is None
    assert taken.mrk is not None and taken.mrk.primary_region == A


def test_awaits_creation_only_for_a_listed_replica_without_its_init() -> None:
    key = bump(primary(), replica_regions=(B,))
    assert awaits_creation(B, None, snapshot_of(key)) is True
    assert awaits_creation(B, None, snapshot_of(key, init())) is False  # this one creates it
    assert awaits_creation(C, None, snapshot_of(key)) is False  # not related
    replica, _ = apply_snapshot(B, ACCOUNT, None, snapshot_of(key, init()), 10.0, 0)
    assert awaits_creation(B, replica, snapshot_of(key)) is False  # exists already


# -- records that overtake one they depend on (through another region's log) -------------------------------

TRANSPORT = CommandCodec(RootKey.from_bytes(b"\x33" * 32))
CTX = RequestContext("req", "Test", Principal("test", "test", f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT),
                     "127.0.0.1", "pytest")


class Node:
    """One region with its outbox and applier, as cluster/compose.py wires them; pulls happen only when told."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.store = MemoryStore()
        self.clock = FixedClock()
        self.outbox = Outbox(name, self.store, TRANSPORT, self.clock)
        self.region = Region(RegionIdentity(name, ACCOUNT), self.store, RootKey.from_bytes(name.encode()[:1] * 32),
                             self.clock, change_log=self.outbox, cluster_regions=(A, B, C))
        self.cursors = Cursors(self.store)
        self.applier = Applier(self.region, self.cursors, TRANSPORT, 0)

    def pull(self, *peers: Node) -> None:
        for peer in peers:
            for seq, raw in peer.outbox.read_after(self.cursors.get(peer.name), 1000):
                self.applier.apply(peer.name, seq, raw)

    def key(self, key_id: str) -> KeyRecord:
        return self.region.keys[key_id]


def sync(*nodes: Node) -> None:
    for _ in range(5):
        for node in nodes:
            node.pull(*(n for n in nodes if n is not node))


def mrk_in(node: Node) -> str:
    key_id: str = create_key(node.region, {"MultiRegion": True}, CTX)["KeyMetadata"]["KeyId"]
    return key_id


def test_snapshot_for_a_replica_not_created_yet_is_applied_once_it_exists() -> None:
    a, b, c = Node(A), Node(B), Node(C)
    key_id = mrk_in(a)
    replicate_key(a.region, {"KeyId": key_id, "ReplicaRegion": B}, CTX)
    sync(a, b)
    replicate_key(a.region, {"KeyId": key_id, "ReplicaRegion": C, "Description": "late"}, CTX)  # C hears later
    update_primary_region(a.region, {"KeyId": key_id, "PrimaryRegion": B}, CTX)
    sync(a, b)
    rotate_key_on_demand(b.region, {"KeyId": key_id}, CTX)
    sync(a, b)
    c.pull(b)  # B's snapshots (new primary, pending rotation) overtake the one that creates C's replica
    assert key_id not in c.region.keys
    c.pull(a)  # created, and the newer snapshot it was waiting for applied at once
    assert c.key(key_id).description == "late"
    assert c.key(key_id).mrk is not None and c.key(key_id).mrk.primary_region == B  # type: ignore[union-attr]
    sync(a, b, c)
    keys = [n.key(key_id) for n in (a, b, c)]
    assert len({k.mrk for k in keys}) == 1 and keys[1].mrk is not None and keys[1].mrk.pending_material_id is None
    assert len({k.current_material_id for k in keys}) == 1 and len(keys[2].materials) == 2
    assert not [i for i, _ in c.store.scan("meta")]  # nothing left waiting


def test_deletion_notice_that_overtakes_a_hand_off_is_applied_by_the_new_primary() -> None:
    a, b, c = Node(A), Node(B), Node(C)
    key_id = mrk_in(a)
    for target in (B, C):
        replicate_key(a.region, {"KeyId": key_id, "ReplicaRegion": target}, CTX)
    sync(a, b, c)
    update_primary_region(a.region, {"KeyId": key_id, "PrimaryRegion": B}, CTX)
    schedule_key_deletion(c.region, {"KeyId": key_id, "PendingWindowInDays": 7}, CTX)
    c.clock.advance(8 * 86400)
    Scheduler(c.region).run_due()
    b.pull(c)  # B is not the primary yet: it keeps the notice
    a.pull(c)  # nor is A any longer
    b.pull(a)  # B takes over with C still listed, and applies the notice it kept
    assert b.key(key_id).mrk is not None and b.key(key_id).mrk.replica_regions == (A,)  # type: ignore[union-attr]
    sync(a, b, c)
    assert a.key(key_id).mrk == b.key(key_id).mrk and a.key(key_id).state is KeyState.ENABLED
    assert key_id not in c.region.keys
    for node in (a, b, c):
        assert not [i for i, _ in node.store.scan("meta") if i.startswith("mrk-")]


def test_new_primary_is_updating_for_the_replica_delay() -> None:
    key = bump(primary(), replica_regions=(B,))
    replica, _ = apply_snapshot(B, ACCOUNT, None, snapshot_of(key, init()), 10.0, creating_delay=0)
    assert replica is not None
    taken, out = apply_snapshot(B, ACCOUNT, replica, snapshot_of(handed_to(key, B)), 11.0, creating_delay=2)
    assert taken is not None and taken.state is KeyState.UPDATING
    assert taken.resume_state is KeyState.ENABLED and taken.ready_at == 13.0
    assert isinstance(out[0], KeySnapshot) and out[0].state.primary_region == B
    # Without a delay it is Enabled at once.
    now_enabled, _ = apply_snapshot(B, ACCOUNT, replica, snapshot_of(handed_to(key, B)), 11.0, creating_delay=0)
    assert now_enabled is not None and now_enabled.state is KeyState.ENABLED


def _updating_new_primary(b: Node, replica_regions: tuple[str, ...]) -> None:
    """B has just become the primary of KEY_ID and is Updating for 5 s more, Enabled after."""
    key = bump(primary(), replica_regions=replica_regions).with_changes(region=B)
    updating = key.with_changes(mrk=replace(key.mrk, primary_region=B), state=KeyState.UPDATING,  # type: ignore[arg-type]
                                resume_state=KeyState.ENABLED, ready_at=b.clock.now() + 5)
    b.region.commit(keys=[updating])


def test_scheduler_ends_the_new_primary_updating_period() -> None:
    b = Node(B)
    _updating_new_primary(b, (B,))
    assert Scheduler(b.region).run_due() == 0
    b.clock.advance(5)
    assert Scheduler(b.region).run_due() == 1
    done = b.key(KEY_ID)
    assert done.state is KeyState.ENABLED and done.resume_state is None and done.ready_at is None


def test_hand_off_from_a_primary_still_updating_resumes_its_earlier_state() -> None:
    b = Node(B)
    _updating_new_primary(b, (A,))
    update_primary_region(b.region, {"KeyId": KEY_ID, "PrimaryRegion": A}, CTX)
    handed = b.key(KEY_ID)
    assert handed.state is KeyState.UPDATING and handed.resume_state is KeyState.ENABLED and handed.ready_at is None
