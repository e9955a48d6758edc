"""The fast path (node/fast_path.py, node/edge.py): which requests it takes, that it answers them as aiohttp's path
does, in order, within the connection's limits, and that everything else still reaches aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import boto3
import pytest
from aiohttp import web
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trent.node.app import EndpointFor, Gate, kms_first, kms_handler, make_app
from trent.node.config import EdgeLimits
from trent.node.edge import PER_TURN, ConnectionGuard, KmsRequestHandler
from trent.node.endpoint import KmsEndpoint, WireRequest, WireResponse
from trent.node.fast_path import MAX_HEAD_BYTES, MORE, KmsRequest, read_simple
from trent.node.wire.protocol import CONTENT_TYPE, MAX_BODY_BYTES
from trent.node.xks.devcerts import make_dev_certs

LIMITS = EdgeLimits(header_timeout=5.0, body_timeout=5.0, idle_timeout=5.0, max_connections=64)
DATE_RE = re.compile(rb"\r\nDate: [^\r]*\r\n")


def request(body: bytes = b"{}", *headers: str, line: str = "POST / HTTP/1.1") -> bytes:
    target = [] if any(h.startswith("X-Amz-Target:") for h in headers) else ["X-Amz-Target: TrentService.ListKeys"]
    head = [line, "Host: kms", *target, *headers]
    if not any(h.lower().startswith(("content-length:", "transfer-encoding:")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


# -- which requests the fast path takes (no network) -------------------------------------------------------------

def test_a_plain_request_is_read_whole_with_its_headers_and_body() -> None:
    raw = request(b'{"a":1}', "User-Agent: Boto3/1.35 md/x", "X-Amz-Date: 20261205T000000Z", "Empty:")
    read = read_simple(raw + b"next", 0)
    assert isinstance(read, tuple)
    headers, body_start, end = read
    assert raw[body_start:end] == b'{"a":1}' and end == len(raw)
    assert list(headers.items()) == [("Host", "kms"), ("X-Amz-Target", "TrentService.ListKeys"),
                                     ("User-Agent", "Boto3/1.35 md/x"), ("X-Amz-Date", "20261205T000000Z"),
                                     ("Empty", ""), ("Content-Length", "7")]
    assert headers["user-agent"] == "Boto3/1.35 md/x"  # case-insensitive, as aiohttp's headers are
    # Whitespace after the colon is not part of the value; a second request may follow at any offset.
    second = request(b"{}", "X-Pad:  \t spaced out")
    read = read_simple(b"junk" + second, 4)
    assert isinstance(read, tuple) and read[0]["X-Pad"] == "spaced out" and read[2] == 4 + len(second)


def test_a_request_not_all_in_is_read_as_far_as_it_goes() -> None:
    raw = request(b'{"KeyId":"k"}')
    head_end = raw.index(b"\r\n\r\n") + 4
    # The head and part of the body: the head is read, and where the body will end is known.
    read = read_simple(raw[:-3], 0)
    assert isinstance(read, tuple) and read[1:] == (head_end, len(raw))
    for cut in (1, 10, 17, 40, head_end - 1):  # the head itself not all in: more is wanted
        assert read_simple(raw[:cut], 0) == MORE
    assert read_simple(b"GET", 0) is None  # not a prefix of the one request line taken
    assert read_simple(b"POST / HTTP/1.1\r\nX-Long: " + b"a" * MAX_HEAD_BYTES, 0) is None  # never to end in time


@pytest.mark.parametrize("raw", [
    request(b"{}", line="POST / HTTP/1.0"),
    request(b"{}", line="POST /?x=1 HTTP/1.1"),
    request(b"{}", line="GET / HTTP/1.1"),
    request(b"{}", line="POST  / HTTP/1.1"),
    b"\r\n" + request(b"{}"),
    request(b"2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding: chunked"),
    request(b"{}", "Content-Length: 2", "Content-Length: 2"),
    request(b"", "Content-Length: +0"),
    request(b"", "Content-Length: 0x0"),
    request(b"{}", "Expect: 100-continue"),
    request(b"{}", "Upgrade: websocket"),
    request(b"{}", "Content-Encoding: gzip"),
    request(b"{}", "Connection: close"),
    request(b"{}", "Connection: keep-alive", "Connection: close"),
    request(b"{}", "Content-Type: a", "content-type: b"),  # aiohttp refuses a repeated singleton: its answer
    request(b"{}", "User-Agent: a", "User-Agent: b"),
    request(b"{}", "X-Trailing: space "),
    request(b"{}", "X-Trailing: tab\t"),
    request(b"{}", " X-Folded: value"),
    request(b"{}", "X-Folded: value", " continued"),
    request(b"{}", "Bad Name: value"),
    request(b"{}", "X-Utf8: caf\u00e9"),
    request(b"{}", "X-Nul: a\x00b"),
    request(b"{}", "X-Cr: a\rb"),
    request(b"{}", "X-Lf: a\nb"),
    request(b"{}", "NoColon"),
    request(b"{}", "X-Long: " + "a" * MAX_HEAD_BYTES),
    request(b"{}", *(f"X-{i}: v" for i in range(101))),
    request(b"", f"Content-Length: {MAX_BODY_BYTES + 1}"),
    request(b"", f"Content-Length: {10 ** 7}"),
    request(b"{}").replace(b"Host: kms\r\n", b""),
], ids=lambda raw: repr(raw[:60]))
def test_anything_but_a_plain_request_is_left_to_aiohttp(raw: bytes) -> None:
    assert read_simple(raw, 0) is None


def test_a_head_at_the_limit_is_still_taken() -> None:
    raw = request(b"{}", "X-Long: " + "a" * 8000)
    assert raw.index(b"\r\n\r\n") < MAX_HEAD_BYTES and isinstance(read_simple(raw, 0), tuple)


# -- answered on a real connection -------------------------------------------------------------------------------

@dataclass
class Seen:
    headers: list[tuple[str, str]]
    body: bytes


@dataclass
class Server:
    port: int
    runner: web.AppRunner
    guard: ConnectionGuard
    seen: list[Seen] = field(default_factory=list)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def handlers(self) -> list[KmsRequestHandler]:
        assert self.runner.server is not None
        return [h for h in self.runner.server.connections if isinstance(h, KmsRequestHandler)]

    def fast(self) -> list[bool]:
        return [h._fast is not None for h in self.handlers()]


class Echo(KmsEndpoint):
    """An endpoint that answers with the request it was given (what a region's endpoint receives)."""

    def __init__(self, seen: list[Seen]) -> None:  # no region behind it
        self.seen = seen

    def handle(self, request: WireRequest) -> WireResponse:
        self.seen.append(Seen(list(request.headers.items()), request.body))
        return echo(self.seen[-1], int(request.headers.get("X-Pad-Answer", "0")))


def echo(seen: Seen, size: int) -> WireResponse:
    body = json.dumps({"headers": [[k.lower(), v] for k, v in seen.headers], "body": seen.body.decode("latin-1"),
                       "pad": "x" * size}).encode()
    return WireResponse(200, body, {"x-amzn-RequestId": "r-1", "Content-Type": CONTENT_TYPE})


async def start(limits: EdgeLimits = LIMITS, tls: ssl.SSLContext | None = None) -> Server:
    guard = ConnectionGuard(limits)
    holder: list[Server] = []

    def endpoint_for(request: KmsRequest) -> KmsEndpoint | WireResponse:
        if request.headers.get("X-Amz-Target") == "TrentService.ListKeys":
            holder[0].seen.append(Seen(list(request.headers.items()), b""))
            return WireResponse(200, b'{"Keys":[],"Truncated":false}',
                                {"x-amzn-RequestId": "r-2", "Content-Type": CONTENT_TYPE})
        return Echo(holder[0].seen)

    def gate(endpoint: KmsEndpoint, request: KmsRequest) -> None:
        return None  # every request passes

    async def admin(request: web.Request) -> web.Response:
        return web.json_response({"admin": True})

    server = await serve(guard, endpoint_for, gate, [web.get("/_admin", admin)], tls)
    holder.append(server)
    return server


async def serve(guard: ConnectionGuard, endpoint_for: EndpointFor, gate: Gate | None,
                routes: list[web.RouteDef], tls: ssl.SSLContext | None = None) -> Server:
    """KMS calls on the fast path in front of ``routes``, on a loopback port, as cluster/serving.py serves them."""
    runner = web.AppRunner(make_app(kms_handler(endpoint_for), routes), access_log=None, **guard.server_kwargs())
    await runner.setup()
    assert runner.server is not None
    kms_first(runner.server, endpoint_for, gate, guard)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    return Server(runner.addresses[0][1], runner, guard)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    started = await start()
    yield started
    await started.runner.cleanup()


@contextlib.asynccontextmanager
async def connected(port: int, tls: ssl.SSLContext | None = None,
                    ) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
    try:
        yield reader, writer
    finally:
        writer.close()


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
        match = re.search(rb"Content-Length: (\d+)", head)
        assert match is not None
        return head + await reader.readexactly(int(match[1]))


def comparable(answer: bytes) -> bytes:
    return DATE_RE.sub(b"\r\nDate: -\r\n", answer)


# A request aiohttp's parser takes but the fast path does not (a value with trailing whitespace): every request after
# it on the same connection is aiohttp's.
TO_AIOHTTP = request(b"{}", "X-Amz-Target: Echo", "X-Trailing: x ")


@pytest.mark.parametrize("raw", [
    request(b'{"KeyId":"k"}', "X-Amz-Target: Echo"),
    request(b"", "X-Amz-Target: Echo", "content-type: application/x-amz-json-1.1", "user-agent: lower"),
    request(b'{"a":"\xff\x00"}', "X-Amz-Target: Echo", "Connection: keep-alive", "X-Tab: a\tb", "Empty:"),
    request(b"{}", "X-Amz-Target: Echo", "X-Pad-Answer: 200000"),
])
async def test_a_plain_request_is_answered_on_the_fast_path_as_aiohttp_answers_it(server: Server, raw: bytes) -> None:
    fast_reader, fast_writer = await asyncio.open_connection("127.0.0.1", server.port)
    slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        fast_writer.write(raw)
        fast = await read_answer(fast_reader)
        slow_writer.write(TO_AIOHTTP)
        await read_answer(slow_reader)
        slow_writer.write(raw)
        slow = await read_answer(slow_reader)
        assert sorted(server.fast()) == [False, True]  # one connection still on the fast path, one on aiohttp's
        assert DATE_RE.search(fast) and comparable(fast) == comparable(slow)
        # The router saw the same headers (names compared as the case-insensitive things they are).
        first, _, second = server.seen
        assert [(k.lower(), v) for k, v in first.headers] == [(k.lower(), v) for k, v in second.headers]
    finally:
        fast_writer.close()
        slow_writer.close()


def body_of(answer: bytes) -> str:
    body: str = json.loads(answer.partition(b"\r\n\r\n")[2])["body"]
    return body


async def test_pipelined_and_cut_requests_are_answered_in_order_until_one_goes_to_aiohttp(server: Server) -> None:
    async with connected(server.port) as (reader, writer):
        third = request(b'{"n":3}', "X-Amz-Target: Echo")
        writer.write(request(b'{"n":1}', "X-Amz-Target: Echo") + request(b'{"n":2}', "X-Amz-Target: Echo")
                     + third[:-3])
        assert [body_of(await read_answer(reader)) for _ in range(2)] == ['{"n":1}', '{"n":2}']
        writer.write(third[-3:])  # the rest of its body, in a read of its own
        assert body_of(await read_answer(reader)) == '{"n":3}'
        head_end = TO_AIOHTTP.index(b"\r\n\r\n")
        for cut in (5, head_end + 2, head_end + 4):  # a head cut anywhere, its body apart
            fourth = request(f'{{"n":{cut}}}'.encode(), "X-Amz-Target: Echo")
            writer.write(fourth[:cut])
            await writer.drain()
            writer.write(fourth[cut:])
            assert body_of(await read_answer(reader)) == f'{{"n":{cut}}}'
        assert server.fast() == [True]
        writer.write(TO_AIOHTTP[:head_end])  # one the fast path does not take, cut: aiohttp's, with what follows
        await writer.drain()
        writer.write(TO_AIOHTTP[head_end:] + request(b'{"n":5}', "X-Amz-Target: Echo"))
        assert [body_of(await read_answer(reader)) for _ in range(2)] == ["{}", '{"n":5}']
        assert server.fast() == [False]
        assert len(server.seen) == 8


async def test_a_connection_pipelining_many_requests_lets_others_in_between(server: Server) -> None:
    """At most PER_TURN of one connection's pipelined requests are answered in a loop turn: a request that arrived on
    another connection with them is answered after those, not after all of them; the pipelined ones keep their
    order, a last one cut in two included."""
    await pipelined_beside_another(server)


def chunked(body: bytes) -> bytes:
    """A request the fast path leaves to aiohttp: its body in one chunk."""
    return request(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body), "X-Amz-Target: Echo", "Transfer-Encoding: chunked")


async def test_pipelining_on_aiohttps_path_lets_others_in_between_too(server: Server) -> None:
    """Requests the fast path leaves to aiohttp run one after another in the connection's task: there too at most
    PER_TURN pipelined ones are answered before the loop turns for other connections, in order."""
    count = 5 * PER_TURN
    async with connected(server.port) as (p_reader, p_writer), connected(server.port) as (q_reader, q_writer):
        p_writer.write(b"".join(chunked(f'{{"n":{i}}}'.encode()) for i in range(count)))
        q_writer.write(chunked(b'{"q":1}'))
        assert body_of(await read_answer(q_reader)) == '{"q":1}'
        assert [body_of(await read_answer(p_reader)) for _ in range(count)] == [f'{{"n":{i}}}' for i in range(count)]
        order = [seen.body for seen in server.seen]
        assert order.index(b'{"q":1}') <= PER_TURN  # without the turn: after all of the other connection's
        assert server.fast() == [False, False]


async def test_pipelined_requests_over_tls_keep_their_order_across_turns(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Through TLS, whose transport pauses and resumes reading in its own way: the pipelined requests are split over
    turns there too (TLS hands them over in one piece), and come back whole and in order. (Which connection TLS
    hands over first is its own affair: the other one may come before them all.)"""
    splits: list[int] = []
    next_turn = KmsRequestHandler._next_turn

    def counted(handler: KmsRequestHandler, rest: bytes) -> None:
        splits.append(len(rest))
        next_turn(handler, rest)

    monkeypatch.setattr(KmsRequestHandler, "_next_turn", counted)
    server_side, client_side = tls_contexts(tmp_path)
    server = await start(tls=server_side)
    try:
        await pipelined_beside_another(server, client_side, other_first=False)
    finally:
        await server.runner.cleanup()
    assert len(splits) >= 4  # 40 requests and a cut one, 8 a turn


def tls_contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1 from the local CA (node/xks/devcerts.py), and a client
    context trusting that CA."""
    certs = make_dev_certs(directory)
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(certs.server_cert, certs.server_key)
    return server_side, ssl.create_default_context(cafile=str(certs.ca))


async def pipelined_beside_another(server: Server, tls: ssl.SSLContext | None = None, other_first: bool = True,
                                   ) -> None:
    count = 5 * PER_TURN
    async with connected(server.port, tls) as (p_reader, p_writer), connected(server.port, tls) as (q_reader,
                                                                                                       q_writer):
        last = request(f'{{"n":{count}}}'.encode(), "X-Amz-Target: Echo")
        p_writer.write(b"".join(request(f'{{"n":{i}}}'.encode(), "X-Amz-Target: Echo") for i in range(count))
                       + last[:-2])
        q_writer.write(request(b'{"q":1}', "X-Amz-Target: Echo"))
        assert body_of(await read_answer(q_reader)) == '{"q":1}'
        answered = [body_of(await read_answer(p_reader)) for _ in range(count)]
        assert answered == [f'{{"n":{i}}}' for i in range(count)]
        p_writer.write(last[-2:])
        assert body_of(await read_answer(p_reader)) == f'{{"n":{count}}}'
        order = [seen.body for seen in server.seen]
        if other_first:
            assert order.index(b'{"q":1}') <= PER_TURN  # uncapped: after all of the other connection's
        assert server.fast() == [True, True]


async def test_a_client_gone_with_requests_kept_for_the_next_turn_leaves_nothing_behind(
        server: Server, caplog: pytest.LogCaptureFixture) -> None:
    async with connected(server.port) as (_reader, writer):
        writer.write(request(b'{"n":0}', "X-Amz-Target: Echo") * (3 * PER_TURN))
        writer.transport.abort()  # gone at once, its requests in the server's hands
    async with connected(server.port) as (reader, writer):
        writer.write(request(b'{"after":1}', "X-Amz-Target: Echo"))
        assert body_of(await read_answer(reader)) == '{"after":1}'
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert len(server.seen) <= 3 * PER_TURN + 1


async def test_a_body_that_stops_coming_meets_the_body_deadline() -> None:
    server = await start(EdgeLimits(header_timeout=0.2, body_timeout=0.6, idle_timeout=30.0, max_connections=4))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        raw = request(b'{"KeyId":"k"}', "X-Amz-Target: Echo")
        writer.write(raw[:-4])
        async with asyncio.timeout(5):
            while not any(h._fast_head is not None for h in server.handlers()):  # polled: the head is read
                await asyncio.sleep(0.01)
        assert server.guard.awaiting_head == 0  # the head came in time: the header deadline no longer applies
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(5):
            assert await reader.read(-1) == b""  # closed by the server, not by this bound
        assert asyncio.get_running_loop().time() - started < 5
        assert server.seen == []
    finally:
        writer.close()
        await server.runner.cleanup()


@pytest.mark.parametrize("raw, status", [
    (request(b"2\r\n{}\r\n0\r\n\r\n", "X-Amz-Target: Echo", "Transfer-Encoding: chunked"), 200),
    (request(b"{}", "X-Amz-Target: Echo", "Content-Type: a", "Content-Type: b"), 400),
    (request(b"{}", "X-Amz-Target: Echo", line="POST / HTTP/1.0"), 200),
    (request(b"{}", "X-Amz-Target: Echo", "X-Folded: a", " b"), 400),
])
async def test_what_the_fast_path_does_not_take_gets_aiohttps_answer(server: Server, raw: bytes, status: int) -> None:
    async with connected(server.port) as (reader, writer):
        writer.write(raw)
        answer = await read_answer(reader)
        assert answer.startswith(b"HTTP/1.") and answer.split(b" ", 2)[1] == str(status).encode()
        assert True not in server.fast()


async def test_connection_close_is_answered_and_the_connection_ends(server: Server) -> None:
    async with connected(server.port) as (reader, writer):
        writer.write(request(b"{}", "X-Amz-Target: Echo", "Connection: close"))
        async with asyncio.timeout(5):
            answer = await reader.read(-1)
        assert b"\r\nConnection: close\r\n" in answer and answer.startswith(b"HTTP/1.1 200 OK")


async def test_boto3_calls_take_the_fast_path(server: Server) -> None:
    client = boto3.client("kms", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{server.port}",
                          aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret",
                          config=Config(retries={"max_attempts": 1}))

    def calls() -> None:
        for _ in range(3):
            assert client.list_keys()["Keys"] == []

    await asyncio.to_thread(calls)
    assert server.fast() == [True] and len(server.seen) == 3
    assert server.guard.awaiting_head == 0  # the head deadline was met, as aiohttp's path tells the guard
    client.close()


async def test_a_client_that_does_not_read_its_answers_keeps_the_server_bounded() -> None:
    server = await start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        count = 400
        one = request(b"{}", "X-Amz-Target: Echo", "X-Pad-Answer: 65536")
        writer.write(one * count)  # some 26 MB of answers asked for, none read yet
        handler = None
        async with asyncio.timeout(10):
            while (handler is None or handler._fast is not None
                   or not (handler._reading_paused or handler._buffer_paused)):
                await asyncio.sleep(0.01)  # polled: the server stops reading once its answers back up
                handlers = server.handlers()
                handler = handlers[0] if handlers else None
        assert handler.transport is not None
        # What waits to be written is bounded by the transport's high-water mark and aiohttp's queue, not the count.
        assert handler.transport.get_write_buffer_size() < 8 * 1024 * 1024
        assert len(server.seen) < count
        answers = [await read_answer(reader) for _ in range(count)]
        assert all(a.startswith(b"HTTP/1.1 200 OK") for a in answers) and len(server.seen) == count
    finally:
        writer.close()
        await server.runner.cleanup()


async def test_an_idle_fast_connection_is_closed_at_the_idle_timeout() -> None:
    server = await start(EdgeLimits(header_timeout=5.0, body_timeout=5.0, idle_timeout=0.3, max_connections=4))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request(b"{}", "X-Amz-Target: Echo"))
        await read_answer(reader)
        assert server.fast() == [True]
        async with asyncio.timeout(5):
            assert await reader.read(-1) == b""  # closed by the server, not by this bound
    finally:
        writer.close()
        await server.runner.cleanup()


# -- answers that wait -------------------------------------------------------------------------------------------

async def start_waiting(limits: EdgeLimits = LIMITS) -> tuple[Server, web.AppRunner]:
    """A server whose gate holds a request naming X-Wait until ``release`` is set."""
    guard = ConnectionGuard(limits)
    holder: list[Server] = []

    def endpoint_for(request: KmsRequest) -> KmsEndpoint | WireResponse:
        return ENDPOINT  # a stand-in: the gate answers every request here

    async def held(request: KmsRequest) -> WireResponse | None:
        server = holder[0]
        server.entered.set()
        await server.release.wait()
        return echo(Seen(list(request.headers.items()), b""), 0)

    def gate(endpoint: KmsEndpoint, request: KmsRequest) -> WireResponse | Awaitable[WireResponse | None] | None:
        server = holder[0]
        server.seen.append(Seen(list(request.headers.items()), b""))
        if "X-Wait" in request.headers:
            return held(request)
        return echo(server.seen[-1], 0)

    server = await serve(guard, endpoint_for, gate, [])
    holder.append(server)
    return server, server.runner


@pytest.fixture
async def waiting() -> AsyncIterator[Server]:
    server, runner = await start_waiting()
    yield server
    server.release.set()
    await runner.cleanup()


ENDPOINT = KmsEndpoint.__new__(KmsEndpoint)  # never called: the gate answers every request first


async def test_a_request_that_waits_holds_back_the_ones_behind_it(waiting: Server) -> None:
    async with connected(waiting.port) as (reader, writer):
        writer.write(request(b"{}", "X-Wait: 1", "X-N: 1") + request(b"{}", "X-N: 2"))
        async with asyncio.timeout(5):
            await waiting.entered.wait()
        assert len(waiting.seen) == 1  # the second is not even read while the first waits
        assert waiting.handlers()[0]._request_in_progress
        waiting.release.set()
        first, second = [await read_answer(reader) for _ in range(2)]
        assert b'"x-n", "1"' in first and b'"x-n", "2"' in second
        assert waiting.fast() == [True]  # and the connection stays on the fast path
        writer.write(request(b"{}", "X-N: 3"))
        assert b'"x-n", "3"' in await read_answer(reader)


async def test_shutdown_waits_for_an_answer_that_is_on_its_way(waiting: Server) -> None:
    async with connected(waiting.port) as (reader, writer):
        writer.write(request(b"{}", "X-Wait: 1", "X-N: 1"))
        async with asyncio.timeout(5):
            await waiting.entered.wait()
        handler = waiting.handlers()[0]
        stopping = asyncio.create_task(waiting.runner.cleanup())
        async with asyncio.timeout(5):
            while not handler._force_close:  # polled: the shutdown has reached this connection, and waits
                await asyncio.sleep(0.01)
        assert not stopping.done()
        waiting.release.set()
        assert b'"x-n", "1"' in await read_answer(reader)
        async with asyncio.timeout(5):
            await stopping


async def test_an_answer_that_waits_past_the_idle_timeout_still_comes_and_the_timer_then_runs_again() -> None:
    server, runner = await start_waiting(EdgeLimits(header_timeout=5.0, body_timeout=5.0, idle_timeout=0.3,
                                                    max_connections=4))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request(b"{}", "X-Wait: 1", "X-N: 1"))
        async with asyncio.timeout(5):
            await server.entered.wait()
        await asyncio.sleep(0.6)  # twice the idle timeout passes while the answer waits: the connection is not idle
        server.release.set()
        assert b'"x-n", "1"' in await read_answer(reader)
        async with asyncio.timeout(5):
            assert await reader.read(-1) == b""  # and idle afterwards, it is closed by the server
    finally:
        writer.close()
        server.release.set()
        await runner.cleanup()


async def test_a_body_trickling_in_grows_one_buffer_and_arrives_whole(server: Server) -> None:
    body = json.dumps({"Plaintext": "x" * 200_000}).encode()
    raw = request(body, "X-Amz-Target: Echo")
    head_end = raw.index(b"\r\n\r\n") + 4
    async with connected(server.port) as (reader, writer):
        writer.write(raw[:head_end + 10])
        async with asyncio.timeout(5):
            while not any(h._fast_head is not None for h in server.handlers()):  # polled: the head is read
                await asyncio.sleep(0.01)
        handler = server.handlers()[0]
        buffer = handler._fast_partial
        assert buffer is not None
        sent = head_end + 10
        while len(raw) - sent > 1000:
            writer.write(raw[sent:sent + 1000])
            sent += 1000
            await asyncio.sleep(0)  # a read of its own, as far as the loop allows
            # Appended to in place: a slow body costs its bytes once, not its length on every read.
            assert handler._fast_partial is buffer
        writer.write(raw[sent:])
        assert body_of(await read_answer(reader)) == body.decode()
        assert server.fast() == [True] and handler._fast_partial is None


# -- the fast path against aiohttp's, on requests made up -----------------------------------------------------------

TOKEN = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
NAMES = st.one_of(
    st.sampled_from(["Content-Type", "content-type", "Host", "User-Agent", "X-Amz-Target", "Connection", "Expect",
                     "Transfer-Encoding", "Content-Encoding", "Upgrade", "Content-Length", "X-Amz-Date", "Etag"]),
    st.text(alphabet=TOKEN, min_size=1, max_size=12),
    st.text(alphabet=TOKEN + " ()\u00e9:\t", min_size=0, max_size=8),
)
VALUES = st.one_of(
    st.sampled_from(["keep-alive", "close", "chunked", "gzip", "100-continue", "TrentService.ListKeys", "Echo"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20),
    st.text(alphabet=st.sampled_from(["a", " ", "\t", "\x00", "\x7f", "\u00e9", "\r", "\n", "\x0b"]), max_size=6),
)

WELL_FORMED_NAMES = st.text(alphabet=TOKEN, min_size=1, max_size=12).filter(
    lambda name: name.lower() not in ("content-length", "transfer-encoding", "host"))
WELL_FORMED_VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20).map(
    str.strip)


@st.composite
def made_up_requests(draw: st.DrawFn) -> bytes:
    line = draw(st.sampled_from(["POST / HTTP/1.1"] * 20 + ["POST / HTTP/1.0", "POST /x HTTP/1.1", "PUT / HTTP/1.1"]))
    separators = st.sampled_from([":", ": ", ":  ", ":\t"])
    # Mostly well-formed fields (so the fast path takes a good share), some of anything.
    fields = st.one_of(*[st.tuples(WELL_FORMED_NAMES, WELL_FORMED_VALUES)] * 7, st.tuples(NAMES, VALUES))
    headers = [name + draw(separators) + value for name, value in draw(st.lists(fields, max_size=6))]
    body = draw(st.binary(max_size=24))
    length = draw(st.sampled_from(["right"] * 6 + ["twice", "padded"]))
    framing = {"right": [f"Content-Length: {len(body)}"], "twice": [f"Content-Length: {len(body)}"] * 2,
               "padded": [f"Content-Length: 0{len(body)}"]}[length]
    host = [] if draw(st.integers(0, 9)) == 9 else ["Host: kms"]
    head = [line, *host, "X-Amz-Target: Echo", *headers, *framing]
    # Sometimes a plain request right behind it, in the same read.
    behind = request(b'{"n":2}', "X-Amz-Target: Echo") if draw(st.booleans()) else b""
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body + behind


REQUEST_ID = re.compile(rb"x-amzn-RequestId: [^\r]*")


def first_answer(stream: BinaryIO) -> bytes:
    """The next answer on ``stream``, Date and request id blanked (nothing if the server closes first)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline()
        if not line:
            return head
        head += line
    match = re.search(rb"Content-Length: (\d+)", head)
    body = stream.read(int(match[1])) if match else b""
    return REQUEST_ID.sub(b"x-amzn-RequestId: -", DATE_RE.sub(b"\r\nDate: -\r\n", head + body))


@pytest.fixture(scope="module")
def threaded_server() -> Iterator[Server]:
    """A server in a loop of its own thread, for tests that drive it with blocking sockets."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield server
    asyncio.run_coroutine_threadsafe(server.runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=made_up_requests())
def test_a_made_up_request_is_answered_as_aiohttps_path_answers_it(threaded_server: Server, raw: bytes) -> None:
    port = threaded_server.port
    with socket.create_connection(("127.0.0.1", port), timeout=5) as fast, \
            socket.create_connection(("127.0.0.1", port), timeout=5) as slow, \
            fast.makefile("rb") as fast_in, slow.makefile("rb") as slow_in:
        fast.sendall(raw)
        slow.sendall(TO_AIOHTTP)
        assert first_answer(slow_in).startswith(b"HTTP/1.1 200 OK")
        slow.sendall(raw)  # the same bytes, on a connection that aiohttp's path has taken over
        assert first_answer(fast_in) == first_answer(slow_in)
        if raw.endswith(b'{"n":2}'):
            assert first_answer(fast_in) == first_answer(slow_in)  # the one behind it (or the same close)


async def test_a_whole_request_with_garbage_behind_it_is_answered_before_the_garbage_is_refused(server: Server) -> None:
    # Where the two paths differ: aiohttp's parser, given both in one read, refuses the read whole (one 400); in two
    # reads it answers the request and then refuses the rest. The fast path answers what came whole either way.
    async with connected(server.port) as (reader, writer):
        writer.write(request(b'{"n":1}', "X-Amz-Target: Echo") + b"\x00 not HTTP\r\n\r\n")
        assert body_of(await read_answer(reader)) == '{"n":1}'
        refused = await read_answer(reader)
        assert refused.startswith(b"HTTP/1.") and b" 400 " in refused.split(b"\r\n")[0]
        assert json.loads(refused.partition(b"\r\n\r\n")[2])["__type"] == "ValidationException"
        async with asyncio.timeout(5):
            assert await reader.read(-1) == b""
