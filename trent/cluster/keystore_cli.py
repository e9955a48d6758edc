"""The custom key store parts of the `trent` command: `trent fault hsm ...` and the key stores in `trent status`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from trent.node.hsm.faults import HSM_FAULT_ACTIONS
from trent.node.keystores.clusters import DEFAULT_CLUSTER_ID, DEFAULT_PASSWORD


def hsm_fault_command(words: list[str], value_of: Callable[[str, str], float]) -> dict[str, Any]:
    """`trent fault hsm CLUSTER_ID down|up|latency 200ms|errors 5%|clear` as the admin API takes it."""
    usage = "usage: trent fault hsm CLUSTER_ID down|up|latency 200ms|errors 5%|clear"
    if len(words) < 2 or words[1] not in HSM_FAULT_ACTIONS:
        raise ValueError(usage)
    cluster, fault = words[0], words[1]
    doc: dict[str, Any] = {"action": "hsm", "cluster": cluster, "fault": fault}
    if fault in ("latency", "errors"):
        if len(words) != 3:
            raise ValueError(usage)
        doc["value"] = value_of(fault, words[2])
    elif len(words) != 2:
        raise ValueError(usage)
    return doc


def print_key_stores(status: dict[str, Any]) -> None:
    if status.get("hsm_faults"):
        print("HSM faults: " + json.dumps(status["hsm_faults"]))
    for cluster in status.get("hsm_clusters", []):
        print(f"HSM cluster {cluster['id']}: {cluster['hsms']} HSMs ({cluster['module']}), trust anchor "
              f"{cluster['trust_anchor_certificate']}")
    for name, region in status["regions"].items():
        for store in region.get("key_stores", []):
            error = f" ({store['error']})" if store.get("error") else ""
            if "proxy" in store:
                health = store.get("health") or {}
                seen = (f"{'healthy' if health.get('ok') else 'UNHEALTHY'} ({health.get('detail')}, "
                        f"{health.get('latency_ms', 0):.1f} ms, {health.get('age_s', 0):.0f} s ago)"
                        if health else "not called yet")
                print(f"  external key store {store['id']} {store['name']!r} in {name}: {store['state']}{error}, "
                      f"proxy {store['proxy']}: {seen}, {store['keys']} keys")
                continue
            print(f"  key store {store['id']} {store['name']!r} in {name}: {store['state']}{error}, cluster "
                  f"{store['cluster']}, {store['keys']} keys")


def key_store_banner(status: dict[str, Any]) -> str:
    """The start-up lines naming the HSM clusters custom key stores can use (the default one with its password:
    it is a local SoftHSM2 token, there to be tried at once)."""
    lines = []
    for cluster in status.get("hsm_clusters", []):
        line = f"  HSM cluster     {cluster['id']} ({cluster['module']}, {cluster['hsms']} HSMs)"
        if cluster["id"] == DEFAULT_CLUSTER_ID:
            line += f", kmsuser password {DEFAULT_PASSWORD}"
        lines.append(line + f"\n                  trust anchor {cluster['trust_anchor_certificate']}")
    return "Custom key stores (AWS_CLOUDHSM):\n" + "\n".join(lines) if lines else ""
