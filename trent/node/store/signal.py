"""A commit signal shared by the processes serving one database: a few bytes in a memory-mapped file that a writer
changes after every commit. Reading it costs a memory access, where asking SQLite whether another connection
committed (``PRAGMA data_version``) runs a statement: readers ask SQLite only when the signal moved, or when a
while has passed (a writer that died between its commit and its signal must not hide the commit for long).

The same few bytes say whether a sync of the database failed in any of those processes (node/store/groupsync.py): a
failed fsync is final for every process writing the database, not only for the one that saw it fail. That mark is
kept until the database is opened by a process with no other one holding it (every process serving it started
again), which a lock on the file tells. A process that finds the mark waits a few seconds for that lock, so the
processes of the run that failed may finish stopping first."""

from __future__ import annotations

import fcntl
import mmap
import os
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

TOKEN = 8  # bytes of the commit token
FAILED = TOKEN  # offset of the failed-sync mark
DRILL = TOKEN + 1  # offset of the `trent fault disk` drill: the next sync, in whichever process, fails
SIZE = TOKEN + 2
RECHECK_SECONDS = 0.05
ALONE_WAIT_SECONDS = 5.0  # for the processes of a run whose sync failed to stop, before the mark is kept


class CommitSignal:
    def __init__(self, path: Path, monotonic: Callable[[], float] = time.monotonic) -> None:
        # Kept open for its lock, held shared for as long as this process uses the database.
        self._fd = fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE)
            if self._alone(fd, ALONE_WAIT_SECONDS if self.failed() else 0.0):
                self._map[FAILED:SIZE] = bytes(SIZE - FAILED)  # the first one here: every process started again
            # else another process serves the database: a failure it marked stands
            fcntl.flock(fd, fcntl.LOCK_SH)
        except BaseException:
            os.close(fd)
            raise
        self._monotonic = monotonic
        self._seen = b""
        self._checked = float("-inf")
        self._version: int | None = None  # the data version read when the signal last moved

    @staticmethod
    def _alone(fd: int, wait: float) -> bool:
        """Whether no other process holds the file (its lock taken exclusively), trying for ``wait`` seconds."""
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)

    def bump(self) -> None:
        """After a commit: a value never used before, so no reader can mistake it for one it has seen."""
        self._map[:TOKEN] = os.urandom(TOKEN)

    def moved(self) -> bool:
        """Whether a writer signalled since the last call that returned True (or enough time passed to look
        anyway)."""
        now = self._monotonic()
        token = self._map[:TOKEN]
        if token == self._seen and now - self._checked < RECHECK_SECONDS:
            return False
        self._seen, self._checked = token, now
        return True

    def data_version(self, db: sqlite3.Connection, lock: AbstractContextManager[Any] | None = None) -> int:
        """``PRAGMA data_version`` of ``db`` (it changes whenever another connection commits), asked only when the
        signal moved; else the value it had then."""
        if self.moved() or self._version is None:
            with lock or nullcontext():
                row = db.execute("PRAGMA data_version").fetchone()
            self._version = int(row[0])
        return self._version

    # -- a failed sync, shared (node/store/groupsync.py SharedFailure) ------------------------------------------

    def failed(self) -> bool:
        return self._map[FAILED] != 0

    def mark_failed(self) -> None:
        self._map[FAILED] = 1

    def drill(self) -> None:
        self._map[DRILL] = 1

    def take_drill(self) -> bool:
        if self._map[DRILL] == 0:
            return False
        self._map[DRILL] = 0
        return True

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)  # (and its lock with it)
