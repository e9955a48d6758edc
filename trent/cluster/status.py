"""`trent status`: the regions, their keys and replication lag, multi-Region consistency, the faults in force."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trent.cluster.compose import Parts
from trent.cluster.keystore_status import hsm_cluster_report, key_store_report
from trent.cluster.replication.wiring import RegionReplication, consistency_report, lag_report
from trent.node.store.base import store_failed


def status_report(parts: Parts, replications: Mapping[str, RegionReplication],
                  clock_state: dict[str, Any]) -> dict[str, Any]:
    now = parts.clock.now()
    regions: dict[str, Any] = {}
    for name, r in parts.regions.items():
        replication = replications.get(name)  # None: a region made on first use (--any-region) replicates nothing
        regions[name] = {
            "url": parts.url(r.port), "up": not parts.faults.is_down(name), "keys": len(r.region.keys),
            "multi_region_keys": sum(1 for k in r.region.keys.values() if k.mrk is not None),
            "aliases": len(r.region.aliases), "outbox_head": r.outbox.head,
            "replication": lag_report(replication, replications, now) if replication is not None else {},
            "key_stores": key_store_report(r.region),
            "store": "failed" if store_failed(r.region.store) else "ok"}
    return {
        "gateway": parts.url(parts.config.port),
        "clock": clock_state,
        "regions": regions,
        "consistency": consistency_report({n: r.region for n, r in parts.regions.items()}),
        "faults": parts.faults.describe(),
        "hsm_faults": parts.hsm_faults.describe(),
        "hsm_clusters": hsm_cluster_report(parts),
    }
