"""The background work of a process serving etcd-backed regions: every node of such a region serves its requests,
but its scheduler and replication pullers run on the one node that holds the region's lease
(cluster/etcd_election.py), and outbox trimming where this process leads every region it serves. Regions on
SQLite in the same process keep their work running as before."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import aiohttp

from trent.cluster.etcd_election import LeaseElection, new_node_id
from trent.cluster.jobs import Jobs, ReplicationLinks
from trent.cluster.lifecycle import Component
from trent.node.crypto.handles import SecretBytes
from trent.node.crypto.rootkey import RootKey
from trent.node.store.base import StoreError
from trent.node.store.etcd import EtcdStore

log = logging.getLogger("trent.jobs")


def etcd_stores(stores: Mapping[str, object]) -> dict[str, EtcdStore]:
    return {name: store for name, store in stores.items() if isinstance(store, EtcdStore)}


class ElectedLinks(ReplicationLinks):
    """Replication pullers that run, per region, only while this node leads the region (always, for a region that
    is not elected). Stepping down stops the pullers but keeps the outbox open: peers still pull from this node."""

    def __init__(self, *args: Any, elected: frozenset[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.leading = {name for name in self.replications if name not in elected}
        self._wanted = False
        self._running: set[str] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.tls or True))
        self._wanted = True
        for name in sorted(self.leading):
            self._start_region(name)

    def _start_region(self, name: str) -> None:
        if not self._wanted or name in self._running or self._session is None:
            return
        peers = {peer: url for peer, url in self.urls.items() if peer != name}
        delays = {peer: self.delay(peer, name) for peer in peers} if self.delay else {}
        self.replications[name].start(peers, self.token, self.faults, self._session, delays)
        self._running.add(name)

    async def lead(self, name: str) -> None:
        self.leading.add(name)
        self._start_region(name)

    async def follow(self, name: str) -> None:
        self.leading.discard(name)
        if name in self._running:
            self._running.discard(name)
            await self.replications[name].stop()

    async def stop(self) -> None:
        self._wanted = False
        self._running.clear()
        await super().stop()


class ElectedWork:
    """What a region's lease holder runs: its jobs (the scheduler) and pullers; ``shared`` (outbox trimming, which
    reads every region's cursors in this process) while this process leads all its elected regions."""

    def __init__(self, per_region: Mapping[str, list[Component]], links: ElectedLinks, shared: list[Component],
                 elected: frozenset[str]) -> None:
        self.jobs = {name: Jobs(jobs) for name, jobs in per_region.items()}
        self.links = links
        self.shared = Jobs(shared)
        self.elected = elected
        self.leading: set[str] = set()
        self._shared_running = False

    async def lead(self, name: str) -> None:
        self.leading.add(name)
        await self.jobs[name].start()
        await self.links.lead(name)
        if self.leading >= self.elected and not self._shared_running:
            self._shared_running = True
            await self.shared.start()

    async def follow(self, name: str) -> None:
        self.leading.discard(name)
        if self._shared_running:
            self._shared_running = False
            await self.shared.stop()
        await self.links.follow(name)
        await self.jobs[name].stop()


class SyncOnWatch:
    """Catches a region up on the event loop as soon as its store's watch brings another node's commit: the
    outbox's waiting peers (long-polls) hear of records another node appended at once, not at the next request.
    Pokes that arrive while one catch-up is pending make no more."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sync: Callable[[], object]) -> None:
        self.loop = loop
        self.sync = sync
        self.pending = False

    def poke(self) -> None:  # (the watch thread)
        if self.pending:
            return
        self.pending = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: the node is stopping
            self.loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        self.pending = False
        try:
            self.sync()
        except StoreError as exc:  # (the view is stale: requests are refused until the watch is back)
            log.debug("catch-up on watch: %s", exc)


class Elections:
    """A job: one lease election per etcd-backed region of this process (which also keeps each region caught up
    with the other nodes' commits as the watch brings them)."""

    def __init__(self, stores: Mapping[str, EtcdStore], work: ElectedWork,
                 describe: Callable[[str], dict[str, Any]],
                 syncs: Mapping[str, Callable[[], object]] | None = None) -> None:
        node_id = new_node_id()
        self.work = work
        self.syncs = dict(syncs or {})
        self.elections = {name: LeaseElection(store, node_id, partial(describe, name), partial(work.lead, name),
                                              partial(work.follow, name))
                          for name, store in stores.items()}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, sync in self.syncs.items():
            self.elections[name].store.on_change(SyncOnWatch(loop, sync).poke)
        for election in self.elections.values():
            await election.start()

    async def stop(self) -> None:
        for election in self.elections.values():
            await election.stop()

    def report(self, region: str) -> dict[str, Any] | None:
        election = self.elections.get(region)
        if election is None:
            return None
        return {**election.report(), "etcd": election.store.client.health(), "watching": election.store.watching,
                "background_running": region in self.work.leading}


ROOT_CHECK = "root-check"  # in the region's meta table: a known value wrapped under the region's root key


def prepare_region(store: EtcdStore, root: RootKey, meta: str, now: float) -> None:
    """What every node of an etcd-backed region must agree on before it serves, written once by whichever node
    starts first: a value wrapped under the region's root key (a node whose key does not unwrap it refuses to
    start, before it could write anything the others cannot read: root keys come from `trent init` bundles or
    ``root_keys``, never from etcd), the outbox's identity and the start of usage tracking."""
    store.declare(meta)
    aad = f"trent/root-check/{store.region}".encode()
    try:
        wrapped = store.put_if_absent(meta, ROOT_CHECK, root.wrap(SecretBytes(b"trent region root key check"), aad))
        store.put_if_absent(meta, "outbox-identity", secrets.token_hex(8).encode())
        store.put_if_absent(meta, "tracking_start", repr(now).encode())
    except StoreError as exc:
        raise OSError(str(exc)) from exc
    try:
        root.unwrap(wrapped, aad)
    except ValueError:
        raise ValueError(f"region {store.region}: this node's root key is not the one the region's data in etcd is "
                         "wrapped under (give every node of the region the same root key: its trent init bundle "
                         "or root_keys)") from None
