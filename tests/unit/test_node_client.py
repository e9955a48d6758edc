"""The gateway's pooled connections to a node (cluster/node_client.py) against a scripted server on loopback:
answers with a length, chunked, or running to the close; connections kept and reused, never once the node closed
them; a node that lies (not HTTP, a head or body too large, a cut body) is an error, never a hang."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from trent.cluster.node_client import BadAnswer, NodeConnections, NotConnected

HEAD = b"POST / HTTP/1.1\r\nHost: gateway\r\n"


class Scripted:
    def __init__(self, answer: Callable[[int], bytes], close_after: bool = False, piece: int = 0) -> None:
        """``piece``: write each answer that many bytes at a time, each piece a read of its own at the gateway."""
        self.answer = answer
        self.close_after = close_after
        self.piece = piece
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answer(len(self.requests))
                step = self.piece or len(answer) or 1
                for at in range(0, max(len(answer), 1), step):
                    writer.write(answer[at:at + step])
                    await writer.drain()
                    if self.piece:
                        await asyncio.sleep(0.001)
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Scripted], asyncio.Future[str]]]:
    servers: list[asyncio.Server] = []

    async def start(script: Scripted) -> str:
        server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    yield start  # type: ignore[misc]
    for server in servers:
        server.close()


def ok(n: int) -> bytes:
    body = f'{{"n": {n}}}'.encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: " + \
        str(len(body)).encode() + b"\r\nx-amzn-RequestId: r" + str(n).encode() + b"\r\n\r\n" + body


async def test_answers_come_back_and_the_connection_is_kept(serve: Callable[..., asyncio.Future[str]]) -> None:
    script = Scripted(ok)
    node = NodeConnections(await serve(script))
    for n in (1, 2, 3):
        status, headers, body = await node.send(HEAD, b"{}", 5)
        assert (status, body) == (200, f'{{"n": {n}}}'.encode())
        assert ("x-amzn-RequestId", f"r{n}") in headers
    assert script.connections == 1
    assert script.requests[0].endswith(b"Content-Length: 2\r\n\r\n{}")
    node.close()


async def test_a_connection_the_node_closed_is_not_reused(serve: Callable[..., asyncio.Future[str]]) -> None:
    script = Scripted(ok, close_after=True)
    node = NodeConnections(await serve(script))
    await node.send(HEAD, b"{}", 5)
    await asyncio.sleep(0.05)  # the node's end of file arrives
    status, _, _ = await node.send(HEAD, b"{}", 5)
    assert status == 200 and script.connections == 2


async def test_chunked_and_close_delimited_answers(serve: Callable[..., asyncio.Future[str]]) -> None:
    chunked = Scripted(lambda n: b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    node = NodeConnections(await serve(chunked))
    assert await node.send(HEAD, b"", 5) == (400, [], b"abcde")
    to_close = Scripted(lambda n: b"HTTP/1.0 200 OK\r\n\r\nuntil the end", close_after=True)
    node = NodeConnections(await serve(to_close))
    assert (await node.send(HEAD, b"", 5))[2] == b"until the end"


@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH\r\n\r\n",  # not HTTP
    b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70000 + b"\r\n\r\n",  # a head too large
    b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",  # a body too large
])
async def test_a_node_that_lies_is_an_error(serve: Callable[..., asyncio.Future[str]], answer: bytes) -> None:
    node = NodeConnections(await serve(Scripted(lambda n: answer, close_after=True)))
    with pytest.raises((BadAnswer, asyncio.IncompleteReadError, ValueError)):
        await node.send(HEAD, b"", 5)


async def test_a_chunk_line_that_never_ends_is_an_error_before_the_timeout(
        serve: Callable[..., asyncio.Future[str]]) -> None:
    endless = Scripted(lambda n: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 70000)
    node = NodeConnections(await serve(endless))  # (the connection stays open: only the bound ends the wait)
    with pytest.raises(BadAnswer, match="chunk line too long"):
        await node.send(HEAD, b"", 30)


async def test_a_cut_body_or_a_silent_node_ends_in_time(serve: Callable[..., asyncio.Future[str]]) -> None:
    cut = Scripted(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", close_after=True)
    node = NodeConnections(await serve(cut))
    with pytest.raises(asyncio.IncompleteReadError):
        await node.send(HEAD, b"", 5)
    silent = Scripted(lambda n: b"")
    node = NodeConnections(await serve(silent))
    with pytest.raises(TimeoutError):
        await node.send(HEAD, b"", 0.2)


async def test_a_node_not_listening_is_not_connected() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(NotConnected):
        await NodeConnections(f"http://127.0.0.1:{port}").send(HEAD, b"", 5)


@pytest.mark.parametrize("answer", [
    ok,
    lambda n: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
])
async def test_an_answer_that_comes_in_pieces_is_read_whole(serve: Callable[..., asyncio.Future[str]],
                                                            answer: Callable[[int], bytes]) -> None:
    script = Scripted(answer, piece=7)
    node = NodeConnections(await serve(script))
    for n in (1, 2):
        status, _, body = await node.send(HEAD, b"{}", 5)
        assert status == 200 and body == (f'{{"n": {n}}}'.encode() if answer is ok else b"abcde")
    assert script.connections == 1  # kept: each answer ended where its framing said
    node.close()


async def test_bytes_after_an_answer_end_the_connection(serve: Callable[..., asyncio.Future[str]]) -> None:
    """A node that sends more than its answer (or anything while no request waits) is not asked again on that
    connection: the extra bytes would be taken for the next answer."""
    script = Scripted(lambda n: ok(n) + b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    node = NodeConnections(await serve(script))
    for n in (1, 2):
        status, _, body = await node.send(HEAD, b"{}", 5)
        assert (status, body) == (200, f'{{"n": {n}}}'.encode())
    assert script.connections == 2
    node.close()
