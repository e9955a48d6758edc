"""`trent bench --target URL`: the throughput half of the benchmark against a cluster someone else started."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.harness import RunningCluster
from trent.bench import __main__ as bench_main
from trent.bench import report, suite


def test_bench_measures_a_running_cluster(fresh_cluster: Callable[..., RunningCluster], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = fresh_cluster()
    monkeypatch.setattr(report, "RESULTS", tmp_path)  # never into the repository's results
    monkeypatch.setattr(report, "_plots", lambda results, stem: [])  # plots need the bench extra
    monkeypatch.setattr(suite, "start_moto", lambda: None)  # the peer is optional; keep the test short
    token = (cluster.data_dir / "admin.token").read_text().strip()  # the server's pid, for its CPU, is the admin's
    code = bench_main.main(["--target", cluster.gateway_url, "--admin-token", token, "--seconds", "0.2",
                            "--connections", "1"])
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
    assert len(results["throughput"]["headline"]) == suite.Settings().rounds  # alternating pairs, the default count
    assert "workers" not in results and "scale" not in results and "replication" not in results
    # Encrypt at 32 and 128 connections from each load generator, each with its own CPU beside the server's.
    generators = results["throughput"]["generators"]
    assert {(r["connections"], r["generator"]) for r in generators} >= {(32, "python"), (128, "python")}
    for row in generators:
        assert row["req_per_s"] > 0 and row["errors"] == 0 and row["client_cores"] > 0, row
    assert results["ratios"]["encrypt_gateway_keepalive_32_vs_ceiling"] > 0
    text = (tmp_path / doc.name.replace(".json", ".md")).read_text()
    assert f"Measured a running cluster at {cluster.gateway_url}" in text
    assert "| Encrypt | " in text.split("## Every operation over connections")[1]


@pytest.mark.parametrize("target", ["ftp://127.0.0.1:1", "http://127.0.0.1", "http://127.0.0.1:1"])
def test_an_unusable_target_is_refused_up_front(target: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main.main(["--target", target]) == 2
    assert "cannot use --target" in capsys.readouterr().err


def test_scale_keeps_every_cluster_up_and_measures_them_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each key count is seeded into a cluster of its own; DescribeKey runs on each in turn, round after round, the
    order turning; every cluster is stopped and its data removed at the end."""
    order: list[int] = []
    measured = suite.measured

    def recorded(cluster: suite.TrentCluster, *args: object, **kwargs: object) -> dict[str, object]:
        order.append(len(cluster.client("us-east-1").list_keys(Limit=100)["Keys"]))
        return measured(cluster, *args, **kwargs)  # type: ignore[arg-type]

    started: list[suite.TrentCluster] = []
    cluster_class = suite.TrentCluster

    def tracked(*args: object, **kwargs: object) -> suite.TrentCluster:
        started.append(cluster_class(*args, **kwargs))  # type: ignore[arg-type]
        return started[-1]

    monkeypatch.setattr(suite, "measured", recorded)
    monkeypatch.setattr(suite, "TrentCluster", tracked)
    settings = suite.Settings(seconds=0.2, scale=(5, 20), rounds=2)
    rows = suite.scale(settings, suite.Progress(2))
    assert [row["keys_per_region"] for row in rows] == [5, 20]
    assert order == [5, 20, 20, 5]
    for row in rows:
        assert row["startup_seconds"] > 0 and row["rss_mib"] > 0
        assert len(row["describe_key_p99_ms_runs"]) == 2
        assert row["describe_key"]["errors"] == 0 and row["describe_key"]["requests"] > 0
    assert len(started) == 2 and all(c.proc is None for c in started)  # stopped
    assert not any(c.data_dir.exists() for c in started)
