"""aiohttp adapter: moves bytes between HTTP and a transport-free KmsEndpoint."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from node.endpoint import KmsEndpoint, WireRequest, WireResponse
from node.model.errors import KmsError
from node.wire.protocol import CONTENT_TYPE, MAX_BODY_BYTES, encode_error

EndpointFor = Callable[[web.Request], KmsEndpoint | WireResponse]


def error_response(error: KmsError) -> web.Response:
    return web.Response(status=error.status, body=encode_error(error), headers={"Content-Type": CONTENT_TYPE})


async def read_wire_request(request: web.Request) -> WireRequest | web.Response:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        return error_response(KmsError("ValidationException", f"Request body exceeds {MAX_BODY_BYTES} bytes.", 413))
    raw_path = request.raw_path.split("?", 1)[0]
    return WireRequest(
        method=request.method, path=raw_path, query=request.query_string, headers=request.headers, body=body,
        remote=request.remote or "",
    )


def to_http(response: WireResponse) -> web.Response:
    return web.Response(status=response.status, body=response.body, headers=response.headers)


def kms_handler(endpoint_for: EndpointFor) -> Callable[[web.Request], object]:
    """An aiohttp handler that picks an endpoint per request (the gateway routes; a region port has one)."""

    async def handle(request: web.Request) -> web.Response:
        wire = await read_wire_request(request)
        if isinstance(wire, web.Response):
            return wire
        target = endpoint_for(request)
        if isinstance(target, WireResponse):
            return to_http(target)
        return to_http(target.handle(wire))

    return handle


def make_app(handler: Callable[[web.Request], object], admin_routes: list[web.RouteDef]) -> web.Application:
    # A little above the KMS limit, so an oversize body reaches the endpoint and gets a KMS-shaped error.
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
    app.add_routes(admin_routes)
    app.router.add_route("*", "/{tail:.*}", handler)  # type: ignore[arg-type]
    return app
