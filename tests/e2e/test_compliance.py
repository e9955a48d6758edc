"""Rotation-age monitoring on a live cluster: `trent compliance` (table, JSON, --fail-on) and the admin endpoint
before and after the cluster's clock moves 100 days, with the 90-day crossings delivered to a webhook this test
serves and to a file, once each."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import RunningCluster, free_port_block, poll

REGIONS = ("us-east-1", "eu-west-1")


class Hook:
    """A webhook receiver on a loopback port: what was POSTed to it, in order."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/kms-compliance"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.server.shutdown()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, hook: Hook) -> Iterator[RunningCluster]:
    root = tmp_path_factory.mktemp("compliance")
    config = root / "trent.toml"
    config.write_text(f'compliance_max_age_days = 90\ncompliance_webhook = "{hook.url}"\n'
                      f'compliance_file = "{root / "notifications.jsonl"}"\n')
    c = RunningCluster(root / "data", free_port_block(len(REGIONS) + 1), regions=REGIONS,
                       extra_args=("--config", str(config))).start()
    yield c
    if c.proc is not None:
        c.stop()


def _report(cluster: RunningCluster, *args: str) -> tuple[int, dict[str, Any]]:
    done = cluster.trent("compliance", "--json", *args, check=False)
    return done.returncode, json.loads(done.stdout)


def _kinds(report: dict[str, Any], key_id: str) -> set[str]:
    return {f["kind"] for f in report["findings"] if f["key_id"] == key_id}


def test_rotation_age_across_a_clock_advance_of_100_days(cluster: RunningCluster, hook: Hook) -> None:
    kms = cluster.client("us-east-1")
    stale = kms.create_key(Description="rotation off")["KeyMetadata"]["KeyId"]
    rotating = kms.create_key(Description="rotates every 90 days")["KeyMetadata"]["KeyId"]
    kms.enable_key_rotation(KeyId=rotating, RotationPeriodInDays=90)
    signing = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]

    code, report = _report(cluster, "--fail-on", "age")
    assert code == 0 and report["settings"] == {"max_age_days": 90.0, "expiry_days": 30.0}
    assert _kinds(report, stale) == {"rotation-off"}
    assert _kinds(report, rotating) == set()
    assert _kinds(report, signing) == {"cannot-rotate"}
    assert cluster.trent("compliance", "--fail-on", "rotation-off", check=False).returncode == 3
    assert hook.received == []

    cluster.advance_clock("100d")
    poll(lambda: len(hook.received) >= 2, timeout=20)
    by_key = {n["key_id"]: n for n in hook.received}
    assert set(by_key) == {stale, signing}
    note = by_key[stale]
    assert (note["event"], note["kind"], note["region"], note["thresholdDays"]) == (
        "RotationAgeExceeded", "age", "us-east-1", 90.0)
    assert 99.9 < note["age_days"] < 100.1 and note["arn"].endswith(stale)

    code, report = _report(cluster, "--fail-on", "age,expiring")
    assert code == 3
    assert _kinds(report, stale) == {"age", "rotation-off"}
    assert _kinds(report, rotating) == set()  # rotated at day 90: its material is 10 days old
    assert _kinds(report, signing) == {"age", "cannot-rotate"}
    assert report["counts"]["age"] == 2 and report["by_region"]["us-east-1/age"] == 2
    table = cluster.trent("compliance", "--region", "us-east-1", check=False)
    assert table.returncode == 0 and f"{stale}" in table.stdout and "days old (threshold 90 days)" in table.stdout
    assert cluster.admin("/_trent/compliance?region=eu-west-1")["findings"] == []

    # Each crossing is sent once: a key that crosses later is sent after ticks that did not send the first two again.
    later = kms.create_key(Description="made on day 100")["KeyMetadata"]["KeyId"]
    cluster.advance_clock("91d")
    poll(lambda: len(hook.received) >= 3, timeout=20)
    assert [n["key_id"] for n in hook.received[2:]] == [later]
    notes_file = cluster.data_dir.parent / "notifications.jsonl"
    assert sorted(json.loads(line)["key_id"] for line in notes_file.read_text().splitlines()) == sorted(
        [stale, signing, later])
    assert oct(notes_file.stat().st_mode & 0o777) == "0o600"


def test_bad_fail_on_and_unknown_region_are_usage_errors(cluster: RunningCluster, tmp_path: Path) -> None:
    bad = cluster.trent("compliance", "--fail-on", "ages", check=False)
    assert bad.returncode == 2 and "--fail-on takes" in bad.stderr
    unknown = cluster.trent("compliance", "--region", "mars-north-1", check=False)
    assert unknown.returncode == 2 and "unknown region 'mars-north-1'" in unknown.stderr


def test_reports_need_the_admin_token(cluster: RunningCluster) -> None:
    import urllib.error
    import urllib.request

    for path in ("/_trent/compliance", "/_trent/cost"):
        for headers in ({}, {"X-Trent-Admin-Token": "wrong"}, {"Authorization": "AWS4-HMAC-SHA256 x"}):
            request = urllib.request.Request(cluster.gateway_url + path, headers=headers)
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(request, timeout=10)
            assert info.value.code == 403, (path, headers)
