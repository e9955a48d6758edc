"""`trent reset`: every region's keys, aliases, grants and replication records gone in one step, while the cluster
keeps running (a test suite's clean slate without a restart). Faults, the clock and audit trails are left alone."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trent.cluster.jobs import ReplicationLinks
from trent.cluster.replication.held import GONE_PREFIX, SNAPSHOT_PREFIX
from trent.cluster.replication.log import Outbox
from trent.node.service import META, Region
from trent.node.store.base import Batch


@dataclass(frozen=True)
class Cleared:
    keys: int
    aliases: int
    grants: int
    outbox_records: int

    def as_dict(self) -> dict[str, int]:
        return {"keys": self.keys, "aliases": self.aliases, "grants": self.grants,
                "outbox_records": self.outbox_records}


def clear_region(region: Region, outbox: Outbox) -> Cleared:
    """One transaction: the region's state, its outbox and the records it held back, all gone or none of it. The
    outbox numbering goes on, so the cursors its peers hold stay valid."""
    def run() -> Cleared:
        batch = Batch()
        records = outbox.stage_clear(batch)
        for ident, _ in region.store.scan(META):
            if ident.startswith((SNAPSHOT_PREFIX, GONE_PREFIX)):
                batch.delete(META, ident)
        cleared = Cleared(len(region.keys), len(region.aliases), len(region.grants), records)
        region.commit(delete_keys=list(region.keys), delete_aliases=list(region.aliases),
                      delete_grants=list(region.grants), batch=batch)
        return cleared
    # With several processes: decided again on a fresh view if another process committed first.
    return region.run_fresh(run)


class ResetControl:
    """The admin call behind `trent reset`: replication paused (nothing fetched before the reset is applied after
    it), every region cleared, then ``after`` (the seed file applied again)."""

    def __init__(self, regions: Mapping[str, tuple[Region, Outbox]], links: ReplicationLinks,
                 after: Callable[[], dict[str, Any]] | None = None) -> None:
        self._regions = dict(regions)
        self._links = links
        self._after = after

    def add_region(self, name: str, region: Region, outbox: Outbox) -> None:
        self._regions[name] = (region, outbox)

    async def reset(self, doc: dict[str, Any]) -> dict[str, Any]:
        if doc:  # a caller asking for less than everything ("regions": [...]) must not have everything wiped
            raise ValueError(f"reset takes no parameters (it clears every region); got {', '.join(sorted(doc))}")
        async with self._links.paused():
            cleared = {name: clear_region(region, outbox).as_dict() for name, (region, outbox) in
                       self._regions.items()}
        answer: dict[str, Any] = {"cleared": cleared}
        if self._after is not None:
            answer["seeded"] = self._after()
        return answer
