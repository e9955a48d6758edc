"""Catch-ups with what other nodes of a region committed (an etcd store's ``catch_up``: one linearizable read of etcd,
then a wait for the watch to bring everything up to it), made off the event loop and shared by every request that
needs one.

A lookup that misses in a region other nodes serve too may miss only because the key was made a moment ago through
another node: the request is decided again once this node's view holds every commit made before it arrived. Made on
the event loop, that read stopped every other request of the node for an etcd round trip, so a client naming a key
that does not exist (a typo in a load test's configuration) cut the node's throughput tenfold. Here a request that
needs one waits off the loop (NotReady: the adapter runs it again afterwards), and every request that asks while one
is under way shares the next: however many ask, at most one read runs and one waits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

log = logging.getLogger("trent.catch_up")


class CatchUps:
    def __init__(self, catch_up: Callable[[], bool], region: str,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        """``catch_up``: blocks until this view holds every commit made so far (False if it could not tell);
        ``clock``: the one the endpoint stamps a request's arrival with."""
        self._catch_up = catch_up
        self._region = region
        self._clock = clock
        self._cond = threading.Condition()
        self._next: Future[bool] | None = None  # asked for, not started yet
        # Started at the first need and kept (it keeps its connections to etcd); a daemon, idle on the condition.
        self._thread: threading.Thread | None = None
        self._through = float("-inf")  # when the newest finished catch-up started

    def covers(self, since: float) -> bool:
        """Whether a catch-up that started at or after ``since`` has finished (whatever it found)."""
        return self._through >= since

    def now(self) -> bool:
        """One catch-up, here and now (for work that is not a request: it blocks its caller)."""
        started = self._clock()
        done = self._run()
        self._finished(started)
        return done

    def next(self) -> Future[bool]:
        """A catch-up that starts after this call: the one every caller since the last one started shares."""
        with self._cond:
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
            assert future is not None
            started = self._clock()
            done = self._run()
            self._finished(started)
            future.set_result(done)

    def _run(self) -> bool:
        try:
            return self._catch_up()
        except Exception:  # a bug: the waiting requests go on (to NotFound), and it is logged with its traceback
            log.exception("region %s: catch-up failed", self._region)
            return False

    def _finished(self, started: float) -> None:
        with self._cond:
            self._through = max(self._through, started)
