"""Token buckets that every process of a cluster shares (`trent up --workers N`): a memory-mapped file in the data
directory, one 16-byte slot (tokens, last refill) per bucket, each slot taken under its own byte-range lock.

The refill runs on CLOCK_MONOTONIC (time.monotonic), which every process on the host reads alike; never the
cluster's movable clock: advancing it (to drive deletion windows) must not refill anyone's quota.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

_SLOT = struct.Struct("=dd")


class SharedBuckets:
    def __init__(self, path: Path, slots: int, monotonic: Callable[[], float] = time.monotonic, *,
                 shared: bool = True) -> None:
        """``shared``: other processes take from the same file (`--workers` > 1). A cluster of one process takes no
        record lock (two system calls per request saved); its threads still take the thread lock."""
        self._monotonic = monotonic
        self._shared = shared
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        size = max(1, slots) * _SLOT.size
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)  # new slots read as zeros: a full bucket
        self._map = mmap.mmap(self._fd, size)
        # POSIX record locks exclude other processes, not this process's other threads.
        self._lock = threading.Lock()

    def take(self, slot: int, rate: float, count: int = 1) -> bool:
        """Take ``count`` tokens from bucket ``slot`` (refilled at ``rate`` per second, holding at most one second's
        worth, and at least one request); False, taking nothing, when it holds too few."""
        offset = slot * _SLOT.size
        capacity = max(1.0, rate)
        wanted = min(float(count), capacity)  # a request costing more than the bucket holds needs it full
        with self._lock:
            if self._shared:
                fcntl.lockf(self._fd, fcntl.LOCK_EX, _SLOT.size, offset)
            try:
                tokens, stamp = _SLOT.unpack_from(self._map, offset)
                now = self._monotonic()
                # A slot never used (or written before this host's last boot) is a full bucket.
                fresh = stamp <= 0.0 or now < stamp
                tokens = capacity if fresh else min(capacity, float(tokens) + (now - stamp) * rate)
                allowed: bool = tokens >= wanted
                if allowed:
                    tokens -= wanted
                _SLOT.pack_into(self._map, offset, tokens, now)
                return allowed
            finally:
                if self._shared:
                    fcntl.lockf(self._fd, fcntl.LOCK_UN, _SLOT.size, offset)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
