"""A KMS answer sent without a web.Response (node/answer.py) is, byte for byte, what aiohttp sends for the web.Response
of the same status, headers and body (the Date aside), whatever the request's HTTP version and keep-alive."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web

from trent.node.answer import KmsAnswer, can_send
from trent.node.config import EdgeLimits
from trent.node.edge import to_http
from trent.node.endpoint import WireResponse
from trent.node.wire.protocol import CONTENT_TYPE

LIMITS = EdgeLimits(header_timeout=5.0, body_timeout=5.0, idle_timeout=5.0, max_connections=16)
ANSWERS = {
    "ok": WireResponse(200, b'{"KeyId":"k"}', {"x-amzn-RequestId": "0f0e", "Content-Type": CONTENT_TYPE}),
    "error": WireResponse(400, b'{"__type":"ValidationException"}',
                          {"x-amzn-RequestId": "1a2b", "Content-Type": CONTENT_TYPE}),
    "empty": WireResponse(404, b""),
    "unavailable": WireResponse(503, b"{}", {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": "r", "X-Extra": "é"}),
}
DATE_RE = re.compile(rb"\r\nDate: [^\r]*\r\n")


async def serve(answer: Callable[[WireResponse], web.StreamResponse]) -> tuple[web.AppRunner, int]:
    """A server answering POST /<name> with ANSWERS[name], made into an HTTP answer by ``answer``."""
    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        await request.read()
        return answer(ANSWERS[request.path.strip("/")])

    runner = web.AppRunner(web.Application(), access_log=None)
    await runner.setup()
    assert runner.server is not None
    runner.server.request_handler = handler
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    try:
        async with asyncio.timeout(5):
            data = b""
            while b"\r\n\r\n" not in data:
                data += await reader.read(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = int(re.search(rb"Content-Length: (\d+)", head)[1])  # type: ignore[index]
            while len(body) < length:
                body += await reader.read(65536)
            return head + b"\r\n\r\n" + body
    finally:
        writer.close()


@pytest.fixture
async def servers() -> AsyncIterator[tuple[int, int]]:
    plain, plain_port = await serve(to_http)
    lean, lean_port = await serve(lambda wire: KmsAnswer(wire))  # type: ignore[arg-type,return-value]
    yield plain_port, lean_port
    await plain.cleanup()
    await lean.cleanup()


@pytest.mark.parametrize("name", sorted(ANSWERS))
@pytest.mark.parametrize("version, connection", [("1.1", ""), ("1.1", "Connection: close\r\n"),
                                                 ("1.0", ""), ("1.0", "Connection: keep-alive\r\n")])
async def test_an_answer_is_sent_as_aiohttp_sends_its_response(servers: tuple[int, int], name: str, version: str,
                                                               connection: str) -> None:
    assert can_send(ANSWERS[name])
    raw = f"POST /{name} HTTP/{version}\r\nHost: kms\r\n{connection}Content-Length: 2\r\n\r\n{{}}".encode()
    plain, lean = [await exchange(port, raw) for port in servers]
    assert DATE_RE.search(plain) and DATE_RE.search(lean)
    assert DATE_RE.sub(b"\r\nDate: -\r\n", lean) == DATE_RE.sub(b"\r\nDate: -\r\n", plain)


@pytest.mark.parametrize("answer", [
    WireResponse(200, b"{}", {"x-amzn-RequestId": "a\r\nSet-Cookie: x", "Content-Type": CONTENT_TYPE}),
    WireResponse(200, b"{}", {"Content-Type": CONTENT_TYPE, "X-Odd": "a\x00b"}),
    WireResponse(200, b"{}", {"Content-Type": CONTENT_TYPE, "Content-Length": "2"}),
    WireResponse(200, b"{}", {"x-amzn-RequestId": "r"}),  # aiohttp would name the body's type itself
    WireResponse(204, b""),
    WireResponse(304, b""),
])
def test_what_aiohttp_treats_apart_goes_as_a_web_response(answer: WireResponse) -> None:
    assert not can_send(answer)
