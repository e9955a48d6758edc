"""Scenarios of regions in processes of their own:

- signed Encrypt through the standalone gateway process to a region in another process (`trent up --processes`),
  and to the region's port directly, each against the one-process ceiling, alternating pairs, 32 connections;
- replication visibility of an on-demand MRK rotation under the published inter-region round trips, in the
  network-namespace drill (skipped where namespaces cannot be made), with each pair's target (1.5 × RTT + 20 ms).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.loadgen import Target
from bench.procs import TrentCluster, start_baseline
from bench.scenarios import Fixtures, encrypt_call_for_baseline


def standalone_gateway(settings: Any, progress: Any) -> dict[str, Any]:
    from bench.suite import measured

    message = os.urandom(64)
    out: dict[str, Any] = {"connections": 32, "pairs": []}
    cluster = TrentCluster(extra=("--processes",))
    baseline = start_baseline(1)
    try:
        fixtures = Fixtures(cluster.client("us-east-1"))
        gateway = Target("127.0.0.1", cluster.port, "us-east-1")
        region = Target("127.0.0.1", cluster.region_port("us-east-1"), "us-east-1")
        base = Target("127.0.0.1", baseline.port, "us-east-1")
        for i in range(settings.rounds):
            pair = {"ceiling": measured(baseline, base, [encrypt_call_for_baseline(message)], settings, 32),
                    "gateway": measured(cluster, gateway, [fixtures.call("Encrypt")], settings, 32),
                    "region": measured(cluster, region, [fixtures.call("Encrypt")], settings, 32)}
            for row in pair.values():
                row.pop("latency_sample_ms", None)
            out["pairs"].append(pair)
            progress.step(f"Encrypt via standalone gateway, round {i + 1}",
                          f"{pair['gateway']['req_per_s']} / {pair['region']['req_per_s']} vs "
                          f"{pair['ceiling']['req_per_s']} req/s")
    finally:
        baseline.stop()
        cluster.stop()
    for via in ("gateway", "region"):
        out[f"{via}_vs_ceiling"] = round(statistics.median(
            p[via]["req_per_s"] / p["ceiling"]["req_per_s"] for p in out["pairs"]), 3)
        out[f"{via}_p99_ms"] = max(p[via]["p99_ms"] for p in out["pairs"])
    return out


def netem_rotation_visibility(settings: Any, progress: Any) -> dict[str, Any]:
    from cluster.netns import NetnsUnavailable
    from cluster.netns_drill import FAST, run

    plan = replace(FAST, name="bench", visibility_samples=8 if settings.quick else 24)
    out_dir = Path(tempfile.mkdtemp(prefix="trent-bench-netns-"))
    try:
        result = run(plan, out_dir, echo=False)
    except NetnsUnavailable as exc:
        progress.step("rotation visibility under the RTT matrix", "skipped")
        return {"skipped": str(exc)}
    visibility = result.get("checks", {}).get("rotation_visibility_ms", {})
    progress.step("rotation visibility under the RTT matrix",
                  ", ".join(f"{r} p99 {v['p99']} ms" for r, v in visibility.items()))
    return {"ok": result.get("ok"), "delays": result.get("delays"), "visibility_ms": visibility,
            "within_target": {r: v["p99"] is not None and v["p99"] <= v["target_ms"] for r, v in visibility.items()},
            "leftover_namespaces": result.get("leftover_namespaces")}


def processes(settings: Any, progress: Any) -> dict[str, Any]:
    return {"standalone_gateway": standalone_gateway(settings, progress),
            "netem_rotation": netem_rotation_visibility(settings, progress)}
