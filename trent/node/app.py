"""aiohttp adapter: moves bytes between HTTP and a transport-free KmsEndpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web

from trent.node import inline_requests
from trent.node.answer import KmsAnswer, can_send
from trent.node.consistency import STALE_ATTEMPTS
from trent.node.edge import BODY_LATE, ConnectionGuard, KmsRequestHandler, to_http
from trent.node.endpoint import KmsEndpoint, WireRequest, WireResponse, error_response
from trent.node.fast_path import FastRequest, KmsRequest
from trent.node.model.errors import KmsError, internal
from trent.node.store.base import StoreError
from trent.node.wire.protocol import MAX_BODY_BYTES, decode_content, malformed_request, too_large

EndpointFor = Callable[[KmsRequest], KmsEndpoint | WireResponse]
# Consulted before a request reaches its region: injected faults answer here (or cut the connection). A gate
# answers at once (a refusal, or None to let the request through) unless it has to wait first (injected latency):
# then it gives an awaitable of its answer. Most requests meet no fault, and are not made to await anything.
Verdict = WireResponse | Awaitable[WireResponse | None] | None
Gate = Callable[[KmsEndpoint, KmsRequest], Verdict]
# A KMS call's answer, given its request (aiohttp's or the fast path's), method, path, query, body and peer: at once,
# or an awaitable of it when it waits (a gate's delay, work off the event loop, a commit's sync).
Answer = Callable[[KmsRequest, str, str, str, bytes, str], WireResponse | Awaitable[WireResponse]]
Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]

log = logging.getLogger("trent.http")


def kms_handler(endpoint_for: EndpointFor, gate: Gate | None = None, *, otherwise: Handler | None = None,
                guard: ConnectionGuard | None = None) -> Handler:
    """An aiohttp handler that picks an endpoint per request (the gateway routes; a region port has one). With
    ``otherwise`` it stands in front of an application (``kms_first``): what is not a KMS call goes there."""
    answer = kms_answer(endpoint_for, gate)

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        protocol = request.protocol
        if type(protocol) is KmsRequestHandler and protocol.owes_a_turn():
            await asyncio.sleep(0)  # other connections first (a pipelining client's next requests wait a turn)
        body_deadline = guard.started(request) if guard is not None else None
        try:
            if otherwise is not None and (request.method != "POST" or request.raw_path != "/"
                                          or request.headers.get("Expect")):
                return await otherwise(request)  # the admin API, or a client waiting for 100 Continue
            try:
                body = body_in_whole(request)
                if body is None:
                    body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return to_http(error_response(too_large()))
            except web.RequestPayloadError:
                # A body whose chunked framing is broken. aiohttp would go on reading the rest to keep the connection,
                # and fail again: the connection ends with this answer instead.
                request.content.feed_eof()
                broken = to_http(error_response(malformed_request()))
                broken.force_close()
                return broken
            if "Content-Encoding" in request.headers:
                try:
                    # Sent more than once, the last one counts (as it did when aiohttp inflated bodies).
                    body = decode_content(request.headers.getall("Content-Encoding")[-1], body)
                except KmsError as exc:
                    return to_http(error_response(exc))
            if len(body) > MAX_BODY_BYTES:
                # Before routing (the gateway reads credentials): an oversize body is refused whoever sends it.
                return to_http(error_response(too_large()))
            # The query as sent (still percent-encoded), without building aiohttp's parsed URL for every request.
            raw_path, _, query = request.raw_path.partition("?")
            outcome = answer(request, request.method, raw_path, query, body, request.remote or "")
            response = outcome if type(outcome) is WireResponse else await cast(Awaitable[WireResponse], outcome)
            if otherwise is not None and can_send(response):
                # In front of the application every request here is a POST (node/answer.py): its answer is sent
                # as aiohttp would send it, without a web.Response. aiohttp asks of it only what KmsAnswer has.
                return cast(web.StreamResponse, KmsAnswer(response))
            return to_http(response)
        except web.HTTPException:
            raise  # aiohttp's own answers
        except Exception as exc:
            if isinstance(exc, ConnectionError) and (request.transport is None or request.transport.is_closing()):
                # Nothing to answer and nothing wrong here: one line, no traceback.
                log.info("%s %s from %s: %s", request.method, request.path, request.remote,
                         "the body was too slow" if request.get(BODY_LATE) else "the client went away")
                return web.Response(status=400)  # never sent: aiohttp sees the connection gone
            # Never aiohttp's text/plain 500: clients parse a KMS error, and retry it.
            log.exception("internal error routing %s %s", request.method, request.path)
            return to_http(error_response(internal()))
        finally:
            if body_deadline is not None:
                body_deadline.cancel()  # answered: the body is in, or no longer wanted

    return handle


def kms_answer(endpoint_for: EndpointFor, gate: Gate | None) -> Answer:
    """A KMS call's way from its router and gate to its region's answer, shared by aiohttp's handler and the fast
    path (node/fast_path.py)."""

    def answer(request: KmsRequest, method: str, path: str, query: str, body: bytes,
               remote: str) -> WireResponse | Awaitable[WireResponse]:
        target = endpoint_for(request)
        if type(target) is WireResponse:
            return target
        assert isinstance(target, KmsEndpoint)
        wire = WireRequest(method, path, query, request.headers, body, remote)
        if gate is not None:
            verdict = gate(target, request)
            if verdict is not None:
                return verdict if isinstance(verdict, WireResponse) else _after_gate(verdict, target, wire)
        return _handled(target, wire)

    return answer


def _handled(target: KmsEndpoint, wire: WireRequest) -> WireResponse | Awaitable[WireResponse]:
    response = target.handle(wire)
    if response.pending is None and response.durable is None:
        return response
    return _finished(response, target)


async def _finished(response: WireResponse, target: KmsEndpoint) -> WireResponse:
    if response.pending is not None:
        response = await settled(response)
    if response.durable is not None:
        response = await durable(response, target)
    return response


async def _after_gate(verdict: Awaitable[WireResponse | None], target: KmsEndpoint, wire: WireRequest) -> WireResponse:
    refused = await verdict
    if refused is not None:
        return refused
    return await _finished(target.handle(wire), target)


def body_in_whole(request: web.BaseRequest) -> bytes | None:
    """The body, if it is already in whole (nearly every KMS call's, which comes in one piece with its head): taken at
    once, with the errors and size limit ``request.read()`` has; None if the rest is still to come (then read it)."""
    content = request.content
    if not content.is_eof():
        return None
    body = content.read_nowait()  # raises what reading would (a broken chunked body's error)
    limit = request.client_max_size
    if limit and len(body) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(body))
    return body if type(body) is bytes else bytes(body)


# How many times one request may wait for slow work before it is answered as an internal error: once suffices for
# work its second run uses; a write on etcd that keeps losing commit races to other nodes waits before every new try.
MAX_SLOW_WAITS = STALE_ATTEMPTS


async def settled(response: WireResponse) -> WireResponse:
    """The answer to a request that waits on work off the event loop (node/endpoint.py: a key store's token, or
    slow work after which the request runs again), awaited without blocking the loop."""
    for _ in range(MAX_SLOW_WAITS):
        if response.pending is None:
            return response
        response = await response.pending
    if response.pending is not None:
        response.pending.close()  # never started: nothing to undo
        return error_response(internal())
    return response


async def durable(response: WireResponse, endpoint: KmsEndpoint) -> WireResponse:
    """``response`` once the commits it rests on are durable; a retryable 500 if the store could not sync them."""
    assert response.durable is not None
    try:
        await asyncio.wrap_future(response.durable)
    except StoreError as exc:  # the store logged it once; a failed sync fails every answer after it
        log.debug("region %s: %s", endpoint.region.name, exc)
        return error_response(internal(), response.headers.get("x-amzn-RequestId"))
    response.durable = None
    return response


def kms_first(server: web.Server, endpoint_for: EndpointFor, gate: Gate | None = None,
              guard: ConnectionGuard | None = None) -> None:
    """KMS calls (POST /, nearly every request) skip the application's router, match info and middleware chain,
    a measurable share of a call's cost; every other request is the application's, as before. ``server`` is the
    one an AppRunner made for the application, before any site starts (each connection takes the handler then).
    With a ``guard``, the server's connections keep its limits (node/edge.py)."""
    server.request_handler = kms_handler(endpoint_for, gate, otherwise=server.request_handler, guard=guard)
    if guard is not None:
        answer = kms_answer(endpoint_for, gate)

        def respond(request: FastRequest, body: bytes) -> WireResponse | Awaitable[WireResponse]:
            return answer(request, "POST", "/", "", body, request.remote)

        guard.install(server, respond)
    with contextlib.suppress(RuntimeError):  # no running loop: the server will run in one that has none of this
        inline_requests.install(asyncio.get_running_loop())


def make_app(handler: Handler, admin_routes: list[web.RouteDef]) -> web.Application:
    # A little above the KMS limit, so an oversize body reaches the endpoint and gets a KMS-shaped error.
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
    # Every KMS call is POST /: a plain route, matched by comparing strings, comes first. Anything else reaches
    # the admin API or, failing that, the KMS handler too (which answers it as KMS would).
    app.router.add_route("POST", "/", handler)
    app.add_routes(admin_routes)
    app.router.add_route("*", "/{tail:.*}", handler)
    return app
