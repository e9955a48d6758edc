"""Faults injected into a running XKS proxy on purpose (`trent fault xks down|up|latency 300ms|errors 20%|garbage|
reject|clear --proxy-dir DIR`): written to ``faults.json`` in the proxy's data directory, which the proxy watches.
Down closes its listening socket (callers get connection refused); latency delays every answer; errors answer a share
of requests with InternalException; garbage answers 200 with a body that is not JSON; reject fails every signature."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FAULTS_FILE = "faults.json"
LISTENING_FILE = "listening.json"  # what a running proxy last applied: {"pid": ..., "listening": bool}
XKS_FAULT_ACTIONS = ("down", "up", "latency", "errors", "garbage", "reject", "clear")


@dataclass
class ProxyFaults:
    down: bool = False
    latency_ms: float = 0.0
    errors_percent: float = 0.0
    garbage: bool = False
    reject: bool = False

    def __bool__(self) -> bool:
        return self.down or self.latency_ms > 0 or self.errors_percent > 0 or self.garbage or self.reject

    def describe(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: Any) -> ProxyFaults:
        if not isinstance(doc, dict):
            return cls()
        return cls(bool(doc.get("down")), float(doc.get("latency_ms", 0) or 0),
                   float(doc.get("errors_percent", 0) or 0), bool(doc.get("garbage")), bool(doc.get("reject")))

    def apply(self, action: str, value: float | None = None) -> ProxyFaults:
        """These faults with one more action applied (value: seconds for latency, a share 0..1 for errors)."""
        if action == "clear":
            return ProxyFaults()
        out = ProxyFaults(**asdict(self))
        if action == "down":
            out.down = True
        elif action == "up":
            out.down = False
        elif action == "latency":
            delay = float(value or 0.0)
            if not 0.0 <= delay <= 600.0:
                raise ValueError("a latency is between 0 s and 10 minutes")
            out.latency_ms = delay * 1000
        elif action == "errors":
            share = float(value or 0.0)
            if not 0.0 <= share <= 1.0:
                raise ValueError("an error share is between 0% and 100%")
            out.errors_percent = share * 100
        elif action == "garbage":
            out.garbage = True
        elif action == "reject":
            out.reject = True
        else:
            raise ValueError(f"unknown XKS proxy fault {action!r} (one of: {', '.join(XKS_FAULT_ACTIONS)})")
        return out


class FaultFile:
    """The faults file of one proxy data directory: read when it changed (a stat per look), written atomically."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / FAULTS_FILE
        self._seen: tuple[int, int] | None = None
        self.current = ProxyFaults()

    def refresh(self) -> ProxyFaults:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self.current = None, ProxyFaults()
            return self.current
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._seen:
            self._seen = stamp
            try:
                self.current = ProxyFaults.from_doc(json.loads(self.path.read_text()))
            except (OSError, ValueError):
                self.current = ProxyFaults()
        return self.current

    def write(self, faults: ProxyFaults) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(faults.describe()))
        os.replace(tmp, self.path)


class ListeningFile:
    """Where a running proxy records whether its socket is open, so that `trent fault xks up|down` returns only
    once the proxy has acted on it (a drill's next step must not race the fault)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LISTENING_FILE

    def record(self, listening: bool) -> None:
        tmp = self.path.with_suffix(".tmp-listening")
        tmp.write_text(json.dumps({"pid": os.getpid(), "listening": listening}))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def running_pid(self) -> int | None:
        """The pid of the proxy that wrote this file, when it is still alive."""
        doc = self._read()
        pid = doc.get("pid") if doc else None
        if not isinstance(pid, int) or pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
        return pid

    def wait_for(self, listening: bool, timeout: float, interval: float = 0.02) -> bool:
        """True once a running proxy reports ``listening``; also True when no proxy runs (nothing to wait on)."""
        deadline = time.monotonic() + timeout
        while self.running_pid() is not None:
            doc = self._read()
            if doc and doc.get("listening") is listening:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)
        return True

    def _read(self) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None
