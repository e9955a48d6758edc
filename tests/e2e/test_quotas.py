"""`--quotas aws`: KMS's request quotas, shared by every process of `trent up --workers 2`. The DescribeKey quota is
set low (quota_overrides) so a few seconds measure it; the clients hammer the gateway from several connections,
which the kernel spreads over both processes."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import RunningCluster, private_cluster
from tests.e2e.test_metrics import scrape
from trent.bench.loadgen import Call, Target, signed_request

RATE = 40.0  # DescribeKey's quota in this cluster, requests per second
_STATUS_RE = re.compile(rb"HTTP/1\.1 (\d{3})")
_LENGTH_RE = re.compile(rb"(?i)content-length:\s*(\d+)")


@pytest.fixture(scope="module")
def quotas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    config = tmp_path_factory.mktemp("quota-config") / "trent.toml"
    config.write_text(f'[quota_overrides]\nDescribeKey = {RATE}\n')  # in force with the flag's quotas
    yield from private_cluster(tmp_path_factory, "quotas", "--workers", "2", "--quotas", "aws", "--config", str(config),
                               kill=False)


def _exchange(conn: socket.socket, raw: bytes) -> tuple[int, bytes]:
    conn.sendall(raw)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = _LENGTH_RE.search(head)
    while length is not None and len(body) < int(length[1]):
        body += conn.recv(65536)
    status = _STATUS_RE.match(head)
    assert status is not None
    return int(status[1]), body


def hammer(cluster: RunningCluster, raw: bytes, seconds: float, threads: int = 6, pause: float = 0.004
           ) -> list[tuple[float, int, bytes]]:
    """Send ``raw`` from ``threads`` connections for ``seconds``, each waiting ``pause`` between its requests (far
    more than the quota, without taking every core of the machine): (when answered, status, body)."""
    answers: list[tuple[float, int, bytes]] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def run() -> None:
        mine: list[tuple[float, int, bytes]] = []
        with socket.create_connection(("127.0.0.1", cluster.port)) as conn:
            while time.monotonic() < stop_at:
                status, body = _exchange(conn, raw)
                mine.append((time.monotonic(), status, body))
                time.sleep(pause)
        with lock:
            answers.extend(mine)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(seconds + 30)
    return answers


def test_the_measured_rate_is_the_configured_quota_across_processes(quotas: RunningCluster) -> None:
    key_id = quotas.client("us-east-1").create_key()["KeyMetadata"]["KeyId"]
    raw = signed_request(Target("127.0.0.1", quotas.port, "us-east-1"),
                         Call("DescribeKey", json.dumps({"KeyId": key_id}).encode()))
    started = time.monotonic()
    answers = hammer(quotas, raw, 4.0)
    # The first second drains the bucket (it holds a second's worth); the next three measure the steady rate.
    window = [a for a in answers if started + 1.0 <= a[0] < started + 4.0]
    ok = sum(1 for _, status, _ in window if status == 200)
    throttled = [body for _, status, body in window if status == 400]
    assert throttled, "the offered load never exceeded the quota: nothing measured"
    assert abs(ok / 3.0 - RATE) <= 0.1 * RATE, f"{ok / 3.0:.1f} requests/s against a quota of {RATE}"
    assert {json.loads(b)["__type"] for b in throttled} == {"ThrottlingException"}
    assert json.loads(throttled[0])["message"] == ("You have exceeded the rate at which you may call KMS. "
                                                   "Reduce the frequency of your calls.")
    assert {status for _, status, _ in answers} <= {200, 400}


def test_each_quota_is_its_own_and_boto3_sees_throttling(quotas: RunningCluster) -> None:
    kms = quotas.client("eu-west-1")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    raw = signed_request(Target("127.0.0.1", quotas.port, "eu-west-1"),
                         Call("DescribeKey", json.dumps({"KeyId": key_id}).encode()))
    hammer(quotas, raw, 1.0, threads=4)  # DescribeKey's bucket in eu-west-1 is empty now
    with pytest.raises(ClientError) as caught:
        for _ in range(20):
            kms.describe_key(KeyId=key_id)
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # Another operation's quota, and the same quota in another region, are untouched.
    assert kms.encrypt(KeyId=key_id, Plaintext=b"x")["KeyId"].endswith(key_id)
    other = quotas.client("us-east-1")
    assert other.describe_key(KeyId=other.create_key()["KeyMetadata"]["KeyId"])["KeyMetadata"]["Enabled"]


def test_throttles_are_counted_and_every_process_serves_metrics_and_the_console(quotas: RunningCluster) -> None:
    """A worker passes /metrics and the console to the leader, with the caller's token, whichever answers."""
    token = (quotas.data_dir / "admin.token").read_text().strip()
    totals = set()
    for _ in range(10):  # new connections: both processes answer some
        status, content_type, text = scrape(quotas, {"Authorization": f"Bearer {token}"})
        assert status == 200 and content_type.startswith("text/plain"), text
        assert scrape(quotas)[0] == 403
        found = {(s.name, tuple(sorted(s.labels.items()))): s.value
                 for f in text_string_to_metric_families(text) for s in f.samples}
        totals.add(found[("trent_requests_total", (("error_code", "ThrottlingException"),
                                                   ("operation", "DescribeKey"), ("region", "us-east-1")))])
        page = urllib.request.Request(quotas.gateway_url + "/_trent/console/state",
                                      headers={"X-Trent-Admin-Token": token})
        with urllib.request.urlopen(page, timeout=30) as answer:
            assert set(json.loads(answer.read())["regions"]) == set(quotas.regions)
    assert min(totals) > 0
