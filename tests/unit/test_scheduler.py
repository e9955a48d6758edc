"""The region scheduler (node/scheduler.py): deletion at the end of the window, automatic rotation, and what a
failed store commit leaves behind (nothing: the work is simply done on the next run)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from trent.node.auth.principals import Principal
from trent.node.clock import FixedClock
from trent.node.crypto.rootkey import RootKey
from trent.node.model.key import KeyRecord
from trent.node.model.rotation import AUTOMATIC, DAY
from trent.node.model.states import KeyState
from trent.node.ops import aliases, keys
from trent.node.ops import rotation as rotation_ops
from trent.node.ops.registry import RequestContext
from trent.node.scheduler import Scheduler, deletion_due
from trent.node.service import Region, RegionIdentity
from trent.node.store.memory import MemoryStore

T0 = 1_800_000_000.0
ROOT = RootKey.from_bytes(b"\x01" * 32)
IDENTITY = RegionIdentity("us-east-1", "111122223333")


def ctx(operation: str) -> RequestContext:
    principal = Principal("test", "test", "arn:aws:iam::111122223333:root", "111122223333")
    return RequestContext("req-1", operation, principal, "127.0.0.1", "pytest")


@pytest.fixture()
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture()
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture()
def region(store: MemoryStore, clock: FixedClock) -> Region:
    return Region(IDENTITY, store, ROOT, clock)


def create(region: Region, **params: Any) -> str:
    key_id: str = keys.create_key(region, params, ctx("CreateKey"))["KeyMetadata"]["KeyId"]
    return key_id


def schedule(region: Region, key_id: str, days: int) -> None:
    keys.schedule_key_deletion(region, {"KeyId": key_id, "PendingWindowInDays": days}, ctx("ScheduleKeyDeletion"))


def enable_rotation(region: Region, key_id: str, days: int) -> None:
    rotation_ops.enable_key_rotation(region, {"KeyId": key_id, "RotationPeriodInDays": days},
                                     ctx("EnableKeyRotation"))


def alias(region: Region, name: str, key_id: str) -> None:
    aliases.create_alias(region, {"AliasName": name, "TargetKeyId": key_id}, ctx("CreateAlias"))


def reloaded(store: MemoryStore, clock: FixedClock) -> Region:
    """What a restart would see: a fresh Region over the same store."""
    return Region(IDENTITY, store, ROOT, clock)


# -- deletion ---------------------------------------------------------------------------------------------


def test_nothing_to_do_changes_nothing(region: Region, store: MemoryStore) -> None:
    create(region)
    commits = store.commits
    assert Scheduler(region).run_due() == 0
    assert store.commits == commits


def test_deletion_waits_for_the_end_of_the_window(region: Region, store: MemoryStore, clock: FixedClock) -> None:
    doomed, kept = create(region), create(region)
    alias(region, "alias/doomed", doomed)
    alias(region, "alias/doomed-too", doomed)
    alias(region, "alias/kept", kept)
    schedule(region, doomed, 7)
    scheduler = Scheduler(region)
    clock.advance(7 * DAY - 1)
    assert scheduler.run_due() == 0
    assert region.keys[doomed].state is KeyState.PENDING_DELETION
    clock.advance(1)
    assert scheduler.run_due() == 1
    assert doomed not in region.keys
    assert set(region.aliases) == {"alias/kept"}
    assert region.aliases_of(doomed) == []
    assert kept in region.keys
    # Durable: a restart sees the same.
    after = reloaded(store, clock)
    assert set(after.keys) == {kept} and set(after.aliases) == {"alias/kept"}
    assert scheduler.run_due() == 0


def test_deletion_due_only_for_pending_deletion(region: Region) -> None:
    kid = create(region)
    assert deletion_due(region.keys[kid]) is None
    schedule(region, kid, 7)
    assert deletion_due(region.keys[kid]) == T0 + 7 * DAY
    keys.cancel_key_deletion(region, {"KeyId": kid}, ctx("CancelKeyDeletion"))
    assert deletion_due(region.keys[kid]) is None


def test_a_failed_deletion_commit_leaves_the_region_unchanged(region: Region, store: MemoryStore,
                                                              clock: FixedClock) -> None:
    kid = create(region)
    alias(region, "alias/doomed", kid)
    schedule(region, kid, 7)
    before_keys, before_aliases = dict(region.keys), dict(region.aliases)
    before_tables = {t: dict(docs) for t, docs in store.tables.items()}
    clock.advance(8 * DAY)
    store.fail_commits = 1
    scheduler = Scheduler(region)
    assert scheduler.run_due() == 0
    assert region.keys == before_keys
    assert region.aliases == before_aliases
    assert region.aliases_of(kid) == [before_aliases["alias/doomed"]]
    assert store.tables == before_tables
    # The next run does the work.
    assert scheduler.run_due() == 1
    assert kid not in region.keys and "alias/doomed" not in region.aliases
    assert kid not in reloaded(store, clock).keys


# -- rotation ---------------------------------------------------------------------------------------------


def test_automatic_rotation_when_due(region: Region, store: MemoryStore, clock: FixedClock) -> None:
    kid, idle = create(region), create(region)
    enable_rotation(region, kid, 90)
    scheduler = Scheduler(region)
    clock.advance(90 * DAY - 1)
    assert scheduler.run_due() == 0
    clock.advance(1)
    assert scheduler.run_due() == 1
    key = region.keys[kid]
    assert [(v.rotation_type, v.created) for v in key.materials[1:]] == [(AUTOMATIC, T0 + 90 * DAY)]
    assert key.rotation.next_rotation == T0 + 180 * DAY
    assert len(region.keys[idle].materials) == 1
    assert reloaded(store, clock).keys[kid].current_material_id == key.current_material_id


def test_a_failed_rotation_commit_leaves_the_region_unchanged(region: Region, store: MemoryStore,
                                                              clock: FixedClock) -> None:
    kid = create(region)
    enable_rotation(region, kid, 90)
    before: KeyRecord = region.keys[kid]
    before_tables = {t: dict(docs) for t, docs in store.tables.items()}
    clock.advance(200 * DAY)
    store.fail_commits = 1
    scheduler = Scheduler(region)
    assert scheduler.run_due() == 0
    assert region.keys[kid] is before
    assert store.tables == before_tables
    assert scheduler.run_due() == 1
    key = region.keys[kid]
    assert [v.created for v in key.materials[1:]] == [T0 + 90 * DAY, T0 + 180 * DAY]
    assert key.rotation.next_rotation == T0 + 270 * DAY


def test_one_failure_does_not_hold_up_other_keys(region: Region, store: MemoryStore, clock: FixedClock) -> None:
    first, second = create(region), create(region)
    schedule(region, first, 7)
    schedule(region, second, 7)
    clock.advance(8 * DAY)
    store.fail_commits = 1
    scheduler = Scheduler(region)
    assert scheduler.run_due() == 1  # one commit failed, the other key's went through
    assert len({first, second} & set(region.keys)) == 1
    assert scheduler.run_due() == 1
    assert not {first, second} & set(region.keys)


def test_disabled_and_pending_deletion_keys_are_not_rotated(region: Region, clock: FixedClock) -> None:
    disabled, pending = create(region), create(region)
    for kid in (disabled, pending):
        enable_rotation(region, kid, 90)
    keys.disable_key(region, {"KeyId": disabled}, ctx("DisableKey"))
    clock.advance(80 * DAY)
    schedule(region, pending, 30)
    clock.advance(20 * DAY)
    assert Scheduler(region).run_due() == 0
    assert len(region.keys[disabled].materials) == 1
    assert len(region.keys[pending].materials) == 1


def test_deletion_wins_over_a_due_rotation(region: Region, clock: FixedClock) -> None:
    kid = create(region)
    enable_rotation(region, kid, 90)
    clock.advance(85 * DAY)
    schedule(region, kid, 7)
    clock.advance(10 * DAY)
    assert Scheduler(region).run_due() == 1
    assert kid not in region.keys


def test_an_unexpected_error_on_one_key_does_not_stop_the_others(region: Region, clock: FixedClock,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    broken, fine = create(region), create(region)
    schedule(region, broken, 7)
    schedule(region, fine, 7)
    clock.advance(8 * DAY)
    scheduler = Scheduler(region)
    real = scheduler._run_key

    def flaky(key: KeyRecord, now: float) -> int:
        if key.key_id == broken:
            raise RuntimeError("bug")
        return real(key, now)

    monkeypatch.setattr(scheduler, "_run_key", flaky)
    assert scheduler.run_due() == 1
    assert fine not in region.keys and broken in region.keys


async def test_the_background_task_survives_a_failing_tick(region: Region, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler = Scheduler(region)
    calls: list[int] = []

    def run_due() -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("bug")
        return 0

    monkeypatch.setattr(scheduler, "run_due", run_due)
    task = asyncio.create_task(scheduler.run_forever(0.001))
    for _ in range(200):
        if len(calls) >= 3:
            break
        await asyncio.sleep(0.005)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert len(calls) >= 3


# -- what a tick looks at ------------------------------------------------------------------------------------


def test_a_tick_looks_only_at_keys_with_work_due(region: Region, clock: FixedClock,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    idle = [create(region) for _ in range(50)]
    rotating, doomed, cancelled = create(region), create(region), create(region)
    scheduler = Scheduler(region)  # made before the changes below: it learns of them from the region
    enable_rotation(region, rotating, 90)
    schedule(region, doomed, 7)
    schedule(region, cancelled, 7)
    keys.cancel_key_deletion(region, {"KeyId": cancelled}, ctx("CancelKeyDeletion"))
    seen: list[str] = []
    run_key = scheduler._run_key

    def counting(key: KeyRecord, now: float) -> int:
        seen.append(key.key_id)
        return run_key(key, now)

    monkeypatch.setattr(scheduler, "_run_key", counting)
    assert scheduler.run_due() == 0 and seen == []  # nothing due yet, and no idle key looked at
    clock.advance(7 * DAY)
    assert scheduler.run_due() == 1 and seen == [doomed]
    clock.advance(83 * DAY)
    seen.clear()
    assert scheduler.run_due() == 1 and seen == [rotating]
    assert len(region.keys[rotating].materials) == 2
    seen.clear()
    assert scheduler.run_due() == 0 and seen == []  # the next rotation is 90 days away
    clock.advance(90 * DAY)
    assert scheduler.run_due() == 1 and seen == [rotating]
    assert all(len(region.keys[k].materials) == 1 for k in idle) and cancelled in region.keys


def test_changes_are_recorded_only_while_a_scheduler_watches(region: Region) -> None:
    create(region)  # a region without a scheduler (a worker process's) keeps no record of changed keys
    assert region.take_touched() == set()
    scheduler = Scheduler(region)
    assert region.take_touched() == set()  # what existed was scheduled when it started watching
    changed = create(region)
    assert region.take_touched() == {changed}
    assert region.take_touched() == set()
    assert scheduler.run_due() == 0
