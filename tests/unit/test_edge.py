"""The HTTP edge (node/edge.py, node/app.py) against raw sockets: bodies that do not decode, requests that are not
HTTP, clients that are slow or go away, and the cap on connections. Each answer is a KMS error or a quiet close,
never aiohttp's text, a 500 or a traceback in the log."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from tests.unit.test_fast_path import serve
from trent.node.config import EdgeLimits
from trent.node.edge import ConnectionGuard
from trent.node.endpoint import WireResponse
from trent.node.fast_path import KmsRequest
from trent.node.wire.protocol import CONTENT_TYPE, MAX_BODY_BYTES

LIMITS = EdgeLimits(header_timeout=0.3, body_timeout=0.5, idle_timeout=0.8, max_connections=4)
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
OK = WireResponse(200, b"{}", {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": "id-ok"})


@dataclass
class Edge:
    port: int
    guard: ConnectionGuard
    bodies: list[bytes]

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def exchange(self, data: bytes) -> bytes:
        """Send ``data``, then read until the server closes (bounded)."""
        reader, writer = await self.connect()
        writer.write(data)
        try:
            return await until_closed(reader, 5)
        finally:
            writer.close()


async def until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    try:
        async with asyncio.timeout(timeout):
            return await reader.read(-1)
    except ConnectionResetError:
        return b""


@pytest.fixture
async def edge() -> AsyncIterator[Edge]:
    bodies: list[bytes] = []

    def endpoint_for(request: KmsRequest) -> WireResponse:
        return OK

    async def admin(request: web.Request) -> web.Response:
        bodies.append(await request.read())
        return web.json_response({"ok": True})

    guard = ConnectionGuard(LIMITS)
    # As cluster/serving.py serves (aiohttp's TestServer would cancel handlers whose client goes away).
    served = await serve(guard, endpoint_for, None, [web.post("/_admin", admin), web.get("/_admin", admin)])
    yield Edge(served.port, guard, bodies)
    await served.runner.cleanup()


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.DEBUG):
        yield caplog


def quiet(log: pytest.LogCaptureFixture) -> None:
    """Nothing at WARNING or above, and no traceback at any level."""
    assert [r.getMessage() for r in log.records if r.levelno >= logging.WARNING or r.exc_info] == []


def kms_error(raw: bytes, status: int) -> dict[str, str]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert re.fullmatch(rf"HTTP/1\.[01] {status} .*", lines[0]), lines[0]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["content-type"] == CONTENT_TYPE
    assert UUID_RE.fullmatch(headers["x-amzn-requestid"])
    doc: dict[str, str] = json.loads(body)
    assert set(doc) == {"__type", "message"}
    return doc


def post(body: bytes, *headers: str) -> bytes:
    head = ["POST / HTTP/1.1", "Host: kms", "X-Amz-Target: TrentService.ListKeys", f"Content-Length: {len(body)}",
            *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# -- bodies that do not decode ----------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
async def test_a_body_that_does_not_decode_is_a_serialization_error(edge: Edge, log: pytest.LogCaptureFixture,
                                                                     encoding: str) -> None:
    raw = await edge.exchange(post(b'{"Limit": 10}', f"Content-Encoding: {encoding}"))
    assert kms_error(raw, 400)["__type"] == "SerializationException"
    quiet(log)


@pytest.mark.parametrize("compress", [gzip.compress, zlib.compress])
async def test_a_body_that_decodes_is_accepted(edge: Edge, log: pytest.LogCaptureFixture, compress: object) -> None:
    assert callable(compress)
    body: bytes = compress(b'{"ok": 1}')
    raw = await edge.exchange(post(body, "Content-Encoding: gzip" if compress is gzip.compress
                                   else "Content-Encoding: deflate", "Connection: close"))
    assert raw.startswith(b"HTTP/1.1 200 ") and b"x-amzn-RequestId: id-ok" in raw
    quiet(log)


async def test_a_compressed_bomb_stops_at_the_body_limit(edge: Edge, log: pytest.LogCaptureFixture) -> None:
    bomb = gzip.compress(b"\0" * 50_000_000, compresslevel=9)
    raw = await edge.exchange(post(bomb, "Content-Encoding: gzip"))
    assert kms_error(raw, 413) == {"__type": "ValidationException", "message": "Request body exceeds 1048576 bytes."}
    quiet(log)


@pytest.mark.parametrize("size", [MAX_BODY_BYTES + 1, MAX_BODY_BYTES + 2, 3 * MAX_BODY_BYTES])
async def test_a_body_over_the_limit_is_refused_however_it_arrives(edge: Edge, log: pytest.LogCaptureFixture,
                                                                   size: int) -> None:
    """Taken whole at once (node/app.py's body_in_whole) or read as it comes, past the limit it is the same 413."""
    raw = await edge.exchange(post(b" " * size))
    assert kms_error(raw, 413) == {"__type": "ValidationException", "message": "Request body exceeds 1048576 bytes."}
    small = await edge.exchange(post(b"{}", "Connection: close"))
    assert small.startswith(b"HTTP/1.1 200 ")
    quiet(log)


# -- what is not HTTP --------------------------------------------------------------------------------------------

SECRET = "Credential=AKIASECRETSECRET/20260101/us-east-1/kms/aws4_request"
MALFORMED = {
    "request line": b"GARBAGE\r\n\r\n",
    "method": b"P\x00ST / HTTP/1.1\r\nHost: x\r\n\r\n",
    "version": b"POST / HTTP/7.3\r\nHost: x\r\n\r\n",
    "header name": f"POST / HTTP/1.1\r\nHost: x\r\nBad Header: {SECRET}\r\n\r\n".encode(),
    "header value": f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {SECRET}\x01\r\n\r\n".encode(),
    "overlong header": b"POST / HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n",
    "overlong request line": b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n",
    "content-length": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12abc\r\n\r\n",
    "two content-lengths": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "transfer-encoding": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    "binary garbage": bytes(range(256)),
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_http_is_a_kms_400(edge: Edge, log: pytest.LogCaptureFixture, name: str) -> None:
    raw = await edge.exchange(MALFORMED[name])
    assert kms_error(raw, 400) == {"__type": "ValidationException", "message": "The request is not well-formed HTTP."}
    assert b"AKIASECRET" not in raw  # aiohttp's own answer quotes the offending bytes back
    assert not any("AKIASECRET" in r.getMessage() for r in log.records)
    quiet(log)


async def test_http_0_9_gets_no_answer_and_is_closed_at_the_header_deadline(edge: Edge,
                                                                           log: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await edge.exchange(b"GET /\r\n") == b""  # an HTTP/0.9 answer has no status line to put a KMS error in
    assert LIMITS.header_timeout * 0.9 <= loop.time() - started < 3
    quiet(log)


# -- slow clients and clients that go away -----------------------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Tar"])
async def test_no_whole_request_head_in_time_closes_the_connection(edge: Edge, log: pytest.LogCaptureFixture,
                                                                    sent: bytes) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await edge.connect()
    writer.write(sent)
    started = loop.time()
    assert await until_closed(reader, 5) == b""
    assert LIMITS.header_timeout * 0.9 <= loop.time() - started < 3
    writer.close()
    assert any("no whole request within" in r.getMessage() for r in log.records)
    quiet(log)


@pytest.mark.parametrize("path", ["/", "/_admin"])
async def test_a_body_not_in_time_closes_the_connection(edge: Edge, log: pytest.LogCaptureFixture,
                                                         path: str) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await edge.connect()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n{{}}".encode())
    started = loop.time()
    assert await until_closed(reader, 5) == b""
    assert LIMITS.body_timeout * 0.9 <= loop.time() - started < 3
    writer.close()
    assert edge.bodies == []
    quiet(log)


async def test_a_client_gone_mid_body_leaves_one_quiet_line(edge: Edge, log: pytest.LogCaptureFixture) -> None:
    _, writer = await edge.connect()
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    await wait_for(lambda: edge.guard.open_connections == 1 and edge.guard.awaiting_head == 0)  # reading the body
    writer.transport.abort()
    await wait_for(lambda: edge.guard.open_connections == 0)
    await wait_for(lambda: any("went away" in r.getMessage() for r in log.records))
    assert [r.levelno for r in log.records if r.name == "trent.http"] == [logging.INFO]
    quiet(log)


async def test_a_kept_alive_connection_outlives_the_header_deadline_and_ends_when_idle(edge: Edge) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await edge.connect()
    for _ in range(2):
        writer.write(post(b"{}"))
        assert (await reader.readuntil(b"{}")).startswith(b"HTTP/1.1 200 ")
        await asyncio.sleep(LIMITS.header_timeout * 1.5)  # past the first request's deadline: still open
    started = loop.time()
    assert await until_closed(reader, 5) == b""
    assert LIMITS.idle_timeout - LIMITS.header_timeout * 1.5 - 0.1 <= loop.time() - started < 3
    writer.close()


async def test_connections_over_the_cap_are_closed_at_once(edge: Edge, log: pytest.LogCaptureFixture) -> None:
    held = [await edge.connect() for _ in range(LIMITS.max_connections)]
    await wait_for(lambda: edge.guard.open_connections == LIMITS.max_connections)
    reader, writer = await edge.connect()
    assert await until_closed(reader, LIMITS.header_timeout / 2) == b""  # long before any deadline
    writer.close()
    for _, held_writer in held:
        held_writer.close()
    await wait_for(lambda: edge.guard.open_connections == 0)
    assert (await edge.exchange(post(b"{}", "Connection: close"))).startswith(b"HTTP/1.1 200 ")
    assert any("closing new ones" in r.getMessage() for r in log.records)


async def wait_for(check: object, timeout: float = 3.0) -> None:
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def body_after_head(edge: Edge, head: str, rest: bytes) -> bytes:
    """A request whose body is sent once the handler is reading it; what comes back until the server closes."""
    reader, writer = await edge.connect()
    writer.write(f"POST / HTTP/1.1\r\nHost: kms\r\nX-Amz-Target: TrentService.ListKeys\r\n{head}\r\n\r\n".encode())
    await wait_for(lambda: edge.guard.open_connections == 1 and edge.guard.awaiting_head == 0)
    writer.write(rest)
    try:
        return await until_closed(reader, 5)
    finally:
        writer.close()


@pytest.mark.parametrize(("head", "rest"), [
    ("Content-Encoding: gzip\r\nContent-Length: 14", b'{"Limit": 10} '),
    ("Content-Encoding: deflate\r\nTransfer-Encoding: chunked", b"4\r\nnope\r\n0\r\n\r\n"),
])
async def test_a_body_that_fails_to_decode_while_read_is_a_kms_400(edge: Edge, log: pytest.LogCaptureFixture,
                                                                   head: str, rest: bytes) -> None:
    raw = await body_after_head(edge, head, rest)
    assert kms_error(raw, 400)["__type"] == "SerializationException"
    quiet(log)


async def test_chunks_that_go_wrong_while_read_end_at_the_body_deadline(edge: Edge,
                                                                       log: pytest.LogCaptureFixture) -> None:
    # aiohttp answers a framing error found after the request went to its handler only once that handler is done,
    # and never tells the handler: the body deadline ends it, without an answer but quietly.
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await body_after_head(edge, "Transfer-Encoding: chunked", b"zz\r\nabc\r\n0\r\n\r\n") == b""
    assert LIMITS.body_timeout * 0.9 <= loop.time() - started < 3
    assert any("the body was too slow" in r.getMessage() for r in log.records)
    quiet(log)
