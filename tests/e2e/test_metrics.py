"""`/metrics`: Prometheus' text format, behind the admin token; every number checked moves with what the test did."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import RunningCluster, poll, private_cluster
from trent.bench.loadgen import Call, Target, signed_request

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(cluster: RunningCluster, headers: dict[str, str] | None = None, url: str | None = None
           ) -> tuple[int, str, str]:
    request = urllib.request.Request((url or cluster.gateway_url) + "/metrics", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def token(cluster: RunningCluster) -> str:
    return (cluster.data_dir / "admin.token").read_text().strip()


def samples(cluster: RunningCluster, url: str | None = None) -> Samples:
    status, _, text = scrape(cluster, {"Authorization": f"Bearer {token(cluster)}"}, url)
    assert status == 200, text
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def when(found: Samples, condition: Callable[[Samples], bool]) -> Samples | None:
    return found if condition(found) else None


def test_metrics_need_the_admin_token(cluster: RunningCluster) -> None:
    assert scrape(cluster)[0] == 403
    assert scrape(cluster, {"Authorization": "Bearer not-the-token"})[0] == 403
    assert scrape(cluster, {"X-Trent-Admin-Token": "nope"})[0] == 403
    assert scrape(cluster, {"Authorization": "Basic " + token(cluster)})[0] == 403
    status, content_type, text = scrape(cluster, {"X-Trent-Admin-Token": token(cluster)})
    assert status == 200 and content_type.startswith("text/plain; version=")
    assert "# TYPE trent_requests_total counter" in text
    assert token(cluster) not in text


def test_requests_count_by_region_operation_and_error_code(cluster: RunningCluster) -> None:
    before = samples(cluster)
    kms = cluster.client("eu-west-1")
    for _ in range(3):
        with pytest.raises(ClientError):
            kms.describe_key(KeyId="alias/no-such-alias")
    for _ in range(2):
        kms.create_key()
    after = samples(cluster, cluster.region_url("eu-west-1"))  # every port serves the same numbers
    labels = {"region": "eu-west-1", "operation": "DescribeKey"}
    assert value(after, "trent_requests_total", **labels, error_code="NotFoundException") - value(
        before, "trent_requests_total", **labels, error_code="NotFoundException") == 3
    created = {"region": "eu-west-1", "operation": "CreateKey", "error_code": "OK"}
    assert value(after, "trent_requests_total", **created) - value(before, "trent_requests_total", **created) == 2
    assert value(after, "trent_request_duration_seconds_count", **labels) - value(
        before, "trent_request_duration_seconds_count", **labels) == 3
    assert value(after, "trent_request_duration_seconds_bucket", **labels, le="+Inf") == value(
        after, "trent_request_duration_seconds_count", **labels)
    assert value(after, "trent_requests_total", region="us-east-1", operation="CreateKey", error_code="OK") == value(
        before, "trent_requests_total", region="us-east-1", operation="CreateKey", error_code="OK")


def test_keys_by_state_and_multi_region_roles(cluster: RunningCluster) -> None:
    kms = cluster.client("us-east-1")
    before = samples(cluster)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=key_id)
    mrk = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    kms.replicate_key(KeyId=mrk, ReplicaRegion="ap-northeast-2")
    after = samples(cluster)
    assert value(after, "trent_keys", region="us-east-1", state="Disabled") - value(
        before, "trent_keys", region="us-east-1", state="Disabled") == 1
    assert value(after, "trent_multi_region_keys", region="us-east-1", role="primary") - value(
        before, "trent_multi_region_keys", region="us-east-1", role="primary") == 1
    assert value(after, "trent_multi_region_keys", region="ap-northeast-2", role="replica") - value(
        before, "trent_multi_region_keys", region="ap-northeast-2", role="replica") == 1
    # Both new keys have rotation off: the rotation-age findings (`trent compliance`) as a gauge.
    assert value(after, "trent_compliance_findings", region="us-east-1", kind="rotation-off") - value(
        before, "trent_compliance_findings", region="us-east-1", kind="rotation-off") == 2
    for region in cluster.regions:
        for peer in cluster.regions:
            if peer != region:
                assert ("trent_replication_lag_seconds", frozenset({"region": region, "peer": peer}.items())) in after
                assert ("trent_outbox_depth", frozenset({"region": region, "peer": peer}.items())) in after


def test_replication_lag_and_faults_show_while_a_region_is_down(cluster: RunningCluster) -> None:
    kms = cluster.client("us-east-1")
    mrk = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    kms.replicate_key(KeyId=mrk, ReplicaRegion="eu-west-1")
    cluster.admin("/_trent/faults", {"action": "down", "regions": ["eu-west-1"]})
    try:
        kms.enable_key_rotation(KeyId=mrk)  # a shared property: an outbox record for every replica
        found = poll(lambda: when(samples(cluster), lambda s: value(
            s, "trent_outbox_depth", region="us-east-1", peer="eu-west-1") >= 1))
        assert value(found, "trent_fault_down", region="eu-west-1") == 1
        assert value(found, "trent_fault_down", region="us-east-1") == 0
        assert value(found, "trent_replication_lag_records", region="eu-west-1", peer="us-east-1") >= 1
        refused = {"region": "eu-west-1", "operation": "Encrypt", "error_code": "ServiceUnavailableException"}
        with pytest.raises(Exception):  # noqa: B017 - a down region cuts the connection
            cluster.client("eu-west-1").encrypt(KeyId=mrk, Plaintext=b"x")
        assert value(samples(cluster), "trent_requests_total", **refused) - value(
            found, "trent_requests_total", **refused) == 1
    finally:
        cluster.admin("/_trent/faults", {"action": "up", "regions": ["eu-west-1"]})
    caught_up = poll(lambda: when(samples(cluster), lambda s: value(
        s, "trent_outbox_depth", region="us-east-1", peer="eu-west-1") == 0))
    assert value(caught_up, "trent_fault_down", region="eu-west-1") == 0
    assert value(caught_up, "trent_replication_lag_seconds", region="eu-west-1", peer="us-east-1") == 0


# -- several processes, metrics open to all -------------------------------------------------------------------


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    config = tmp_path_factory.mktemp("metrics-config") / "trent.toml"
    config.write_text("metrics_open = true\n")
    yield from private_cluster(tmp_path_factory, "metrics-workers", "--workers", "2", "--config", str(config),
                               kill=False)


def test_workers_counts_add_up_and_open_metrics_need_no_token(workers: RunningCluster) -> None:
    status, _, text = scrape(workers)  # open: no token
    assert status == 200 and "trent_requests_total" in text
    calls = 24
    for _ in range(calls):  # a new connection each: the kernel spreads them over both processes
        with pytest.raises(ClientError):
            workers.client("ap-northeast-2").describe_key(KeyId="alias/missing")
    labels = {"region": "ap-northeast-2", "operation": "DescribeKey", "error_code": "NotFoundException"}

    def counted() -> float:
        return value(samples(workers), "trent_requests_total", **labels)

    # A worker's counts reach the host within its snapshot interval (one second).
    assert poll(lambda: counted() == calls, timeout=10, interval=0.2)
    by_worker = json.loads((workers.data_dir / "metrics" / "worker-1.json").read_text())
    series = by_worker["regions"]["ap-northeast-2"]["series"]
    assert sum(sum(s[:-1]) for op, code, s in series if (op, code) == ("DescribeKey", "NotFoundException")) > 0


def test_a_made_up_operation_mints_no_label_and_assets_are_only_the_consoles(cluster: RunningCluster) -> None:
    raw = signed_request(Target("127.0.0.1", cluster.port, "us-east-1"), Call("MadeUpOperation7f3a", b"{}"),
                         keep_alive=False)
    before = value(samples(cluster), "trent_requests_total", region="us-east-1", operation="-",
                   error_code="UnknownOperationException")
    with socket.create_connection(("127.0.0.1", cluster.port)) as conn:
        conn.sendall(raw)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert b"UnknownOperationException" in answer
    status, _, text = scrape(cluster, {"X-Trent-Admin-Token": token(cluster)})
    assert status == 200 and "MadeUpOperation7f3a" not in text
    found = samples(cluster)
    assert value(found, "trent_requests_total", region="us-east-1", operation="-",
                 error_code="UnknownOperationException") - before == 1
    for path in ("/_trent/console/assets/index.html", "/_trent/console/assets/..%2Fconsole.py",
                 "/_trent/console/assets/console.py"):
        try:
            urllib.request.urlopen(cluster.gateway_url + path, timeout=10)
            raise AssertionError(f"{path} was served")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
    with urllib.request.urlopen(cluster.gateway_url + "/_trent/console/assets/console.js", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/javascript")
        assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
