"""Regions as `trent node` processes and a `trent gateway`, started by hand from `trent init` bundles as on
separate hosts: TLS on every port, nodes that authenticate each other on every replication and admin call, and a
node that refuses another cluster's bundle."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from trent.cluster.launched import Launched
from trent.cluster.links import sign
from trent.cluster.ports import free_port_block
from trent.cluster.replication.shipper import LOG_PATH
from trent.cluster.running import ROOT, poll

A, B = "us-east-1", "eu-west-1"


def trent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trent.cluster.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


@dataclass
class Hosts:
    bundles: Path
    base: int
    nodes: dict[str, Launched]
    gateway: Launched
    tmp: Path

    def url(self, region: str) -> str:
        return f"https://127.0.0.1:{self.base + 1 + [A, B].index(region)}"

    @property
    def ca(self) -> Path:
        return self.bundles / "cluster" / "ca.pem"

    def client(self, region: str) -> object:
        return boto3.client("kms", endpoint_url=f"https://127.0.0.1:{self.base}", region_name=region,
                            aws_access_key_id="test", aws_secret_access_key="test", verify=str(self.ca),
                            config=Config(retries={"max_attempts": 0}))

    def get(self, url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(url, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10,
                                        context=ssl.create_default_context(cafile=str(self.ca))) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def node(tmp: Path, bundles: Path, base: int, region: str, data: str | None = None,
         bundle: str | None = None) -> Launched:
    port = base + 1 + [A, B].index(region)
    peer = B if region == A else A
    peer_port = base + 1 + [A, B].index(peer)
    return Launched(region, ["node", "--region", region, "--port", str(port), "--peer",
                             f"{peer}=https://127.0.0.1:{peer_port}", "--bundle", str(bundles / (bundle or region)),
                             "--data-dir", str(tmp / (data or region)), "--replica-delay", "0.2"],
                    tmp / f"{region}.log", f"https://127.0.0.1:{port}/_trent/health", bundles / "cluster" / "ca.pem")


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    bundles = tmp_path / "bundles"
    made = trent("init", str(bundles), "--node", f"{A}=127.0.0.1", "--node", f"{B}=127.0.0.1",
                 "--node", "gateway=127.0.0.1,localhost", "--regions", f"{A},{B}")
    assert made.returncode == 0, made.stderr
    base = free_port_block(3)
    nodes = {r: node(tmp_path, bundles, base, r) for r in (A, B)}
    gateway = Launched("gateway", ["gateway", "--port", str(base), "--region", f"{A}=https://127.0.0.1:{base + 1}",
                                   "--region", f"{B}=https://127.0.0.1:{base + 2}", "--bundle",
                                   str(bundles / "gateway"), "--data-dir", str(tmp_path / "gateway")],
                       tmp_path / "gateway.log", f"https://127.0.0.1:{base}/_trent/health",
                       bundles / "cluster" / "ca.pem")
    started: list[Launched] = []
    try:
        for launched in (*nodes.values(), gateway):
            started.append(launched.start())
        yield Hosts(bundles, base, nodes, gateway, tmp_path)
    finally:
        for launched in (*nodes.values(), gateway):
            launched.kill()


def test_init_makes_private_bundles_of_one_cluster(hosts: Hosts) -> None:
    ids = set()
    for name in (A, B, "gateway"):
        bundle = hosts.bundles / name
        assert os.stat(bundle).st_mode & 0o777 == 0o700
        for path in bundle.iterdir():
            assert path.stat().st_mode & 0o777 == 0o600, path
        ids.add(json.loads((bundle / "bundle.json").read_text())["cluster_id"])
    assert len(ids) == 1
    assert (hosts.bundles / "cluster" / "ca.key").stat().st_mode & 0o777 == 0o600
    # A second init over the same directory never replaces a bundle silently.
    again = trent("init", str(hosts.bundles), "--node", f"{A}=127.0.0.1")
    assert again.returncode == 2 and "exists already" in again.stderr


def test_mrk_round_trip_over_tls_between_node_processes(hosts: Hosts) -> None:
    a, b = hosts.client(A), hosts.client(B)
    key_id = a.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]  # type: ignore[attr-defined]
    blob = a.encrypt(KeyId=key_id, Plaintext=b"across hosts")["CiphertextBlob"]  # type: ignore[attr-defined]
    a.replicate_key(KeyId=key_id, ReplicaRegion=B)  # type: ignore[attr-defined]
    poll(lambda: b.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled", 20)  # type: ignore
    assert b.decrypt(CiphertextBlob=blob)["Plaintext"] == b"across hosts"  # type: ignore[attr-defined]
    # Plain http to a TLS port gets nowhere.
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(hosts.url(A).replace("https", "http") + "/_trent/health", timeout=5)


def test_no_unauthenticated_peer_reads_an_outbox_or_the_status(hosts: Hosts, tmp_path: Path) -> None:
    a = hosts.client(A)
    key_id = a.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]  # type: ignore[attr-defined]
    a.replicate_key(KeyId=key_id, ReplicaRegion=B)  # type: ignore[attr-defined]
    outbox = hosts.url(A) + LOG_PATH + f"?after=0&wait=0&region={A}"
    params = {"after": "0", "wait": "0", "region": A}
    other = tmp_path / "other"
    assert trent("init", str(other), "--node", "x=127.0.0.1").returncode == 0
    strangers = {"replication": (other / "x" / "replication.token").read_text(),
                 "admin": (other / "x" / "admin.token").read_text()}
    for headers in ({}, sign(strangers["replication"], "GET", LOG_PATH, params),
                    {"X-Trent-Replication-Token": (hosts.bundles / A / "replication.token").read_text()}):
        status, body = hosts.get(outbox, headers)
        assert status == 403 and b"records" not in body
    ours = (hosts.bundles / A / "replication.token").read_text()
    assert hosts.get(outbox, sign(ours, "GET", LOG_PATH, params))[0] == 200
    admin = (hosts.bundles / A / "admin.token").read_text()
    for path in ("/_trent/status", "/_trent/clock"):
        here, there = {"region": A}, {"region": B}
        for query, headers in (({}, {}), (here, sign(strangers["admin"], "GET", path, here)),
                               # Signed by the cluster, but for the other region's node: not good here.
                               (there, sign(admin, "GET", path, there)), ({}, sign(admin, "GET", path))):
            url = hosts.url(A) + path + ("?region=" + query["region"] if query else "")
            status, body = hosts.get(url, headers)
            assert status == 403 and b"keys" not in body
        assert hosts.get(f"{hosts.url(A)}{path}?region={A}", sign(admin, "GET", path, here))[0] == 200
    # The gateway's admin API takes the operator's token, and gathers every node's status (signed calls).
    token = (hosts.bundles / "gateway" / "admin.token").read_text()
    status, body = hosts.get(f"https://127.0.0.1:{hosts.base}/_trent/status", {"X-Trent-Admin-Token": token})
    assert status == 200
    assert set(json.loads(body)["regions"]) == {A, B}
    assert hosts.get(f"https://127.0.0.1:{hosts.base}/_trent/status")[0] == 403


def test_a_node_refuses_another_clusters_bundle(hosts: Hosts, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert trent("init", str(other), "--node", f"{A}=127.0.0.1").returncode == 0
    hosts.nodes[A].stop()
    refused = trent("node", "--region", A, "--port", str(hosts.base + 1), "--peer", f"{B}={hosts.url(B)}",
                    "--bundle", str(other / A), "--data-dir", str(tmp_path / A))
    assert refused.returncode == 2 and "belongs to cluster" in refused.stderr
    (hosts.bundles / A / "node.key").chmod(0o644)
    loose = trent("node", "--region", A, "--port", str(hosts.base + 1), "--peer", f"{B}={hosts.url(B)}",
                  "--bundle", str(hosts.bundles / A), "--data-dir", str(tmp_path / A))
    assert loose.returncode == 2 and "readable by others" in loose.stderr


def test_the_gateway_answers_for_an_unreachable_region(hosts: Hosts) -> None:
    hosts.nodes[B].kill()
    with pytest.raises(ClientError) as caught:
        hosts.client(B).list_keys()  # type: ignore[attr-defined]
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert hosts.client(A).list_keys()["Keys"] is not None  # type: ignore[attr-defined]
    hosts.nodes[B].start()  # back on the same data, and the gateway sends to it again
    poll(lambda: hosts.client(B).list_keys() is not None, 10)  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", [(), ("--processes",)])
def test_client_facing_tls_when_a_certificate_is_configured(tmp_path: Path, mode: tuple[str, ...]) -> None:
    """`trent up` (one process, or --processes) with `tls_cert`/`tls_key`: every port serves TLS, replication
    between the regions runs over it, and `trent status` reaches the gateway with the configured CA."""
    bundles = tmp_path / "b"
    assert trent("init", str(bundles), "--node", "local=127.0.0.1,localhost").returncode == 0
    config = tmp_path / "trent.toml"
    config.write_text(f'tls_cert = "{bundles}/local/node.pem"\ntls_key = "{bundles}/local/node.key"\n'
                      f'tls_ca = "{bundles}/local/ca.pem"\nreplica_creating_seconds = 0.2\n')
    base = free_port_block(4)
    up = Launched("up", ["up", "--config", str(config), "--data-dir", str(tmp_path / "data"), "--port", str(base),
                         *mode], tmp_path / "up.log", f"https://127.0.0.1:{base}/_trent/health",
                  bundles / "local" / "ca.pem").start()
    try:
        def client(region: str, port: int) -> object:
            return boto3.client("kms", endpoint_url=f"https://127.0.0.1:{port}", region_name=region,
                                aws_access_key_id="test", aws_secret_access_key="test",
                                verify=str(bundles / "local" / "ca.pem"), config=Config(retries={"max_attempts": 0}))
        home, away = client(A, base), client(B, base + 2)  # the gateway, and eu-west-1's own port
        key_id = home.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]  # type: ignore[attr-defined]
        blob = home.encrypt(KeyId=key_id, Plaintext=b"tls")["CiphertextBlob"]  # type: ignore[attr-defined]
        home.replicate_key(KeyId=key_id, ReplicaRegion=B)  # type: ignore[attr-defined]

        def decrypts() -> bool:
            try:
                return bool(away.decrypt(CiphertextBlob=blob)["Plaintext"] == b"tls")  # type: ignore[attr-defined]
            except ClientError:
                return False
        poll(decrypts, 20)
        status = trent("status", "--data-dir", str(tmp_path / "data"))
        assert status.returncode == 0 and "consistent" in status.stdout, status.stderr
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{base + 1}/_trent/health", timeout=5)
    finally:
        up.stop()
