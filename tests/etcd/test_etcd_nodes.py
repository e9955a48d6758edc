"""Several `trent node` processes serving one region over a real 3-member etcd: what one node makes the other
serves at once, concurrent writes through both lose nothing, the background work runs on exactly one node and moves
within the lease TTL when that node is SIGKILLed, and behind the gateway a node's death costs the client only
retried errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.etcd.nodes import EtcdRegion
from trent.cluster.etcd_local import LocalEtcd
from trent.cluster.running import ROOT, TOKEN_HEADER, poll


def audit_of(region: EtcdRegion, n: int) -> bytes:
    path = region.tmp / f"node{n}" / "us-east-1" / "audit" / "audit.jsonl"
    return path.read_bytes() if path.exists() else b""


@pytest.fixture
def region(etcd: LocalEtcd, tmp_path: Path) -> Iterator[EtcdRegion]:
    r = EtcdRegion(etcd, tmp_path)
    try:
        yield r
    finally:
        r.stop()


def test_two_nodes_serve_one_region_and_concurrent_writes_lose_nothing(region: EtcdRegion) -> None:
    region.start_node(0)
    region.start_node(1)
    first, second = region.client(0), region.client(1)
    key_id = first.create_key(Description="made through node 0")["KeyMetadata"]["KeyId"]
    # Read through the other node at once: its view follows etcd's watch (or catches up on a miss).
    blob = second.encrypt(KeyId=key_id, Plaintext=b"across nodes")["CiphertextBlob"]
    assert first.decrypt(CiphertextBlob=blob)["Plaintext"] == b"across nodes"
    # Both nodes tag the same key at once: every tag survives (a lost race is decided again, never overwritten).
    errors: list[Exception] = []

    def tagger(client: object, side: str) -> None:
        for i in range(12):
            try:
                client.tag_resource(KeyId=key_id, Tags=[{"TagKey": f"{side}{i}", "TagValue": side}])  # type: ignore[attr-defined]
            except ClientError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=tagger, args=(c, s)) for c, s in ((first, "a"), (second, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    for client in (first, second):
        tags = {t["TagKey"] for t in client.list_resource_tags(KeyId=key_id)["Tags"]}
        assert tags == {f"{s}{i}" for s in "ab" for i in range(12)}
    # Each node serves /metrics for its region (behind the admin token): its keys, its lost races, its requests.
    for n in (0, 1):
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(f"{region.url(n)}/metrics", timeout=10)
        scrape = urllib.request.Request(f"{region.url(n)}/metrics", headers={TOKEN_HEADER: region.token})
        with urllib.request.urlopen(scrape, timeout=10) as answer:
            samples = {s.name + json.dumps(s.labels, sort_keys=True): s.value
                       for f in text_string_to_metric_families(answer.read().decode()) for s in f.samples}
        assert samples['trent_keys{"region": "us-east-1", "state": "Enabled"}'] == 1
        assert 'trent_etcd_lost_races_total{"region": "us-east-1"}' in samples
        assert sum(v for k, v in samples.items() if k.startswith("trent_requests_total") and '"TagResource"' in k) >= 12
    # Exactly one node holds the lease, and both say which.
    reports = [region.status(n)["etcd"] for n in (0, 1)]
    assert [r["leading"] for r in reports].count(True) == 1
    assert reports[0]["lease_holder"] == reports[1]["lease_holder"]
    assert {n["node"] for n in reports[0]["nodes"]} == {r["node"] for r in reports}
    assert all(m["healthy"] for m in reports[0]["etcd"])


def test_sigkill_of_the_lease_holder_moves_the_background_work_within_the_ttl(region: EtcdRegion) -> None:
    region.start_node(0)
    poll(lambda: region.status(0)["etcd"]["leading"], 10)
    region.start_node(1)
    follower = region.status(1)["etcd"]
    assert not follower["leading"] and not follower["background_running"]  # the first node keeps it
    client = region.client(1)
    key_id = client.create_key()["KeyMetadata"]["KeyId"]
    region.nodes[0].kill()
    killed = time.monotonic()
    poll(lambda: region.status(1)["etcd"]["leading"], region.ttl + 5, 0.05)
    moved = time.monotonic() - killed
    assert moved <= region.ttl + 1.5, f"the work moved after {moved:.1f}s (TTL {region.ttl}s)"
    report = region.status(1)["etcd"]
    assert report["lease_holder"] == report["node"] and report["background_running"]
    assert [n["node"] for n in report["nodes"]] == [report["node"]]  # the dead node's entry went with its lease
    # The region goes on serving through the node left.
    assert client.describe_key(KeyId=key_id)["KeyMetadata"]["Enabled"]


def test_behind_the_gateway_a_node_death_costs_only_retried_errors(region: EtcdRegion) -> None:
    region.start_node(0)
    region.start_node(1)
    region.start_gateway(2)
    client = region.client(None, retries=8)
    key_id = client.create_key()["KeyMetadata"]["KeyId"]
    done: list[int] = []
    failures: list[Exception] = []
    stop = threading.Event()

    def burst() -> None:
        i = 0
        while not stop.is_set():
            try:
                blob = client.encrypt(KeyId=key_id, Plaintext=f"m{i}".encode())["CiphertextBlob"]
                client.tag_resource(KeyId=key_id, Tags=[{"TagKey": f"t{i % 40}", "TagValue": str(i)}])
                assert client.decrypt(CiphertextBlob=blob)["Plaintext"] == f"m{i}".encode()
                done.append(i)
            except ClientError as exc:  # what the client sees after its retries
                failures.append(exc)
            i += 1

    thread = threading.Thread(target=burst)
    thread.start()
    poll(lambda: len(done) >= 20, 30)
    # The gateway spreads the calls: each node has served some (its own audit trail records them).
    poll(lambda: all(b"Encrypt" in audit_of(region, n) for n in (0, 1)), 10)
    region.nodes[0].kill()
    before = len(done)
    poll(lambda: len(done) >= before + 20, 30)
    stop.set()
    thread.join(60)
    assert not failures, failures[:3]


def test_a_node_with_another_root_key_refuses_to_start_and_writes_nothing(region: EtcdRegion) -> None:
    region.start_node(0)
    key_id = region.client(0).create_key()["KeyMetadata"]["KeyId"]
    other = region.tmp / "other.toml"
    text = region.config.read_text()
    start = text.index('root_keys = { "us-east-1" = "') + len('root_keys = { "us-east-1" = "')
    other.write_text(text[:start] + "ab" * 32 + text[start + 64:])
    other.chmod(0o600)
    refused = subprocess.run([sys.executable, "-m", "trent.cluster.cli", "node", "--region", "us-east-1", "--regions",
                              "us-east-1", "--port", str(region.port(1)), "--config", str(other), "--data-dir",
                              str(region.tmp / "stranger")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert "root key is not the one the region's data in etcd is wrapped under" in refused.stderr
    assert "ab" * 32 not in refused.stderr + refused.stdout
    # The region is as it was: its one node serves, with the key it had.
    report = region.status(0)["etcd"]
    assert [n["node"] for n in report["nodes"]] == [report["node"]]
    assert region.client(0).describe_key(KeyId=key_id)["KeyMetadata"]["Enabled"]


def test_a_key_that_does_not_exist_does_not_stall_the_node_while_etcd_is_slow(region: EtcdRegion,
                                                                               etcd: LocalEtcd) -> None:
    """A miss asks etcd whether another node made the key a moment ago. That read waits off the event loop, and with
    etcd frozen a request naming a key that does not exist waits alone: the node answers every other request
    meanwhile (it used to stop them all for the read's timeout), then that one with AWS's NotFoundException."""
    region.start_node(0)
    client = region.client(0)
    made = client.create_key()["KeyMetadata"]
    blob = client.encrypt(KeyId=made["KeyId"], Plaintext=b"before")["CiphertextBlob"]
    wrong = "1234abcd-12ab-34cd-56ef-1234567890ab"
    outcome: list[object] = []

    def stray() -> None:
        try:
            region.client(0).encrypt(KeyId=wrong, Plaintext=b"x")
            outcome.append("answered")
        except ClientError as exc:
            outcome.append(exc.response["Error"])

    thread = threading.Thread(target=stray)
    for proc in etcd.procs:
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
    try:
        thread.start()
        slowest, answered = 0.0, 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            started = time.monotonic()
            assert client.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before"
            slowest, answered = max(slowest, time.monotonic() - started), answered + 1
        assert thread.is_alive()  # the stray request waited on etcd all along
        assert slowest < 0.5, f"a decrypt waited {slowest:.2f}s behind the stray request's read of etcd"
    finally:
        for proc in etcd.procs:
            if proc is not None:
                proc.send_signal(signal.SIGCONT)
    thread.join(30)
    arn = made["Arn"].rsplit("/", 1)[0] + "/" + wrong
    assert outcome == [{"Code": "NotFoundException", "Message": f"Key '{arn}' does not exist"}]
    assert answered > 10
