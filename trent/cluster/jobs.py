"""Background work as components a role starts and stops: the scheduler of each region, replication's pullers,
outbox trimming, audit flushing, the key-pair pool, the region host following the workers' commits."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from trent.cluster.faults import Faults
from trent.cluster.lifecycle import Component as Job
from trent.cluster.lifecycle import cancelled
from trent.cluster.replication.wiring import RegionReplication
from trent.cluster.shared_runtime import follow_workers
from trent.node.audit.trail import AuditTrail
from trent.node.crypto.keypool import KeyPairPool
from trent.node.scheduler import Scheduler
from trent.node.service import Region
from trent.node.store.base import StoreError

log = logging.getLogger("trent.jobs")


class Jobs:
    """Jobs started in order and stopped in reverse; a job whose stop fails is logged, and the rest still stop."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self.jobs = list(jobs)
        self._started: list[Job] = []

    async def start(self) -> None:
        for job in self.jobs:
            await job.start()
            self._started.append(job)

    async def stop(self) -> None:
        while self._started:
            job = self._started.pop()
            try:
                await job.stop()
            except Exception:
                log.exception("stopping %r failed", job)


class _Task:
    """A job that is one asyncio task, cancelled on stop."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._task: asyncio.Task[None] | None = None

    def _run(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._task = asyncio.create_task(coroutine, name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancelled(task)

    def __repr__(self) -> str:
        return f"<job {self.name}>"


class Periodic(_Task):
    """``tick`` (plain or async) every ``interval`` seconds; a tick that fails is logged and the next one runs (an
    escaped error would end the task silently and stop that work for good)."""

    def __init__(self, name: str, interval: float, tick: Callable[[], object]) -> None:
        super().__init__(name)
        self.interval = interval
        self._tick = tick

    async def start(self) -> None:
        self._run(self._forever())

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                result = self._tick()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("%s failed", self.name)


class SchedulerJob(_Task):
    """A region's scheduler: first the work that fell due while the cluster was stopped, then a tick per interval."""

    def __init__(self, scheduler: Scheduler, interval: float) -> None:
        super().__init__(f"scheduler {scheduler.region.name}")
        self.scheduler = scheduler
        self.interval = interval

    async def start(self) -> None:
        self.scheduler.run_due()
        self._run(self.scheduler.run_forever(self.interval))


class AuditFlushing(Periodic):
    """Audit records are fsynced in batches: at most ``interval`` after the call they describe."""

    def __init__(self, trails: Mapping[str, AuditTrail], interval: float = 0.2) -> None:
        super().__init__("audit flushing", interval, self.flush)
        self.trails = dict(trails)

    async def flush(self) -> None:
        for name, trail in self.trails.items():
            try:
                # fsync in a worker thread: the event loop keeps serving meanwhile.
                await asyncio.to_thread(trail.flush)
            except OSError:
                log.exception("region %s: cannot write the audit log", name)


class OutboxTrimming(Periodic):
    """Drops outbox records every other region has applied, and change-feed entries every process has seen. A
    peer's cursor is read where it lives when that is this process, else taken from the peer's latest pull."""

    def __init__(self, replications: Mapping[str, RegionReplication], feed_trimmers: list[Callable[[], object]],
                 interval: float = 30.0) -> None:
        super().__init__("outbox trimming", interval, self._tick_once)
        self.replications = dict(replications)
        self._feed_trimmers = feed_trimmers

    def trim(self) -> int:
        removed = 0
        for name, replication in self.replications.items():
            peers = set(replication.pullers) | {p for p in self.replications if p != name}
            cursors = [self.replications[p].cursors.get(name) if p in self.replications
                       else replication.outbox.pulled.get(p) for p in peers]
            if cursors and None not in cursors:  # a peer not heard from yet may need every record
                removed += replication.outbox.trim_through(min(c for c in cursors if c is not None))
        return removed

    def _tick_once(self) -> None:
        try:
            self.trim()
            for trim_feed in self._feed_trimmers:
                trim_feed()
        except StoreError:
            log.warning("outbox trimming deferred (store error)")


class FollowWorkers(_Task):
    """The region host catches up with the workers' commits as they tell of them (cluster/shared_runtime.py): the
    replication long-polls it answers wake on their outbox records, and its scheduler sees their keys."""

    def __init__(self, data_dir: Path, regions: list[Region]) -> None:
        super().__init__("following the workers")
        self.data_dir = data_dir
        self.regions = regions

    async def start(self) -> None:
        self._run(follow_workers(self.data_dir, self.regions))


class KeyPairPoolJob:
    """The key-pair pool fills itself (a thread, started on first demand); stopping ends that thread."""

    def __init__(self, pool: KeyPairPool) -> None:
        self.pool = pool

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.pool.stop()


class ReplicationLinks:
    """Every region pulls every other region's outbox over HTTP (one puller per pair, one client session); on stop
    the pullers end and the outboxes release the peers' long-polls they hold."""

    def __init__(self, replications: Mapping[str, RegionReplication], urls: Mapping[str, str], token: str,
                 faults: Faults, delay: Callable[[str, str], float] | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.replications = dict(replications)
        # One-way delay between two regions added to their links (--latency-profile), and TLS towards https peers.
        self.delay = delay
        self.tls = tls
        self.urls = dict(urls)
        self.token = token
        self.faults = faults
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.tls or True))
        self._start_pullers(self._session)

    def _start_pullers(self, session: aiohttp.ClientSession) -> None:
        for name, replication in self.replications.items():
            peers = {peer: url for peer, url in self.urls.items() if peer != name}
            delays = {peer: self.delay(peer, name) for peer in peers} if self.delay else {}
            replication.start(peers, self.token, self.faults, session, delays)

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No puller runs inside (a reset: nothing fetched before it is applied after it); they start again after."""
        for replication in self.replications.values():
            await replication.stop()
        try:
            yield
        finally:
            if self._session is not None:  # started (and not stopped meanwhile)
                self._start_pullers(self._session)

    async def stop(self) -> None:
        for replication in self.replications.values():
            await replication.stop()
            replication.outbox.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
