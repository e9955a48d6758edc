"""Background work of one region on its clock: key deletion when the window ends, automatic rotation, the deletion
of imported key material when its ValidTo passes."""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Iterable
from dataclasses import replace

from trent.node.model.imported import expire, expiry_due
from trent.node.model.key import KeyRecord
from trent.node.model.mrk import Command, ReplicaGone
from trent.node.model.mrk_rules import rotation_in_progress, snapshot_of, start_rotation
from trent.node.model.rotation import AUTOMATIC, DAY, apply_automatic_rotations, rotation_due
from trent.node.model.states import KeyState
from trent.node.service import Region
from trent.node.store.base import StoreError

log = logging.getLogger("trent.scheduler")
TRANSIENT_STATES = frozenset({KeyState.CREATING, KeyState.UPDATING})


def deletion_due(key: KeyRecord) -> float | None:
    return key.deletion_date if key.state is KeyState.PENDING_DELETION else None


def due_at(key: KeyRecord) -> float | None:
    """When the scheduler next has work for ``key`` (end of a transient state, deletion, rotation), if ever."""
    times = [t for t in (key.ready_at if key.state in TRANSIENT_STATES else None, deletion_due(key),
                         rotation_due(key), expiry_due(key)) if t is not None]
    return min(times) if times else None


class Scheduler:
    def __init__(self, region: Region) -> None:
        self.region = region
        # When each key's next work falls due, and the same as a heap: a tick looks only at keys that are due (or
        # changed), not at every key of the region; heap entries whose time no longer matches are stale, skipped.
        self._due: dict[str, float] = {}
        self._queue: list[tuple[float, str]] = []
        self._schedule(region.watch_keys())

    def run_due(self) -> int:
        """Do every piece of work due by the region's now; return how many keys changed."""
        self.region.sync()  # other processes serving the region may have changed keys since the last tick
        now = self.region.now()
        self._schedule(self.region.take_touched())
        changed = 0
        looked_at: list[str] = []
        while self._queue and self._queue[0][0] <= now:
            due, key_id = heapq.heappop(self._queue)
            if self._due.get(key_id) != due:
                continue
            del self._due[key_id]
            key = self.region.keys.get(key_id)
            if key is None:
                continue
            looked_at.append(key_id)
            try:
                changed += self._run_key_fresh(key, now)
            except StoreError:
                # Nothing was written; the work is still due and the next tick retries it.
                log.warning("region %s: background work on %s deferred (store error)", self.region.name, key.key_id)
            except Exception:
                # A bug in one key's work must not starve every other key (nor kill the background task).
                log.exception("region %s: background work on %s failed", self.region.name, key.key_id)
        # Work that is still due (waiting on another region, deferred by a store error) is looked at again next tick.
        self._schedule(looked_at)
        return changed

    def _schedule(self, key_ids: Iterable[str]) -> None:
        for key_id in key_ids:
            key = self.region.keys.get(key_id)
            due = None if key is None else due_at(key)
            if due is None:
                self._due.pop(key_id, None)
            elif self._due.get(key_id) != due:
                self._due[key_id] = due
                heapq.heappush(self._queue, (due, key_id))

    def _run_key_fresh(self, key: KeyRecord, now: float, attempts: int = 5) -> int:
        """Run ``key``'s due work; if another process changed the region meanwhile, catch up and decide again."""
        def run() -> int:
            current = self.region.keys.get(key.key_id)  # the key as it is now (gone: nothing to do)
            return 0 if current is None else self._run_key(current, now)
        return self.region.run_fresh(run, attempts)

    def _run_key(self, key: KeyRecord, now: float) -> int:
        if key.state in TRANSIENT_STATES and key.ready_at is not None and key.ready_at <= now:
            # A new replica's Creating period, or a new primary's Updating period, is over.
            self.region.commit(keys=[key.with_changes(state=key.resume_state or KeyState.ENABLED,
                                                      resume_state=None, ready_at=None)])
            return 1
        due = deletion_due(key)
        if due is not None and due <= now:
            self._delete(key)
            return 1
        expiry = expiry_due(key)
        if expiry is not None and expiry <= now:
            expired, gone = expire(key, now)
            self.region.commit(keys=[expired])
            for _ in gone:  # the event AWS writes when imported material reaches its ValidTo
                self._service_event("DeleteExpiredKeyMaterial", expired, now)
            return 1
        rotation = rotation_due(key)
        if rotation is None or rotation > now:
            return 0
        if key.mrk is None:
            rotated = apply_automatic_rotations(key, now)
            if rotated is not None:
                self.region.commit(keys=[rotated])
                for _ in range(len(rotated.materials) - len(key.materials)):
                    self._service_event("RotateKey", rotated, now)
                return 1
            return 0
        return self._rotate_multi_region(key, rotation, now)

    def _service_event(self, name: str, key: KeyRecord, at: float) -> None:
        if self.region.audit is not None:
            self.region.audit.service(name, key.arn, at)

    def _delete(self, key: KeyRecord) -> None:
        aliases = [a.name for a in self.region.aliases_of(key.key_id)]
        commands: list[Command] = []
        if key.mrk is not None and not key.mrk.is_primary(self.region.name):
            commands.append(ReplicaGone(key.key_id, self.region.name))  # the primary drops it from the topology
        self.region.commit(delete_keys=[key.key_id], delete_aliases=aliases, commands=commands)
        if self.region.key_stores is not None and key.extra:
            self.region.key_stores.destroy_material(key)  # a custom key store's key: its token object goes too
        self._service_event("DeleteKey", key, self.region.now())
        log.info("region %s: key %s deleted at the end of its waiting period", self.region.name, key.key_id)

    def _rotate_multi_region(self, key: KeyRecord, due: float, now: float) -> int:
        """Only the primary rotates a multi-Region key, and only one rotation is in flight at a time."""
        assert key.mrk is not None
        if not key.mrk.is_primary(self.region.name) or rotation_in_progress(key):
            return 0
        period = key.rotation.period_days * DAY
        next_rotation = due + period if due + period > now else now + period
        rotating = start_rotation(key, due, AUTOMATIC)
        rotating = rotating.with_changes(rotation=replace(rotating.rotation, next_rotation=next_rotation))
        self.region.commit(keys=[rotating], commands=[snapshot_of(rotating)])
        self._service_event("RotateKey", rotating, now)
        return 1

    async def run_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.run_due()
            except Exception:
                # Keep ticking: an escaped error would end this task silently and stop all background work.
                log.exception("region %s: scheduler tick failed", self.region.name)
