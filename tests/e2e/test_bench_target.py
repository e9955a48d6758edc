"""`trent bench --target URL`: the throughput half of the benchmark against a cluster someone else started."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import __main__ as bench_main
from bench import report, suite
from tests.e2e.harness import RunningCluster


def test_bench_measures_a_running_cluster(fresh_cluster: Callable[..., RunningCluster], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = fresh_cluster()
    monkeypatch.setattr(report, "RESULTS", tmp_path)  # never into the repository's results
    monkeypatch.setattr(report, "_plots", lambda results, stem: [])  # plots need the bench extra
    monkeypatch.setattr(suite, "start_moto", lambda: None)  # the peer is optional; keep the test short
    code = bench_main.main(["--target", cluster.gateway_url, "--seconds", "0.2", "--connections", "1"])
    assert code == 0
    [doc] = tmp_path.glob("*-target.json")
    results = json.loads(doc.read_text())
    ops = results["throughput"]["operations"]
    assert set(ops) == set(suite.OPERATIONS)
    for op, row in ops.items():
        assert row["errors"] == 0 and row["requests"] > 0, op
        assert row["server_cpu_ms_per_request"] > 0, op  # the cluster runs here: its CPU is read from /proc
    assert [r["via"] for r in results["throughput"]["encrypt_sweep"]] == ["gateway", "gateway"]
    sweep = results["throughput"]["operation_sweep"]
    assert set(sweep) == set(suite.OPERATIONS) and all(set(by_n) == {"1", "32"} for by_n in sweep.values())
    assert all(by_n["1"]["req_per_s"] > 0 and by_n["1"]["errors"] == 0 for by_n in sweep.values())
    assert len(results["throughput"]["headline"]) == 3
    assert "workers" not in results and "scale" not in results and "replication" not in results
    assert results["ratios"]["encrypt_gateway_keepalive_32_vs_ceiling"] > 0
    text = (tmp_path / doc.name.replace(".json", ".md")).read_text()
    assert f"Measured a running cluster at {cluster.gateway_url}" in text
    assert "| Encrypt | " in text.split("## Every operation over connections")[1]


@pytest.mark.parametrize("target", ["ftp://127.0.0.1:1", "http://127.0.0.1", "http://127.0.0.1:1"])
def test_an_unusable_target_is_refused_up_front(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main.main(["--target", target]) == 2
    assert "cannot use --target" in capsys.readouterr().err
