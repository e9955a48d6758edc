"""One region's part in replication: its outbox, its cursors, and a puller per peer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from trent.cluster.faults import Faults
from trent.cluster.replication.applier import Applier
from trent.cluster.replication.commands import CommandCodec
from trent.cluster.replication.log import Cursors, Outbox
from trent.cluster.replication.shipper import Puller
from trent.node.model.imported import EXTERNAL, catalogue
from trent.node.service import Region


class RegionReplication:
    def __init__(self, region: Region, outbox: Outbox, codec: CommandCodec, creating_delay: float,
                 wake_after: Callable[[float], None] | None = None) -> None:
        self.region = region
        self.outbox = outbox  # following the records other processes append is the composition's (every process)
        self.cursors = Cursors(region.store)
        self.applier = Applier(region, self.cursors, codec, creating_delay, wake_after)
        self.pullers: dict[str, Puller] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, peers: Mapping[str, str], token: str, faults: Faults,
              session: aiohttp.ClientSession, delays: Mapping[str, float] | None = None) -> None:
        for peer, url in peers.items():
            puller = Puller(self.region.name, peer, url, self.applier, token, faults, session,
                            (delays or {}).get(peer, 0.0))
            self.pullers[peer] = puller
            self._tasks.append(asyncio.create_task(puller.run(), name=f"pull {peer}->{self.region.name}"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


def lag_report(consumer: RegionReplication, producers: Mapping[str, RegionReplication], now: float
               ) -> dict[str, Any]:
    """Per peer: how far ``consumer`` has applied that peer's outbox, in records and seconds."""
    out: dict[str, Any] = {}
    for peer, producer in producers.items():
        if peer == consumer.region.name:
            continue
        cursor = consumer.cursors.get(peer)
        head = producer.outbox.head
        oldest = producer.outbox.oldest_after(cursor) if head > cursor else None
        puller = consumer.pullers.get(peer)
        out[peer] = {"cursor": cursor, "head": head, "lag_records": max(0, head - cursor),
                     "lag_seconds": round(max(0.0, now - oldest), 3) if oldest is not None else 0.0,
                     "connected": bool(puller and puller.link_up)}
    return out


def consistency_report(regions: Mapping[str, Region]) -> dict[str, Any]:
    """Every multi-Region key must hold the same shared state everywhere: the same material versions, the same
    current one, the same (epoch, version) of its shared properties, and a key in every Region its newest view
    names as related. A key that is still on its way to a Region counts as divergent (``missing``)."""
    views: dict[str, dict[str, tuple[frozenset[bytes], bytes, tuple[int, int]]]] = {}
    related: dict[str, tuple[tuple[int, int], tuple[str, ...]]] = {}
    for name, region in regions.items():
        for key in region.keys.values():
            if key.mrk is None:
                continue
            # Imported material is each region's own to import: what must agree is which materials the key has.
            materials = frozenset(e.material_id for e in catalogue(key)) if key.origin == EXTERNAL else frozenset(
                m.material_id for m in key.materials)
            views.setdefault(key.key_id, {})[name] = (materials, key.current_material_id, key.mrk.stamp)
            newest = related.get(key.key_id)
            if newest is None or key.mrk.stamp > newest[0]:
                related[key.key_id] = (key.mrk.stamp, key.mrk.related_regions())
    missing = {key_id: sorted(r for r in related[key_id][1] if r in regions and r not in per_region)
               for key_id, per_region in views.items()}
    missing = {key_id: where for key_id, where in missing.items() if where}
    divergent = sorted(key_id for key_id, per_region in views.items()
                       if len(set(per_region.values())) > 1 or key_id in missing)
    return {"multi_region_keys": len(views), "consistent": not divergent, "divergent_keys": divergent,
            "missing": missing}
