"""`trent gateway`: the routing front door as a process of its own, in front of regions given by URL (their
`trent node` processes, on this host or others). A KMS call is routed by its SigV4 credential scope, as the
in-process gateway does, and passed on unchanged (its signature covers the Host header, which is kept) over pooled
keep-alive connections; a region whose nodes cannot be reached gets an AWS-shaped 503. The admin API is the
cluster's: status gathered from every node, clock and faults sent to every node (signed, cluster/links.py), and
`crash`/`restart` passed to the supervisor of `trent up --processes`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy

from trent.cluster.admin import _authorized as token_authorized
from trent.cluster.admin import health_route
from trent.cluster.cluster_view import cluster_status
from trent.cluster.durations import parse_duration
from trent.cluster.fair_loop import run_server
from trent.cluster.files import make_private_dir, remove_cluster_file, write_cluster_file
from trent.cluster.heap import freeze_start_up, tune_collector
from trent.cluster.lifecycle import cancelled, start_role, stop_signal
from trent.cluster.links import sign
from trent.cluster.node_client import NodeConnections, NotConnected
from trent.cluster.region_pool import Backend, RegionPool
from trent.cluster.serving import Servers
from trent.cluster.tls import client_context, server_context
from trent.cluster.worker_processes import die_with_parent
from trent.node import inline_requests
from trent.node.answer import KmsAnswer, can_send
from trent.node.app import make_app
from trent.node.config import ClusterConfig
from trent.node.edge import ConnectionGuard, to_http
from trent.node.endpoint import WireResponse, error_response
from trent.node.fast_path import FastRequest
from trent.node.model.errors import KmsError, internal
from trent.node.wire.protocol import MAX_BODY_BYTES, malformed_request, too_large
from trent.node.wire.sigv4 import ScopeRegions, scope_of

log = logging.getLogger("trent.gateway")
PROCESSES_PATH = "/_trent/processes"  # the supervisor's: crash or restart a region's process
# Never passed on: they describe one connection, not the request (RFC 9110 7.6.1), or are recomputed.
_HOP = frozenset(("connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                  "content-length"))
# Of a node's answer: the hop's own headers, and the Date and Server the gateway's own answer carries.
_NOT_PASSED_ON = _HOP | {"date", "server"}
REQUEST_TIMEOUT = 60.0
HEALTH_INTERVAL = 1.0


def region_urls(config: ClusterConfig) -> dict[str, tuple[str, ...]]:
    """Each region's nodes: the ones configured as peers, else the region's port on this host (trent up's layout)."""
    scheme = "https" if config.tls_cert is not None else "http"
    return {name: tuple(config.peers.get(name, ())) or (f"{scheme}://{config.host}:{config.port_of(name)}",)
            for name in config.regions}


# A node's answer as it came (status, body, headers) when a header repeats, which a WireResponse cannot hold.
NodeAnswer = tuple[int, bytes, list[tuple[str, str]]]


def unreachable(region: str) -> WireResponse:
    return error_response(KmsError("ServiceUnavailableException",
                                   f"The region {region} cannot be reached. Try again later.", 503))


class ProxyGateway:
    def __init__(self, config: ClusterConfig, admin_token: str, supervisor: str | None = None) -> None:
        self.config = config
        self.pool = RegionPool(region_urls(config))
        self._scopes = ScopeRegions()  # the region each Authorization head names
        self.token = admin_token
        self.supervisor = supervisor
        self.servers = Servers(config.host, ConnectionGuard(config.edge), server_context(config))
        self._session: aiohttp.ClientSession | None = None
        self._health: asyncio.Task[None] | None = None
        tls = client_context(config)
        self._connections = {b.url: NodeConnections(b.url, tls) for b in self.pool.all()}

    @property
    def url(self) -> str:
        return self.servers.url(self.config.port)

    @property
    def session(self) -> aiohttp.ClientSession:
        assert self._session is not None
        return self._session

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30.0,
                                         ssl=client_context(self.config) or True)
        self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        await self.pool.check(self.session)
        self._health = asyncio.create_task(self.pool.keep_checking(self.session, HEALTH_INTERVAL))
        app = make_app(self.forward, self._admin_routes())
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                               **self.servers.guard.server_kwargs())
        await runner.setup()
        assert runner.server is not None
        # KMS calls (POST /) skip the application's router and middleware, as on the region ports (node/app.py).
        admin = runner.server.request_handler

        guard = self.servers.guard

        async def first(request: web.BaseRequest) -> web.StreamResponse:
            body_deadline = guard.started(request)  # the connection's head deadline is met (node/edge.py)
            try:
                if request.method == "POST" and request.raw_path == "/" and not request.headers.get("Expect"):
                    return await self.forward(request)
                return await admin(request)
            finally:
                if body_deadline is not None:
                    body_deadline.cancel()

        runner.server.request_handler = first
        self.servers.guard.install(runner.server, self._respond_fast)
        inline_requests.install(asyncio.get_running_loop())  # each request in its connection's task, as on a node
        self._runner = runner
        await self.servers.open_site(runner, self.config.port)

    async def stop(self) -> None:
        await cancelled(self._health)
        if getattr(self, "_runner", None) is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        for connections in self._connections.values():
            connections.close()

    # -- KMS calls --------------------------------------------------------------------------------------------

    async def forward(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return to_http(error_response(too_large()))
        except (web.RequestPayloadError, ConnectionError):
            # A broken chunked body, or one too slow (the guard cut it): this connection ends with the answer.
            broken = to_http(error_response(malformed_request()))
            broken.force_close()
            return broken
        if len(body) > MAX_BODY_BYTES:
            return to_http(error_response(too_large()))
        answer = await self.route(request.headers, body)
        if isinstance(answer, WireResponse):
            # The node's answer as its bytes (node/answer.py), as a region port sends it: no web.Response and
            # header multidict built per call.
            return cast(web.StreamResponse, KmsAnswer(answer)) if can_send(answer) else to_http(answer)
        status, payload, kept = answer
        out = web.Response(status=status, body=payload)
        for name, value in kept:
            out.headers.add(name, value)
        return out

    async def route(self, headers: CIMultiDictProxy[str], body: bytes) -> WireResponse | NodeAnswer:
        """A KMS call (``POST /`` with these headers and body) passed on to a node of the region its credential
        scope names: the node's answer, as a WireResponse unless a header repeats (then as it came); or the
        gateway's own error."""
        region = self._scopes.region(headers.get("Authorization"))
        if region is None:
            try:
                region = scope_of(headers).region
            except KmsError as error:
                return error_response(error)
        if not self.pool.knows(region):
            return error_response(KmsError(
                "InvalidSignatureException", f"Credential should be scoped to a valid region, not '{region}'.", 403))
        head = "".join(["POST / HTTP/1.1\r\n",
                        *(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() not in _HOP)]).encode()
        for backend in self.pool.order(region):
            try:
                status, answer_headers, payload = await self._connections[backend.url].send(head, body,
                                                                                           REQUEST_TIMEOUT)
            except NotConnected:
                backend.healthy = False  # never reached: the next node of the region may take it
                continue
            except (asyncio.IncompleteReadError, TimeoutError, OSError, ValueError) as exc:
                # Sent, but no answer: it may have been carried out, so it is not sent again elsewhere.
                log.info("%s node %s: %s", region, backend.url, exc)
                return unreachable(region)
            kept = [(name, value) for name, value in answer_headers if name.lower() not in _NOT_PASSED_ON]
            passed = dict(kept)
            if len(passed) == len(kept):
                return WireResponse(status, payload, passed)
            return status, payload, kept
        return unreachable(region)

    async def _respond_fast(self, request: FastRequest, body: bytes) -> WireResponse:
        """The fast path's (node/edge.py) KMS call: routed as above; an answer it cannot send as bytes (never a
        node's KMS answer) is a logged 500."""
        answer = await self.route(request.headers, body)
        if isinstance(answer, WireResponse) and can_send(answer):
            return answer
        log.error("a node's answer the gateway's fast path cannot pass on (status %d)",
                  answer.status if isinstance(answer, WireResponse) else answer[0])
        return error_response(internal())

    # -- the cluster's admin API ----------------------------------------------------------------------------

    def _admin_routes(self) -> list[web.RouteDef]:
        guarded = self._guard
        return [health_route(self.token, {"role": "gateway", "pid": os.getpid()}),
                web.get("/_trent/status", guarded(self._status)),
                web.get("/_trent/clock", guarded(self._clock)),
                web.post("/_trent/clock", guarded(self._clock)),
                web.post("/_trent/faults", guarded(self._faults))]

    def _guard(self, fn: Callable[[web.Request], Awaitable[web.Response]]
               ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def guarded(request: web.Request) -> web.Response:
            if not token_authorized(request, self.token):
                return web.json_response({"error": "admin token required"}, status=403)
            return await fn(request)
        return guarded

    async def _node_call(self, backend: Backend, method: str, path: str, body: bytes = b"",
                         timeout: float = 10.0, params: Mapping[str, str] | None = None) -> tuple[int, Any]:
        query = {**(params or {}), "region": backend.region}  # signed: the call is good for this node's region only
        headers = {**sign(self.token, method, path, query, body), "Content-Type": "application/json"}
        async with self.session.request(method, backend.url + path, params=query, data=body or None,
                                        headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as answer:
            return answer.status, json.loads(await answer.read() or b"{}")

    async def _each_region(self, method: str, path: str, body: bytes = b"",
                           every_node: bool = False) -> dict[str, tuple[int, Any] | None]:
        """One answer per region (its first node that answers; None when none does). ``every_node``: a change
        (the clock, faults) every node of a region must take, where a region has several (etcd)."""
        async def ask(region: str) -> tuple[int, Any] | None:
            if every_node and len(self.pool.backends.get(region, [])) > 1:
                async def one(backend: Backend) -> tuple[int, Any] | None:
                    with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError, ValueError):
                        return await self._node_call(backend, method, path, body)
                    return None
                answers = await asyncio.gather(*(one(b) for b in self.pool.order(region)))
                return next((a for a in answers if a is not None), None)
            for backend in self.pool.order(region):
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError, ValueError):
                    return await self._node_call(backend, method, path, body)
            return None
        regions = self.pool.regions()
        answers = await asyncio.gather(*(ask(r) for r in regions))
        return dict(zip(regions, answers, strict=True))

    async def _status(self, _request: web.Request) -> web.Response:
        answers = await self._each_region("GET", "/_trent/status")
        reports = {r: (a[1] if a is not None and a[0] == 200 else None) for r, a in answers.items()}
        urls = {r: nodes[0].url for r, nodes in self.pool.backends.items()}
        status = cluster_status(self.url, self.pool.regions(), urls, reports)
        await self._lag_seconds(status)
        return web.json_response(status)

    async def _lag_seconds(self, status: dict[str, Any]) -> None:
        """How old the oldest record a region has not yet applied is, asked of the region that wrote it (its
        outbox holds the record's time, by its own clock)."""
        async def age(link: dict[str, Any], peer: str) -> None:
            for backend in self.pool.order(peer):
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError, ValueError):
                    code, doc = await self._node_call(backend, "GET", "/_trent/outbox-age", timeout=5.0,
                                                      params={"after": str(link["cursor"])})
                    if code == 200 and isinstance(doc.get("age_seconds"), (int, float)):
                        link["lag_seconds"] = doc["age_seconds"]
                    return
        links = [(link, peer) for region in status["regions"].values() for peer, link in region["replication"].items()]
        for link, _ in links:
            if link["lag_records"] == 0:
                link["lag_seconds"] = 0.0
        await asyncio.gather(*(age(link, peer) for link, peer in links
                               if link["lag_records"] > 0 and status["regions"].get(peer, {}).get("reachable")))

    async def _clock(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.method == "POST":
            try:  # checked here too: a bad duration is one 400, not one per node
                doc = json.loads(body or b"{}")
                if parse_duration(str(doc.get("advance", "0"))) < 0:
                    raise ValueError("the clock only moves forward")
            except (ValueError, AttributeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
        answers = await self._each_region(request.method, "/_trent/clock", body, every_node=True)
        return self._merged(answers, merge_changed=True)

    async def _faults(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            doc = json.loads(body or b"{}")
            action = doc.get("action") if isinstance(doc, dict) else None
        except ValueError:
            return web.json_response({"error": "a JSON object is expected"}, status=400)
        if action in ("crash", "restart"):
            return await self._to_supervisor(body)
        return self._merged(await self._each_region("POST", "/_trent/faults", body, every_node=True))

    def _merged(self, answers: Mapping[str, tuple[int, Any] | None], merge_changed: bool = False) -> web.Response:
        """The nodes' answers as one: a refusal as it is, else the first node's answer (with every node's changes
        when ``merge_changed``) and the regions that did not answer."""
        ok = [a for a in answers.values() if a is not None]
        for status, doc in ok:
            if status != 200:
                return web.json_response(doc, status=status)
        if not ok:
            return web.json_response({"error": "no region's node answers"}, status=503)
        # A disk fault is carried out by the one node serving its region: that node's answer says so.
        first: dict[str, Any] = dict(next((doc for _, doc in ok if (doc.get("disk") or {}).get("here")), ok[0][1]))
        if merge_changed:
            first["changed"] = {k: v for _, doc in ok for k, v in doc.get("changed", {}).items()}
        silent = sorted(r for r, a in answers.items() if a is None)
        if silent:
            first["unreachable"] = silent
        return web.json_response(first)

    async def _to_supervisor(self, body: bytes) -> web.Response:
        if self.supervisor is None:
            return web.json_response({"error": "crash and restart act on a region's own process: they need the "
                                      "cluster run by `trent up --processes`"}, status=400)
        headers = {**sign(self.token, "POST", PROCESSES_PATH, {}, body), "Content-Type": "application/json"}
        try:
            async with self.session.post(self.supervisor + PROCESSES_PATH, data=body, headers=headers,
                                         timeout=aiohttp.ClientTimeout(total=90)) as answer:
                return web.Response(status=answer.status, body=await answer.read(), content_type="application/json")
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.json_response({"error": f"the supervisor is not reachable: {exc}"}, status=503)


async def serve(config: ClusterConfig, admin_token: str, supervisor: str | None = None,
                supervised: bool = False) -> int:
    stop = stop_signal()
    role = await start_role(lambda: ProxyGateway(config, admin_token, supervisor), "trent gateway")
    if role is None:
        return 1
    freeze_start_up()
    if not supervised:
        # For `trent status|clock|fault --data-dir` on this host (a supervisor writes its own).
        make_private_dir(config.data_dir)  # (a gateway given its token in the config has made nothing there yet)
        write_cluster_file(config.data_dir, {"gateway": role.url, "regions": {r: u[0].url for r, u in
                                                                             role.pool.backends.items()},
                                             "pid": os.getpid(), "workers": [],
                                             "ca": str(config.tls_ca) if config.tls_ca else None})
    print("ready" if supervised else f"Trent gateway is up on {role.url}", flush=True)
    parent = os.getppid()
    while not stop.is_set():
        if supervised and os.getppid() != parent:
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    await role.stop()
    if not supervised:
        remove_cluster_file(config.data_dir)
    return 0


def supervised_main() -> int:
    """The gateway of `trent up --processes`: configuration, admin token and supervisor URL through stdin."""
    die_with_parent()
    config, token, supervisor = pickle.loads(sys.stdin.buffer.read())  # written by our parent, through a pipe
    if not isinstance(config, ClusterConfig):
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s gateway %(name)s %(levelname)s %(message)s")
    tune_collector()
    return run_server(serve(config, token, supervisor, supervised=True))


if __name__ == "__main__":
    sys.exit(supervised_main())
