"""Catch-ups with what other nodes of a region committed (an etcd store's: one linearizable read of etcd, then a wait
for the watch to bring everything up to it), made off the event loop and shared by every request that needs one.

A lookup that misses in a region other nodes serve too may miss only because the key was made a moment ago through
another node: the request is decided again once this node's view holds every commit made before it arrived. Made on
the event loop, that read stopped every other request of the node for an etcd round trip, so a client naming a key
that does not exist (a typo in a load test's configuration) cut the node's throughput tenfold. Here a request that
needs one waits off the loop (NotReady: the adapter runs it again afterwards), and every request that asks while one
is under way shares the next: however many ask, at most one read runs and one waits.

A request whose commit lost a race to another node's waits the same way before it is decided again: for the watch to
bring the commit that beat it (no read: the store says which one), then a random pause so two nodes do not keep
colliding in step. It used to wait on the loop, and under two nodes' writes that stopped the node's reads for tens of
milliseconds at a time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol, runtime_checkable

log = logging.getLogger("trent.catch_up")


@runtime_checkable
class Followed(Protocol):
    """What a store other nodes commit to offers (node/store/etcd.py): a region over one catches up through it."""

    def catch_up(self, timeout: float = 2.0) -> bool:
        """Block until this node's view holds every commit made so far (False if it could not tell)."""
        ...

    def wait_for_head(self, head: int, timeout: float = 2.0) -> bool:
        """Block until this node's view holds the change ``head`` (False if it did not come in time)."""
        ...

    def pause_after_race(self) -> None:
        """A random pause of a few milliseconds before a decision made again after a lost race."""
        ...


class CatchUps:
    def __init__(self, store: Followed, region: str, clock: Callable[[], float] = time.perf_counter) -> None:
        """``clock``: the one the endpoint stamps a request's arrival with."""
        self._store = store
        self._region = region
        self._clock = clock
        self._cond = threading.Condition()
        # The next round, asked for and not started yet: its future, whether someone needs a read of etcd (a miss, or
        # a race lost to a head not known), the newest head someone lost a race to (0: none), whether to pause.
        self._next: Future[bool] | None = None
        self._read = False
        self._head = 0
        self._pause = False
        # Started at the first need and kept (it keeps its connections to etcd); a daemon, idle on the condition.
        self._thread: threading.Thread | None = None
        self._through = float("-inf")  # when the newest finished read began
        self._racing: Future[bool] | None = None  # the round the latest request that lost a race waits for
        # For /metrics: commit races lost to another node, and reads of etcd made (each covers every miss before it).
        self.lost_races = 0
        self.reads = 0

    def covers(self, since: float) -> bool:
        """Whether a read that began at or after ``since`` has finished (whatever it found)."""
        return self._through >= since

    def now(self) -> bool:
        """One read, here and now (for work that is not a request: it blocks its caller)."""
        return self._round(True, 0, False)

    def now_after_race(self, head: int) -> bool:
        """The wait after a race lost to ``head`` (0: not known), here and now (it blocks its caller)."""
        return self._round(*self._lost_race(head))

    def next(self) -> Future[bool]:
        """A read that begins after this call: the one every caller since the last round began shares."""
        return self._ask(True, 0, False)

    def next_after_race(self, head: int) -> Future[bool]:
        """The wait after a race lost to ``head`` (0: not known), in the next round."""
        future = self._racing = self._ask(*self._lost_race(head))
        return future

    def _lost_race(self, head: int) -> tuple[bool, int, bool]:
        """A race lost to ``head``, counted; what its round does: a read if the head is not known, the wait for it
        if it is, and the pause."""
        with self._cond:
            self.lost_races += 1
        return head <= 0, max(head, 0), True

    def racing(self) -> Future[bool] | None:
        """The wait of a request that lost a commit race, while it lasts: another write of this node waits for it
        too rather than race the other node meanwhile (and make the one that lost likelier to lose again)."""
        racing = self._racing
        return racing if racing is not None and not racing.done() else None

    def _ask(self, read: bool, head: int, pause: bool) -> Future[bool]:
        with self._cond:
            self._read |= read
            self._head = max(self._head, head)
            self._pause |= pause
            future = self._next
            if future is None:
                future = self._next = Future()
                # Shared by every request waiting for it: one that gives up must not cancel it for the others.
                future.set_running_or_notify_cancel()
                if self._thread is None:
                    self._thread = threading.Thread(target=self._work, name=f"trent-catch-up {self._region}",
                                                    daemon=True)
                    self._thread.start()
                self._cond.notify()
            return future

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._next is not None)
                future, self._next = self._next, None
                read, head, pause = self._read, self._head, self._pause
                self._read, self._head, self._pause = False, 0, False
            assert future is not None
            future.set_result(self._round(read, head, pause))

    def _round(self, read: bool, head: int, pause: bool) -> bool:
        started = self._clock()
        store = self._store
        try:
            done = store.catch_up() if read else True
            if head:
                done = store.wait_for_head(head) and done
            if pause:
                store.pause_after_race()
        except Exception:  # a bug: the waiting requests go on (to NotFound), and it is logged with its traceback
            log.exception("region %s: catch-up failed", self._region)
            done = False
        if read:
            with self._cond:
                self._through = max(self._through, started)
                self.reads += 1
        return done
