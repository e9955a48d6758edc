"""Group commit: commits are written without waiting for the disk, and one thread makes them durable, one fsync for
every commit written before it; whoever must not answer before its commit is durable waits for that fsync.

A region's commits used to wait for their fsync on the event loop that serves every region of the process: while
one region wrote, every other region's requests stood still (bench/README.md, "fsync and the event loop").

A failed fsync is final. The kernel may have dropped the pages it could not write and marked them clean, so a later
fsync that succeeds proves nothing about them: the store's state on disk is unknown from then on. Every answer that
waits for durability fails from then on (reads too: they may show a change the disk lost), until the region is
started again and reads what the disk really holds.

Where several processes write one database (``--workers``), that goes for all of them (``SharedFailure``, the commit
signal's mark): their commits follow the failed one in the same write-ahead log, so none of them is durable either.
The file is also kept open from the first sync on, because the kernel reports a failed write back to every
descriptor opened before it, but to only one of those opened after: a process opening the file afresh for each sync
could miss what another process's sync was told."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol

from trent.node.store.base import StoreError

log = logging.getLogger("trent.store")


class _Shared(Future[None]):
    """A future many waiters share: one that gives up (asyncio cancels the future it waited on with the task) must
    not cancel it for the others, nor leave the sync thread a future it can no longer complete."""

    def cancel(self) -> bool:
        return False


class SharedFailure(Protocol):
    """What the processes writing one database know together (node/store/signal.py): whether a sync failed in any of
    them, and a drill for whichever syncs next."""

    def failed(self) -> bool: ...

    def mark_failed(self) -> None: ...

    def drill(self) -> None: ...

    def take_drill(self) -> bool: ...


ELSEWHERE = "another process writing this database failed a sync"


class GroupSync:
    def __init__(self, sync: Callable[[], None], name: str, shared: SharedFailure | None = None) -> None:
        """``sync``: makes everything written so far durable (an fsync), raising OSError if it cannot. ``name``: the
        store's file, for the log. ``shared``: the other processes writing the same database (``--workers``)."""
        self._sync = sync
        self._name = name
        self._shared = shared
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
        shared = self._shared
        if self._synced >= self._written and self._failure is None and (shared is None or not shared.failed()):
            return None  # (unlocked: only this thread moves _written)
        if self._failure is None and shared is not None and shared.failed():
            self._fail(ELSEWHERE)
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
                if self._synced >= self._written or self._failure is not None:
                    return  # closed with nothing left to sync, or failed
                target = self._written
                drill, self._drill = self._drill, False
            shared = self._shared
            try:
                if drill or (shared is not None and shared.take_drill()):
                    raise OSError(errno.EIO, "Input/output error (`trent fault disk`)")
                self._sync()
            except OSError as exc:
                self._fail(str(exc))
                return  # no later sync could vouch for what this one lost
            if shared is not None and shared.failed():
                # Another process's sync failed before this one's ended: the commits after its lost ones in the log
                # are not durable either.
                self._fail(ELSEWHERE)
                return
            with self._cond:
                self._synced = target
                done = [self._waiting.pop(t) for t in [t for t in self._waiting if t <= target]]
            for future in done:
                future.set_result(None)

    @property
    def failure(self) -> str | None:
        """What the sync that failed said, if one did (here or in another process writing the database): nothing
        more should be written."""
        if self._failure is None and self._shared is not None and self._shared.failed():
            self._fail(ELSEWHERE)
        return self._failure

    def _failed(self) -> Future[None]:
        failed = _Shared()
        failed.set_exception(StoreError(f"sync failed: {self._failure}"))
        return failed

    def fail_next(self) -> None:
        """A drill: the next sync fails (at the next commit, if none is waiting now), in whichever process writing the
        database makes it."""
        if self._shared is not None:
            self._shared.drill()
            return
        with self._cond:
            self._drill = True

    def _fail(self, error: str) -> None:
        with self._cond:
            if self._failure is not None:
                return  # (the sync thread and a waiter may both find another process's mark)
            self._failure = error
            waiting = list(self._waiting.values())
            self._waiting.clear()
            self._cond.notify()
        if self._shared is not None:
            self._shared.mark_failed()
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


class FileSync:
    """An fsync of ``path`` (or of ``fallback`` while ``path`` does not exist) through a descriptor kept open from the
    first sync on, so that a failed write back another process was told of is reported here too; opened again only
    if the file was replaced (a file SQLite replaced is never the wrong one)."""

    def __init__(self, path: str, fallback: str) -> None:
        self._path = path
        self._fallback = fallback
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None

    def __call__(self) -> None:
        try:
            now = os.stat(self._path)
            path = self._path
        except FileNotFoundError:
            now, path = os.stat(self._fallback), self._fallback
        if self._fd is None or self._inode != (now.st_dev, now.st_ino):
            self.close()
            self._fd = os.open(path, os.O_RDONLY)
            opened = os.fstat(self._fd)
            self._inode = (opened.st_dev, opened.st_ino)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
