"""The standalone gateway (cluster/gateway_proxy.py) in front of a scripted node on loopback: plain calls are passed
on from the fast path (node/edge.py) and others from aiohttp's, with the same bytes to the node and the same answer
back; a node that is gone is the region's 503, and one that answers what no KMS node would is a 500 on the fast path,
never a hang or a broken connection."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from tests.unit.test_node_client import Scripted, ok
from trent.cluster.gateway_proxy import ProxyGateway
from trent.cluster.ports import free_port_block
from trent.node.config import load_config

AUTH = ("AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, "
        "Signature=" + "0" * 64)


def request(extra: bytes = b"", body: bytes = b"{}") -> bytes:
    return (b"POST / HTTP/1.1\r\nHost: kms\r\nX-Amz-Target: TrentService.ListKeys\r\n"
            b"Content-Type: application/x-amz-json-1.1\r\nAuthorization: " + AUTH.encode() + b"\r\n" + extra +
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def exchange(port: int, raw: bytes, count: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    got = []
    try:
        writer.write(raw)
        for _ in range(count):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode().split("\r\n")
            headers = dict(line.split(": ", 1) for line in lines[1:] if line)
            got.append((int(lines[0].split()[1]), headers,
                        await reader.readexactly(int(headers["Content-Length"]))))
    finally:
        writer.close()
    return got


@pytest.fixture
async def gateway() -> AsyncIterator[Callable[[Scripted | None], asyncio.Future[tuple[ProxyGateway, int]]]]:
    made: list[ProxyGateway] = []
    servers: list[asyncio.Server] = []

    async def start(script: Scripted | None) -> tuple[ProxyGateway, int]:
        if script is None:  # a node that is gone: nothing listens on its port
            node_url = f"http://127.0.0.1:{free_port_block(1)}"
        else:
            server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
            servers.append(server)
            node_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        port = free_port_block(1)
        config = load_config(None, {"regions": "us-east-1", "port": port, "peers": {"us-east-1": node_url}})
        proxy = ProxyGateway(config, "admin-token")
        await proxy.start()
        made.append(proxy)
        for backend in proxy.pool.all():
            backend.healthy = True  # (the scripted node has no health page)
        return proxy, port

    yield start  # type: ignore[misc]
    for proxy in made:
        await proxy.stop()
    for server in servers:
        server.close()


async def test_a_plain_call_and_one_aiohttp_reads_reach_the_node_alike_and_come_back_alike(
        gateway: Callable[..., asyncio.Future[tuple[ProxyGateway, int]]]) -> None:
    script = Scripted(ok)
    _, port = await gateway(script)
    # Plain (the fast path), then one the fast path leaves to aiohttp (a header it does not take), on one connection
    # each, then both pipelined on one.
    fast = await exchange(port, request())
    slow = await exchange(port, request(b"Expect: \r\n"))
    both = await exchange(port, request() + request(b"Expect: \r\n"), 2)
    for (status, headers, body), n in zip([*fast, *slow, *both], (1, 2, 3, 4), strict=True):
        assert (status, json.loads(body)) == (200, {"n": n})
        assert (headers["x-amzn-RequestId"], headers["Content-Type"]) == (f"r{n}", "application/x-amz-json-1.1")
    # The fast path's one difference from aiohttp's (tests/unit/test_fast_path.py): garbage behind a whole request
    # in the same read is refused after the request is answered.
    (status, _, _), (refused, _, body) = await exchange(port, request() + b"\x00 not HTTP\r\n\r\n", 2)
    assert (status, refused, json.loads(body)["__type"]) == (200, 400, "ValidationException")
    sent = [r.replace(b"Expect: \r\n", b"") for r in script.requests]
    assert sent[0] == sent[1] == sent[2] == sent[3] == sent[4]  # hop headers dropped, the rest passed on as it came
    assert sent[0].startswith(b"POST / HTTP/1.1\r\nHost: kms\r\n") and sent[0].endswith(b"Content-Length: 2\r\n\r\n{}")


async def test_a_node_that_is_gone_is_the_regions_503(
        gateway: Callable[..., asyncio.Future[tuple[ProxyGateway, int]]]) -> None:
    _, port = await gateway(None)
    (status, _, body), = await exchange(port, request())
    assert status == 503 and json.loads(body)["__type"] == "ServiceUnavailableException"


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-RequestId: a\r\n"
    b"x-amzn-RequestId: b\r\nContent-Length: 2\r\n\r\n{}",  # a repeated header
    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",  # a status with its own framing rules
])
async def test_a_node_answer_no_kms_node_gives_is_a_500_on_the_fast_path_and_the_connection_goes_on(
        gateway: Callable[..., asyncio.Future[tuple[ProxyGateway, int]]], answer: bytes,
        caplog: pytest.LogCaptureFixture) -> None:
    script = Scripted(lambda n: answer if n == 1 else ok(n))
    _, port = await gateway(script)
    with caplog.at_level(logging.ERROR, logger="trent.gateway"):
        (status, _, body), (after, _, _) = await exchange(port, request() + request(), 2)
    assert status == 500 and json.loads(body)["__type"] == "KMSInternalException" and after == 200
    assert any("cannot pass on" in r.getMessage() for r in caplog.records)
