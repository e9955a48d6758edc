"""The outbox: records staged in the change's own batch, numbered, durable, readable after any position, and a
long-poll that wakes on news; the cursors persisted with what they count."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.unit.test_store import declared
from trent.cluster.replication.commands import CommandCodec
from trent.cluster.replication.log import Cursors, Outbox, seq_id
from trent.node.clock import FixedClock
from trent.node.crypto.handles import new_material
from trent.node.crypto.rootkey import RootKey
from trent.node.model.key import KeyRecord, MaterialVersion
from trent.node.model.mrk import HoldsMaterial, MultiRegionState, ReplicaGone
from trent.node.model.mrk_rules import snapshot_of
from trent.node.model.states import KeyState
from trent.node.service import Region, RegionIdentity
from trent.node.store.base import Batch, Store, StoreError
from trent.node.store.memory import MemoryStore
from trent.node.store.sqlite import SqliteStore

A, B = "us-east-1", "eu-west-1"
ACCOUNT = "111122223333"
CODEC = CommandCodec(RootKey.from_bytes(b"\x11" * 32))
ROOT = RootKey.from_bytes(b"\x22" * 32)


def gone(n: int) -> ReplicaGone:
    return ReplicaGone(f"mrk-{n:032x}", B)


def mrk(n: int = 1) -> KeyRecord:
    key_id = f"mrk-{n:032x}"
    version = MaterialVersion(new_material(key_id), 1.0)
    return KeyRecord(key_id=key_id, region=A, account=ACCOUNT, created=1.0, state=KeyState.ENABLED,
                     materials=(version,), current_material_id=version.material_id, multi_region=True,
                     mrk=MultiRegionState(A, (B,), epoch=1, version=2))


def region_over(store: Store, clock: FixedClock | None = None) -> tuple[Region, Outbox]:
    clock = clock or FixedClock()
    outbox = Outbox(A, store, CODEC, clock)
    region = Region(RegionIdentity(A, ACCOUNT), store, ROOT, clock, change_log=outbox, cluster_regions=(A, B))
    return region, outbox


def decoded(outbox: Outbox, after: int = 0) -> list[tuple[int, object]]:
    return [(seq, CODEC.decode(raw)[0]) for seq, raw in outbox.read_after(after, 100)]


# -- staging and numbering -------------------------------------------------------------------------------


def test_append_only_stages_into_the_batch() -> None:
    store = MemoryStore()
    _, outbox = region_over(store)
    batch = Batch()
    outbox.append(batch, gone(1))
    assert outbox.read_after(0, 10) == [] and outbox.head == 0
    assert list(batch.puts["outbox"]) == [seq_id(1)]
    assert store.commits == 0
    store.commit(batch)
    outbox.committed()
    assert outbox.head == 1 and decoded(outbox) == [(1, gone(1))]


def test_region_commit_writes_change_and_records_together() -> None:
    store = MemoryStore()
    region, outbox = region_over(store)
    key = mrk()
    region.commit(keys=[key], commands=[snapshot_of(key), gone(1)])
    assert store.commits == 1  # one transaction for the key and both records
    assert region.keys[key.key_id] == key
    seqs = [seq for seq, _ in decoded(outbox)]
    assert seqs == [1, 2] and outbox.head == 2
    _, origin, at = CODEC.decode(outbox.read_after(0, 1)[0][1])
    assert origin == A and at == region.now()


def test_sequence_numbers_increase_in_commit_order() -> None:
    region, outbox = region_over(MemoryStore())
    for n in range(1, 6):
        region.commit(commands=[gone(n)])
        assert outbox.head == n
    assert decoded(outbox) == [(n, gone(n)) for n in range(1, 6)]


def test_commit_without_commands_does_not_move_the_head() -> None:
    region, outbox = region_over(MemoryStore())
    region.commit(keys=[mrk()])
    assert outbox.head == 0 and outbox.read_after(0, 10) == []


def test_ids_sort_as_numbers() -> None:
    assert seq_id(9) < seq_id(10) < seq_id(100)
    region, outbox = region_over(MemoryStore())
    for n in range(1, 13):
        region.commit(commands=[gone(n)])
    assert [s for s, _ in outbox.read_after(0, 100)] == list(range(1, 13))
    assert [s for s, _ in outbox.read_after(9, 100)] == [10, 11, 12]


def test_read_after_pages_from_any_position() -> None:
    region, outbox = region_over(MemoryStore())
    for n in range(1, 8):
        region.commit(commands=[gone(n)])
    assert [s for s, _ in outbox.read_after(0, 3)] == [1, 2, 3]
    assert [s for s, _ in outbox.read_after(3, 3)] == [4, 5, 6]
    assert [s for s, _ in outbox.read_after(6, 3)] == [7]
    assert outbox.read_after(7, 3) == []
    assert outbox.read_after(100, 3) == []
    assert outbox.read_after(0, 0) == []


# -- durability ------------------------------------------------------------------------------------------


def test_records_survive_reopening_the_store(tmp_path: Path) -> None:
    path = tmp_path / "a" / "kms.db"
    store = declared(SqliteStore(path))
    region, outbox = region_over(store)
    key = mrk()
    region.commit(keys=[key], commands=[snapshot_of(key)])
    region.commit(commands=[gone(2), gone(3)])
    before = outbox.read_after(0, 100)
    store.close()

    reopened = declared(SqliteStore(path))
    try:
        region2, outbox2 = region_over(reopened)
        assert outbox2.head == 3
        assert outbox2.read_after(0, 100) == before
        assert [s for s, _ in outbox2.read_after(1, 100)] == [2, 3]
        assert region2.keys[key.key_id].mrk == key.mrk
        # Numbering continues after the restart, never reusing a committed number.
        region2.commit(commands=[gone(4)])
        assert outbox2.head == 4 and decoded(outbox2, 3) == [(4, gone(4))]
    finally:
        reopened.close()


def test_head_of_an_empty_outbox_is_zero(tmp_path: Path) -> None:
    store = declared(SqliteStore(tmp_path / "kms.db"))
    try:
        _, outbox = region_over(store)
        assert outbox.head == 0 and outbox.read_after(0, 10) == []
    finally:
        store.close()


# -- failed commits --------------------------------------------------------------------------------------


def test_failed_commit_leaves_no_record_and_region_unchanged() -> None:
    store = MemoryStore()
    region, outbox = region_over(store)
    region.commit(commands=[gone(1)])
    key = mrk()
    store.fail_commits = 1
    with pytest.raises(StoreError):
        region.commit(keys=[key], commands=[snapshot_of(key), gone(2)])
    assert key.key_id not in region.keys
    assert store.tables["keys"] == {}
    assert outbox.head == 1 and [s for s, _ in outbox.read_after(0, 10)] == [1]

    # Later records still work; the numbers of the failed batch are a harmless gap.
    region.commit(keys=[key], commands=[gone(3)])
    assert region.keys[key.key_id] == key
    records = decoded(outbox)
    assert [cmd for _, cmd in records] == [gone(1), gone(3)]
    assert records[-1][0] > 1 and outbox.head == records[-1][0]
    assert decoded(outbox, 1) == records[1:]
    assert decoded(outbox, 2) == records[1:]  # a reader positioned inside the gap misses nothing


def test_failed_commit_wakes_nobody() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        region, outbox = region_over(store)
        waiter = asyncio.ensure_future(outbox.wait_beyond(0, 0.2))
        await asyncio.sleep(0)
        store.fail_commits = 1
        with pytest.raises(StoreError):
            region.commit(commands=[gone(1)])
        await asyncio.sleep(0.02)
        assert not waiter.done()
        await waiter

    asyncio.run(scenario())


# -- waiting for news ------------------------------------------------------------------------------------


async def test_wait_returns_at_once_when_there_is_news() -> None:
    region, outbox = region_over(MemoryStore())
    region.commit(commands=[gone(1)])
    started = time.monotonic()
    await outbox.wait_beyond(0, 5.0)
    assert time.monotonic() - started < 0.5


async def test_wait_times_out_without_news() -> None:
    region, outbox = region_over(MemoryStore())
    region.commit(commands=[gone(1)])
    started = time.monotonic()
    await outbox.wait_beyond(1, 0.1)
    elapsed = time.monotonic() - started
    assert 0.08 <= elapsed < 1.0


async def test_wait_with_zero_timeout_returns_at_once() -> None:
    _, outbox = region_over(MemoryStore())
    started = time.monotonic()
    await outbox.wait_beyond(0, 0)
    assert time.monotonic() - started < 0.5


async def test_wait_is_woken_by_a_commit() -> None:
    region, outbox = region_over(MemoryStore())
    started = time.monotonic()
    waiters = [asyncio.create_task(outbox.wait_beyond(0, 5.0)) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert not any(w.done() for w in waiters)
    region.commit(commands=[gone(1)])
    await asyncio.wait_for(asyncio.gather(*waiters), 2.0)
    assert time.monotonic() - started < 1.0
    # A second round waits for the next commit, not the old one.
    later = asyncio.create_task(outbox.wait_beyond(1, 5.0))
    await asyncio.sleep(0.05)
    assert not later.done()
    region.commit(commands=[gone(2)])
    await asyncio.wait_for(later, 2.0)


async def test_wait_is_woken_by_close() -> None:
    _, outbox = region_over(MemoryStore())
    started = time.monotonic()
    waiter = asyncio.create_task(outbox.wait_beyond(0, 5.0))
    await asyncio.sleep(0.05)
    outbox.close()
    await asyncio.wait_for(waiter, 2.0)
    # Once closed, nobody waits any more.
    await outbox.wait_beyond(0, 5.0)
    assert time.monotonic() - started < 1.0


def test_outbox_made_before_the_loop_works_in_it() -> None:
    # The composition builds outboxes before (or outside) the loop that serves them; tests run a loop each.
    region, outbox = region_over(MemoryStore())

    async def round_trip(n: int) -> None:
        waiter = asyncio.create_task(outbox.wait_beyond(n - 1, 5.0))
        await asyncio.sleep(0.01)
        region.commit(commands=[gone(n)])
        await asyncio.wait_for(waiter, 2.0)

    asyncio.run(round_trip(1))
    asyncio.run(round_trip(2))


def test_oldest_after_reports_when_the_first_unread_record_was_written() -> None:
    clock = FixedClock(1000.0)
    region, outbox = region_over(MemoryStore(), clock)
    region.commit(commands=[gone(1)])
    clock.advance(5)
    region.commit(commands=[gone(2)])
    assert outbox.oldest_after(0) == 1000.0
    assert outbox.oldest_after(1) == 1005.0
    assert outbox.oldest_after(2) is None


# -- cursors ---------------------------------------------------------------------------------------------


def test_cursors_stage_commit_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    store = declared(SqliteStore(path))
    cursors = Cursors(store)
    assert cursors.get(A) == 0
    batch = Batch()
    cursors.stage(batch, A, 7)
    assert Cursors(store).get(A) == 0  # staged only
    store.commit(batch)
    cursors.committed(A, 7)
    assert cursors.get(A) == 7
    cursors.committed(A, 3)  # never moves back
    assert cursors.get(A) == 7
    store.close()
    reopened = declared(SqliteStore(path))
    try:
        assert Cursors(reopened).get(A) == 7 and Cursors(reopened).get(B) == 0
    finally:
        reopened.close()


def test_holds_and_gone_records_decode_from_the_outbox() -> None:
    region, outbox = region_over(MemoryStore())
    holds = HoldsMaterial("mrk-" + "0" * 32, B, b"x" * 32, 4)
    region.commit(commands=[holds, gone(5)])
    assert [cmd for _, cmd in decoded(outbox)] == [holds, gone(5)]


def test_outbox_waited_on_in_one_loop_can_be_waited_on_in_the_next() -> None:
    # A wait that timed out in one loop must not tie the outbox to that loop (a restarted cluster, a test).
    region, outbox = region_over(MemoryStore())
    asyncio.run(outbox.wait_beyond(0, 0.01))
    asyncio.run(outbox.wait_beyond(0, 0.01))

    async def woken() -> None:
        waiter = asyncio.create_task(outbox.wait_beyond(0, 5.0))
        await asyncio.sleep(0.01)
        region.commit(commands=[gone(1)])
        await asyncio.wait_for(waiter, 2.0)

    asyncio.run(woken())


async def test_nan_or_negative_timeout_does_not_wait() -> None:
    _, outbox = region_over(MemoryStore())
    started = time.monotonic()
    await asyncio.wait_for(outbox.wait_beyond(0, float("nan")), 2.0)
    await asyncio.wait_for(outbox.wait_beyond(0, -1.0), 2.0)
    assert time.monotonic() - started < 0.5


async def test_cancelled_waiter_is_forgotten() -> None:
    region, outbox = region_over(MemoryStore())
    waiter = asyncio.create_task(outbox.wait_beyond(0, 5.0))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    region.commit(commands=[gone(1)])  # waking a cancelled waiter is harmless
    assert outbox.head == 1


def test_restart_after_a_failed_commit_numbers_on_from_the_last_committed_record() -> None:
    store = MemoryStore()
    region, _ = region_over(store)
    region.commit(commands=[gone(1)])
    store.fail_commits = 1
    with pytest.raises(StoreError):
        region.commit(commands=[gone(2)])
    # The failed number was never visible to anyone, so a restarted outbox may hand it out again.
    region2, outbox2 = region_over(store)
    assert outbox2.head == 1
    region2.commit(commands=[gone(3)])
    assert decoded(outbox2) == [(1, gone(1)), (2, gone(3))]


# -- trimming --------------------------------------------------------------------------------------------------


def test_trim_drops_only_what_every_peer_applied_and_keeps_the_newest(tmp_path: Path) -> None:
    store = declared(SqliteStore(tmp_path / "a.db"))
    region, outbox = region_over(store)
    for n in range(10):
        region.commit(commands=[gone(n)])
    assert outbox.head == 10
    assert outbox.trim_through(4, batch_size=3) == 4  # several small batches
    assert [seq for seq, _ in outbox.read_after(0, 100)] == list(range(5, 11))
    assert outbox.trim_through(100) == 5  # everything applied everywhere: the newest record still stays
    assert [seq for seq, _ in outbox.read_after(0, 100)] == [10]
    store.close()
    reopened = declared(SqliteStore(tmp_path / "a.db"))
    region, outbox = region_over(reopened)
    assert outbox.head == 10  # numbering continues: peers at cursor 10 will not miss record 11
    region.commit(commands=[gone(99)])
    assert [seq for seq, _ in outbox.read_after(10, 100)] == [11]
    reopened.close()


def test_trim_leaves_records_a_peer_still_needs() -> None:
    region, outbox = region_over(MemoryStore())
    for n in range(5):
        region.commit(commands=[gone(n)])
    assert outbox.trim_through(0) == 0
    assert [seq for seq, _ in outbox.read_after(0, 100)] == [1, 2, 3, 4, 5]
    assert outbox.trim_through(2) == 2
    assert [seq for seq, _ in decoded(outbox, 2)] == [3, 4, 5]
