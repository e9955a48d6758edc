"""A server's loop serves connections that are ready together in the order they were last served: one that missed a
turn comes first in the next rather than last again (cluster/fair_loop.py)."""

from __future__ import annotations

import asyncio
import selectors
import socket
from collections.abc import Iterator

import pytest

from trent.cluster.fair_loop import FairSelector, run_server


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    made = [socket.socketpair() for _ in range(3)]
    try:
        yield made
    finally:
        for a, b in made:
            a.close()
            b.close()


def _turn(selector: selectors.BaseSelector, names: dict[int, str]) -> list[str]:
    """One poll's ready files by name, each then drained (as the loop's reads do)."""
    ready = selector.select(0)
    for key, _events in ready:
        key.fileobj.recv(4096)  # type: ignore[union-attr]
    return [names[key.fd] for key, _events in ready]


def test_a_connection_that_missed_a_turn_is_served_first_in_the_next(
        pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    selector = FairSelector()
    (a, a_peer), (b, b_peer), (c, c_peer) = pairs
    names = {a.fileno(): "A", b.fileno(): "B", c.fileno(): "C"}
    try:
        for sock in (a, b, c):
            selector.register(sock, selectors.EVENT_READ)
        for peer in (a_peer, b_peer, c_peer):
            peer.send(b"x")
        assert sorted(_turn(selector, names)) == ["A", "B", "C"]
        b_peer.send(b"x")
        c_peer.send(b"x")
        assert _turn(selector, names) == ["B", "C"]  # A's next request is late for this turn
        # All three in again, A's last: the kernel lists A after the two it reported last time. A has waited
        # longest since it was served, so it comes first; B and C keep their order.
        c_peer.send(b"x")
        b_peer.send(b"x")
        a_peer.send(b"x")
        assert _turn(selector, names) == ["A", "B", "C"]
        a_peer.send(b"x")
        c_peer.send(b"x")
        assert _turn(selector, names) == ["A", "C"]
    finally:
        selector.close()


def test_a_file_never_served_comes_first_and_a_closed_one_is_forgotten(
        pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    selector = FairSelector()
    (a, a_peer), (b, b_peer), (c, c_peer) = pairs
    names = {a.fileno(): "A", b.fileno(): "B", c.fileno(): "C"}
    try:
        for sock in (a, b):
            selector.register(sock, selectors.EVENT_READ)
        a_peer.send(b"x")
        b_peer.send(b"x")
        _turn(selector, names)
        selector.register(c, selectors.EVENT_READ)  # a new connection, its request in last
        b_peer.send(b"x")
        a_peer.send(b"x")
        c_peer.send(b"x")
        assert _turn(selector, names)[0] == "C"
        selector.unregister(c)
        assert c.fileno() not in selector._reported  # a descriptor number reused later starts afresh
    finally:
        selector.close()


def test_a_server_process_runs_on_the_fair_loop() -> None:
    async def main() -> str:
        selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
        return type(selector).__name__

    assert run_server(main()) == "FairSelector"
