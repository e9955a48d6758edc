"""Responses and audit records of a recorded workload stay what they were before the data-plane path was
specialised (tests/unit/hot_path_workload.py; the golden transcript in tests/unit/golden/hot_path.json)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.unit.hot_path_workload import compose_region, run_workload

GOLDEN = Path(__file__).parent / "golden" / "hot_path.json"


def test_the_recorded_workload_answers_and_audits_as_before(tmp_path: Path) -> None:
    parts = compose_region(tmp_path / "data")
    try:
        transcript = run_workload(parts)
    finally:
        parts.close()
    if os.environ.get("TRENT_RECORD_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(transcript, indent=1) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert len(transcript["responses"]) == len(golden["responses"])
    for got, want in zip(transcript["responses"], golden["responses"], strict=True):
        assert got == want
    assert len(transcript["audit"]) == len(golden["audit"])
    for got, want in zip(transcript["audit"], golden["audit"], strict=True):
        assert got == want
    # The workload does reach what it is meant to: successes, denials, state and input errors, all audited.
    codes = {r["body"].get("__type") for r in golden["responses"] if r["status"] != 200}
    assert {"AccessDeniedException", "DisabledException", "ValidationException", "SerializationException",
            "InvalidCiphertextException", "KMSInvalidMacException", "KMSInvalidSignatureException",
            "InvalidSignatureException", "NotFoundException", "InvalidKeyUsageException"} <= codes
