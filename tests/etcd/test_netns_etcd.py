"""A region on etcd across network namespaces (cluster/netns_etcd.py): three etcd members and two nodes of one region,
each in a namespace of its own on 198.18.0.0/15 as on separate hosts, nodes from `trent init` bundles over TLS, the
gateway and the client in another. An etcd member is cut off from the others, then the lease holder is SIGKILLed
mid-burst, then an etcd member: the client (retrying as the AWS SDKs do) sees no call fail, nothing acknowledged is
lost, and no namespace is left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from trent.cluster.etcd_local import etcd_binary
from trent.cluster.netns import unavailable_reason
from trent.cluster.netns_etcd import TTL, run

REASON = unavailable_reason()
pytestmark = [pytest.mark.skipif(REASON is not None, reason=f"network namespaces unavailable: {REASON}"),
              pytest.mark.skipif(etcd_binary() is None, reason="etcd is not installed (Debian package etcd-server)")]


def test_a_region_on_etcd_survives_a_node_and_an_etcd_member_across_namespaces(tmp_path: Path) -> None:
    result = run(tmp_path / "drill")
    assert result.get("error") is None, result.get("timeline")
    checks = result["checks"]
    assert checks["failures"] == [] and checks["lost_keys"] == [] and checks["undecryptable"] == []
    assert checks["acknowledged"] >= 140
    assert checks["lease_moved_seconds"] <= TTL + 3
    # A member cut off from the other two: a write through one node lands (its client retrying) and the other
    # node, whose watch was on that member, sees it.
    assert checks["partition_write_seen_seconds"] < 20
    assert result["ok"] and result["leftover_namespaces"] == []
    said = " | ".join(text for _, text in result["timeline"])
    for step in ("cut off from the other two", "partition healed", "SIGKILLed mid-burst", "holds the lease",
                 "etcd member etcd-2 SIGKILLed", "drill OK"):
        assert step in said, said
