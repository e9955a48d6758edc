"""`--any-region`: a region the configuration does not name is created the first time a request signed for it reaches
the gateway, so code that signs for us-west-2 just works. Such a region is served through the gateway only (no port
of its own), has a store, root key, audit trail and scheduler like any other, and is kept across restarts (its
data directory stays; the next request for it opens it again). It takes no part in replication: multi-Region keys
stay among the configured regions, which have ports and pull one another's outboxes."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import replace

from trent.cluster.compose import Parts, RegionParts
from trent.cluster.jobs import AuditFlushing
from trent.node.endpoint import KmsEndpoint
from trent.node.scheduler import Scheduler

log = logging.getLogger("trent.regions")
# The shape of AWS's region names (us-west-2, eu-central-1, us-gov-west-1, ap-southeast-5): a client's credential
# scope is anyone's to write, and the name becomes a directory.
REGION_NAME_RE = re.compile(r"[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]{3,12}-[0-9]{1,2}")
# However many names requests make up, at most this many regions are made.
MAX_NEW_REGIONS = 32


class AnyRegion:
    def __init__(self, parts: Parts, make: Callable[[str], RegionParts], schedulers: dict[str, Scheduler],
                 added: Callable[[str, RegionParts], None]) -> None:
        self._parts = parts
        self._make = make
        # The host's schedulers by region: `trent clock advance` runs a new region's too.
        self._schedulers = schedulers
        self._added = added
        self._flushing = AuditFlushing({})
        self._tasks: list[asyncio.Task[None]] = []
        self.created: list[str] = []

    async def start(self) -> None:
        """Also opens the regions earlier runs made (their directories), so status, clock and reset see them."""
        await self._flushing.start()
        for path in sorted(self._parts.config.data_dir.iterdir()):
            if path.is_dir() and path.name not in self._parts.regions:
                self.endpoint(path.name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._flushing.stop()
        for name in self.created:
            self._flushing.trails[name].flush()

    def for_request(self, region: str, access_key: str) -> KmsEndpoint | None:
        """The gateway's question: only a request naming a configured principal's access key makes a region (with
        signatures checked; the request's own signature is checked by the region as usual)."""
        config = self._parts.config
        if config.verify_signatures and all(p.access_key != access_key for p in config.effective_principals()):
            return None
        return self.endpoint(region)

    def endpoint(self, region: str) -> KmsEndpoint | None:
        """The endpoint of ``region``, made now if it is a region name and the limit is not reached."""
        known = self._parts.regions.get(region)
        if known is not None:
            return known.endpoint
        if REGION_NAME_RE.fullmatch(region) is None or len(self.created) >= MAX_NEW_REGIONS:
            return None
        parts = self._make(region)
        parts = replace(parts, port=self._parts.config.port)  # reached through the gateway only
        self._parts.regions[region] = parts
        self.created.append(region)
        self._flushing.trails[region] = parts.trail
        scheduler = Scheduler(parts.region)
        self._schedulers[region] = scheduler
        scheduler.run_due()
        self._tasks.append(asyncio.create_task(scheduler.run_forever(self._parts.config.scheduler_interval),
                                               name=f"scheduler {region}"))
        self._added(region, parts)
        log.info("region %s created on first use", region)
        return parts.endpoint
