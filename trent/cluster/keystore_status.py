"""What `trent status` says of custom key stores and HSM clusters: every store with its connection state, cluster
and keys; every cluster with where its trust anchor certificate is. Never a password."""

from __future__ import annotations

from typing import Any

from trent.cluster.compose import Parts
from trent.node.service import Region
from trent.node.xks.stores import xks_status


def key_store_report(region: Region) -> list[dict[str, Any]]:
    stores = region.key_stores
    if stores is None:
        return []
    out = []
    for r in sorted(stores.stores.values(), key=lambda r: r.store_id):
        calls, seconds = stores.pkcs11_usage(r.store_id)
        item = {"id": r.store_id, "name": r.name, "cluster": r.cluster_id, "state": r.state,
                "error": r.error_code, "keys": len(stores.keys_in(r.store_id)), "pkcs11_calls": calls,
                "pkcs11_seconds": round(seconds, 6)}
        if r.xks is not None:  # an external key store: its proxy and what the last call to it saw
            item.update(xks_status(r, stores.xks))
        out.append(item)
    return out


def hsm_cluster_report(parts: Parts) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for spec in parts.hsm_clusters:
        anchor = None
        for r in parts.regions.values():
            stores = r.region.key_stores
            cluster = stores.clusters.get(spec.cluster_id) if stores is not None else None
            if cluster is not None:
                anchor = str(cluster.trust_anchor_path)
                break
        out.append({"id": spec.cluster_id, "hsms": spec.hsms, "trust_anchor_certificate": anchor,
                    "regions": list(spec.regions) if spec.regions is not None else "all",
                    "module": str(spec.module) if spec.module else "SoftHSM2",
                    "backup_of": spec.backup_of})
    return out
