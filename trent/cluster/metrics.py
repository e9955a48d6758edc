"""`/metrics`: the cluster in Prometheus' text format, made with the official client library at scrape time.

The request path only bumps plain counters (node/metrics.py). Everything else is read when Prometheus asks: the
regions' keys by state, replication lag and outbox depth per peer, the audit queue, the faults in force.

With ``--workers N`` each worker process counts its own requests and writes them to ``<data dir>/metrics/`` once a
second (``MetricsSnapshots``); the region host adds them to its own counts when scraped. Why not prometheus_client's
multiprocess mode: it is switched on by an environment variable read at import (one setting for every cluster in a
process, where tests run several), keeps a memory-mapped file per metric per process that is never removed, and
takes a lock on every increment; a snapshot a second costs the request path nothing.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from trent.cluster.admin import TOKEN_HEADER
from trent.cluster.compliance_watch import cluster_findings, settings_of
from trent.cluster.faults import Refused
from trent.cluster.jobs import Periodic
from trent.cluster.replication.wiring import RegionReplication, lag_report
from trent.node.compliance import KINDS, counts
from trent.node.endpoint import KmsEndpoint
from trent.node.fast_path import KmsRequest
from trent.node.metrics import LATENCY_BUCKETS, NO_OPERATION, RequestMetrics
from trent.node.model.errors import KmsError
from trent.node.model.states import KeyState
from trent.node.service import Region
from trent.node.store.base import store_failed
from trent.node.wire.protocol import TARGET_PREFIX

if TYPE_CHECKING:
    from trent.cluster.compose import Parts  # (compose builds what this module counts)

log = logging.getLogger("trent.metrics")
SNAPSHOT_DIR = "metrics"
SNAPSHOT_SECONDS = 1.0


def count_refusals(metrics: Mapping[str, RequestMetrics]) -> Refused:
    """For the fault gate: a request a fault refused counts under its operation (when it names a real one)."""
    def refused(endpoint: KmsEndpoint, request: KmsRequest, error: KmsError) -> None:
        counts = metrics.get(endpoint.region.name)
        if counts is None:
            return
        target = request.headers.get("X-Amz-Target", "")
        name = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
        # Only names the registry knows become labels: a client must not be able to mint label values.
        counts.count(name if endpoint.registry.get(name) is not None else NO_OPERATION, error.code)
    return refused


# -- the workers' counts ------------------------------------------------------------------------------------------


def snapshot_dir(data_dir: Path) -> Path:
    return data_dir / SNAPSHOT_DIR


class MetricsSnapshots(Periodic):
    """A worker's job: its request counts to ``<data dir>/metrics/worker-<id>.json`` every second, and at stop."""

    def __init__(self, metrics: Mapping[str, RequestMetrics], data_dir: Path, worker_id: int,
                 audit_queue: Callable[[], Mapping[str, int]] = dict, interval: float = SNAPSHOT_SECONDS) -> None:
        """``audit_queue``: this process's audit records not yet fsynced, per region."""
        super().__init__("metrics snapshots", interval, self.write)
        self.metrics = metrics
        self.audit_queue = audit_queue
        self.path = snapshot_dir(data_dir) / f"worker-{worker_id}.json"

    def write(self) -> None:
        self.path.parent.mkdir(mode=0o700, exist_ok=True)
        doc = {"pid": os.getpid(), "regions": {name: m.snapshot() for name, m in self.metrics.items()},
               "audit_queue": dict(self.audit_queue())}
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path)  # a reader sees the old snapshot or the new one, never half of one

    async def stop(self) -> None:
        await super().stop()
        with contextlib.suppress(OSError):
            self.write()


def clear_snapshots(data_dir: Path) -> None:
    """At the host's start: counts a worker of an earlier run left are not this run's."""
    directory = snapshot_dir(data_dir)
    for path in directory.glob("*.json") if directory.is_dir() else ():
        with contextlib.suppress(OSError):
            path.unlink()


def read_snapshots(data_dir: Path) -> list[dict[str, Any]]:
    directory = snapshot_dir(data_dir)
    out: list[dict[str, Any]] = []
    for path in sorted(directory.glob("worker-*.json")) if directory.is_dir() else ():
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # replaced meanwhile, or not ours: the next scrape reads it
        if isinstance(doc, dict) and isinstance(doc.get("regions"), dict):
            out.append(doc)
    return out


# -- the collector ------------------------------------------------------------------------------------------------


class LiveMapping(Mapping[str, Any]):
    """A mapping read afresh at every use: the regions --any-region adds while the cluster runs are scraped too."""

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self._read = read

    def __getitem__(self, name: str) -> Any:
        return self._read()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


class ClusterCollector(Collector):
    """Every family, made afresh at each scrape from the host's parts (prometheus_client calls ``collect``)."""

    def __init__(self, regions: Mapping[str, Region], metrics: Mapping[str, RequestMetrics],
                 replications: Callable[[], Mapping[str, RegionReplication]], state: Callable[[], dict[str, Any]],
                 data_dir: Path | None, now: Callable[[], float],
                 compliance: Callable[[], Mapping[tuple[str, str], int]] | None = None) -> None:
        """``state``: the faults in force, the clock offset and each region's audit queue (``fault_state``);
        ``data_dir``: where workers leave their counts (None: a single process); ``compliance``: the rotation-age
        findings per (region, kind) (node.compliance.counts)."""
        self.regions = regions
        self.metrics = metrics
        self.replications = replications
        self.state = state
        self.data_dir = data_dir
        self.now = now
        self.compliance = compliance

    def collect(self) -> Iterator[Metric]:
        workers = read_snapshots(self.data_dir) if self.data_dir is not None else []
        yield from self._requests(workers)
        yield from self._keys()
        yield from self._replication()
        yield from self._runtime(workers)
        if self.compliance is not None:
            yield self._compliance(self.compliance())

    def _compliance(self, found: Mapping[tuple[str, str], int]) -> Metric:
        family = GaugeMetricFamily("trent_compliance_findings", "Keys needing attention, by region and kind (age, "
                                   "rotation-off, cannot-rotate, expiring, replica-lag)", labels=["region", "kind"])
        for name in sorted(self.regions):
            for kind in KINDS:  # every kind, 0 included: an alert can compare against it
                family.add_metric([name, kind], found.get((name, kind), 0))
        return family

    def _merged(self, workers: list[dict[str, Any]]) -> dict[str, RequestMetrics]:
        merged = {name: m.copy() for name, m in self.metrics.items()}
        for doc in workers:
            for name, snapshot in doc["regions"].items():
                if name in merged and isinstance(snapshot, dict):
                    merged[name].add(snapshot)
        return merged

    def _requests(self, workers: list[dict[str, Any]]) -> Iterator[Metric]:
        requests = CounterMetricFamily("trent_requests", "KMS requests answered, by region, operation and error code "
                                       "(OK: success)", labels=["region", "operation", "error_code"])
        latency = HistogramMetricFamily("trent_request_duration_seconds", "Time from a request reaching its "
                                        "region's endpoint to its answer", labels=["region", "operation"])
        for region, m in sorted(self._merged(workers).items()):
            for (operation, code), n in sorted(m.counts.items()):
                requests.add_metric([region, operation, code], n)
            for operation, histogram in sorted(m.latency.items()):
                cumulative, buckets = 0.0, []
                for bound, in_bucket in zip((*LATENCY_BUCKETS, float("inf")), histogram, strict=False):
                    cumulative += in_bucket
                    buckets.append((_bound(bound), cumulative))
                latency.add_metric([region, operation], buckets, histogram[-1])
        yield requests
        yield latency

    def _keys(self) -> Iterator[Metric]:
        keys = GaugeMetricFamily("trent_keys", "KMS keys by region and key state", labels=["region", "state"])
        mrks = GaugeMetricFamily("trent_multi_region_keys", "Multi-Region keys by region and role",
                                 labels=["region", "role"])
        failed = GaugeMetricFamily("trent_store_failed", "1 once the region's store failed to sync to disk: it "
                                   "refuses every call until it starts again", labels=["region"])
        races = CounterMetricFamily("trent_etcd_lost_races", "Commits of this node that another node's commit to the "
                                    "region beat (each is decided again)", labels=["region"])
        reads = CounterMetricFamily("trent_etcd_catch_up_reads", "Reads of etcd this node made to catch up (a lookup "
                                    "that missed, or a race lost to a commit not known)", labels=["region"])
        for name, region in sorted(self.regions.items()):
            failed.add_metric([name], 1 if store_failed(region.store) else 0)
            if region.catch_ups is not None:  # a region on etcd
                races.add_metric([name], region.catch_ups.lost_races)
                reads.add_metric([name], region.catch_ups.reads)
            states: dict[str, float] = dict.fromkeys((s.value for s in KeyState), 0.0)
            roles: dict[str, float] = {"primary": 0.0, "replica": 0.0}
            for key in list(region.keys.values()):
                states[key.state.value] += 1
                if key.mrk is not None:
                    roles["primary" if key.mrk.is_primary(name) else "replica"] += 1
            for state, n in states.items():
                keys.add_metric([name, state], n)
            for role, n in roles.items():
                mrks.add_metric([name, role], n)
        yield keys
        yield mrks
        yield failed
        yield races
        yield reads

    def _replication(self) -> Iterator[Metric]:
        lag_s = GaugeMetricFamily("trent_replication_lag_seconds", "Age of the oldest record of the peer's outbox "
                                  "this region has not applied yet", labels=["region", "peer"])
        lag_n = GaugeMetricFamily("trent_replication_lag_records", "Records of the peer's outbox this region has "
                                  "not applied yet", labels=["region", "peer"])
        depth = GaugeMetricFamily("trent_outbox_depth", "Records of this region's outbox the peer has not applied "
                                  "yet", labels=["region", "peer"])
        linked = GaugeMetricFamily("trent_replication_connected", "1 when this region's puller reaches the peer",
                                   labels=["region", "peer"])
        head = GaugeMetricFamily("trent_outbox_head", "Sequence number of the region's newest outbox record",
                                 labels=["region"])
        replications = self.replications()
        now = self.now()
        for name, replication in sorted(replications.items()):
            head.add_metric([name], replication.outbox.head)
            for peer, lag in sorted(lag_report(replication, replications, now).items()):
                lag_s.add_metric([name, peer], lag["lag_seconds"])
                lag_n.add_metric([name, peer], lag["lag_records"])
                depth.add_metric([peer, name], lag["lag_records"])  # the peer's outbox, as this region lags it
                linked.add_metric([name, peer], 1 if lag["connected"] else 0)
        yield from (lag_s, lag_n, depth, linked, head)

    def _runtime(self, workers: list[dict[str, Any]]) -> Iterator[Metric]:
        state = self.state()
        queued = dict(state["audit_queue"])
        for doc in workers:
            for name, n in (doc.get("audit_queue") or {}).items():
                if name in queued and isinstance(n, int):
                    queued[name] += n
        faults = state["faults"]
        audit = GaugeMetricFamily("trent_audit_queue", "Audit records written but not yet fsynced, per region "
                                  "(every process)", labels=["region"])
        down = GaugeMetricFamily("trent_fault_down", "1 while a fault holds the region down", labels=["region"])
        latency = GaugeMetricFamily("trent_fault_latency_seconds", "Injected latency per request",
                                    labels=["region"])
        errors = GaugeMetricFamily("trent_fault_error_ratio", "Share of requests answered with an injected 5xx",
                                   labels=["region"])
        throttle = GaugeMetricFamily("trent_fault_throttle_rate", "Injected request-rate limit (requests per "
                                     "second; 0: none)", labels=["region"])
        partition = GaugeMetricFamily("trent_fault_partition", "1 while two regions cannot replicate",
                                      labels=["region", "peer"])
        for name in sorted(self.regions):
            audit.add_metric([name], queued.get(name, 0))
            down.add_metric([name], 1 if name in faults["down"] else 0)
            latency.add_metric([name], faults["latency_ms"].get(name, 0.0) / 1000)
            errors.add_metric([name], faults["errors_percent"].get(name, 0.0) / 100)
            throttle.add_metric([name], faults["throttle_per_second"].get(name, 0.0))
        for a, b in faults["partitions"]:
            partition.add_metric([a, b], 1)
        clock = GaugeMetricFamily("trent_clock_offset_seconds", "How far the cluster's clock is ahead of real time")
        clock.add_metric([], state["clock_offset"])
        yield from (audit, down, latency, errors, throttle, partition, clock)


def collector_of(parts: Parts, replications: Callable[[], Mapping[str, RegionReplication]]) -> ClusterCollector:
    """The collector over a role's regions: the region host's, or a `trent node`'s (its one region, without the
    replication lag, which needs the peers' outboxes)."""
    config = parts.config

    def state() -> dict[str, object]:
        return {"faults": parts.faults.describe(), "clock_offset": parts.clock.offset,
                "audit_queue": {name: r.trail.sink.pending for name, r in parts.regions.items()}}

    def compliance() -> Mapping[tuple[str, str], int]:
        regions = {name: r.region for name, r in parts.regions.items()}
        return counts(cluster_findings(regions, parts.clock, settings_of(config)))

    return ClusterCollector(LiveMapping(lambda: {name: r.region for name, r in parts.regions.items()}),
                            LiveMapping(parts.request_metrics), replications, state,
                            config.data_dir if config.workers > 1 else None, parts.clock.now, compliance)


def _bound(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


# -- the route ------------------------------------------------------------------------------------------------


def metrics_routes(collector: Collector, token: str, open_to_all: bool) -> list[web.RouteDef]:
    """``/metrics`` (and ``/_trent/metrics``): the admin token (as the admin header, or ``Authorization: Bearer``,
    which Prometheus sends) unless the configuration opens them to anyone."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    async def metrics(request: web.Request) -> web.Response:
        if not open_to_all and not metrics_authorized(request, token):
            return web.json_response({"error": "admin token required"}, status=403)
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return [web.get("/metrics", metrics), web.get("/_trent/metrics", metrics)]


def metrics_authorized(request: web.BaseRequest, token: str) -> bool:
    """The admin token, in the admin header or as a bearer token."""
    given = request.headers.get(TOKEN_HEADER, "")
    if not given:  # (a worker passing a scrape on sends the header empty)
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        given = credentials.strip() if scheme.lower() == "bearer" else ""
    # surrogateescape: a header that is not UTF-8 (aiohttp keeps its bytes that way) is a wrong token, not a 500.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), token.encode())
