"""`trent status` when the regions run in processes (or on hosts) of their own: each node reports its region
(``node_status``), and the gateway puts the reports together into the same shape a single process gives
(``cluster_status``): replication lag from one node's cursors and another's outbox head, multi-Region consistency
from every node's view of its keys."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from trent.cluster.compose import Parts
from trent.cluster.replication.wiring import RegionReplication
from trent.node.store.base import store_failed


def node_status(parts: Parts, replication: RegionReplication, clock_state: dict[str, Any]) -> dict[str, Any]:
    """One node's region: its counts, its cursors on its peers' outboxes, and its multi-Region keys' shared
    state (material ids, current one, stamp, related regions: no key material)."""
    (name, r), = parts.regions.items()
    region = r.region
    links = {peer: {"cursor": replication.cursors.get(peer), "head": puller.peer_head,
                    "connected": puller.link_up} for peer, puller in replication.pullers.items()}
    mrks = {key.key_id: {"materials": sorted(m.material_id.hex() for m in key.materials),
                         "current": key.current_material_id.hex(), "stamp": list(key.mrk.stamp),
                         "related": sorted(key.mrk.related_regions())}
            for key in region.keys.values() if key.mrk is not None}
    return {"region": name, "url": parts.url(r.port), "up": not parts.faults.is_down(name),
            "keys": len(region.keys), "multi_region_keys": len(mrks), "aliases": len(region.aliases),
            "outbox_head": r.outbox.head, "links": links, "mrk": mrks, "clock": clock_state,
            "faults": parts.faults.describe(), "pid": os.getpid(),
            "store": "failed" if store_failed(region.store) else "ok"}


def cluster_status(gateway: str, regions: list[str], urls: Mapping[str, str],
                   reports: Mapping[str, dict[str, Any] | None]) -> dict[str, Any]:
    """The nodes' reports (None: the node did not answer) as one cluster's status."""
    out: dict[str, Any] = {}
    for name in regions:
        report = reports.get(name)
        if report is None:
            out[name] = {"url": urls.get(name, ""), "up": False, "reachable": False, "keys": 0,
                         "multi_region_keys": 0, "aliases": 0, "outbox_head": 0, "replication": {}}
            continue
        replication: dict[str, Any] = {}
        for peer, link in report["links"].items():
            producer = reports.get(peer)
            head = producer["outbox_head"] if producer is not None else link["head"]
            replication[peer] = {"cursor": link["cursor"], "head": head,
                                 "lag_records": max(0, head - link["cursor"]), "lag_seconds": None,
                                 "connected": link["connected"]}
        out[name] = {"url": report["url"], "up": report["up"], "reachable": True, "keys": report["keys"],
                     "multi_region_keys": report["multi_region_keys"], "aliases": report["aliases"],
                     "outbox_head": report["outbox_head"], "replication": replication, "pid": report["pid"],
                     "store": report.get("store", "ok")}
        if report.get("etcd"):
            out[name]["etcd"] = report["etcd"]
    live = [r for r in reports.values() if r is not None]
    return {"gateway": gateway, "clock": live[0]["clock"] if live else {}, "regions": out,
            "consistency": consistency({n: r["mrk"] for n, r in reports.items() if r is not None}),
            "faults": live[0]["faults"] if live else {}}


def consistency(views: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The same verdict as cluster/replication/wiring.py's consistency_report, from the nodes' reports."""
    per_key: dict[str, dict[str, tuple[Any, ...]]] = {}
    related: dict[str, tuple[tuple[int, ...], list[str]]] = {}
    for name, keys in views.items():
        for key_id, view in keys.items():
            stamp = tuple(view["stamp"])
            per_key.setdefault(key_id, {})[name] = (tuple(view["materials"]), view["current"], stamp)
            newest = related.get(key_id)
            if newest is None or stamp > newest[0]:
                related[key_id] = (stamp, list(view["related"]))
    missing = {key_id: sorted(r for r in related[key_id][1] if r in views and r not in seen)
               for key_id, seen in per_key.items()}
    missing = {key_id: where for key_id, where in missing.items() if where}
    divergent = sorted(key_id for key_id, seen in per_key.items() if len(set(seen.values())) > 1 or key_id in missing)
    return {"multi_region_keys": len(per_key), "consistent": not divergent, "divergent_keys": divergent,
            "missing": missing}
