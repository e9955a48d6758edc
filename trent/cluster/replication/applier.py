"""Applies a peer's log records to this region: each record, its effects and the advanced cursor commit in one
transaction, so a record is applied exactly once even across crashes, and a failed apply changes nothing."""

from __future__ import annotations

import logging
from collections.abc import Callable

from trent.cluster.replication.commands import CommandCodec
from trent.cluster.replication.held import HeldBack
from trent.cluster.replication.log import Cursors
from trent.node.model.key import KeyRecord
from trent.node.model.mrk import Command, HoldsMaterial, KeySnapshot
from trent.node.model.mrk_rules import apply_holds, apply_replica_gone, apply_snapshot, snapshot_of
from trent.node.service import Region
from trent.node.store.base import Batch

log = logging.getLogger("trent.replication")


class Applier:
    def __init__(self, region: Region, cursors: Cursors, codec: CommandCodec, creating_delay: float,
                 wake_after: Callable[[float], None] | None = None) -> None:
        self.region = region
        # Asks the region's scheduler to run after a delay (a new replica's Creating period ends then).
        self.wake_after = wake_after
        self.cursors = cursors
        self.codec = codec
        self.creating_delay = creating_delay
        # Records that overtook one they depend on (through another region's log) wait here.
        self.held = HeldBack(region, codec, creating_delay)
        self.applied = 0

    def apply(self, peer: str, seq: int, raw: bytes) -> bool:
        """Apply record ``seq`` of ``peer``'s outbox; False if it was already applied."""
        if seq <= self.cursors.get(peer):
            return False
        command, _origin, _at = self.codec.decode(raw)

        def commit() -> tuple[bool, KeyRecord | None]:
            # Worked out on the region as it is now: again, if another process serving it changed it meanwhile.
            batch = Batch()
            existed = command.key_id in self.region.keys
            updated, out = self._effects(command, raw, batch)
            self.cursors.stage(batch, peer, seq)
            self.region.commit(keys=[updated] if updated is not None else [], commands=out, batch=batch)
            return existed, updated

        existed, updated = self.region.run_fresh(commit)
        self.cursors.committed(peer, seq)
        self.applied += 1
        if updated is not None and self.region.audit is not None and isinstance(command, KeySnapshot):
            # CloudTrail records a new replica as CreateKey in its region, later changes as the service keeping
            # related multi-Region keys in step.
            self.region.audit.service("SynchronizeMultiRegionKey" if existed else "CreateKey", updated.arn,
                                      self.region.now(), event_type="AwsApiCall")
        if updated is not None and updated.ready_at is not None and self.wake_after is not None:
            self.wake_after(max(0.0, updated.ready_at - self.region.now()))
        return True

    def _effects(self, command: Command, raw: bytes, batch: Batch) -> tuple[KeyRecord | None, list[Command]]:
        region, now = self.region, self.region.now()
        local = region.keys.get(command.key_id)
        if isinstance(command, KeySnapshot):
            updated, out = apply_snapshot(region.name, region.account, local, command, now, self.creating_delay)
            return self.held.after_snapshot(local, command, raw, updated, out, batch, now)
        if isinstance(command, HoldsMaterial):
            updated = apply_holds(region.name, local, command, now)
        else:
            updated = apply_replica_gone(region.name, local, command, now)
            if updated is None:
                self.held.keep_gone(local, command, batch)
        # The primary changed shared state: every related region hears the new snapshot.
        return updated, ([snapshot_of(updated)] if updated is not None else [])
