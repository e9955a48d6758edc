"""Scenarios of regions in processes of their own:

- signed Encrypt through the standalone gateway process to a region in another process (`trent up --processes`),
  and to the region's port directly, each against the one-process ceiling, alternating pairs, 32 connections;
- replication visibility of an on-demand MRK rotation under the published inter-region round trips, in the
  network-namespace drill (skipped where namespaces cannot be made), with each pair's target (1.5 × RTT + 20 ms).
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from trent.bench.loadgen import Target
from trent.bench.procs import TrentCluster, start_baseline
from trent.bench.scenarios import Fixtures, encrypt_call_for_baseline


def standalone_gateway(settings: Any, progress: Any) -> dict[str, Any]:
    from trent.bench.suite import measured

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
    from trent.cluster.netns import NetnsUnavailable
    from trent.cluster.netns_drill import FAST, run

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


def profile_rotation_visibility(settings: Any, progress: Any) -> dict[str, Any]:
    """The same figure in the single-process mode with `--latency-profile aws`: a key replicated to one region,
    rotated on demand at us-east-1, timed from its acknowledgement until the replica names the new material
    current."""
    from trent.bench.key_poll import KeyPoller, rotation_visible_ms
    from trent.bench.loadgen import Target
    from trent.bench.suite import _state
    from trent.cluster.latency import rtt_ms
    from trent.cluster.running import poll

    cluster = TrentCluster(extra=("--latency-profile", "aws"))
    out: dict[str, Any] = {}
    samples_per_pair = 8 if settings.quick else 24
    try:
        home = cluster.client("us-east-1")
        for region in ("eu-west-1", "ap-northeast-2"):
            away = cluster.client(region)
            values: list[float] = []
            key_id = ""
            rtt = rtt_ms("us-east-1", region)
            for i in range(samples_per_pair):
                if i % 8 == 0:
                    key_id = home.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
                    home.replicate_key(KeyId=key_id, ReplicaRegion=region)
                    poll(lambda k=key_id, a=away: _state(a, k) == "Enabled", timeout=10, interval=0.01)
                # Idle links, as the figure is defined: a rotation started right after the last one finds the
                # replica's next long-poll still on its way (one more one-way delay).
                time.sleep(rtt / 1000 + 0.05)
                with KeyPoller(Target("127.0.0.1", cluster.port, region), key_id) as replica:
                    values.append(rotation_visible_ms(home, key_id, replica, timeout=10))
                poll(lambda k=key_id: "OnDemandRotationStartDate" not in home.get_key_rotation_status(KeyId=k),
                     timeout=10, interval=0.01)
            ordered = sorted(values)
            out[region] = {"samples": values, "p50": ordered[len(ordered) // 2],
                           "p99": ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)],
                           "rtt_ms": rtt, "target_ms": 1.5 * rtt + 20}
        progress.step("rotation visibility, --latency-profile aws",
                      ", ".join(f"{r} p99 {v['p99']} ms" for r, v in out.items()))
    finally:
        cluster.stop()
    return out


def processes(settings: Any, progress: Any) -> dict[str, Any]:
    return {"standalone_gateway": standalone_gateway(settings, progress),
            "profile_rotation": profile_rotation_visibility(settings, progress),
            "netem_rotation": netem_rotation_visibility(settings, progress)}
