"""Faults injected into HSM clusters on purpose (`trent fault hsm CLUSTER down|latency 200ms|errors 5%|clear`):
applied in the thread that makes the PKCS#11 call, so a slow or failing cluster looks to the rest of the process
exactly as a real one would."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trent.node.hsm.pool import HsmFailed, HsmUnavailable

HSM_FAULT_ACTIONS = ("down", "up", "latency", "errors", "clear")


@dataclass
class HsmFault:
    down: bool = False
    latency: float = 0.0
    errors: float = 0.0

    def __bool__(self) -> bool:
        return self.down or self.latency > 0 or self.errors > 0


@dataclass
class HsmFaults:
    """The faults in force per HSM cluster id; one object per process, shared by every region."""

    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)
    _faults: dict[str, HsmFault] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hook(self, cluster_id: str) -> Callable[[], None]:
        """What a session pool of ``cluster_id`` runs before each call."""
        return lambda: self.before_call(cluster_id)

    def before_call(self, cluster_id: str) -> None:
        fault = self._faults.get(cluster_id)
        if fault is None:
            return
        if fault.down:
            raise HsmUnavailable(f"HSM cluster {cluster_id} is unreachable (injected)")
        if fault.latency > 0:
            self.sleep(fault.latency)
        if fault.errors > 0 and self.rng.random() < fault.errors:
            raise HsmFailed(f"HSM cluster {cluster_id} failed the call (injected)")

    def is_down(self, cluster_id: str) -> bool:
        fault = self._faults.get(cluster_id)
        return fault is not None and fault.down

    def set(self, cluster_id: str, action: str, value: float | None = None) -> None:
        with self._lock:
            if action == "clear":
                self._faults.pop(cluster_id, None)
                return
            fault = self._faults.setdefault(cluster_id, HsmFault())
            if action == "down":
                fault.down = True
            elif action == "up":
                fault.down = False
            elif action == "latency":
                delay = float(value or 0.0)
                if not 0.0 <= delay <= 600.0:
                    raise ValueError("a latency is between 0 s and 10 minutes")
                fault.latency = delay
            elif action == "errors":
                share = float(value or 0.0)
                if not 0.0 <= share <= 1.0:
                    raise ValueError("an error share is between 0% and 100%")
                fault.errors = share
            else:
                raise ValueError(f"unknown HSM fault {action!r} (one of: {', '.join(HSM_FAULT_ACTIONS)})")
            if not fault:
                del self._faults[cluster_id]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def describe(self) -> dict[str, Any]:
        return {cid: {"down": f.down, "latency_ms": f.latency * 1000, "errors_percent": f.errors * 100}
                for cid, f in sorted(self._faults.items())}

    def load(self, described: dict[str, Any]) -> None:
        """Take on the faults another process describes (``describe``'s form)."""
        with self._lock:
            self._faults = {cid: HsmFault(bool(d.get("down")), float(d.get("latency_ms", 0)) / 1000,
                                          float(d.get("errors_percent", 0)) / 100)
                            for cid, d in described.items()}
