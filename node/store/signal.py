"""A commit signal shared by the processes serving one database: a few bytes in a memory-mapped file that a writer
changes after every commit. Reading it costs a memory access, where asking SQLite whether another connection
committed (``PRAGMA data_version``) runs a statement: readers ask SQLite only when the signal moved, or when a
while has passed (a writer that died between its commit and its signal must not hide the commit for long)."""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable
from pathlib import Path

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

    def close(self) -> None:
        self._map.close()
