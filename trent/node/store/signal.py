"""A commit signal shared by the processes serving one database: a few bytes in a memory-mapped file that a writer
changes after every commit. Reading it costs a memory access, where asking SQLite whether another connection
committed (``PRAGMA data_version``) runs a statement: readers ask SQLite only when the signal moved, or when a
while has passed (a writer that died between its commit and its signal must not hide the commit for long)."""

from __future__ import annotations

import mmap
import os
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

SIZE = 8
RECHECK_SECONDS = 0.05


class CommitSignal:
    def __init__(self, path: Path, monotonic: Callable[[], float] = time.monotonic) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)  # the mapping keeps the file
        self._monotonic = monotonic
        self._seen = b""
        self._checked = float("-inf")
        self._version: int | None = None  # the data version read when the signal last moved

    def bump(self) -> None:
        """After a commit: a value never used before, so no reader can mistake it for one it has seen."""
        self._map[:SIZE] = os.urandom(SIZE)

    def moved(self) -> bool:
        """Whether a writer signalled since the last call that returned True (or enough time passed to look
        anyway)."""
        now = self._monotonic()
        token = self._map[:SIZE]
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

    def close(self) -> None:
        self._map.close()
