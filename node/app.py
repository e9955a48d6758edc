"""aiohttp adapter: moves bytes between HTTP and a transport-free KmsEndpoint."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from node.endpoint import KmsEndpoint, WireRequest, WireResponse, error_response
from node.model.errors import internal
from node.wire.protocol import MAX_BODY_BYTES, too_large

EndpointFor = Callable[[web.Request], KmsEndpoint | WireResponse]
# Consulted before a request reaches its region: injected faults answer here (or cut the connection).
Gate = Callable[[KmsEndpoint, web.Request], Awaitable[WireResponse | None]]

log = logging.getLogger("trent.http")


def to_http(response: WireResponse) -> web.Response:
    return web.Response(status=response.status, body=response.body, headers=response.headers)


def kms_handler(endpoint_for: EndpointFor, gate: Gate | None = None
                ) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An aiohttp handler that picks an endpoint per request (the gateway routes; a region port has one)."""

    async def handle(request: web.Request) -> web.Response:
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return to_http(error_response(too_large()))
            target = endpoint_for(request)
            if type(target) is WireResponse:
                return to_http(target)
            assert isinstance(target, KmsEndpoint)
            if gate is not None:
                refused = await gate(target, request)
                if refused is not None:
                    return to_http(refused)
            # The query as sent (still percent-encoded), without building aiohttp's parsed URL for every request.
            raw_path, _, query = request.raw_path.partition("?")
            return to_http(target.handle(WireRequest(request.method, raw_path, query, request.headers, body,
                                                     request.remote or "")))
        except (web.HTTPException, ConnectionError):
            raise  # aiohttp's own answers, and clients that went away
        except Exception:
            # Never aiohttp's text/plain 500: clients parse a KMS error, and retry it.
            log.exception("internal error routing %s %s", request.method, request.path)
            return to_http(error_response(internal()))

    return handle


def make_app(handler: Callable[[web.Request], Awaitable[web.Response]], admin_routes: list[web.RouteDef]
             ) -> web.Application:
    # A little above the KMS limit, so an oversize body reaches the endpoint and gets a KMS-shaped error.
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
    # Every KMS call is POST /: a plain route, matched by comparing strings, comes first. Anything else reaches
    # the admin API or, failing that, the KMS handler too (which answers it as KMS would).
    app.router.add_route("POST", "/", handler)
    app.add_routes(admin_routes)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app
