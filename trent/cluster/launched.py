"""A `trent node` or `trent gateway` run as a child process and driven from outside (the e2e tests of separate
region processes, the network-namespace harness): started with a command prefix (``ip netns exec NS``), waited for
through its health URL, stopped with SIGTERM or killed with SIGKILL."""

from __future__ import annotations

import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from trent.cluster.running import ROOT, poll


@dataclass
class Launched:
    name: str
    args: list[str]  # after `trent`
    log_path: Path
    health_url: str
    ca: Path | None = None  # for an https health URL
    prefix: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self, timeout: float = 40.0) -> Launched:
        return self.launch().wait(timeout)

    def launch(self) -> Launched:
        """Start the process without waiting for it (several start side by side, then ``wait`` for each)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*self.prefix, sys.executable, "-m", "trent.cluster.cli", *self.args],
                                         cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started_at = time.monotonic()
        return self

    def wait(self, timeout: float = 40.0) -> Launched:
        poll(self._healthy, timeout, 0.05)
        return self

    def _context(self) -> ssl.SSLContext | None:
        if not self.health_url.startswith("https"):
            return None
        return ssl.create_default_context(cafile=str(self.ca)) if self.ca else ssl._create_unverified_context()

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
        try:
            with urllib.request.urlopen(self.health_url, timeout=1, context=self._context()) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: what a power cut leaves."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(20)
            self.proc = None
