"""`trent clock show|advance` and the admin clock API against a running private cluster (the clock moves)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.harness import RunningCluster, admin_post, poll, private_cluster

DAY = 86400.0


@pytest.fixture(scope="module")
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    yield from private_cluster(tmp_path_factory, "clock-cli")


def show(cluster: RunningCluster) -> dict[str, Any]:
    result = cluster.trent("clock", "show", "--json")
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def post_clock(cluster: RunningCluster, body: bytes, token: str | None = None) -> tuple[int, dict[str, Any]]:
    """POST /_trent/clock with a raw body; returns (HTTP status, JSON document)."""
    if token is None:
        token = (cluster.data_dir / "admin.token").read_text().strip()
    return admin_post(cluster.gateway_url + "/_trent/clock", body,
                      {"X-Trent-Admin-Token": token, "Content-Type": "application/json"})


def test_clock_show_prints_now_and_offset(clocked: RunningCluster) -> None:
    before = time.time()
    doc = show(clocked)
    after = time.time()
    assert set(doc) >= {"now", "offset"}
    assert doc["offset"] == 0
    assert before - 1 <= doc["now"] <= after + 1


def test_clock_advance_through_the_cli_ends_a_deletion_window(clocked: RunningCluster) -> None:
    kms = clocked.client("us-east-1")
    kid = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    offset = state(clocked)["offset"]
    result = clocked.trent("clock", "advance", "8d", "--json")
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert doc["offset"] == pytest.approx(offset + 8 * DAY)
    assert doc["now"] == pytest.approx(time.time() + offset + 8 * DAY, abs=5)
    assert doc["changed"]["us-east-1"] == 1
    with pytest.raises(ClientError) as info:
        kms.describe_key(KeyId=kid)
    assert info.value.response["Error"]["Code"] == "NotFoundException"
    assert show(clocked)["offset"] == pytest.approx(offset + 8 * DAY)


def state(cluster: RunningCluster) -> dict[str, Any]:
    """The clock through the admin API (cheaper than a CLI process)."""
    doc: dict[str, Any] = cluster.admin("/_trent/clock")
    return doc


def test_clock_advance_accepts_human_durations(clocked: RunningCluster) -> None:
    for text, seconds in (("1d12h", 129600.0), ("1.5h", 5400.0), ("45", 45.0)):
        offset = state(clocked)["offset"]
        doc = json.loads(clocked.trent("clock", "advance", text, "--json").stdout)
        assert doc["offset"] == pytest.approx(offset + seconds), text
    # The admin API takes the same forms.
    for text, seconds in (("90m", 5400.0), ("30s", 30.0), ("2h", 7200.0), ("0", 0.0), (" 1D ", 86400.0),
                          ("1d2h3m4s", 93784.0), ("250ms", 0.25)):
        offset = state(clocked)["offset"]
        assert clocked.advance_clock(text)["offset"] == pytest.approx(offset + seconds), text


@pytest.mark.parametrize("text", ["8x", "", "inf", "1d-2h"])
def test_a_bad_duration_exits_2_and_leaves_the_clock(clocked: RunningCluster, text: str) -> None:
    offset = state(clocked)["offset"]
    result = clocked.trent("clock", "advance", text, check=False)
    assert result.returncode == 2
    assert "duration" in result.stderr
    assert result.stdout == ""
    assert state(clocked)["offset"] == offset


def test_a_negative_duration_is_refused(clocked: RunningCluster) -> None:
    offset = state(clocked)["offset"]
    result = clocked.trent("clock", "advance", "-1", check=False)
    assert result.returncode == 2
    assert "negative" in result.stderr
    assert state(clocked)["offset"] == offset


BAD_BODIES = [b'{"advance": "8x"}', b'{"advance": "-5"}', b'{"advance": -5}', b'{"advance": "inf"}',
              b'{"advance": "nan"}', b'{"advance": Infinity}', b'{"advance": NaN}', b'{"advance": 1e999}',
              b'{"advance": "1e400"}', b'{"advance": "36501d"}', b'{"advance": "8 days"}', b'{"advance": "d8"}',
              b'{"advance": "8d8"}', b'{"advance": ""}', b"not json", b"[1, 2]", b'{"advance": true}',
              b'{"advance": [1]}', b'{"advance": {"d": 1}}', b"\xff\xfe"]


def test_the_admin_api_refuses_bad_advances(clocked: RunningCluster) -> None:
    offset = state(clocked)["offset"]
    for body in BAD_BODIES:
        status, doc = post_clock(clocked, body)
        assert status == 400, body
        assert "error" in doc, body
    assert state(clocked)["offset"] == offset


def test_the_admin_api_needs_its_token(clocked: RunningCluster) -> None:
    offset = state(clocked)["offset"]
    status, doc = post_clock(clocked, b'{"advance": "1d"}', token="wrong")
    assert status == 403
    assert state(clocked)["offset"] == offset
    status, doc = post_clock(clocked, b'{"advance": "1h"}')
    assert status == 200
    assert doc["offset"] == pytest.approx(offset + 3600)


def test_the_clock_offset_survives_a_restart(clocked: RunningCluster) -> None:
    clocked.trent("clock", "advance", "3d")
    offset = state(clocked)["offset"]
    assert offset > 0
    clocked.restart()
    doc = show(clocked)
    assert doc["offset"] == pytest.approx(offset)
    assert doc["now"] == pytest.approx(time.time() + offset, abs=5)
    # Keys made after the restart live on the moved clock.
    kms = clocked.client("us-east-1")
    meta = kms.create_key()["KeyMetadata"]
    assert meta["CreationDate"].timestamp() == pytest.approx(time.time() + offset, abs=5)


def test_the_cli_without_a_running_cluster_fails_cleanly(tmp_path: Any) -> None:
    orphan = RunningCluster(tmp_path / "nothing-here", 1)
    result = orphan.trent("clock", "show", check=False)
    assert result.returncode != 0
    assert "no running cluster" in result.stderr


def test_background_work_is_audited_as_service_events(fresh_cluster: Any) -> None:
    """Automatic rotation, deletion and multi-Region sync appear in the audit trail as AWS's own events."""
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    kms = c.client("us-east-1")
    mrk = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    kms.replicate_key(KeyId=mrk, ReplicaRegion="eu-west-1")
    doomed = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    rotating = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=rotating, RotationPeriodInDays=90)
    c.advance_clock("91d")

    def events() -> list[dict[str, Any]]:
        out = c.trent("audit", "--json").stdout.splitlines()
        return [json.loads(line) for line in out if line.strip()]

    def service(name: str, key_id: str) -> list[dict[str, Any]]:
        return [e for e in events() if e["eventName"] == name and e["userIdentity"].get("invokedBy") == "AWS Internal"
                and any(r["ARN"].endswith(key_id) for r in e["resources"])]

    poll(lambda: service("DeleteKey", doomed) and service("RotateKey", rotating)
          and service("CreateKey", mrk), timeout=15)
    rotate = service("RotateKey", rotating)[0]
    assert rotate["eventType"] == "AwsServiceEvent" and rotate["serviceEventDetails"]["keyId"] == rotating
    assert rotate["sourceIPAddress"] == "AWS Internal" and rotate["requestParameters"] is None
    replica_created = service("CreateKey", mrk)[0]
    assert replica_created["awsRegion"] == "eu-west-1"
