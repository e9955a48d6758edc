"""A server's loop serves connections that are ready together in the order they were last served: one that missed a
turn comes first in the next rather than last again (cluster/fair_loop.py)."""

from __future__ import annotations

import asyncio
import selectors
import socket
from collections.abc import Iterator

import pytest

from trent.cluster.fair_loop import FairSelector, run_server


class Connections:
    """Three connections, A, B and C, by name: their server ends under a FairSelector once registered, their clients
    sending a byte (a request) when asked."""

    def __init__(self) -> None:
        self.selector = FairSelector()
        self.ends = {name: socket.socketpair() for name in "ABC"}
        self.names = {ours.fileno(): name for name, (ours, _client) in self.ends.items()}

    def register(self, *names: str) -> None:
        for name in names:
            self.selector.register(self.ends[name][0], selectors.EVENT_READ)

    def send(self, *names: str) -> None:
        """A request from each, in this order."""
        for name in names:
            self.ends[name][1].send(b"x")

    def turn(self) -> list[str]:
        """One poll's ready connections by name, each then drained (as the loop's reads do)."""
        ready = self.selector.select(0)
        for key, _events in ready:
            key.fileobj.recv(4096)  # type: ignore[union-attr]
        return [self.names[key.fd] for key, _events in ready]

    def close(self) -> None:
        self.selector.close()
        for ours, client in self.ends.values():
            ours.close()
            client.close()


@pytest.fixture
def conns() -> Iterator[Connections]:
    made = Connections()
    try:
        yield made
    finally:
        made.close()


def test_a_connection_that_missed_a_turn_is_served_first_in_the_next(conns: Connections) -> None:
    conns.register("A", "B", "C")
    conns.send("A", "B", "C")
    assert sorted(conns.turn()) == ["A", "B", "C"]
    conns.send("B", "C")
    assert conns.turn() == ["B", "C"]  # A's next request is late for this turn
    # All three in again, A's last: the kernel lists A after the two it reported last time. A has waited longest
    # since it was served, so it comes first; B and C keep their order.
    conns.send("C", "B", "A")
    assert conns.turn() == ["A", "B", "C"]
    conns.send("A", "C")
    assert conns.turn() == ["A", "C"]


def test_a_file_never_served_comes_first_and_a_closed_one_is_forgotten(conns: Connections) -> None:
    conns.register("A", "B")
    conns.send("A", "B")
    conns.turn()
    conns.register("C")  # a new connection, its request in last
    conns.send("B", "A", "C")
    assert conns.turn()[0] == "C"
    c = conns.ends["C"][0]
    conns.selector.unregister(c)
    assert c.fileno() not in conns.selector._reported  # a descriptor number reused later starts afresh


def test_a_server_process_runs_on_the_fair_loop() -> None:
    async def main() -> str:
        selector = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
        return type(selector).__name__

    assert run_server(main()) == "FairSelector"
