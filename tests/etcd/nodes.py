"""Nodes of one etcd-backed region as `trent node` processes (and a `trent gateway` in front of them), on loopback
ports, each with its own data directory and the region's one root key (as their `trent init` bundles give it)."""

from __future__ import annotations

import json
import secrets
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from trent.cluster.etcd_local import LocalEtcd
from trent.cluster.launched import Launched
from trent.cluster.ports import free_port_block
from trent.cluster.running import TOKEN_HEADER

REGION = "us-east-1"


@dataclass
class EtcdRegion:
    etcd: LocalEtcd
    tmp: Path
    ttl: int = 2
    base: int = field(default_factory=lambda: free_port_block(6))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    nodes: list[Launched] = field(default_factory=list)
    gateway: Launched | None = None

    def __post_init__(self) -> None:
        self.config = self.tmp / "trent.toml"
        self.config.write_text("\n".join([
            'store = "etcd"',
            f"etcd_endpoints = {json.dumps(list(self.etcd.endpoints))}",
            f'etcd_prefix = "/trent-{self.base}"',
            f"etcd_lease_ttl = {self.ttl}",
            f'admin_token = "{self.token}"',
            "scheduler_interval = 0.2",
            f'root_keys = {{ "{REGION}" = "{secrets.token_hex(32)}" }}',
        ]) + "\n")
        self.config.chmod(0o600)

    def port(self, n: int) -> int:
        return self.base + 1 + n

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.port(n)}"

    def start_node(self, n: int) -> Launched:
        node = Launched(f"node{n}", ["node", "--region", REGION, "--regions", REGION, "--port", str(self.port(n)),
                                     "--config", str(self.config), "--data-dir", str(self.tmp / f"node{n}")],
                        self.tmp / f"node{n}.log", f"{self.url(n)}/_trent/health")
        while len(self.nodes) <= n:
            self.nodes.append(node)
        self.nodes[n] = node
        return node.start()

    def start_gateway(self, count: int) -> Launched:
        regions = [a for n in range(count) for a in ("--region", f"{REGION}={self.url(n)}")]
        self.gateway = Launched("gateway", ["gateway", "--port", str(self.base), *regions, "--config",
                                            str(self.config), "--data-dir", str(self.tmp / "gateway")],
                                self.tmp / "gateway.log", f"http://127.0.0.1:{self.base}/_trent/health").start()
        return self.gateway

    def client(self, n: int | None = None, retries: int = 0) -> Any:
        url = f"http://127.0.0.1:{self.base}" if n is None else self.url(n)
        return boto3.client("kms", endpoint_url=url, region_name=REGION, aws_access_key_id="test",
                            aws_secret_access_key="test",
                            config=Config(retries={"max_attempts": retries, "mode": "standard"},
                                          connect_timeout=5, read_timeout=20))

    def status(self, n: int) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url(n)}/_trent/status", headers={TOKEN_HEADER: self.token})
        with urllib.request.urlopen(request, timeout=10) as answer:
            doc: dict[str, Any] = json.loads(answer.read())
        return doc

    def stop(self) -> None:
        for launched in [*self.nodes, *([self.gateway] if self.gateway else [])]:
            if launched.running():
                launched.kill()
