"""Request counts kept on the request path, and what a scrape makes of them (the Prometheus text format)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from trent.cluster.metrics import ClusterCollector, MetricsSnapshots, clear_snapshots, read_snapshots
from trent.node.metrics import LATENCY_BUCKETS, RequestMetrics
from trent.node.service import Region
from trent.node.store.base import Batch
from trent.node.store.memory import MemoryStore


def test_counts_and_latency_buckets() -> None:
    m = RequestMetrics("us-east-1")
    m.observe("Encrypt", "OK", 0.0004)
    m.observe("Encrypt", "OK", 0.003)
    m.observe("Encrypt", "NotFoundException", 99.0)
    m.count("Encrypt", "ThrottlingException")
    assert m.counts == {("Encrypt", "OK"): 2, ("Encrypt", "NotFoundException"): 1,
                        ("Encrypt", "ThrottlingException"): 1}
    histogram = m.latency["Encrypt"]
    assert len(histogram) == len(LATENCY_BUCKETS) + 2
    assert histogram[0] == 1 and histogram[LATENCY_BUCKETS.index(0.005)] == 1 and histogram[-2] == 1
    assert abs(histogram[-1] - 99.0034) < 1e-9


def test_snapshots_add_up() -> None:
    a, b = RequestMetrics("r"), RequestMetrics("r")
    a.observe("Sign", "OK", 0.01)
    b.observe("Sign", "OK", 0.01)
    b.observe("Verify", "KMSInvalidSignatureException", 0.2)
    merged = a.copy()
    merged.add(b.snapshot())
    assert merged.counts == {("Sign", "OK"): 2, ("Verify", "KMSInvalidSignatureException"): 1}
    assert merged.latency["Sign"][-1] == 0.02
    merged.add({"series": [["Sign", "OK", [1.0, 2.0]]]})  # other buckets: ignored, not misread
    assert merged.latency["Sign"][-1] == 0.02
    assert a.counts == {("Sign", "OK"): 1}  # a copy, not the live counts


class _NoKeys:
    keys: dict[str, object] = {}
    store = MemoryStore()
    catch_ups = None


class _Replications:
    def __call__(self) -> dict[str, Any]:
        return {}


def _state() -> dict[str, Any]:
    return {"faults": {"down": ["eu-west-1"], "partitions": [["eu-west-1", "us-east-1"]], "latency_ms": {},
                       "errors_percent": {"us-east-1": 25.0}, "throttle_per_second": {}},
            "clock_offset": 86400.0, "audit_queue": {"us-east-1": 3}}


def test_a_scrape_adds_the_workers_snapshots(tmp_path: Path) -> None:
    host = RequestMetrics("us-east-1")
    host.observe("Encrypt", "OK", 0.001)
    worker = {"us-east-1": RequestMetrics("us-east-1")}
    worker["us-east-1"].observe("Encrypt", "OK", 0.001)
    worker["us-east-1"].observe("Encrypt", "OK", 0.001)
    MetricsSnapshots(worker, tmp_path, worker_id=1, audit_queue=lambda: {"us-east-1": 4, "elsewhere": 9}).write()
    assert len(read_snapshots(tmp_path)) == 1
    collector = ClusterCollector({"us-east-1": cast(Region, _NoKeys())}, {"us-east-1": host}, _Replications(), _state,
                                 tmp_path, lambda: 0.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    found = {(s.name, tuple(sorted(s.labels.items()))): s.value
             for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}
    ok = (("error_code", "OK"), ("operation", "Encrypt"), ("region", "us-east-1"))
    assert found[("trent_requests_total", ok)] == 3
    assert found[("trent_request_duration_seconds_count", (("operation", "Encrypt"), ("region", "us-east-1")))] == 3
    assert found[("trent_fault_partition", (("peer", "us-east-1"), ("region", "eu-west-1")))] == 1
    assert found[("trent_clock_offset_seconds", ())] == 86400.0
    assert found[("trent_audit_queue", (("region", "us-east-1"),))] == 3 + 4  # the host's and the worker's
    assert host.counts == {("Encrypt", "OK"): 1}  # the scrape did not add the worker's counts to the live ones
    clear_snapshots(tmp_path)
    assert read_snapshots(tmp_path) == []


def test_a_torn_or_foreign_snapshot_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "worker-1.json").write_text('{"regions": ')
    (tmp_path / "metrics" / "worker-2.json").write_text('[1, 2]')
    assert read_snapshots(tmp_path) == []


def test_the_grafana_dashboard_queries_only_metrics_trent_exposes() -> None:
    import json
    import re

    from trent.cluster.running import ROOT

    collector = ClusterCollector({}, {}, _Replications(), _state, None, lambda: 0.0)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    exposed: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", generate_latest(registry).decode(), re.MULTILINE):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(kind, [""])
        exposed.update(name.removesuffix("_total") + s for s in suffixes)
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\btrent_[a-z_]+", target["expr"])}
    assert queried and queried <= exposed, queried - exposed
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


@pytest.mark.parametrize("headers", [{"X-Trent-Admin-Token": "\udcff\udcfe"},  # the bytes FF FE, as aiohttp keeps
                                     {"Authorization": "Bearer \udcc3("}])       # a header that is not UTF-8
def test_a_token_that_is_not_utf8_is_a_wrong_token_not_a_server_error(headers: dict[str, str]) -> None:
    from types import SimpleNamespace

    from multidict import CIMultiDict

    from trent.cluster.admin import _authorized
    from trent.cluster.metrics import metrics_authorized

    request = cast(Any, SimpleNamespace(headers=CIMultiDict(headers)))  # all either check reads of a request
    assert metrics_authorized(request, "the-token") is False
    assert _authorized(request, "the-token") is False


def test_compliance_findings_are_a_gauge_per_region_and_kind(tmp_path: Path) -> None:
    collector = ClusterCollector({"us-east-1": cast(Region, _NoKeys())}, {}, _Replications(), _state, None,
                                 lambda: 0.0, lambda: {("us-east-1", "age"): 2, ("us-east-1", "rotation-off"): 1})
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    found = {tuple(sorted(s.labels.items())): s.value
             for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples
             if s.name == "trent_compliance_findings"}
    assert found[(("kind", "age"), ("region", "us-east-1"))] == 2
    assert found[(("kind", "rotation-off"), ("region", "us-east-1"))] == 1
    assert found[(("kind", "replica-lag"), ("region", "us-east-1"))] == 0  # every kind, so alerts can compare


def test_a_store_that_failed_a_sync_is_a_gauge_per_region(tmp_path: Path) -> None:
    from trent.node.store.sqlite import SqliteStore

    failing = SqliteStore(tmp_path / "kms.db", group_sync=True)
    failing.declare("keys")
    try:
        regions = {"us-east-1": cast(Region, _NoKeys()),
                   "eu-west-1": cast(Region, SimpleNamespace(keys={}, store=failing, catch_ups=None))}
        collector = ClusterCollector(regions, {}, _Replications(), _state, None, lambda: 0.0)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)

        def gauge() -> dict[str, float]:
            return {s.labels["region"]: s.value
                    for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples
                    if s.name == "trent_store_failed"}

        assert gauge() == {"us-east-1": 0, "eu-west-1": 0}
        failing.fail_next_sync()
        failing.commit(Batch().put("keys", "k", b"v"))
        pending = failing.durable()
        assert pending is not None and pending.exception(timeout=10) is not None
        assert gauge() == {"us-east-1": 0, "eu-west-1": 1}
    finally:
        failing.close()


def test_an_etcd_region_counts_its_lost_races_and_catch_up_reads() -> None:
    from tests.unit.test_catch_up import Calls
    from trent.node.catch_up import CatchUps

    catch_ups = CatchUps(Calls(lambda: True), "eu-west-1")
    regions = {"us-east-1": cast(Region, _NoKeys()),
               "eu-west-1": cast(Region, SimpleNamespace(keys={}, store=MemoryStore(), catch_ups=catch_ups))}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(regions, {}, _Replications(), _state, None, lambda: 0.0))

    def counts() -> dict[tuple[str, str], float]:
        return {(s.name, s.labels["region"]): s.value
                for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples
                if s.name.startswith("trent_etcd_")}

    assert counts() == {("trent_etcd_lost_races_total", "eu-west-1"): 0,
                        ("trent_etcd_catch_up_reads_total", "eu-west-1"): 0}  # a SQLite region has none
    assert catch_ups.now_after_race(5) and catch_ups.next_after_race(0).result(5) and catch_ups.now()
    assert counts() == {("trent_etcd_lost_races_total", "eu-west-1"): 2,
                        ("trent_etcd_catch_up_reads_total", "eu-west-1"): 2}
