"""A `trent xks-proxy` process on a free loopback port, for tests, demos and the bench: its config written from
parameters, started, waited for, faulted (`trent fault xks`), stopped."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from trent.cluster.ports import free_port_block
from trent.cluster.running import ROOT, poll

ACCESS_KEY = "TRENTXKSPROXYEXAMPLEKEY2"
SECRET = "c2VjcmV0LWFjY2Vzcy1rZXktZm9yLXRyZW50LXhrcy1wcm94eQ"
TEST_CLIENT_KEYS = (("foo", ("ENCRYPT", "DECRYPT")), ("encrypt_only_key", ("ENCRYPT",)),
                    ("decrypt_only_key", ("DECRYPT",)), ("impotent_key", ()))


@dataclass
class RunningProxy:
    root: Path  # config, data directory and log live here
    uri_prefix: str = "example/uri/path/prefix"
    keys: tuple[tuple[str, tuple[str, ...]], ...] = TEST_CLIENT_KEYS
    disabled: tuple[str, ...] = ()
    credentials: tuple[tuple[str, str], ...] = ((ACCESS_KEY, SECRET),)
    tls: tuple[Path, Path] | None = None  # (certificate, key)
    client_ca: Path | None = None
    ca: Path | None = None  # what a client here trusts, with tls
    port: int = 0
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "xks-data"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://{'localhost' if self.tls else '127.0.0.1'}:{self.port}"

    @property
    def uri_path(self) -> str:
        return f"/{self.uri_prefix}/kms/xks/v1" if self.uri_prefix else "/kms/xks/v1"

    def write_config(self) -> Path:
        lines = ['host = "127.0.0.1"', f"port = {self.port}", f'uri_prefix = "{self.uri_prefix}"']
        if self.tls is not None:
            lines += [f'tls_cert = "{self.tls[0]}"', f'tls_key = "{self.tls[1]}"']
        if self.client_ca is not None:
            lines.append(f'tls_client_ca = "{self.client_ca}"')
        for ak, secret in self.credentials:
            lines += ["[[credentials]]", f'access_key_id = "{ak}"', f'secret_access_key = "{secret}"']
        for key_id, usage in self.keys:
            lines += ["[[keys]]", f'id = "{key_id}"', f"usage = {list(usage)!r}".replace("'", '"')]
            if key_id in self.disabled:
                lines.append("enabled = false")
        path = self.root / "xks-proxy.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 60.0) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port_block(1)
        config = self.write_config()
        log = (self.root / "xks-proxy.log").open("ab")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-m", "trent.cluster.cli", "xks-proxy", "--config", str(config),
                                      "--data-dir", str(self.data_dir)], stdout=log, stderr=subprocess.STDOUT,
                                     cwd=ROOT, env=env)
        poll(self._up, timeout=timeout, interval=0.1)
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"xks-proxy exited with {self.proc.returncode}: {self.log()[-2000:]}")
        context = None
        if self.tls is not None:
            context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
            if self.client_ca is not None:
                return "XKS proxy is up" in self.log()
        try:
            with urllib.request.urlopen(f"{self.endpoint}/ping", timeout=2, context=context) as r:
                return bool(r.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self) -> str:
        path = self.root / "xks-proxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def fault(self, *words: str) -> None:
        subprocess.run([sys.executable, "-m", "trent.cluster.cli", "fault", "xks", *words, "--proxy-dir",
                        str(self.data_dir)], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, timeout=60)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
