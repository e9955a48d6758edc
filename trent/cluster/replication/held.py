"""Commands a region holds back because they reached it before it could act on them. Two regions' logs are not
ordered with respect to each other, so after a primary hand-off a record can overtake another it depends on:

- a snapshot for a replica this region has not created yet (the ReplicateKey snapshot that creates it is still on
  its way through the old primary's log) is applied as soon as the replica exists;
- a replica's deletion notice that reached this region while it was not the primary is applied if this region
  becomes the primary with the deleted replica still listed (the old primary handed over before hearing of it).

Both wait in the region's meta table, staged in the same batch as the record being applied, so they survive a
restart exactly as the cursor does."""

from __future__ import annotations

from trent.cluster.replication.commands import CommandCodec
from trent.node.model.key import KeyRecord
from trent.node.model.mrk import Command, KeySnapshot, ReplicaGone
from trent.node.model.mrk_rules import apply_replica_gone, apply_snapshot, awaits_creation, snapshot_of
from trent.node.service import Region
from trent.node.store.base import Batch

SNAPSHOT_PREFIX = "mrk-parked/"  # + key id: the newest snapshot for a replica not created yet
GONE_PREFIX = "mrk-gone/"  # + key id + "/" + region: a deletion notice kept by a region that was not primary


class HeldBack:
    def __init__(self, region: Region, codec: CommandCodec, creating_delay: float) -> None:
        self.region = region
        self.codec = codec
        self.creating_delay = creating_delay

    # -- snapshots for replicas not created yet ------------------------------------------------------------

    def after_snapshot(self, local: KeyRecord | None, snap: KeySnapshot, raw: bytes, updated: KeyRecord | None,
                       out: list[Command], batch: Batch, now: float) -> tuple[KeyRecord | None, list[Command]]:
        """The effects of ``snap`` once held-back commands are taken into account."""
        if local is None:
            return self._creation(snap, raw, updated, out, batch, now)
        if updated is not None:
            return self._settle_gones(updated, out, batch, now)
        return updated, out

    def _parked(self, key_id: str) -> KeySnapshot | None:
        raw = self.region.store.get("meta", SNAPSHOT_PREFIX + key_id)
        command = None if raw is None else self.codec.decode(raw)[0]
        return command if isinstance(command, KeySnapshot) else None

    def _creation(self, snap: KeySnapshot, raw: bytes, created: KeyRecord | None, out: list[Command],
                  batch: Batch, now: float) -> tuple[KeyRecord | None, list[Command]]:
        ident = SNAPSHOT_PREFIX + snap.key_id
        parked = self._parked(snap.key_id)
        if created is None:
            newer = parked is None or parked.state.stamp < snap.state.stamp
            if newer and awaits_creation(self.region.name, None, snap):
                batch.put("meta", ident, raw)
            elif parked is not None and newer and self.region.name not in snap.state.related_regions():
                batch.delete("meta", ident)  # the topology dropped this region (its replica was deleted)
            return created, out
        if parked is None:
            return created, out
        batch.delete("meta", ident)
        later, more = apply_snapshot(self.region.name, self.region.account, created, parked, now,
                                     self.creating_delay)
        return (created, out) if later is None else (later, [*out, *more])

    # -- deletion notices kept by a region that was not the primary ---------------------------------------

    def keep_gone(self, local: KeyRecord | None, cmd: ReplicaGone, batch: Batch) -> None:
        """``cmd`` reached this region while it is not the primary: keep it in case the primary role comes here
        from a region that has not heard of it."""
        if local is None or local.mrk is None or local.mrk.is_primary(self.region.name):
            return
        if cmd.region in local.mrk.replica_regions:
            batch.put("meta", f"{GONE_PREFIX}{cmd.key_id}/{cmd.region}", b"")

    def _settle_gones(self, updated: KeyRecord, out: list[Command], batch: Batch,
                      now: float) -> tuple[KeyRecord | None, list[Command]]:
        prefix = f"{GONE_PREFIX}{updated.key_id}/"
        idents = [i for i, _ in self.region.store.scan_after("meta", prefix, 64) if i.startswith(prefix)]
        settled = updated
        for ident in idents:
            assert settled.mrk is not None
            gone = ident[len(prefix):]
            if gone not in settled.mrk.replica_regions:
                batch.delete("meta", ident)  # the topology no longer lists it: nothing left to do
            elif settled.mrk.is_primary(self.region.name):
                settled = apply_replica_gone(self.region.name, settled, ReplicaGone(updated.key_id, gone),
                                             now) or settled
                batch.delete("meta", ident)
        if settled is updated:
            return updated, out
        # The new primary's own snapshot now also drops the deleted replica: send that one instead.
        mine = [c for c in out if not (isinstance(c, KeySnapshot) and c.origin_region == self.region.name)]
        return settled, [*mine, snapshot_of(settled)]
