"""A `trent up` run as a child process on loopback ports, driven from outside: start, wait for, stop or kill it,
and reach it through boto3, the admin API or the `trent` command line. The examples, the benchmark and the
end-to-end tests all start their clusters this way."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

from trent.cluster.ports import free_port_block
from trent.node.config import DEFAULT_REGIONS

ROOT = Path(__file__).resolve().parents[2]
# The admin header (cluster/admin.py); spelled out here so the clients do not import the server stack.
TOKEN_HEADER = "X-Trent-Admin-Token"

T = TypeVar("T")


def poll(predicate: Callable[..., T], timeout: float = 20.0, interval: float = 0.05) -> T:
    """Wait (bounded) until predicate() is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def admin_address(data_dir: str | Path) -> tuple[str, str]:
    """The gateway URL and the admin token that the cluster running on ``data_dir`` left there; OSError when none
    did."""
    root = Path(data_dir)
    cluster = json.loads((root / "cluster.json").read_text())
    token = (root / "admin.token").read_text().strip()
    gateway: str = cluster["gateway"]
    return gateway, token


def admin_ca(data_dir: str | Path) -> str | None:
    """The CA a gateway serving TLS named in cluster.json (`trent gateway` with a bundle), if any."""
    try:
        ca = json.loads((Path(data_dir) / "cluster.json").read_text()).get("ca")
    except (OSError, ValueError, AttributeError):
        return None
    return ca if isinstance(ca, str) else None


def admin_send(gateway: str, token: str, path: str, body: dict[str, Any] | None = None,
               ca: str | None = None) -> dict[str, Any]:
    """GET an admin endpoint (``/_trent/status``, ``/_trent/clock``), or POST ``body`` to one: its JSON answer.
    HTTPError when the cluster refuses the call, URLError when it cannot be reached. ``ca``: the cluster CA, for a
    gateway serving TLS."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(gateway + path, data=data, method="POST" if data else "GET",
                                     headers={TOKEN_HEADER: token, "Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=ca) if ca else None
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        result: dict[str, Any] = json.loads(response.read())
        return result


def admin_request(data_dir: str | Path, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """An admin call to the cluster running on ``data_dir``, as `trent status`, `trent clock` and `trent fault`
    make it (raising what admin_address and admin_send raise)."""
    return admin_send(*admin_address(data_dir), path, body, ca=admin_ca(data_dir))


@dataclass
class RunningCluster:
    """`trent up` on ``data_dir``: the gateway on ``port``, the regions on the ports right after it, the process's
    output in ``log_path`` beside the data directory."""

    data_dir: Path
    port: int
    regions: tuple[str, ...] = DEFAULT_REGIONS
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    # Region activity in the log too (trent up -v).
    verbose: bool = field(default=True, kw_only=True)
    # A process group of its own (with its workers), so kill(group=True) takes every process at the same instant.
    own_group: bool = field(default=False, kw_only=True)
    log_path: Path = field(init=False)
    # How long the last start took: from launching the process until the cluster answered, its cluster.json written.
    startup_seconds: float = field(default=0.0, init=False)
    _started_once: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    # -- process control -----------------------------------------------------------------------------

    def start(self, timeout: float = 30.0, interval: float = 0.05) -> Self:
        """Launch the cluster and wait (up to ``timeout``, looking every ``interval`` seconds) until it is up."""
        for attempt in range(5):
            args = [sys.executable, "-m", "trent.cluster.cli", "up", "--data-dir", str(self.data_dir), "--port",
                    str(self.port), "--regions", ",".join(self.regions), *(["-v"] if self.verbose else []),
                    *self.extra_args]
            with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
                self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                             start_new_session=self.own_group)
            launched = time.monotonic()
            try:
                poll(self._healthy, timeout, interval)
                self.startup_seconds = time.monotonic() - launched
                self._started_once = True
                return self
            except RuntimeError:
                # Someone else took one of the ports first: a first start may move to another block (a restart
                # keeps its ports, which its clients already point at).
                if self._started_once or attempt == 4 or b"address already in use" not in self.log_path.read_bytes():
                    raise
                self.port = free_port_block(len(self.regions) + 1)
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"trent exited with {self.proc.returncode}; see {self.log_path}")
        try:
            with urllib.request.urlopen(self.gateway_url + "/_trent/health", timeout=1) as r:
                return bool(r.status == 200) and (self.data_dir / "cluster.json").exists()
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, then wait (up to ``timeout``) for the clean shutdown; its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code

    def kill(self, group: bool = False) -> None:
        """SIGKILL the process (``group``: its whole process group, workers included; needs ``own_group``)."""
        assert self.proc is not None
        if group:
            assert self.own_group, "only a cluster started in its own process group can be killed as a group"
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)
        self.proc = None

    def worker_pids(self) -> list[int]:
        """The worker processes (`--workers`) of the last start, as its cluster.json names them."""
        pids: list[int] = json.loads((self.data_dir / "cluster.json").read_text()).get("workers", [])
        return pids

    def restart(self) -> Self:
        if self.proc is not None:
            self.stop()
        return self.start()

    # -- addresses and clients -------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def region_port(self, region: str) -> int:
        return self.port + 1 + self.regions.index(region)

    def region_url(self, region: str) -> str:
        return f"http://127.0.0.1:{self.region_port(region)}"

    def client(self, region: str = "us-east-1", *, via: str = "gateway", access_key: str = "test",
               secret_key: str = "test", session_token: str | None = None, retries: int = 0) -> Any:
        import boto3  # the client side only: `trent up` itself does not need it
        from botocore.config import Config

        url = self.gateway_url if via == "gateway" else self.region_url(region)
        return boto3.client(
            "kms", endpoint_url=url, region_name=region, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, aws_session_token=session_token,
            # botocore's max_attempts counts retries after the first attempt: 0 means one attempt only.
            config=Config(retries={"max_attempts": retries, "mode": "standard"}),
        )

    # -- admin and the command line ----------------------------------------------------------------------

    def admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return admin_request(self.data_dir, path, body)

    def trent(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the `trent` command line against this cluster."""
        return subprocess.run([sys.executable, "-m", "trent.cluster.cli", *args, "--data-dir", str(self.data_dir)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60, check=check)
