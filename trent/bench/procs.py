"""Server processes for a benchmark run: a Trent cluster, the baseline ceiling, moto's server."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from trent.cluster.ports import free_port_block
from trent.cluster.running import ROOT, TOKEN_HEADER, RunningCluster, poll
from trent.node.config import DEFAULT_REGIONS

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU so far of a process and every process below it (Linux /proc): live descendants (a
    cluster's worker processes) and the children they have waited for."""
    total = 0
    for proc in [pid, *_descendants(pid)]:
        try:
            fields = _stat_fields(proc)
        except OSError:
            continue  # it exited meanwhile
        total += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return total / CLOCK_TICKS


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(entry.name)[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    out: list[int] = []
    pending = list(children.get(pid, ()))
    while pending:
        child = pending.pop()
        out.append(child)
        pending.extend(children.get(child, ()))
    return out


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses): the state,
    then the parent's pid, and so on (proc(5) numbers them from 3); OSError once the process is gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Server:
    """A peer server answering on one loopback port (the baseline ceiling, moto's server)."""

    def __init__(self, args: list[str], port: int) -> None:
        self.port = port
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        poll(self._up, timeout=120, interval=0.02)

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            self.log.seek(0)
            raise RuntimeError(f"server exited: {self.log.read()[-2000:].decode(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class TrentCluster(RunningCluster):
    """A cluster of the run's own: a quiet log, new replicas Enabled at once, its data directory (a temporary one
    unless given) removed when it stops."""

    host = "127.0.0.1"

    def __init__(self, data_dir: Path | None = None, extra: tuple[str, ...] = ()) -> None:
        self.owned = data_dir is None
        super().__init__(data_dir or Path(tempfile.mkdtemp(prefix="trent-bench-")) / "data",
                         free_port_block(len(DEFAULT_REGIONS) + 1), extra_args=("--replica-delay", "0", *extra),
                         verbose=False)
        try:
            # A store seeded with 100k keys per region takes a while to open (the scale run reports how long).
            self.start(timeout=120, interval=0.02)
        except RuntimeError as exc:
            tail = self.log_path.read_bytes()[-2000:].decode(errors="replace")
            raise RuntimeError(f"server exited: {tail}") from exc

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 30.0) -> int:
        """Stop it (killed if it has not stopped within ``timeout``) and remove a data directory of its own."""
        try:
            return super().stop(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -signal.SIGKILL
        finally:
            if self.owned:
                shutil.rmtree(self.data_dir.parent, ignore_errors=True)


class TargetCluster:
    """A cluster started elsewhere (``trent bench --target URL``): only its gateway is known. Its CPU is measured
    when it runs on this machine (its health check names its process to the holder of its admin token); it is never
    stopped from here."""

    def __init__(self, url: str, admin_token: str | None = None) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname or parsed.port is None:
            raise ValueError(f"--target must look like http://host:port, not {url!r}")
        self.url = f"http://{parsed.hostname}:{parsed.port}"
        self.host, self.port = parsed.hostname, parsed.port
        health_check = urllib.request.Request(f"{self.url}/_trent/health",
                                              headers={TOKEN_HEADER: admin_token} if admin_token else {})
        with urllib.request.urlopen(health_check, timeout=5) as answer:
            health = json.load(answer)
        pid = health.get("pid")
        self.local_pid: int | None = pid if isinstance(pid, int) and Path(f"/proc/{pid}/stat").exists() else None
        if self.local_pid is not None and health.get("worker"):
            # A worker answered: its leader is its parent, and the leader's process tree is the whole cluster.
            self.local_pid = int(_stat_fields(self.local_pid)[1])

    @property
    def pid(self) -> int | None:
        return self.local_pid

    def region_port(self, region: str) -> int | None:
        return None  # only the gateway is known

    def client(self, region: str = "us-east-1") -> Any:
        return kms_client(self.url, region)

    def stop(self) -> None:
        pass


def kms_client(url: str, region: str) -> Any:
    return boto3.client("kms", endpoint_url=url, region_name=region, aws_access_key_id="test",
                        aws_secret_access_key="test", config=Config(retries={"max_attempts": 0},
                                                                    max_pool_connections=64))


def start_baseline(processes: int) -> Server:
    port = free_port_block(1)
    return Server([sys.executable, "-m", "trent.bench.baseline_server", "--port", str(port), "--processes",
                   str(processes)], port)


def start_moto() -> Server | None:
    """moto's server, when installed (it is optional): the emulator most users would otherwise pick."""
    if importlib.util.find_spec("moto") is None:
        return None
    port = free_port_block(1)
    return Server([sys.executable, "-m", "moto.server", "-p", str(port)], port)
