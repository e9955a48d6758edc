"""The fast DR drill across network namespaces (cluster/netns_drill.py; `make drill-netns` runs the full one): each
region's node in a namespace of its own on 198.18.0.0/15, the primary's process SIGKILLed mid-burst, the primary
moved, a partition by 100 % loss, heal, converge; nothing acknowledged lost, every ciphertext decrypts everywhere,
and no namespace left behind. Skipped, with the reason, where namespaces cannot be made."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from trent.cluster.netns import Net, NetnsUnsafe, ip, unavailable_reason
from trent.cluster.netns_drill import FAST, run

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"network namespaces unavailable: {REASON}")


def test_fast_dr_drill_across_namespaces(tmp_path: Path) -> None:
    result = run(FAST, tmp_path / "drill", echo=False)
    assert result.get("error") is None, result.get("timeline")
    assert result["ok"], result
    checks = result["checks"]
    assert checks["lost_keys"] == [] and checks["undecryptable"] == []
    assert checks["acked_writes"] >= FAST.burst_acks and checks["partition_held"]
    assert result["leftover_namespaces"] == []
    said = " | ".join(text for _, text in result["timeline"])
    for step in ("SIGKILLed mid-burst", "restarted on the same data", "primary moved", "partitioned (100 % loss)",
                 "partition healed", "converged", "decrypts in every region"):
        assert step in said, said
    # Each node ran in its own namespace, under the address the harness gave it.
    assert all(r in result["rtt_matrix_ms"] for r in result["regions"])
    # The matrix applied once: by the network (netem, or NFQUEUE where this kernel has no netem) or else by the
    # nodes' replication links, never both; with NFQUEUE every region's delay process held packets and let go of
    # every one. A rotation takes at least three one-way trips to show in the replica.
    print(f"delays by {result['delays']}: {result['delay_counts']}")
    by_network = result["delays"].startswith(("tc netem", "nfqueue"))
    assert checks["node_latency_profile"] == ("none" if by_network else "aws")
    if result["delays"].startswith("nfqueue"):
        assert set(result["delay_counts"]) == set(result["regions"])
        assert all(c["exit"] == 0 and c["held"] > 0 and c["refused_verdicts"] == 0
                   for c in result["delay_counts"].values())
    for region, figure in checks["rotation_visibility_ms"].items():
        assert min(figure["samples"]) >= 1.5 * figure["rtt_ms"], (region, figure)


def test_the_harness_refuses_a_namespace_it_did_not_make_as_such(tmp_path: Path) -> None:
    net = Net(["us-east-1", "eu-west-1", "ap-northeast-2"]).create()
    try:
        net.verify()
        # An address outside the benchmarking range, or a default route: nothing may be sent.
        ip("-n", net.ns("us-east-1"), "addr", "add", "10.9.9.9/32", "dev", "eth0")
        with pytest.raises(NetnsUnsafe, match="outside"):
            net.verify()
        ip("-n", net.ns("us-east-1"), "addr", "del", "10.9.9.9/32", "dev", "eth0")
        net.verify()
        ip("-n", net.ns("eu-west-1"), "route", "add", "default", "via", net.address("client"))
        with pytest.raises(NetnsUnsafe, match="route"):
            net.verify()
    finally:
        net.destroy()
    assert net.leftovers() == []
    assert subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.count(net.run_id) == 0
