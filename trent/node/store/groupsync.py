"""Group commit: commits are written without waiting for the disk, and one thread makes them durable, one fsync for
every commit written before it; whoever must not answer before its commit is durable waits for that fsync.

A region's commits used to wait for their fsync on the event loop that serves every region of the process: while
one region wrote, every other region's requests stood still (bench/README.md, "fsync and the event loop")."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future

from trent.node.store.base import StoreError


class GroupSync:
    def __init__(self, sync: Callable[[], None], name: str) -> None:
        """``sync``: makes everything written so far durable (an fsync), raising OSError if it cannot."""
        self._sync = sync
        self._cond = threading.Condition()
        self._written = 0  # commits written (the loop's thread counts them)
        self._synced = 0  # of which durable (the sync thread counts them)
        self._waiting: dict[int, Future[None]] = {}  # by the commit count a waiter needs durable
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"group sync {name}", daemon=True)
        self._thread.start()

    def wrote(self) -> None:
        """A commit was written (or this process took on another's): it is durable after the next sync."""
        with self._cond:
            self._written += 1
            self._cond.notify()

    def durable(self) -> Future[None] | None:
        """None if every commit written so far is durable; else a future done once they are (StoreError if the
        sync failed: then whether they survive a crash of the machine is unknown)."""
        if self._synced >= self._written:  # without the lock: only this thread moves _written
            return None
        with self._cond:
            target = self._written
            if self._synced >= target:
                return None
            future = self._waiting.get(target)
            if future is None:
                future = self._waiting[target] = Future()
            return future

    def wait(self) -> None:
        """Block until every commit written so far is durable (for callers outside an event loop)."""
        future = self.durable()
        if future is not None:
            future.result()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._synced >= self._written and not self._closed:
                    self._cond.wait()
                if self._synced >= self._written:
                    return  # closed, nothing left to sync
                target = self._written
            error: OSError | None = None
            try:
                self._sync()
            except OSError as exc:
                error = exc
            with self._cond:
                self._synced = target
                done = [self._waiting.pop(t) for t in [t for t in self._waiting if t <= target]]
            for future in done:
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(StoreError(f"sync failed: {error}"))

    def close(self) -> None:
        """Sync what is still pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()


def fsync_path(path: str, fallback: str) -> Callable[[], None]:
    """An fsync of ``path`` (opened afresh each time: a file SQLite may have replaced is never the wrong one), or of
    ``fallback`` when ``path`` does not exist."""
    def sync() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            fd = os.open(fallback, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return sync
