"""A local etcd (one member or a 3-member cluster on loopback ports) started from Debian's ``etcd-server``: for
`trent up --store etcd` when no etcd is configured, and for the tests and the bench. Each member's data lives in a
directory of its own; ``kill`` SIGKILLs one member (a crash), ``restart`` brings it back on its data."""

from __future__ import annotations

import http.client
import json
import shutil
import signal
import ssl
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from trent.cluster.ports import free_port_block
from trent.cluster.worker_processes import die_with_parent
from trent.node.config import ClusterConfig

ETCD = "etcd"


def etcd_binary() -> str | None:
    return shutil.which(ETCD) or (("/usr/bin/etcd") if Path("/usr/bin/etcd").exists() else None)


class LocalEtcd:
    def __init__(self, directory: Path, members: int = 3, base_port: int | None = None,
                 progress_seconds: float = 2.0, hosts: list[str] | None = None,
                 prefixes: list[list[str]] | None = None, tls: tuple[Path, Path, Path | None] | None = None) -> None:
        """``progress_seconds``: how often an idle watch hears that it is current (etcd's default is 10 minutes);
        ``hosts``/``prefixes``: each member's address and command prefix (``ip netns exec NS``: a member per network
        namespace, cluster/netns_etcd.py); loopback and none by default."""
        self.directory = directory
        self.members = members
        self.hosts = hosts or ["127.0.0.1"] * members
        self.prefixes = prefixes or [[] for _ in range(members)]
        # (certificate, key, CA whose clients it accepts or None): clients then speak https, with a certificate
        # from that CA when one is given (etcd --client-cert-auth).
        self.tls = tls
        self.client_tls: ssl.SSLContext | None = None  # how this harness reaches a TLS member (set with ``tls``)
        self.base = base_port if base_port is not None else free_port_block(2 * members)
        self.progress = progress_seconds
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * members
        self.token = f"trent-{self.base}"

    def client_port(self, i: int) -> int:
        return self.base + 2 * i

    def peer_port(self, i: int) -> int:
        return self.base + 2 * i + 1

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(f"{self.scheme}://{self.hosts[i]}:{self.client_port(i)}" for i in range(self.members))

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    def _args(self, i: int) -> list[str]:
        name = f"m{i}"
        initial = ",".join(f"m{j}=http://{self.hosts[j]}:{self.peer_port(j)}" for j in range(self.members))
        host = self.hosts[i]
        binary = etcd_binary()
        if binary is None:
            raise OSError("etcd is not installed (Debian package etcd-server: deploy/debian-packages.txt)")
        return [*self.prefixes[i], binary, "--name", name, "--data-dir", str(self.directory / name),
                "--listen-client-urls", f"{self.scheme}://{host}:{self.client_port(i)}",
                "--advertise-client-urls", f"{self.scheme}://{host}:{self.client_port(i)}", *self._tls_args(),
                "--listen-peer-urls", f"http://{host}:{self.peer_port(i)}",
                "--initial-advertise-peer-urls", f"http://{host}:{self.peer_port(i)}",
                "--initial-cluster", initial, "--initial-cluster-token", self.token,
                "--initial-cluster-state", "existing" if self._has_data(name) else "new",
                # Short election timings: a killed leader is replaced in about a second on loopback.
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--experimental-watch-progress-notify-interval", f"{self.progress}s",
                "--log-level", "error", "--logger", "zap"]

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        cert, key, clients = self.tls
        args = ["--cert-file", str(cert), "--key-file", str(key)]
        return args + (["--client-cert-auth", "--trusted-ca-file", str(clients)] if clients else [])

    def _has_data(self, name: str) -> bool:
        return (self.directory / name / "member").is_dir()

    def start(self, timeout: float = 30.0) -> LocalEtcd:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for i in range(self.members):
            self._spawn(i)
        self.wait_healthy(timeout)
        return self

    def _spawn(self, i: int) -> None:
        log = open(self.directory / f"m{i}.log", "ab")  # noqa: SIM115 (the member writes it until it stops)
        with log:
            # Its own session (a Ctrl-C meant for trent must not stop etcd under a cluster still stopping), yet
            # never outliving whoever started it.
            self.procs[i] = subprocess.Popen(self._args(i), stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True,
                                             preexec_fn=die_with_parent)

    def wait_healthy(self, timeout: float = 30.0, members: list[int] | None = None) -> None:
        """Until every running member (or ``members``) sees a leader."""
        wanted = members if members is not None else [i for i, p in enumerate(self.procs) if p is not None]
        deadline = time.monotonic() + timeout
        while True:
            if all(self.healthy(i) for i in wanted):
                return
            for i in wanted:
                proc = self.procs[i]
                if proc is not None and proc.poll() is not None:
                    log = (self.directory / f"m{i}.log").read_text(errors="replace")[-2000:]
                    raise OSError(f"etcd member m{i} exited ({proc.returncode}): {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"etcd did not become healthy within {timeout}s")
            time.sleep(0.1)

    def status(self, i: int) -> dict[str, Any] | None:
        """Member ``i``'s maintenance status, or None when it does not answer."""
        if self.tls is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.hosts[i], self.client_port(i), timeout=1.0, context=self.client_tls)
        else:
            conn = http.client.HTTPConnection(self.hosts[i], self.client_port(i), timeout=1.0)
        try:
            conn.request("POST", "/v3/maintenance/status", b"{}")
            doc: dict[str, Any] = json.loads(conn.getresponse().read() or b"{}")
            return doc
        except (OSError, ValueError, http.client.HTTPException):
            return None
        finally:
            conn.close()

    def healthy(self, i: int) -> bool:
        doc = self.status(i)
        return doc is not None and str(doc.get("leader", "0")) != "0"

    def leader(self) -> int | None:
        """The index of the member that is the Raft leader now."""
        for i in range(self.members):
            doc = self.status(i) if self.procs[i] is not None else None
            if doc is None:
                continue
            if doc.get("leader") and doc.get("leader") == doc.get("header", {}).get("member_id"):
                return i
        return None

    def kill(self, i: int) -> None:
        """SIGKILL member ``i`` (a crash: no clean shutdown)."""
        proc = self.procs[i]
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            self.procs[i] = None

    def restart(self, i: int, timeout: float = 30.0) -> None:
        """Bring member ``i`` back on its data directory (it rejoins the cluster it was part of)."""
        if self.procs[i] is None:
            self._spawn(i)
            self.wait_healthy(timeout, [i])

    def stop(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.procs[i] = None


def local_etcd_for(config: ClusterConfig, configured: bool) -> tuple[LocalEtcd | None, ClusterConfig]:
    """`trent up --store etcd` with no etcd configured (``configured``: etcd_endpoints was given): a one-member
    etcd of its own under the data directory (``etcd/``), on the ports after the regions'; the config pointed at
    it. (None, config) when no region is on etcd or one is configured."""
    if configured or "etcd" not in (config.store, *config.region_stores.values()):
        return None, config
    base = config.port + 1 + len(config.regions) + 50
    local = LocalEtcd(config.data_dir / "etcd", members=1, base_port=base, progress_seconds=10.0)
    local.start()
    return local, replace(config, etcd=replace(config.etcd, endpoints=local.endpoints))
