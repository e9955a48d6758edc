"""Moving log records between regions over HTTP: each region serves its outbox (long-poll), and pulls every
peer's outbox from where its cursor stands."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
import msgpack
from aiohttp import web

from trent.cluster.faults import Faults
from trent.cluster.links import SIGNATURE_HEADER, LinkVerifier, sign
from trent.cluster.replication.applier import Applier
from trent.cluster.replication.log import Outbox
from trent.node.store.base import StoreError

log = logging.getLogger("trent.replication")
LOG_PATH = "/_trent/replication/log"
BATCH = 256
LONG_POLL_SECONDS = 5.0


def outbox_route(region: str, outbox: Outbox, token: str, faults: Faults,
                 verifier: LinkVerifier | None = None) -> web.RouteDef:
    """``token``: the cluster's replication secret, which every pull is signed with (cluster/links.py)."""
    links = verifier or LinkVerifier(token)

    async def serve(request: web.Request) -> web.StreamResponse:
        if faults.is_down(region):
            _drop(request)
            return web.Response(status=503)
        # Signed for this region's outbox (the region is in the signed query): a pull captured on its way to one
        # region cannot be replayed to another.
        if request.query.get("region") != region or not links.verify(
                request.method, request.path, request.query.items(), request.headers.get(SIGNATURE_HEADER)):
            return web.Response(status=403, text="a request signed by a node of this cluster is required")
        try:
            after = int(request.query.get("after", "0"))
            wait = min(float(request.query.get("wait", "0")), 30.0)
            limit = max(1, min(int(request.query.get("limit", str(BATCH))), 1000))
        except ValueError:
            return web.Response(status=400, text="bad query")
        consumer = request.query.get("from")
        if consumer:  # signed with the rest of the query: only a node of this cluster speaks for a region
            outbox.pulled[consumer] = after
        # Headers go out at once, so the puller knows the link is up while it waits for news (long-poll).
        response = web.StreamResponse(headers={"Content-Type": "application/msgpack"})
        await response.prepare(request)
        await outbox.wait_beyond(after, wait)
        if faults.is_down(region) or request.transport is None or request.transport.is_closing():
            # It went down during the long-poll (the connection is cut, no body follows), or the puller left.
            _drop(request)
            return response
        records = outbox.read_after(after, limit)
        durable = outbox.store.durable()
        if durable is not None:
            # No peer applies a record its origin could still lose (a crash of the machine before the fsync).
            try:
                await asyncio.wrap_future(durable)
            except StoreError:
                _drop(request)
                return response
        body = msgpack.packb({"region": region, "identity": outbox.identity, "head": outbox.head,
                              "records": records}, use_bin_type=True)
        with contextlib.suppress(ConnectionError):  # the peer went away, or this region went down meanwhile
            await response.write(body)
            await response.write_eof()
        return response
    return web.get(LOG_PATH, serve)


def _drop(request: web.Request) -> None:
    """A region that is down does not answer: the connection is cut, as an unreachable host's would be."""
    if request.transport is not None:
        request.transport.close()


class Puller:
    """Pulls one peer's outbox into one region, forever; survives the peer being down or partitioned."""

    def __init__(self, region: str, peer: str, peer_url: str, applier: Applier, token: str,
                 faults: Faults, session: aiohttp.ClientSession, delay: float = 0.0) -> None:
        self.region = region
        self.peer = peer
        self.peer_url = peer_url
        self.applier = applier
        self.token = token
        self.faults = faults
        self.session = session
        # One-way network delay to add to each pull and each answer (--latency-profile): a round trip per pull.
        self.delay = delay
        self.connected = False
        self.peer_head = 0
        self._known_identity: str | None = None

    @property
    def link_up(self) -> bool:
        """The peer answers and no fault stands between the two regions."""
        return self.connected and self.faults.can_replicate(self.peer, self.region)

    async def run(self) -> None:
        backoff = 0.05
        while True:
            if not self.faults.can_replicate(self.peer, self.region):
                self.connected = False
                await asyncio.sleep(0.05)
                continue
            try:
                await self._pull_once()
                backoff = 0.05
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError, StoreError) as exc:
                # StoreError: applying failed and changed nothing; the record is fetched and applied again.
                self.connected = False
                log.debug("%s <- %s: %s", self.region, self.peer, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
            except Exception:
                # A bug must not end replication from this peer silently: log it and keep trying.
                self.connected = False
                log.exception("%s <- %s: pulling failed", self.region, self.peer)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _pull_once(self) -> None:
        after = self.applier.cursors.get(self.peer)
        applied = self.applier.region.store.durable()
        if applied is not None:
            # The pull tells the peer how far this region applied its log, and the peer may then trim it: only what
            # is durable here may be said (StoreError if this store failed a sync: nothing more is said).
            await asyncio.wrap_future(applied)
        params = {"after": str(after), "limit": str(BATCH), "wait": str(LONG_POLL_SECONDS), "region": self.peer,
                  "from": self.region}
        timeout = aiohttp.ClientTimeout(total=LONG_POLL_SECONDS + 10)
        if self.delay:
            await asyncio.sleep(self.delay)  # the request on its way
        async with self.session.get(self.peer_url + LOG_PATH, params=params, timeout=timeout,
                                    headers=sign(self.token, "GET", LOG_PATH, params)) as response:
            if response.status != 200:
                raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
            self.connected = True
            doc = msgpack.unpackb(await response.read(), raw=False)
        if self.delay:
            await asyncio.sleep(self.delay)  # the answer on its way back
        identity = doc.get("identity")
        if isinstance(identity, str) and identity != self._known_identity:
            self.applier.cursors.follow(self.peer, identity)
            self._known_identity = identity
            if self.applier.cursors.get(self.peer) != after:
                return  # the peer's log started over: fetch it again from the start
        self.peer_head = int(doc["head"])
        for seq, raw in doc["records"]:
            if not self.faults.can_replicate(self.peer, self.region):
                return  # a partition fell while we were fetching: what was not applied is fetched again later
            self.applier.apply(self.peer, int(seq), raw)
