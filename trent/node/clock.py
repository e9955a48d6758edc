"""Injectable clocks. Every timestamp the domain uses comes from a Clock, so tests can move time."""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch, as the region sees them."""
        ...


class AdjustableClock:
    """Wall clock plus an offset that only moves forward; shared by every region of one cluster."""

    def __init__(self, offset: float = 0.0) -> None:
        self._offset = offset
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    @property
    def offset(self) -> float:
        return self._offset

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        with self._lock:
            self._offset += seconds
        return self.now()

    def follow(self, offset: float) -> None:
        """Take on the offset another process moved the shared clock to (it only moves forward)."""
        with self._lock:
            self._offset = max(self._offset, offset)


class FixedClock:
    """A clock that moves only when told: for unit tests."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t
