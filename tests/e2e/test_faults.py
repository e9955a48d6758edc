"""Fault injection (`trent fault ...`, POST /_trent/faults) seen from real clients: a region down refuses
connections, latency slows only its region, injected 5xx are retried by boto3, throttling answers
ThrottlingException beyond the rate, partitions stop replication between two regions only, and `fault clear`
puts everything back. Every test runs on a private cluster: faults never touch the shared one."""

from __future__ import annotations

import errno
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from tests.e2e.harness import RunningCluster, admin_post, poll, private_cluster
from tests.e2e.test_multi_region import wait_state

INJECTED = ("KMSInternalException", "KeyUnavailableException")
NO_FAULTS = {"down": [], "partitions": [], "latency_ms": {}, "errors_percent": {}, "throttle_per_second": {}}


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    """One private cluster for this module (never the shared one): every test leaves it without faults."""
    yield from private_cluster(tmp_path_factory, "faults", "--replica-delay", "0")


@pytest.fixture
def c(private: RunningCluster) -> Iterator[RunningCluster]:
    yield private
    private.admin("/_trent/faults", {"action": "clear"})


def _port(c: RunningCluster, region: str) -> int:
    return int(c.region_url(region).rsplit(":", 1)[1])


def _connect(port: int) -> int:
    """0 if a TCP connection to ``port`` is accepted, else the errno."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        return s.connect_ex(("127.0.0.1", port))


def _fault(c: RunningCluster, *args: str) -> dict[str, Any]:
    out = c.trent("fault", *args, "--json")
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def _timed(fn: Callable[[], Any]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def _code(exc: pytest.ExceptionInfo[ClientError] | ClientError) -> tuple[str, int]:
    error = exc.value if isinstance(exc, pytest.ExceptionInfo) else exc
    return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]


def _admin_raw(url: str, body: dict[str, Any], token: str | None, extra: dict[str, str] | None = None
               ) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", **(extra or {})}
    if token is not None:
        headers["X-Trent-Admin-Token"] = token
    return admin_post(url + "/_trent/faults", json.dumps(body).encode(), headers)


# -- down / up -----------------------------------------------------------------------------------------------


def test_region_down_refuses_connections_and_others_carry_on(c: RunningCluster) -> None:
    eu_port = _port(c, "eu-west-1")
    assert _connect(eu_port) == 0
    pooled = c.client("eu-west-1", via="region", retries=0)
    pooled.list_keys()  # leaves a keep-alive connection in the client's pool
    with socket.create_connection(("127.0.0.1", eu_port), timeout=10) as idle:
        doc = _fault(c, "down", "eu-west-1")
        assert doc["down"] == ["eu-west-1"]
        # Connections already open are cut, as a dead host's would be; new ones are refused.
        assert idle.recv(1) == b""
    assert _connect(eu_port) == errno.ECONNREFUSED
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        pooled.list_keys()
    # Through its own port the region is unreachable; through the gateway the connection is cut.
    with pytest.raises(EndpointConnectionError):
        c.client("eu-west-1", via="region").list_keys()
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        c.client("eu-west-1").list_keys()
    for region in ("us-east-1", "ap-northeast-2"):
        assert _connect(_port(c, region)) == 0
        for via in ("gateway", "region"):
            kms = c.client(region, via=via)
            key = kms.create_key()["KeyMetadata"]["KeyId"]
            blob = kms.encrypt(KeyId=key, Plaintext=b"still here")["CiphertextBlob"]
            assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"still here"

    doc = _fault(c, "up", "eu-west-1")
    assert doc["down"] == []
    assert _connect(eu_port) == 0
    for via in ("gateway", "region"):
        assert c.client("eu-west-1", via=via).list_keys()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_state_of_a_down_region_is_kept(c: RunningCluster) -> None:
    eu = c.client("eu-west-1")
    key = eu.create_key(Description="kept")["KeyMetadata"]["KeyId"]
    blob = eu.encrypt(KeyId=key, Plaintext=b"p")["CiphertextBlob"]
    _fault(c, "down", "eu-west-1")
    _fault(c, "down", "ap-northeast-2")
    assert sorted(c.admin("/_trent/status")["faults"]["down"]) == ["ap-northeast-2", "eu-west-1"]
    _fault(c, "clear")
    assert eu.describe_key(KeyId=key)["KeyMetadata"]["Description"] == "kept"
    assert eu.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"


# -- latency ----------------------------------------------------------------------------------------------------


def test_latency_slows_only_its_region(c: RunningCluster) -> None:
    eu, us = c.client("eu-west-1"), c.client("us-east-1")
    eu_direct = c.client("eu-west-1", via="region")
    eu.list_keys(), us.list_keys(), eu_direct.list_keys()  # connections made before timing
    doc = _fault(c, "latency", "eu-west-1", "200ms")
    assert doc["latency_ms"] == {"eu-west-1": pytest.approx(200)}
    for _ in range(3):
        assert _timed(eu.list_keys) >= 0.2
        assert _timed(eu_direct.list_keys) >= 0.2
    # The best of a few tries: the machine may be busy, but an unaffected region never waits 200 ms by design.
    assert min(_timed(us.list_keys) for _ in range(5)) < 0.2
    assert _fault(c, "latency", "eu-west-1", "0s")["latency_ms"] == {}
    assert min(_timed(eu.list_keys) for _ in range(5)) < 0.2


# -- injected errors -------------------------------------------------------------------------------------------


def test_all_requests_fail_and_boto3_retries_them(c: RunningCluster) -> None:
    us = c.client("us-east-1")
    key = us.create_key()["KeyMetadata"]["KeyId"]
    _fault(c, "errors", "us-east-1", "100%")
    for via in ("gateway", "region"):
        kms = c.client("us-east-1", via=via, retries=3)
        with pytest.raises(ClientError) as exc:
            kms.describe_key(KeyId=key)
        code, status = _code(exc)
        assert code in INJECTED and status == 500
        # botocore's retries.max_attempts counts retries: 1 attempt + 3 retries, all answered 500.
        assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 3
    # Other regions are untouched.
    assert c.client("eu-west-1", retries=1).list_keys()["ResponseMetadata"]["RetryAttempts"] == 0
    _fault(c, "clear")
    assert us.describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key


def test_a_share_of_requests_fails(c: RunningCluster) -> None:
    kms = c.client("eu-west-1", retries=0)  # every injected error is seen
    _fault(c, "errors", "eu-west-1", "5%")
    failures, codes = 0, set()
    for _ in range(200):
        try:
            kms.generate_random(NumberOfBytes=8)
        except ClientError as exc:
            failures += 1
            codes.add((exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]))
    # Binomial(200, 0.05): mean 10; P(0 failures) ≈ 4e-5, P(> 40) is negligible.
    assert 1 <= failures <= 40, failures
    assert codes <= {(code, 500) for code in INJECTED}


def test_retries_hide_rare_errors(c: RunningCluster) -> None:
    """At 5% injected errors, a client with retries succeeds on every call (and some calls needed a retry)."""
    kms = c.client("eu-west-1", retries=5)
    _fault(c, "errors", "eu-west-1", "5%")
    attempts = [kms.generate_random(NumberOfBytes=8)["ResponseMetadata"]["RetryAttempts"] for _ in range(60)]
    assert max(attempts) <= 5
    assert sum(attempts) < 30


# -- throttling -------------------------------------------------------------------------------------------------


def test_throttle_answers_throttling_beyond_the_rate(c: RunningCluster) -> None:
    kms = c.client("ap-northeast-2", retries=0)
    kms.list_keys()
    doc = _fault(c, "throttle", "ap-northeast-2", "5/s")
    assert doc["throttle_per_second"] == {"ap-northeast-2": 5.0}
    ok, throttled = 0, 0
    start = time.monotonic()
    for _ in range(30):
        try:
            kms.list_keys()
            ok += 1
        except ClientError as exc:
            assert _code(exc) == ("ThrottlingException", 400)
            throttled += 1
    elapsed = time.monotonic() - start
    # A burst of 5, then 5 per second.
    assert ok >= 5
    assert ok <= 5 + int(elapsed * 5) + 1
    assert throttled >= 1
    # Unthrottled regions answer every call.
    us = c.client("us-east-1", retries=0)
    for _ in range(30):
        us.list_keys()
    _fault(c, "clear")
    for _ in range(30):
        kms.list_keys()


def test_boto3_retries_throttling(c: RunningCluster) -> None:
    # Enough retries that botocore's random backoff always outlasts the half second a token takes to come back:
    # with three, all of a call's delays now and then fell inside it and the call failed.
    kms = c.client("ap-northeast-2", retries=8)
    _fault(c, "throttle", "ap-northeast-2", "2/s")
    results = [kms.list_keys()["ResponseMetadata"]["RetryAttempts"] for _ in range(4)]
    assert results[:2] == [0, 0]
    # Beyond the burst, calls needed retries; whether a third attempt was enough depends on backoff timing.
    assert sum(results) >= 1


# -- partitions --------------------------------------------------------------------------------------------------


def test_partition_stops_replication_between_two_regions_only(c: RunningCluster) -> None:
    us, eu, ap = c.client("us-east-1"), c.client("eu-west-1"), c.client("ap-northeast-2")
    doc = _fault(c, "partition", "us-east-1", "eu-west-1")
    assert doc["partitions"] == [["eu-west-1", "us-east-1"]]
    key = us.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    us.replicate_key(KeyId=key, ReplicaRegion="eu-west-1")
    us.replicate_key(KeyId=key, ReplicaRegion="ap-northeast-2")
    # Clients still reach both sides; ap-northeast-2 gets its replica, eu-west-1 does not (yet).
    wait_state(ap, key, "Enabled", timeout=20)  # the replica reaches its region through the log

    def eu_waiting() -> bool:
        link = c.admin("/_trent/status")["regions"]["eu-west-1"]["replication"]["us-east-1"]
        return bool(link["lag_records"] > 0 and not link["connected"])

    poll(eu_waiting, timeout=20)
    with pytest.raises(ClientError) as exc:
        eu.describe_key(KeyId=key)
    assert _code(exc) == ("NotFoundException", 400)

    _fault(c, "heal", "us-east-1", "eu-west-1")
    poll(lambda: _exists_enabled(eu, key), timeout=20)
    blob = eu.encrypt(KeyId=key, Plaintext=b"healed")["CiphertextBlob"]
    assert us.decrypt(CiphertextBlob=blob)["Plaintext"] == b"healed"


def _exists_enabled(kms: Any, key: str) -> bool:
    try:
        return bool(kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled")
    except ClientError:
        return False


# -- clear, bad commands, the admin token -----------------------------------------------------------------------


def test_clear_restores_everything(c: RunningCluster) -> None:
    _fault(c, "down", "eu-west-1")
    _fault(c, "partition", "us-east-1", "ap-northeast-2")
    _fault(c, "latency", "us-east-1", "150ms")
    _fault(c, "errors", "ap-northeast-2", "100%")
    _fault(c, "throttle", "us-east-1", "1/s")
    doc = _fault(c, "clear")
    assert doc == NO_FAULTS
    assert _connect(_port(c, "eu-west-1")) == 0
    for region in ("us-east-1", "eu-west-1", "ap-northeast-2"):
        kms = c.client(region, retries=1)
        for _ in range(5):
            assert _timed(kms.list_keys) < 5
    assert c.admin("/_trent/status")["faults"]["down"] == []


@pytest.mark.parametrize("args", [
    ("bogus",),
    ("down", "mars-1"),
    ("down",),
    ("partition", "us-east-1"),
    ("partition", "us-east-1", "us-east-1"),
    ("heal", "us-east-1"),
    ("up",),
    ("latency", "eu-west-1"),
    ("latency", "eu-west-1", "soon"),
    ("latency", "eu-west-1", "200"),  # no unit: 200 ms or 200 s?
    ("latency", "eu-west-1", "1d"),
    ("errors", "eu-west-1", "150%"),
    ("errors", "eu-west-1", "lots"),
    ("throttle", "eu-west-1", "0/s"),
    ("throttle", "eu-west-1", "-3/s"),
    ("throttle", "mars-1", "5/s"),
])
def test_bad_fault_commands_exit_2_with_a_clear_error(c: RunningCluster, args: tuple[str, ...]) -> None:
    out = c.trent("fault", *args, check=False)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert out.stderr.strip()
    assert "Traceback" not in out.stderr
    # Nothing was changed.
    assert c.admin("/_trent/status")["faults"] == NO_FAULTS


def test_fault_admin_route_needs_the_admin_token(c: RunningCluster) -> None:
    token = (c.data_dir / "admin.token").read_text().strip()
    body = {"action": "down", "regions": ["eu-west-1"]}
    for url in (c.gateway_url, c.region_url("us-east-1")):
        assert _admin_raw(url, body, None)[0] == 403
        assert _admin_raw(url, body, "wrong-token")[0] == 403
        # KMS credentials are not an admin token.
        signed = {"Authorization": "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/kms/aws4_request, "
                                   "SignedHeaders=host, Signature=" + "0" * 64}
        assert _admin_raw(url, body, None, signed)[0] == 403
    assert c.admin("/_trent/status")["faults"]["down"] == []
    assert _connect(_port(c, "eu-west-1")) == 0
    status, doc = _admin_raw(c.gateway_url, body, token)
    assert status == 200 and doc["down"] == ["eu-west-1"]
    status, doc = _admin_raw(c.gateway_url, {"action": "explode", "regions": ["eu-west-1"]}, token)
    assert status == 400 and "explode" in doc["error"]
    status, doc = _admin_raw(c.gateway_url, {"action": "clear"}, token)
    assert status == 200 and doc["down"] == []
