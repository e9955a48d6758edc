"""What the console reads from disk: the newest audit records of every region and process."""

from __future__ import annotations

import json
from pathlib import Path

from trent.cluster.console import _HEADERS, recent_events


def _write(path: Path, events: list[dict[str, object]], tail: bytes = b"") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in events) + tail)


def test_newest_first_across_regions_and_processes(tmp_path: Path) -> None:
    _write(tmp_path / "us-east-1" / "audit" / "audit.jsonl", [
        {"eventTime": "2026-12-01T10:00:00Z", "awsRegion": "us-east-1", "eventName": "CreateKey",
         "userIdentity": {"arn": "arn:aws:iam::111122223333:root"},
         "resources": [{"ARN": "arn:aws:kms:us-east-1:111122223333:key/k1"}]},
        {"eventTime": "2026-12-01T10:00:02Z", "awsRegion": "us-east-1", "eventName": "Encrypt",
         "errorCode": "DisabledException"},
        {"eventTime": "2026-12-01T10:00:02Z", "awsRegion": "us-east-1", "eventName": "Decrypt"},
    ], tail=b'{"eventTime": "2026-12-01T10:00:03Z", "eventNa')  # a line still being written
    _write(tmp_path / "eu-west-1" / "audit" / "audit.w1.jsonl", [
        {"eventTime": "2026-12-01T10:00:01Z", "awsRegion": "eu-west-1", "eventName": "Sign",
         "userIdentity": {"invokedBy": "kms.amazonaws.com"}},
    ])
    rows = recent_events(tmp_path, ["us-east-1", "eu-west-1", "ap-northeast-2"])
    assert [r["event"] for r in rows] == ["Decrypt", "Encrypt", "Sign", "CreateKey"]
    assert rows[1]["error"] == "DisabledException"
    assert rows[2]["principal"] == "kms.amazonaws.com"
    assert rows[3]["keys"] == ["k1"]
    assert recent_events(tmp_path, ["us-east-1"], limit=1)[0]["event"] == "Decrypt"


def test_the_page_may_not_be_framed_nor_run_foreign_scripts() -> None:
    policy = _HEADERS["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy and "default-src 'none'" in policy
    assert _HEADERS["X-Frame-Options"] == "DENY"
