"""The gateway's keep-alive connections to one node: HTTP/1.1 over pooled asyncio streams, the request passed on as
bytes (no client library re-parsing what the gateway already parsed, half of a forwarded call's cost).

A pooled connection is used again only while it is younger than the node's idle timeout allows (``MAX_IDLE``), so
the node never closes one as the gateway sends on it; a request that fails after it was written is never sent
again (it may have been carried out)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import urllib.parse

MAX_IDLE = 20.0  # seconds; the nodes keep an idle connection for 60 (EdgeLimits.idle_timeout)
MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024


class NotConnected(OSError):
    """The node could not be reached: nothing was sent, so another node of the region may take the request."""


class BadAnswer(OSError):
    """The node's answer could not be read as HTTP."""


Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class NodeConnections:
    def __init__(self, url: str, tls: ssl.SSLContext | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.https = parsed.scheme == "https"
        self.port = parsed.port or (443 if self.https else 80)
        self.tls = (tls or ssl.create_default_context()) if self.https else None
        self._idle: list[tuple[float, Stream]] = []

    async def _connect(self) -> Stream:
        while self._idle:
            since, stream = self._idle.pop()
            # A node that closed the connection (or died) has sent its end of file by now: never reused.
            if time.monotonic() - since < MAX_IDLE and not stream[1].is_closing() and not stream[0].at_eof():
                return stream
            stream[1].close()
        try:
            return await asyncio.open_connection(self.host, self.port, ssl=self.tls, limit=MAX_HEAD)
        except (OSError, ssl.SSLError) as exc:
            raise NotConnected(str(exc) or type(exc).__name__) from exc

    async def send(self, head: bytes, body: bytes, timeout: float) -> tuple[int, list[tuple[str, str]], bytes]:
        """``head`` (request line and headers, without Content-Length) and ``body``; the node's status, headers
        and body."""
        reader, writer = await self._connect()
        try:
            writer.write(head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            async with asyncio.timeout(timeout):  # no task of its own per call, as wait_for would make
                status, headers, payload, keep = await _read_answer(reader)
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle.append((time.monotonic(), (reader, writer)))
        else:
            writer.close()
        return status, headers, payload

    def close(self) -> None:
        for _, (_, writer) in self._idle:
            with contextlib.suppress(Exception):
                writer.close()
        self._idle.clear()


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, list[tuple[str, str]], bytes, bool]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError:
        raise BadAnswer("answer head too large") from None
    lines = raw[:-4].decode("latin-1").split("\r\n")
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
    if chunked:
        body = await _read_chunked(reader)
    elif length is not None:
        if not 0 <= length <= MAX_BODY:
            raise BadAnswer("answer body too large")
        body = await reader.readexactly(length)
    else:
        body, keep = await reader.read(MAX_BODY), False  # the body runs to the end of the connection
    return status, headers, body, keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers expected: the empty line
            return bytes(out)
        if len(out) + size > MAX_BODY:
            raise BadAnswer("answer body too large")
        out += await reader.readexactly(size)
        await reader.readexactly(2)
