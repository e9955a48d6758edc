"""Group commit: commits are written without waiting for the disk, and one thread makes them durable, one fsync for
every commit written before it; whoever must not answer before its commit is durable waits for that fsync.

A region's commits used to wait for their fsync on the event loop that serves every region of the process: while
one region wrote, every other region's requests stood still (bench/README.md, "fsync and the event loop").

A failed fsync is final. The kernel may have dropped the pages it could not write and marked them clean, so a later
fsync that succeeds proves nothing about them: the store's state on disk is unknown from then on. Every answer that
waits for durability fails from then on (reads too: they may show a change the disk lost), until the region is
started again and reads what the disk really holds."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future

from trent.node.store.base import StoreError

log = logging.getLogger("trent.store")


class _Shared(Future[None]):
    """A future many waiters share: one that gives up (asyncio cancels the future it waited on with the task) must
    not cancel it for the others, nor leave the sync thread a future it can no longer complete."""

    def cancel(self) -> bool:
        return False


class GroupSync:
    def __init__(self, sync: Callable[[], None], name: str) -> None:
        """``sync``: makes everything written so far durable (an fsync), raising OSError if it cannot. ``name``: the
        store's file, for the log."""
        self._sync = sync
        self._name = name
        self._cond = threading.Condition()
        self._written = 0  # commits written (the loop's thread counts them)
        self._synced = 0  # of which durable (the sync thread counts them)
        self._waiting: dict[int, Future[None]] = {}  # by the commit count a waiter needs durable
        self._closed = False
        # Set once a sync failed: every wait fails with it from then on. A message, not an error object: one error
        # raised in every refused request would gather their frames in its traceback, for as long as the region runs.
        self._failure: str | None = None
        self._drill = False  # `trent fault disk`: the next sync fails as a failing disk's would
        self._thread = threading.Thread(target=self._run, name=f"group sync {name}", daemon=True)
        self._thread.start()

    def wrote(self) -> None:
        """A commit was written (or this process took on another's): it is durable after the next sync."""
        with self._cond:
            self._written += 1
            self._cond.notify()

    def durable(self) -> Future[None] | None:
        """None if every commit written so far is durable; else a future done once they are. It fails with StoreError
        if the sync failed, and so does every one after it: what survives a crash of the machine is unknown."""
        if self._synced >= self._written and self._failure is None:  # unlocked: only this thread moves _written
            return None
        with self._cond:
            if self._failure is not None:
                return self._failed()
            target = self._written
            if self._synced >= target:
                return None
            future = self._waiting.get(target)
            if future is None:
                future = self._waiting[target] = _Shared()
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
                drill, self._drill = self._drill, False
            try:
                if drill:
                    raise OSError(errno.EIO, "Input/output error (`trent fault disk`)")
                self._sync()
            except OSError as exc:
                self._fail(exc)
                return  # no later sync could vouch for what this one lost
            with self._cond:
                self._synced = target
                done = [self._waiting.pop(t) for t in [t for t in self._waiting if t <= target]]
            for future in done:
                future.set_result(None)

    @property
    def failure(self) -> str | None:
        """What the sync that failed said, if one did: nothing more should be written."""
        return self._failure

    def _failed(self) -> Future[None]:
        failed = _Shared()
        failed.set_exception(StoreError(f"sync failed: {self._failure}"))
        return failed

    def fail_next(self) -> None:
        """A drill: the next sync fails (at the next commit, if none is waiting now)."""
        with self._cond:
            self._drill = True

    def _fail(self, error: OSError) -> None:
        with self._cond:
            self._failure = str(error)
            waiting = list(self._waiting.values())
            self._waiting.clear()
        log.error("%s: the disk failed a sync (%s). What it holds is unknown, so nothing is answered from it any "
                  "more; start the region again to serve what the disk really kept", self._name, error)
        for future in waiting:
            future.set_exception(StoreError(f"sync failed: {error}"))

    def close(self) -> None:
        """Sync what is still pending (unless a sync failed), then stop the thread."""
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
