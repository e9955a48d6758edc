"""Starts a private `trent up` for a demo (own data directory, free loopback ports) and stops it afterwards."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from cluster.ports import free_port_block

ROOT = Path(__file__).resolve().parents[1]
REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-2")


class DemoCluster:
    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir, self.port = data_dir, port
        self.gateway = f"http://127.0.0.1:{port}"

    def client(self, region: str) -> Any:
        return boto3.client("kms", endpoint_url=self.gateway, region_name=region, aws_access_key_id="test",
                            aws_secret_access_key="test", config=Config(retries={"max_attempts": 0}))

    def trent(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "cluster.cli", *args, "--data-dir", str(self.data_dir)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
        return done.stdout

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.trent("status", "--json"))
        return result

    def wait(self, predicate: Any, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("the cluster did not get there in time")
            time.sleep(0.05)


@contextlib.contextmanager
def demo_cluster(replica_delay: str = "0.5") -> Iterator[DemoCluster]:
    with tempfile.TemporaryDirectory(prefix="trent-demo-") as tmp:
        port = free_port_block(len(REGIONS) + 1)
        data = Path(tmp) / "data"
        log = open(Path(tmp) / "trent.log", "wb")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen([sys.executable, "-m", "cluster.cli", "up", "--data-dir", str(data), "--port",
                                 str(port), "--replica-delay", replica_delay], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT)
        cluster = DemoCluster(data, port)
        try:
            def up() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError("trent up exited early")
                try:
                    with urllib.request.urlopen(cluster.gateway + "/_trent/health", timeout=1):
                        return (data / "cluster.json").exists()
                except OSError:
                    return False
            cluster.wait(up, timeout=30)
            yield cluster
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            log.close()
