"""This process's HTTP servers: an aiohttp runner per listening role (the gateway, each region's port, the private
admin port), KMS calls taken on the fast path in front of the application, every port sharing one set of
connection limits (node/edge.py)."""

from __future__ import annotations

import ssl
from collections.abc import Callable

from aiohttp import web

from trent.node.app import EndpointFor, Gate, kms_first, kms_handler, make_app
from trent.node.edge import ConnectionGuard
from trent.node.endpoint import KmsEndpoint, WireResponse
from trent.node.fast_path import KmsRequest


def fixed(endpoint: KmsEndpoint) -> Callable[[KmsRequest], KmsEndpoint]:
    """A region's own port: every KMS call goes to its endpoint."""
    def route(_request: KmsRequest) -> KmsEndpoint:
        return endpoint
    return route


def no_kms(_request: KmsRequest) -> WireResponse:
    """A port that serves only the admin API."""
    return WireResponse(404, b"")


class Servers:
    def __init__(self, host: str, guard: ConnectionGuard, tls: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.guard = guard
        self.tls = tls  # client-facing TLS on every public port, when a certificate is configured
        self._runners: list[web.AppRunner] = []

    def url(self, port: int) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{port}"

    async def serve(self, endpoint_for: EndpointFor, gate: Gate | None, routes: list[web.RouteDef],
                    port: int | None = None, reuse_port: bool = False) -> web.AppRunner:
        """KMS calls to ``endpoint_for``, the rest to ``routes``; on ``port`` if given (else the caller opens sites)."""
        app = make_app(kms_handler(endpoint_for, gate), routes)
        # In-flight requests (replication long-polls among them) get a moment to finish, not a minute.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                               **self.guard.server_kwargs())
        await runner.setup()
        assert runner.server is not None
        kms_first(runner.server, endpoint_for, gate, self.guard)
        self._runners.append(runner)
        if port is not None:
            await self.open_site(runner, port, reuse_port)
        return runner

    async def open_site(self, runner: web.AppRunner, port: int, reuse_port: bool = False) -> web.TCPSite:
        # reuse_port: several processes accept on the gateway port, the kernel spreading connections among them.
        site = web.TCPSite(runner, self.host, port, backlog=1024, reuse_address=True, reuse_port=reuse_port or None,
                           ssl_context=self.tls)
        await site.start()
        return site

    async def serve_private(self, routes: list[web.RouteDef]) -> str:
        """``routes`` alone on a loopback port the system picks (for this cluster's own processes); its URL."""
        runner = await self.serve(no_kms, None, routes)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
