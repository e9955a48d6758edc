"""Which node of an etcd-backed region does the region's background work (its scheduler, replication pullers, outbox
trimming): the one holding ``.leader``, a key tied to that node's etcd lease.

Every node registers itself under ``.nodes/<id>`` with its lease (what `trent status` lists) and campaigns: one
transaction creates ``.leader`` only if it does not exist. The holder keeps its lease alive every third of the TTL;
when it dies its lease expires within the TTL, etcd deletes ``.leader``, every other node hears of it through the
store's watch at once and campaigns again. A holder that cannot renew its lease for a whole TTL stops the work
itself: by then another node may hold it. A node that stops cleanly revokes its lease, so the work moves at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from trent.cluster.lifecycle import cancelled
from trent.node.store.etcd import EtcdStore
from trent.node.store.etcd_client import EtcdError, b64

log = logging.getLogger("trent.election")
LEADER, NODES = ".leader", ".nodes/"


def new_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class LeaseElection:
    def __init__(self, store: EtcdStore, node_id: str, describe: Callable[[], dict[str, Any]],
                 lead: Callable[[], Awaitable[None]], follow: Callable[[], Awaitable[None]],
                 ttl: int | None = None, monotonic: Callable[[], float] = time.monotonic) -> None:
        """``describe``: this node as the others see it (its URL); ``lead``/``follow``: start/stop the work."""
        self.store = store
        self.node_id = node_id
        self.describe = describe
        self._lead, self._follow = lead, follow
        self.ttl = ttl or store.client.settings.lease_ttl
        self.monotonic = monotonic
        self.leading = False
        self.lease = 0
        self._renewed = 0.0
        self._task: asyncio.Task[None] | None = None
        self._nudge: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        store.on_control(self._heard)

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._nudge = asyncio.Event()
        await self._register()
        await self._campaign()
        self._task = asyncio.create_task(self._run(), name=f"election {self.store.region}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancelled(task)
        await self._step_down("stopping")
        if self.lease:
            with contextlib.suppress(EtcdError):
                # Revoked: .leader and this node's entry go at once, and another node takes the work now.
                await asyncio.to_thread(self.store.client.lease_revoke, self.lease)
            self.lease = 0

    # -- the campaign ---------------------------------------------------------------------------------------

    async def _register(self) -> None:
        client = self.store.client
        self.lease = await asyncio.to_thread(client.lease_grant, self.ttl)
        self._renewed = self.monotonic()
        doc = json.dumps({**self.describe(), "node": self.node_id, "pid": os.getpid(),
                          "host": socket.gethostname()}).encode()
        key = self.store.control_key(NODES + self.node_id)
        await asyncio.to_thread(client.txn, [], [{"request_put": {"key": b64(key), "value": b64(doc),
                                                                  "lease": self.lease}}])

    async def _campaign(self) -> None:
        if self.leading:
            return
        key = b64(self.store.control_key(LEADER))
        answer = await asyncio.to_thread(
            self.store.client.txn,
            [{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
            [{"request_put": {"key": key, "value": b64(self.node_id), "lease": self.lease}}])
        if answer.get("succeeded"):
            log.info("region %s: node %s now does the background work", self.store.region, self.node_id)
            self.leading = True
            await self._lead()

    async def _run(self) -> None:
        assert self._nudge is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), self.ttl / 3)
            self._nudge.clear()
            try:
                await self._renew()
                await self._campaign()
            except EtcdError as exc:
                log.warning("region %s: election: %s", self.store.region, exc)
            except Exception:
                # Starting or stopping the work failed (a store error in a first scheduler run, say): the campaign
                # goes on, or the region would be left without anyone doing its background work.
                log.exception("region %s: election step failed", self.store.region)
            if self.leading and self.monotonic() - self._renewed > self.ttl:
                await self._step_down("its lease could not be renewed for a whole TTL")

    async def _renew(self) -> None:
        ttl = await asyncio.to_thread(self.store.client.lease_keepalive, self.lease)
        if ttl > 0:
            self._renewed = self.monotonic()
            return
        # The lease expired (etcd unreachable too long, or this process stood still): whatever it held is gone.
        await self._step_down("its lease expired")
        await self._register()

    async def _step_down(self, why: str) -> None:
        if self.leading:
            self.leading = False
            (log.info if why == "stopping" else log.warning)(
                "region %s: node %s stops the background work: %s", self.store.region, self.node_id, why)
            await self._follow()

    def _heard(self, name: str, value: bytes | None, _revision: int) -> None:
        """From the store's watch thread: ``.leader`` went away (its holder died or left): campaign now."""
        if name == LEADER and value is None and self._loop is not None and self._nudge is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the node is stopping
                self._loop.call_soon_threadsafe(self._nudge.set)

    # -- what status shows ----------------------------------------------------------------------------------

    def report(self) -> dict[str, Any]:
        nodes = []
        for _name, raw in sorted(self.store.controls(NODES).items()):
            try:
                nodes.append(json.loads(raw))
            except ValueError:
                continue
        holder = self.store.controls(LEADER).get(LEADER)
        return {"node": self.node_id, "leading": self.leading, "lease_holder": holder.decode() if holder else None,
                "nodes": nodes, "lease_ttl": self.ttl}
