"""Background work of one region on its clock: key deletion when the window ends, automatic rotation."""

from __future__ import annotations

import asyncio
import logging

from node.model.key import KeyRecord
from node.model.rotation import apply_automatic_rotations, rotation_due
from node.model.states import KeyState
from node.service import Region
from node.store.base import StoreError

log = logging.getLogger("trent.scheduler")


def deletion_due(key: KeyRecord) -> float | None:
    return key.deletion_date if key.state is KeyState.PENDING_DELETION else None


class Scheduler:
    def __init__(self, region: Region) -> None:
        self.region = region

    def run_due(self) -> int:
        """Do every piece of work due by the region's now; return how many keys changed."""
        now = self.region.now()
        changed = 0
        for key in list(self.region.keys.values()):
            try:
                changed += self._run_key(key, now)
            except StoreError:
                # Nothing was written; the work is still due and the next tick retries it.
                log.warning("region %s: background work on %s deferred (store error)", self.region.name, key.key_id)
            except Exception:
                # A bug in one key's work must not starve every other key (nor kill the background task).
                log.exception("region %s: background work on %s failed", self.region.name, key.key_id)
        return changed

    def _run_key(self, key: KeyRecord, now: float) -> int:
        due = deletion_due(key)
        if due is not None and due <= now:
            aliases = [a.name for a in self.region.aliases_of(key.key_id)]
            self.region.commit(delete_keys=[key.key_id], delete_aliases=aliases)
            log.info("region %s: key %s deleted at the end of its waiting period", self.region.name, key.key_id)
            return 1
        rotation = rotation_due(key)
        if rotation is not None and rotation <= now:
            rotated = apply_automatic_rotations(key, now)
            if rotated is not None:
                self.region.commit(keys=[rotated])
                return 1
        return 0

    async def run_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.run_due()
            except Exception:
                # Keep ticking: an escaped error would end this task silently and stop all background work.
                log.exception("region %s: scheduler tick failed", self.region.name)
