"""Encrypt with a key in a custom key store (SoftHSM2) beside a key of KMS's own, in one run: req/s and p99 at 32
connections, the two measured alternately, and the share of the server's time spent in PKCS#11 calls."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from trent.bench.loadgen import Target
from trent.bench.procs import TrentCluster
from trent.bench.scenarios import Fixtures
from trent.cluster.running import poll
from trent.node.hsm.softhsm import find_library
from trent.node.keystores.clusters import DEFAULT_CLUSTER_ID, DEFAULT_PASSWORD


def _store_usage(cluster: TrentCluster, region: str, store_id: str) -> tuple[int, float]:
    status = json.loads(cluster.trent("status", "--json").stdout)
    entry = next(s for s in status["regions"][region]["key_stores"] if s["id"] == store_id)
    return int(entry["pkcs11_calls"]), float(entry["pkcs11_seconds"])


def key_store(settings: Any, progress: Any) -> dict[str, Any] | None:
    """None when SoftHSM2 is not installed (no HSM cluster to measure)."""
    from trent.bench.suite import measured

    if find_library() is None:
        progress.step("key store Encrypt", "skipped (no SoftHSM2)")
        return None
    region = settings.region
    cluster = TrentCluster()
    try:
        kms = cluster.client(region)
        status = json.loads(cluster.trent("status", "--json").stdout)
        anchor = next(c for c in status["hsm_clusters"] if c["id"] == DEFAULT_CLUSTER_ID)["trust_anchor_certificate"]
        store_id = kms.create_custom_key_store(CustomKeyStoreName="bench", CloudHsmClusterId=DEFAULT_CLUSTER_ID,
                                               TrustAnchorCertificate=Path(anchor).read_text(),
                                               KeyStorePassword=DEFAULT_PASSWORD)["CustomKeyStoreId"]
        kms.connect_custom_key_store(CustomKeyStoreId=store_id)
        poll(lambda: kms.describe_custom_key_stores(CustomKeyStoreId=store_id)["CustomKeyStores"][0][
            "ConnectionState"] == "CONNECTED")
        fixtures = Fixtures(kms)
        standard = fixtures.call("Encrypt")
        fixtures.symmetric = kms.create_key(CustomKeyStoreId=store_id, Origin="AWS_CLOUDHSM")["KeyMetadata"]["KeyId"]
        in_store = fixtures.call("Encrypt")
        gateway = Target(cluster.host, cluster.port, region)
        pairs: list[dict[str, Any]] = []
        for i in range(settings.rounds):
            before = _store_usage(cluster, region, store_id)
            pair: dict[str, Any] = {"standard": measured(cluster, gateway, [standard], settings, 32),
                                    "key_store": measured(cluster, gateway, [in_store], settings, 32)}
            after = _store_usage(cluster, region, store_id)
            row = pair["key_store"]
            calls = max(after[0] - before[0], 1)
            per_call = round((after[1] - before[1]) * 1000 / calls, 4)
            pair["pkcs11_ms_per_call"] = per_call
            cpu = float(row.get("server_cpu_ms_per_request") or 0.0)
            pair["pkcs11_share_of_server_cpu"] = round(per_call / cpu, 4) if cpu else None
            pairs.append(pair)
            progress.step(f"key store Encrypt x32, round {i + 1}",
                          f"{row['req_per_s']} vs {pair['standard']['req_per_s']} req/s")
        ratios = [p["key_store"]["req_per_s"] / max(p["standard"]["req_per_s"], 1e-9) for p in pairs]
        shares = [p["pkcs11_share_of_server_cpu"] for p in pairs if p["pkcs11_share_of_server_cpu"] is not None]
        return {
            "pairs": pairs,
            "throughput_ratio_median": round(statistics.median(ratios), 3),
            "key_store_req_per_s_median": round(statistics.median(p["key_store"]["req_per_s"] for p in pairs), 1),
            "standard_req_per_s_median": round(statistics.median(p["standard"]["req_per_s"] for p in pairs), 1),
            "key_store_p99_ms_median": round(statistics.median(p["key_store"]["p99_ms"] for p in pairs), 2),
            "standard_p99_ms_median": round(statistics.median(p["standard"]["p99_ms"] for p in pairs), 2),
            "pkcs11_ms_per_call_median": round(statistics.median(p["pkcs11_ms_per_call"] for p in pairs), 4),
            "pkcs11_share_of_server_cpu_median": round(statistics.median(shares), 4) if shares else None,
        }
    finally:
        cluster.stop()
