"""The event loop a server process runs: connections ready at once are served longest-waiting first.

Under load a loop turn serves every connection whose request is in, one after another, and answers each as it goes
(the fast path, node/edge.py). The connection answered last in a turn sends its next request just after the loop has
polled again, so it misses the next turn; the kernel then lists it after every connection it reported the turn
before, so it is served last in the turn after too, and misses the one after that again: a connection or two kept
at two turns a request. At 32 busy connections that was 3 % of requests waiting twice as long as the rest, the p99
twice the median where a loop serving in arrival order has it within a quarter of it. Served in the order of their
last service instead, a connection that missed a turn comes first in the next, and every request waits about one
turn.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

T = TypeVar("T")


class FairSelector(selectors.DefaultSelector):
    """The platform's selector, its ready list put in the order each file was last reported (never: first)."""

    def __init__(self) -> None:
        super().__init__()
        self._reported: dict[int, int] = {}  # file descriptor -> turn of its last report
        self._turn = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(timeout)
        reported = self._reported
        if len(ready) > 1:
            ready.sort(key=lambda event: reported.get(event[0].fd, -1))
        turn = self._turn
        for key, _events in ready:
            reported[key.fd] = turn
            turn += 1
        self._turn = turn
        return ready

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        key = super().unregister(fileobj)
        self._reported.pop(key.fd, None)  # a new connection may get the number: it starts as never served
        return key


def serving_loop() -> asyncio.AbstractEventLoop:
    return asyncio.SelectorEventLoop(FairSelector())


def run_server(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a fair loop: what every server process's entry point calls."""
    with asyncio.Runner(loop_factory=serving_loop) as runner:
        return runner.run(main)
