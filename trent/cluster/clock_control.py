"""The cluster's clock as the admin API moves it (`trent clock`): forward only, kept across restarts in clock.json,
and work that falls due on the way is done before the answer."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from trent.node.clock import AdjustableClock
from trent.node.scheduler import Scheduler

CLOCK_FILE = "clock.json"


def load_clock(data_dir: Path) -> AdjustableClock:
    """The cluster's clock, at the offset it was last moved to (none on a fresh data directory)."""
    try:
        offset = float(json.loads((data_dir / CLOCK_FILE).read_text())["offset"])
    except (OSError, ValueError, KeyError):
        offset = 0.0
    return AdjustableClock(offset)


class ClockControl:
    def __init__(self, clock: AdjustableClock, data_dir: Path, schedulers: Mapping[str, Scheduler],
                 publish: Callable[[], None]) -> None:
        self.clock = clock
        self._data_dir = data_dir
        self._schedulers = schedulers
        # Tells the cluster's other processes (the shared runtime state) before the admin call is answered.
        self._publish = publish

    def state(self) -> dict[str, Any]:
        return {"now": self.clock.now(), "offset": self.clock.offset}

    def advance(self, seconds: float) -> dict[str, Any]:
        self.clock.advance(seconds)
        self._save()
        self._publish()
        changed = {name: s.run_due() for name, s in self._schedulers.items()}
        return {**self.state(), "changed": changed}

    def _save(self) -> None:
        # Named per process: the regions' processes of `trent up --processes` share the data directory.
        tmp = self._data_dir / f"{CLOCK_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"offset": self.clock.offset}))
        os.replace(tmp, self._data_dir / CLOCK_FILE)
