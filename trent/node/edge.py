"""Limits at the HTTP edge: how long a client may take to send a request, how many connections a process keeps open,
and what a request aiohttp cannot parse gets back. aiohttp has a keep-alive timeout but no deadline for a request's
head or body, so a client that sends a few bytes and stops would hold its connection for good."""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDictProxy

from trent.node.answer import answer_bytes, can_send
from trent.node.config import EdgeLimits
from trent.node.endpoint import WireResponse, error_response
from trent.node.fast_path import FastRequest, Respond, read_simple
from trent.node.model.errors import internal
from trent.node.wire.protocol import malformed_request

log = logging.getLogger("trent.http")
# Set on a request whose connection was closed for a body that came too slowly.
BODY_LATE: web.RequestKey[bool] = web.RequestKey("trent.body_late", bool)
_NEVER = 10.0 ** 9  # seconds: a keep-alive close time that does not come
# Pipelined requests one connection has answered on the fast path in one loop turn; the rest wait for the next turn.
# Uncapped, a client sending 200 Encrypts a write took 87 % of the server from 31 others (their p99 2 → 13 ms); at
# 8 it takes a fifth (their p99 2.7 ms), and alone it keeps 97 % of its uncapped throughput.
PER_TURN = 8


def to_http(response: WireResponse) -> web.Response:
    return web.Response(status=response.status, body=response.body, headers=response.headers)


class ConnectionGuard:
    """One per process, installed on each of its aiohttp servers (``install``) and told of each request as it starts
    (``started``). Timers run only for connections that have not sent a whole request yet and for bodies not yet
    in: a request that arrives in one piece, nearly every KMS call, costs a dictionary lookup."""

    def __init__(self, limits: EdgeLimits) -> None:
        self.limits = limits
        self._open: set[RequestHandler] = set()
        self._awaiting: dict[RequestHandler, asyncio.TimerHandle] = {}  # connections with no request yet
        self._quiet_until = 0.0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def awaiting_head(self) -> int:
        """Connections that have not sent a whole request head yet."""
        return len(self._awaiting)

    def server_kwargs(self) -> dict[str, Any]:
        """For the AppRunner: aiohttp's own keep-alive timer closes connections idle between requests. Bodies come as
        sent (the KMS handler undoes their Content-Encoding, node/wire/protocol.py): aiohttp's parser, failing on a
        body that does not inflate after the handler began to read it, would leave that handler waiting for good."""
        return {"keepalive_timeout": self.limits.idle_timeout, "auto_decompress": False}

    def install(self, server: web.Server, respond: Respond | None = None) -> None:
        """The guard's limits on ``server``'s connections; with ``respond``, its connections answer plain KMS calls
        on the fast path (node/fast_path.py) through it."""
        # Its connections are KmsRequestHandlers from the start (web.Server has no slots: only its class changes).
        server.__class__ = KmsServer
        assert isinstance(server, KmsServer)
        server.fast = respond
        server.guard = self
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: RequestHandler, transport: asyncio.Transport) -> None:
            loop = asyncio.get_running_loop()
            if len(self._open) >= self.limits.max_connections:
                if loop.time() >= self._quiet_until:  # a warning a minute at most, however many are turned away
                    log.warning("%d connections open: closing new ones until some end", len(self._open))
                    self._quiet_until = loop.time() + 60.0
                handler.force_close()
                return
            self._open.add(handler)
            self._awaiting[handler] = loop.call_at(loop.time() + self.limits.header_timeout, self._no_request, handler)
            made(handler, transport)

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            _release_unanswered(handler)
            self._open.discard(handler)
            timer = self._awaiting.pop(handler, None)
            if timer is not None:
                timer.cancel()
            lost(handler, exc)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def started(self, request: web.BaseRequest) -> asyncio.TimerHandle | None:
        """A request's head is in: the connection's first deadline is met; its body now has one if it is not in (the
        timer returned: whoever reads the body cancels it then). The timer holds the request only weakly: a request
        and its body, up to a megabyte, must not outlive their answer by the body deadline."""
        self.head_in(request.protocol)
        if request.content.is_eof():
            return None
        return asyncio.get_running_loop().call_later(self.limits.body_timeout, self._body_late, weakref.ref(request))

    def head_in(self, handler: RequestHandler) -> None:
        """A request's head is in on ``handler``'s connection: its first deadline is met."""
        timer = self._awaiting.pop(handler, None)
        if timer is not None:
            timer.cancel()

    def _no_request(self, handler: RequestHandler) -> None:
        if self._awaiting.pop(handler, None) is not None:
            log.info("closed a connection from %s: no whole request within %gs", _peer(handler),
                     self.limits.header_timeout)
            handler.force_close()

    def _body_late(self, ref: weakref.ref[web.BaseRequest]) -> None:
        request = ref()
        if request is None:
            return  # answered and gone
        handler = request.protocol
        if not request.content.is_eof() and handler.transport is not None:
            request[BODY_LATE] = True  # the handler, whose read now fails as if the client had gone, says why
            handler.force_close()


class KmsServer(web.Server):
    """aiohttp's server, whose connections are KmsRequestHandlers (set by ``ConnectionGuard.install``)."""

    fast: Respond | None = None
    guard: ConnectionGuard | None = None

    def __call__(self) -> RequestHandler:
        return KmsRequestHandler(self, loop=self._loop, **self._kwargs)


class KmsRequestHandler(RequestHandler):
    """Each connection's handler: plain KMS calls answered on the fast path while every request so far has been one
    (node/fast_path.py); the rest is aiohttp's, and what aiohttp cannot parse is answered as a KMS error.

    On the fast path aiohttp's side of the connection stays idle, waiting for its first request: its keep-alive
    timer (moved on after each answer here, and closing a connection idle or stalled in a request's head as aiohttp's
    would), shutdown and connection bookkeeping work as for any idle connection. A body still coming has the guard's
    body deadline. The first request the fast path does not take, from its first byte, and everything after it, goes
    to aiohttp."""

    __slots__ = ("_fast", "_fast_backlog", "_fast_deadline", "_fast_guard", "_fast_head", "_fast_partial",
                 "_fast_remote", "_fast_task", "_in_a_row")

    def __init__(self, manager: KmsServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._fast: Respond | None = manager.fast
        self._fast_guard = manager.guard
        self._fast_remote: str | None = None
        # Not None while an answer is awaited (reading paused): what came after its request, kept in order.
        self._fast_backlog: bytes | None = None
        # A request begun but not all in: its bytes so far and, once its head is in, the head as read.
        self._fast_partial: bytearray | None = None
        self._fast_head: tuple[CIMultiDictProxy[str], int, int] | None = None
        self._fast_deadline: asyncio.TimerHandle | None = None  # for that request's body
        self._fast_task: asyncio.Task[None] | None = None  # an answer on its way
        self._in_a_row = 0  # requests answered on aiohttp's path with more queued behind them, since the last turn

    def data_received(self, data: bytes) -> None:
        respond = self._fast
        if respond is None or self._force_close or self._close:
            super().data_received(data)
        elif self._fast_backlog is not None:
            self._fast_backlog += data  # read before the pause took effect
        else:
            partial = self._fast_partial
            if partial is not None:
                partial += data  # in place: a body trickling in costs its bytes once, not its length each time
                head = self._fast_head
                if head is not None and len(partial) < head[2]:
                    return
                self._fast_partial = None
                data = bytes(partial)
            self._serve_fast(respond, data)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._fast_deadline is not None:
            self._fast_deadline.cancel()
        if self._fast_head is not None:
            # Gone with a body half sent: the line aiohttp's path logs for it.
            log.info("POST / from %s: the client went away", self._fast_remote)
        self._fast_partial = self._fast_head = None
        super().connection_lost(exc)

    def _serve_fast(self, respond: Respond, data: bytes) -> None:
        start, size = 0, len(data)
        transport = self.transport
        remote = self._fast_remote
        if remote is None:
            peer = self.peername
            remote = self._fast_remote = str(peer[0]) if isinstance(peer, tuple) else str(peer or "")
        answered = 0
        while start < size:
            if answered == PER_TURN:
                self._next_turn(data[start:])
                return
            head = self._fast_head
            if head is None:
                read = read_simple(data, start)
                if read is None:
                    break
                if type(read) is int:  # MORE: the head is not all in
                    self._fast_partial = bytearray(data[start:])
                    return
                assert isinstance(read, tuple)
                head = read
                if self._fast_guard is not None:
                    self._fast_guard.head_in(self)  # the connection's head deadline is met
            headers, body_start, end = head
            if end > size:
                # The body is still coming (urllib3 sends it apart from the head): kept, with a deadline.
                self._fast_partial = bytearray(data[start:])
                self._fast_head = (headers, body_start - start, end - start)
                if self._fast_deadline is None:
                    assert self._fast_guard is not None
                    self._fast_deadline = self._loop.call_later(self._fast_guard.limits.body_timeout, self._body_late)
                return
            if self._fast_head is not None:
                self._fast_head = None
                if self._fast_deadline is not None:
                    self._fast_deadline.cancel()
                    self._fast_deadline = None
            body, start = data[body_start:end], end
            outcome = self._answer(respond, FastRequest(headers, transport, remote), body)
            if type(outcome) is not WireResponse:
                # It waits (a commit's sync, a key store, an injected delay): nothing more is read until it is sent.
                self._fast_backlog = data[start:]
                self._request_in_progress = True  # so a graceful shutdown waits for it, as for aiohttp's own
                # Not idle, however long it waits: aiohttp's keep-alive timer would take it for an idle connection.
                self._next_keepalive_close_time = self._loop.time() + _NEVER
                if transport is not None:
                    transport.pause_reading()
                self._fast_task = self._loop.create_task(self._answer_later(cast(Awaitable[WireResponse], outcome)))
                return
            self._send(outcome)
            answered += 1
            if self._force_close or transport is None or transport.is_closing():
                return  # closed (a fault cut it, or it is shutting down): nothing more to answer
            if self._paused:
                break  # the client is not reading its answers: aiohttp's backpressure from here on
        if start < size or self._paused:
            self._fast = None
            if start < size:
                super().data_received(data[start:])

    def owes_a_turn(self) -> bool:
        """Asked by the KMS handler as it begins a request on aiohttp's path: True when this connection has had
        PER_TURN pipelined requests answered there in a row, and the caller should let the loop turn first. aiohttp
        runs a connection's queued requests one after another in its task (node/inline_requests.py), without the
        turn a task per request took: a client pipelining requests the fast path does not take would otherwise hold
        the loop for all of them."""
        if not self._messages:
            self._in_a_row = 0  # nothing queued behind this request: not pipelining
            return False
        self._in_a_row += 1
        if self._in_a_row < PER_TURN:
            return False
        self._in_a_row = 0
        return True

    def _next_turn(self, rest: bytes) -> None:
        """The requests in ``rest`` wait for the loop's next turn, so other connections are served in between. Reading
        pauses meanwhile: what the client sends on waits in the kernel's buffers, not here."""
        self._fast_backlog = rest
        transport = self.transport
        if transport is not None:
            transport.pause_reading()
        self._loop.call_soon(self._read_backlog)

    def _read_backlog(self, idle_from_now: bool = False) -> None:
        """Reading resumed, with the requests kept back first (after a turn's cap, or, ``idle_from_now``, after an
        answer that waited: then aiohttp's keep-alive timer is set again too)."""
        backlog, self._fast_backlog = self._fast_backlog, None
        transport = self.transport
        if transport is not None and not self._force_close:
            if idle_from_now:
                self._idle_from_now()
            transport.resume_reading()
            if backlog:
                self.data_received(backlog)

    def _body_late(self) -> None:
        self._fast_deadline = None
        if self._fast_head is not None and self.transport is not None:
            log.info("POST / from %s: the body was too slow", self._fast_remote)  # as aiohttp's path says it
            self._fast_partial = self._fast_head = None
            self.force_close()

    def _answer(self, respond: Respond, request: FastRequest,
                body: bytes) -> WireResponse | Awaitable[WireResponse]:
        try:
            return respond(request, body)
        except Exception:
            # Never aiohttp's text/plain 500: clients parse a KMS error, and retry it.
            log.exception("internal error answering %s", request.remote)
            return error_response(internal())

    async def _answer_later(self, outcome: Awaitable[WireResponse]) -> None:
        try:
            try:
                response = await outcome
            except Exception:
                log.exception("internal error answering %s", self._fast_remote)
                response = error_response(internal())
            self._send(response)
        finally:
            self._fast_task = None
            self._request_in_progress = False
            if self._handler_waiter is not None and not self._handler_waiter.done():
                self._handler_waiter.set_result(None)
            self._read_backlog(idle_from_now=True)

    def _idle_from_now(self) -> None:
        """aiohttp's keep-alive timer set again to close the connection if no request comes within its timeout (it
        may have been set far ahead while an answer waited)."""
        close_time = self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
        if self._keepalive_timeout > 0:
            self._keepalive_handle = self._loop.call_at(close_time, self._process_keepalive)

    def _send(self, response: WireResponse) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # the client went away (or a fault cut it): nothing to send
        if not can_send(response):
            # Only a KMS answer comes here (a status and the endpoint's headers): anything else is a bug.
            log.error("an answer the fast path cannot send (status %d)", response.status)
            response = error_response(internal())
        self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
        transport.write(answer_bytes(response))

    def resume_reading(self, resume_parser: bool = True) -> None:
        """aiohttp's, but nothing at all when nothing is paused: a body's reader asks for it after every read, and
        aiohttp would then run its parser over no bytes (nothing is held back unless reading or the message queue
        is paused) and resume a transport that is not paused."""
        # (Read with defaults: an aiohttp without these flags simply gets its own behaviour.)
        if getattr(self, "_reading_paused", True) or getattr(self, "_buffer_paused", True):
            super().resume_reading(resume_parser)

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """aiohttp's answer to what it could not parse (or, were the KMS handler ever to let one escape, to an
        exception) as a KMS error, logged in one line."""
        if exc is not None:
            # aiohttp's parser keeps the error beside its own frame, which the error's traceback holds: a cycle that
            # kept every refused request's bytes (its message quotes them) until a rare full collection. Cut here.
            exc.__traceback__ = None
        if request.writer.output_size > 0:
            raise ConnectionError("the response has begun: no error can follow it")
        if status >= 500:
            log.error("internal error answering %s", request.remote, exc_info=exc)
            error = internal()
        else:
            # The class only: aiohttp's message quotes the request's bytes, which may hold credentials.
            log.info("malformed request from %s: %s", request.remote, type(exc).__name__)
            error = malformed_request()  # aiohttp inflates no body here (the KMS handler does): not HTTP
        response = to_http(error_response(error))
        response.force_close()
        return response


def _release_unanswered(handler: RequestHandler) -> None:
    """Requests the parser refused but the connection closed before answering stay queued in the handler, each with
    its error; the error's traceback holds the parser's frame, which holds the queue of errors: a cycle, freed only by
    a full collection (seldom, with the tuned collector), holding the refused bytes its message quotes. The fuzzer's
    20,000 requests left some 100 MB so. The traceback is cut here (aiohttp keeps the queue as ``_messages``)."""
    for message, _payload in getattr(handler, "_messages", ()):
        error = getattr(message, "exc", None)
        if isinstance(error, BaseException):
            error.__traceback__ = None


def _peer(handler: RequestHandler) -> str:
    peer = handler.peername
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)
