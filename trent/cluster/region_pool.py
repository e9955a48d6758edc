"""The gateway's view of where each region is served: region → its nodes' URLs (one today; several once a region
runs several nodes), health-checked in the background, picked round-robin among the healthy ones."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import aiohttp

log = logging.getLogger("trent.gateway")
HEALTH_PATH = "/_trent/health"


@dataclass
class Backend:
    region: str
    url: str
    healthy: bool = True  # until a check or a request says otherwise: a fresh gateway tries every node


class RegionPool:
    def __init__(self, urls: Mapping[str, tuple[str, ...]]) -> None:
        self.backends = {region: [Backend(region, url) for url in region_urls] for region, region_urls in urls.items()}
        self._turn = {region: itertools.count() for region in urls}

    def regions(self) -> list[str]:
        return list(self.backends)

    def knows(self, region: str) -> bool:
        return region in self.backends

    def order(self, region: str) -> list[Backend]:
        """The region's nodes to try, in order: the healthy ones (starting with the next in turn), then the others
        (a node that just came back answers before its next health check)."""
        nodes = self.backends.get(region, [])
        if not nodes:
            return []
        start = next(self._turn[region]) % len(nodes)
        rotated = nodes[start:] + nodes[:start]
        return [b for b in rotated if b.healthy] + [b for b in rotated if not b.healthy]

    def all(self) -> Iterator[Backend]:
        for nodes in self.backends.values():
            yield from nodes

    async def check(self, session: aiohttp.ClientSession, timeout: float = 1.0) -> None:
        await asyncio.gather(*(self._check_one(session, b, timeout) for b in self.all()))

    @staticmethod
    async def _check_one(session: aiohttp.ClientSession, backend: Backend, timeout: float) -> None:
        try:
            async with session.get(backend.url + HEALTH_PATH, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                healthy = r.status == 200
        except (aiohttp.ClientError, TimeoutError, OSError):
            healthy = False
        if healthy != backend.healthy:
            log.warning("%s node %s is %s", backend.region, backend.url, "back" if healthy else "unreachable")
        backend.healthy = healthy

    async def keep_checking(self, session: aiohttp.ClientSession, interval: float) -> None:
        while True:
            await self.check(session)
            await asyncio.sleep(interval)
