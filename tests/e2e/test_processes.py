"""`trent up --processes`: each region and the gateway in an OS process of its own. A region's process is
SIGKILLed in the middle of a burst of writes and started again on the same data: nothing it acknowledged is lost,
and every multi-Region ciphertext decrypts in every region. The in-memory faults still work in this mode."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tests.e2e.test_hostile_http import answers
from trent.bench.loadgen import Call, Target, signed_request
from trent.cluster.launched import Launched
from trent.cluster.netns import WriteBurst
from trent.cluster.ports import free_port_block
from trent.cluster.running import ROOT, RunningCluster, alive, poll

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-2")


def _processes(c: RunningCluster) -> dict[str, int | None]:
    doc: dict[str, int | None] = json.loads((c.data_dir / "cluster.json").read_text())["processes"]
    return doc


def _replicated_mrk(c: RunningCluster) -> str:
    primary = c.client("us-east-1")
    key_id: str = primary.create_key(MultiRegion=True, Description="dr")["KeyMetadata"]["KeyId"]
    for region in REGIONS[1:]:
        primary.replicate_key(KeyId=key_id, ReplicaRegion=region)
    for region in REGIONS[1:]:
        kms = c.client(region)
        poll(lambda k=kms: _state(k, key_id) == "Enabled", 20)
    return key_id


class Burst(WriteBurst):
    """Writes to one region until stopped: new keys and ciphertexts under the MRK; only what was answered counts."""

    def __init__(self, c: RunningCluster, region: str, mrk: str) -> None:
        super().__init__(c.client(region), pause=0.02, join_timeout=30)
        self.mrk = mrk

    def step(self, n: int) -> None:
        if n % 2:
            self.keys.append(self.kms.create_key(Description=f"burst-{n}")["KeyMetadata"]["KeyId"])
        else:
            plain = f"burst-{n}".encode()
            self.blobs.append((self.mrk, self.kms.encrypt(KeyId=self.mrk, Plaintext=plain)["CiphertextBlob"], plain))


def _state(kms: Any, key_id: str) -> str:
    try:
        return str(kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"])
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NotFoundException":
            return "absent"  # not replicated yet
        raise


def _rotating(c: RunningCluster, region: str, key_id: str) -> bool:
    return bool(c.client(region).get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"])


def _until(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    return poll(predicate, timeout, 0.1)


def test_sigkill_of_a_region_process_mid_burst_loses_nothing_acknowledged(
        fresh_cluster: Callable[..., RunningCluster]) -> None:
    c = fresh_cluster(extra_args=("--processes", "--replica-delay", "0.2"))
    pids = _processes(c)
    assert len({pids[r] for r in REGIONS} | {pids["gateway"], c.proc.pid if c.proc else 0}) == 5  # 5 processes
    mrk = _replicated_mrk(c)
    burst = Burst(c, "eu-west-1", mrk)
    burst.start()
    try:
        _until(lambda: len(burst.keys) >= 5 and len(burst.blobs) >= 5)
        victim = pids["eu-west-1"]
        assert victim is not None
        crashed = c.trent("fault", "crash", "eu-west-1", "--json")
        assert json.loads(crashed.stdout)["processes"]["eu-west-1"] is None
        assert not alive(victim)  # SIGKILLed, not asked to stop
    finally:
        burst.stop()  # never left writing (and logging) into the tests that follow
    assert burst.keys and burst.blobs

    # While it is gone: the gateway answers for it with an AWS-shaped error; the other regions carry on.
    with pytest.raises(ClientError) as caught:
        c.client("eu-west-1").list_keys()
    assert caught.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert "eu-west-1" in caught.value.response["Error"]["Message"]
    status = json.loads(c.trent("status", "--json").stdout)
    assert status["regions"]["eu-west-1"]["up"] is False
    assert status["regions"]["us-east-1"]["up"] is True
    # A change at the primary while the replica's process is dead reaches it once it is back.
    c.client("us-east-1").enable_key_rotation(KeyId=mrk)  # rotation settings are shared by related MRKs

    restarted = json.loads(c.trent("fault", "restart", "eu-west-1", "--json").stdout)["processes"]["eu-west-1"]
    assert restarted not in (None, victim) and alive(restarted)
    kms = c.client("eu-west-1")
    for key_id in burst.keys:
        assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
    for region in REGIONS:  # every MRK ciphertext the crashed region acknowledged, in every region
        other = c.client(region)
        for key_id, blob, plain in burst.blobs:
            assert other.decrypt(CiphertextBlob=blob, KeyId=key_id)["Plaintext"] == plain
    _until(lambda: _rotating(c, "eu-west-1", mrk))
    _until(lambda: json.loads(c.trent("status", "--json").stdout)["consistency"]["consistent"])
    # A second restart of a running region is refused (crash it first), and names no unknown region.
    assert c.trent("fault", "restart", "eu-west-1", check=False).returncode != 0
    assert c.trent("fault", "crash", "mars-east-1", check=False).returncode == 2


def test_in_memory_faults_still_work_between_region_processes(
        fresh_cluster: Callable[..., RunningCluster]) -> None:
    c = fresh_cluster(extra_args=("--processes", "--replica-delay", "0.2"))
    mrk = _replicated_mrk(c)
    c.trent("fault", "down", "ap-northeast-2")
    with pytest.raises((ClientError, EndpointConnectionError)):
        c.client("ap-northeast-2").list_keys()
    c.trent("fault", "up", "ap-northeast-2")
    assert c.client("ap-northeast-2").list_keys()["Keys"]

    c.trent("fault", "partition", "us-east-1", "eu-west-1")
    c.client("us-east-1").enable_key_rotation(KeyId=mrk)
    # ap-northeast-2 hears of it; eu-west-1 does not while the partition stands.
    _until(lambda: _rotating(c, "ap-northeast-2", mrk))
    time.sleep(0.5)
    assert not _rotating(c, "eu-west-1", mrk)
    # The partition survives a crash and restart of one side (the supervisor sets it up again).
    c.trent("fault", "crash", "eu-west-1")
    c.trent("fault", "restart", "eu-west-1")
    time.sleep(1.0)
    assert not _rotating(c, "eu-west-1", mrk)
    status = json.loads(c.trent("status", "--json").stdout)
    assert status["faults"]["partitions"] == [["eu-west-1", "us-east-1"]]
    # The lag is told in seconds as in one process: asked of the region whose outbox holds the record.
    behind = status["regions"]["eu-west-1"]["replication"]["us-east-1"]
    assert behind["lag_records"] >= 1 and behind["lag_seconds"] >= 1.5, behind
    assert status["regions"]["ap-northeast-2"]["replication"]["us-east-1"]["lag_seconds"] == 0.0
    assert "?s" not in c.trent("status").stdout
    c.trent("fault", "heal", "us-east-1", "eu-west-1")
    _until(lambda: _rotating(c, "eu-west-1", mrk))
    _until(lambda: json.loads(c.trent("status", "--json").stdout)["regions"]["eu-west-1"]["replication"]
           ["us-east-1"]["lag_seconds"] == 0.0)
    # The clock moves in every region's process.
    moved = json.loads(c.trent("clock", "advance", "1d", "--json").stdout)
    assert moved["offset"] == 86400.0
    for region in REGIONS:
        assert json.loads(c.trent("status", "--json").stdout)["clock"]["offset"] == 86400.0, region
    # A failed disk: carried out by the region's own process, told by the gateway, ended by a restart.
    assert "next fsync fails" in c.trent("fault", "disk", "ap-northeast-2").stdout
    with pytest.raises(ClientError) as refused:
        c.client("ap-northeast-2").create_key()
    assert refused.value.response["Error"]["Code"] == "KMSInternalException"
    stores = {r: doc["store"] for r, doc in json.loads(c.trent("status", "--json").stdout)["regions"].items()}
    assert stores == {"us-east-1": "ok", "eu-west-1": "ok", "ap-northeast-2": "failed"}
    c.trent("fault", "crash", "ap-northeast-2")
    c.trent("fault", "restart", "ap-northeast-2")
    assert c.client("ap-northeast-2").describe_key(KeyId=mrk)["KeyMetadata"]["KeyId"] == mrk
    assert json.loads(c.trent("status", "--json").stdout)["regions"]["ap-northeast-2"]["store"] == "ok"


def test_crash_needs_region_processes(cluster: RunningCluster) -> None:
    refused = cluster.trent("fault", "crash", "us-east-1", check=False)
    assert refused.returncode == 2
    assert "trent up --processes" in refused.stderr


def test_latency_profile_aws_delays_replication_in_one_process(fresh_cluster: Callable[..., RunningCluster]) -> None:
    """`trent up --latency-profile aws`: replication between regions takes at least the published one-way delay
    (us-east-1 → ap-northeast-2: 178 ms round trip), while a client's own region answers at once."""
    from trent.cluster.latency import one_way_seconds

    c = fresh_cluster(extra_args=("--latency-profile", "aws", "--replica-delay", "0"))
    home = c.client("us-east-1")
    key_id = home.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    far = c.client("ap-northeast-2")
    home.replicate_key(KeyId=key_id, ReplicaRegion="ap-northeast-2")
    _until(lambda: _state(far, key_id) == "Enabled")
    samples = []
    for _ in range(3):
        before = _rotating(c, "us-east-1", key_id)
        started = time.monotonic()
        (home.disable_key_rotation if before else home.enable_key_rotation)(KeyId=key_id)
        _until(lambda b=before: _rotating(c, "ap-northeast-2", key_id) != b)
        samples.append(time.monotonic() - started)
    assert min(samples) >= one_way_seconds("us-east-1", "ap-northeast-2") * 0.95, samples
    started = time.monotonic()
    home.list_keys()
    assert time.monotonic() - started < 0.08  # no delay between a client and its region


def test_the_standalone_gateway_keeps_connections_and_refuses_bad_calls_as_kms_does(
        fresh_cluster: Callable[..., RunningCluster], tmp_path: Path) -> None:
    config = tmp_path / "trent.toml"
    config.write_text("header_timeout = 1.0\n")
    c = fresh_cluster(extra_args=("--processes", "--config", str(config)))
    # A kept-alive connection outlives the deadline for its first request's head.
    connection = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
    for _ in range(2):
        connection.request("GET", "/_trent/health")
        answer = connection.getresponse()
        assert answer.status == 200 and json.loads(answer.read()) == {"status": "ok"}
        time.sleep(1.5)
    kms = c.client("us-east-1")
    assert kms.list_keys()["Keys"] == []
    # Calls the gateway refuses itself answer with the AWS error a region port gives.
    for headers, body, code, status in (
            ({"X-Amz-Target": "TrentService.ListKeys", "Content-Type": "application/x-amz-json-1.1"}, b"{}",
             "MissingAuthenticationTokenException", 403),
            ({"X-Amz-Target": "TrentService.ListKeys", "Content-Type": "application/x-amz-json-1.1",
              "Authorization": "AWS4-HMAC-SHA256 Credential=test/20260101/mars-east-1/kms/aws4_request, "
                               "SignedHeaders=host, Signature=00"}, b"{}", "InvalidSignatureException", 403),
            ({"X-Amz-Target": "TrentService.ListKeys", "Content-Type": "application/x-amz-json-1.1"},
             b"x" * (1024 * 1024 + 10), None, 413)):
        connection = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)
        connection.request("POST", "/", body=body, headers=headers)
        answer = connection.getresponse()
        doc = json.loads(answer.read() or b"{}")
        assert answer.status == status, (answer.status, doc)
        if code is not None:
            assert doc["__type"] == code, doc
    # A forwarded answer carries the headers a region port sends, in its order (the node's bytes passed on).
    heads = {}
    for port in (c.port, c.region_port("us-east-1")):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(signed_request(Target("127.0.0.1", port, "us-east-1"), Call("ListKeys", b"{}")))
            answer = http.client.HTTPResponse(raw)
            answer.begin()
            assert answer.status == 200 and json.loads(answer.read())["Keys"] == []
            heads[port] = [name for name, _ in answer.getheaders()]
    assert heads[c.port] == heads[c.region_port("us-east-1")]
    assert heads[c.port][:2] == ["x-amzn-RequestId", "Content-Type"] and "Content-Length" in heads[c.port]
    # Plain calls take the gateway's fast path, seen by its one difference from aiohttp's (garbage behind a whole
    # request in the same read is refused after the request is answered; aiohttp alone refuses the read whole).
    with socket.create_connection(("127.0.0.1", c.port), timeout=10) as raw:
        raw.sendall(signed_request(Target("127.0.0.1", c.port, "us-east-1"), Call("ListKeys", b"{}"))
                    + b"\x00 not HTTP\r\n\r\n")
        got = answers(raw, 3)
    assert [(status, "Keys" in body or body.get("__type")) for status, body in got] == [
        (200, True), (400, "ValidationException")]


def test_a_node_never_opens_a_region_another_process_serves(cluster: RunningCluster, tmp_path: Path) -> None:
    peer = "eu-west-1=http://127.0.0.1:9"
    # The data directory of a running `trent up`: refused before anything in it is touched.
    busy = cluster.trent("node", "--region", "us-east-1", "--port", "9", "--peer", peer, check=False)
    assert busy.returncode == 1 and "in use by a running cluster" in busy.stderr
    # Two nodes for one region on one directory: the second is refused.
    data = tmp_path / "data"
    port = free_port_block(1)
    first = Launched("first", ["node", "--region", "us-east-1", "--port", str(port), "--peer", peer, "--data-dir",
                               str(data)], tmp_path / "first.log", f"http://127.0.0.1:{port}/_trent/health").start()
    try:
        second = subprocess.run([sys.executable, "-m", "trent.cluster.cli", "node", "--region", "us-east-1", "--port",
                                 "9", "--peer", peer, "--data-dir", str(data)], cwd=ROOT, capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 1 and "in use" in second.stderr
    finally:
        first.stop()


def test_a_region_process_that_dies_on_its_own_stays_down_until_restarted(
        fresh_cluster: Callable[..., RunningCluster]) -> None:
    c = fresh_cluster(extra_args=("--processes",))
    pid = _processes(c)["ap-northeast-2"]
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # not through trent: as the kernel's OOM killer would
    _until(lambda: _processes(c)["ap-northeast-2"] is None)
    assert b"ap-northeast-2's process" in c.log_path.read_bytes()
    assert json.loads(c.trent("status", "--json").stdout)["regions"]["ap-northeast-2"]["up"] is False
    c.trent("fault", "restart", "ap-northeast-2")
    assert c.client("ap-northeast-2").list_keys()["Keys"] == []


def _outbox_records(c: RunningCluster, region: str) -> int:
    """Records in the region's outbox, read from its store as it stands (SQLite lets a reader beside the writer)."""
    with contextlib.closing(sqlite3.connect(f"file:{c.data_dir / region / 'kms.db'}?mode=ro", uri=True,
                                            timeout=10)) as db:
        return int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])


def _period_everywhere(c: RunningCluster, key_id: str, days: int, regions: tuple[str, ...] = REGIONS) -> bool:
    return all(c.client(r).get_key_rotation_status(KeyId=key_id).get("RotationPeriodInDays") == days
               for r in regions)


def test_outbox_records_every_peer_applied_are_trimmed_between_processes_and_none_a_peer_still_needs(
        fresh_cluster: Callable[..., RunningCluster], tmp_path: Path) -> None:
    config = tmp_path / "trent.toml"
    config.write_text("outbox_trim_interval = 0.3\n")
    c = fresh_cluster(extra_args=("--processes", "--config", str(config)))
    mrk = _replicated_mrk(c)
    primary = c.client("us-east-1")
    for days in range(100, 105):  # the rotation period is shared by every replica: each change is a record
        primary.enable_key_rotation(KeyId=mrk, RotationPeriodInDays=days)
    _until(lambda: _period_everywhere(c, mrk, 104))
    # Every peer has applied everything: all but the newest record go (it keeps the numbering after a restart).
    _until(lambda: _outbox_records(c, "us-east-1") <= 1)
    assert json.loads(c.trent("status", "--json").stdout)["regions"]["us-east-1"]["outbox_head"] >= 6
    # A peer that is down has pulled none of what follows: none of it may go while it is away.
    c.trent("fault", "crash", "eu-west-1")
    for days in range(200, 205):
        primary.enable_key_rotation(KeyId=mrk, RotationPeriodInDays=days)
    _until(lambda: _period_everywhere(c, mrk, 204, ("us-east-1", "ap-northeast-2")))
    time.sleep(1.5)  # five trimming passes: a negative cannot be polled for
    assert _outbox_records(c, "us-east-1") >= 5
    c.trent("fault", "restart", "eu-west-1")
    _until(lambda: _period_everywhere(c, mrk, 204))
    _until(lambda: _outbox_records(c, "us-east-1") <= 1)
