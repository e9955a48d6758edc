"""The gateway's keep-alive connections to one node: HTTP/1.1 over pooled connections, the request passed on as bytes
(no client library re-parsing what the gateway already parsed, half of a forwarded call's cost) and the answer read
by the connection's protocol as its bytes come (no stream reader, with a future per read, in between).

A pooled connection is used again only while it is younger than the node's idle timeout allows (``MAX_IDLE``), so
the node never closes one as the gateway sends on it; a request that fails after it was written is never sent
again (it may have been carried out)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import urllib.parse
from typing import cast

MAX_IDLE = 20.0  # seconds; the nodes keep an idle connection for 60 (EdgeLimits.idle_timeout)
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024


class NotConnected(OSError):
    """The node could not be reached: nothing was sent, so another node of the region may take the request."""


class BadAnswer(OSError):
    """The node's answer could not be read as HTTP."""


Answer = tuple[int, list[tuple[str, str]], bytes, bool]  # status, headers, body, whether to keep the connection


class _Connection(asyncio.Protocol):
    """One connection to the node: the request written, its answer read in ``data_received`` as it comes (no stream
    reader and its futures per read), handed over through one future."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.future: asyncio.Future[Answer] | None = None
        self.closed = False
        self.idle_since = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.future is None:
            self.closed = True  # bytes nobody asked for: the connection is not used again
            if self.transport is not None:
                self.transport.close()
            return
        self._try(eof=False)

    def eof_received(self) -> bool:
        self._try(eof=True)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._try(eof=True)

    def _try(self, eof: bool) -> None:
        future = self.future
        if future is None or future.done():
            return
        try:
            answer = _parse(self.buffer, eof)
        except (BadAnswer, asyncio.IncompleteReadError, ValueError) as exc:
            future.set_exception(exc)
            return
        if answer is not None:
            future.set_result(answer)


class NodeConnections:
    def __init__(self, url: str, tls: ssl.SSLContext | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.https = parsed.scheme == "https"
        self.port = parsed.port or (443 if self.https else 80)
        self.tls = (tls or ssl.create_default_context()) if self.https else None
        self._idle: list[_Connection] = []

    async def _connect(self) -> tuple[asyncio.Transport, _Connection]:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            transport = connection.transport
            # A node that closed the connection (or died) has sent its end of file by now: never reused. (One that
            # sent anything while idle is closed too: an idle connection's buffer is always empty.)
            if now - connection.idle_since < MAX_IDLE and not connection.closed and transport is not None \
                    and not transport.is_closing():
                return transport, connection
            if transport is not None:
                transport.close()
        try:
            made, connection = await asyncio.get_running_loop().create_connection(_Connection, self.host, self.port,
                                                                                  ssl=self.tls)
        except (OSError, ssl.SSLError) as exc:
            raise NotConnected(str(exc) or type(exc).__name__) from exc
        return made, connection

    async def send(self, head: bytes, body: bytes, timeout: float) -> tuple[int, list[tuple[str, str]], bytes]:
        """``head`` (request line and headers, without Content-Length) and ``body``; the node's status, headers
        and body."""
        transport, connection = await self._connect()
        future = connection.future = asyncio.get_running_loop().create_future()
        try:
            transport.write(head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            async with asyncio.timeout(timeout):  # no task of its own per call, as wait_for would make
                status, headers, payload, keep = await future
        except BaseException:
            transport.close()
            raise
        finally:
            connection.future = None
        if keep and not connection.closed and not connection.buffer:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            transport.close()
        return status, headers, payload

    def close(self) -> None:
        for connection in self._idle:
            if connection.transport is not None:
                with contextlib.suppress(Exception):
                    connection.transport.close()
        self._idle.clear()


def _parse(buffer: bytearray, eof: bool) -> Answer | None:
    """The answer at the start of ``buffer`` if it is all in (taken out of the buffer), else None; ``eof``: no more
    will come."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD:
            raise BadAnswer("answer head too large")
        if eof:
            raise asyncio.IncompleteReadError(bytes(buffer), None)
        return None
    if end + 4 > MAX_HEAD:
        raise BadAnswer("answer head too large")
    lines = buffer[:end].decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise BadAnswer(f"not an HTTP answer: {lines[0][:60]!r}")
    status = int(parts[1])
    headers: list[tuple[str, str]] = []
    length: int | None = None
    chunked, keep = False, parts[0] == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip(), value.strip()
        lower = name.lower()
        if lower == "content-length":
            length = int(value)
        elif lower == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif lower == "connection":
            keep = value.lower() != "close" if keep else value.lower() == "keep-alive"
        else:
            headers.append((name, value))
    start = end + 4
    if chunked:
        parsed = _chunks(buffer, start, eof)
        if parsed is None:
            return None
        body, stop = parsed
    elif length is not None:
        if not 0 <= length <= MAX_BODY:
            raise BadAnswer("answer body too large")
        stop = start + length
        if len(buffer) < stop:
            if eof:
                raise asyncio.IncompleteReadError(bytes(buffer[start:]), length)
            return None
        body = bytes(buffer[start:stop])
    else:
        # The body runs to the end of the connection.
        if len(buffer) - start > MAX_BODY:
            raise BadAnswer("answer body too large")
        if not eof:
            return None
        body, stop, keep = bytes(buffer[start:]), len(buffer), False
    del buffer[:stop]
    return status, headers, body, keep


def _chunks(buffer: bytearray, at: int, eof: bool) -> tuple[bytes, int] | None:
    """A chunked body from ``at``, with where it ends, if it is all in."""
    out = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            if len(buffer) - at > MAX_HEAD:  # (the bound a stream reader's line limit used to set)
                raise BadAnswer("answer chunk line too long")
            break
        size = int(bytes(buffer[at:line_end]).split(b";")[0].strip(), 16)
        at = line_end + 2
        if size == 0:
            if len(buffer) < at + 2:
                break
            return bytes(out), at + 2  # no trailers expected: the empty line
        if size < 0 or len(out) + size > MAX_BODY:
            raise BadAnswer("answer body too large")
        if len(buffer) < at + size + 2:
            break
        out += buffer[at:at + size]
        at += size + 2
    if eof:
        raise asyncio.IncompleteReadError(bytes(out), None)
    return None
