"""The composition root: everything a process of the cluster serves, built from the configuration and nothing else.

``compose`` builds what every role serves: per region its store, state, audit trail, outbox and endpoint, and what
the regions share (the clock, the faults, the registry, decoder, verifier, authorizer, the key-pair pool). The
region host adds its background work with ``host_jobs``; a gateway worker with ``worker_jobs``. Stores come from
the factory the configuration names (node/store/factory.py), and the multi-process pieces (node/consistency.py,
cluster/shared_runtime.py) are chosen only here.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import botocore.session

from cluster.clock_control import load_clock
from cluster.compliance_watch import ComplianceNotifier, Sinks, settings_of
from cluster.faults import Faults, fault_gate
from cluster.files import load_or_create_token, make_private_dir
from cluster.jobs import (
    AuditFlushing,
    FollowWorkers,
    Jobs,
    KeyPairPoolJob,
    OutboxTrimming,
    ReplicationLinks,
    SchedulerJob,
)
from cluster.lifecycle import Component
from cluster.metrics import MetricsSnapshots, count_refusals
from cluster.replication.commands import CommandCodec
from cluster.replication.log import Outbox
from cluster.replication.wiring import RegionReplication
from cluster.shared_runtime import SharedAuditTrail, SharedState, following_runtime
from node.app import Gate
from node.audit.sink import DAY, MIB, AuditSink, Retention
from node.audit.trail import AuditTrail
from node.auth.authorizer import AccessSettings, Authorizer
from node.auth.principals import Principal, PrincipalDirectory
from node.clock import AdjustableClock
from node.config import ClusterConfig
from node.consistency import RegionConsistency
from node.crypto.asymmetric import generate_key_pair
from node.crypto.keypool import KeyPairPool
from node.crypto.rootkey import RootKey
from node.endpoint import KmsEndpoint
from node.metrics import RequestMetrics
from node.ops import build_registry
from node.ops.registry import Registry
from node.ops.tables import usage_tracked
from node.quotas.admission import RequestQuotas
from node.quotas.buckets import SharedBuckets
from node.scheduler import Scheduler
from node.service import META, Region, RegionIdentity
from node.store.base import Batch, Store, StoreFactory
from node.store.factory import make_store_factory
from node.wire.sigv4 import SigV4Verifier
from node.wire.validation import RequestDecoder

# -- the parts every role serves ------------------------------------------------------------------------------


@dataclass
class RegionParts:
    """One region as this process serves it."""
    region: Region
    endpoint: KmsEndpoint
    outbox: Outbox
    trail: AuditTrail
    port: int


@dataclass
class Parts:
    """Everything a role of this process serves: the regions and what they share. Building them opens no port."""
    config: ClusterConfig
    clock: AdjustableClock
    faults: Faults
    admin_token: str
    codec: CommandCodec
    key_pairs: KeyPairPool
    regions: dict[str, RegionParts]
    # --workers > 1: the clock offset and faults the region host sets, for every process to follow.
    runtime: SharedState | None
    # --quotas aws: the request quotas, in buckets every process shares.
    quotas: RequestQuotas | None = field(default=None, kw_only=True)

    def request_metrics(self) -> dict[str, RequestMetrics]:
        """This process's request counts per region (each endpoint keeps its own)."""
        return {name: r.endpoint.metrics for name, r in self.regions.items() if r.endpoint.metrics is not None}
    # Builds a region the configuration does not name, standing alone (--any-region: cluster/any_region.py).
    make_region: Callable[[str], RegionParts] | None = None

    def gate(self, follows_runtime: bool) -> Gate:
        """What every KMS request passes before its region: injected faults; with several processes, first the
        shared clock and faults (``follows_runtime``: this process takes them from another) and a catch-up."""
        gate = fault_gate(self.faults, count_refusals(self.request_metrics()))
        if self.runtime is None:
            return gate
        return following_runtime(gate, self.runtime if follows_runtime else None, self._follow_runtime)

    def _follow_runtime(self, doc: dict[str, Any]) -> None:
        self.clock.follow(float(doc.get("clock_offset", 0.0)))
        self.faults.load(doc.get("faults", {}))

    def publish_runtime(self) -> None:
        if self.runtime is not None:
            self.runtime.publish({"clock_offset": self.clock.offset, "faults": self.faults.describe()})

    def url(self, port: int) -> str:
        return f"http://{self.config.host}:{port}"

    def close(self) -> None:
        for parts in self.regions.values():
            parts.trail.close()
            parts.region.store.close()
        if self.runtime is not None:
            self.runtime.close()
        if self.quotas is not None:
            self.quotas.buckets.close()


@dataclass(frozen=True)
class _Serving:
    """What every region's endpoint shares."""
    registry: Registry
    decoder: RequestDecoder
    verifier: SigV4Verifier
    directory: PrincipalDirectory
    anonymous: Principal
    authorizer: Authorizer
    usage_tracked: frozenset[str]  # by name, for the audit trails reading their logs back
    quotas: RequestQuotas | None = None


def compose(config: ClusterConfig, audit_file: str, notify_commits: Callable[[], None] | None = None) -> Parts:
    """Every region's parts; ``audit_file``: this process's own audit file name in each region's audit folder;
    ``notify_commits``: told after each of this process's commits (a worker's, so the host catches up at once)."""
    make_private_dir(config.data_dir)
    shared = config.workers > 1
    stores = make_store_factory(config.store)
    clock = load_clock(config.data_dir)
    # Key material crosses between regions only wrapped under the cluster's transport key.
    codec = CommandCodec(RootKey.load_or_create(config.data_dir / "cluster.key"))
    key_pairs = KeyPairPool(generate_key_pair)
    serving = _serving(config)
    regions = {name: _region(config, name, stores, clock, codec, key_pairs, serving, audit_file, notify_commits)
               for name in config.regions}

    def make_region(name: str) -> RegionParts:
        # A cluster of its own as far as multi-Region keys go: no replica goes to it or comes from it.
        alone = replace(config, regions=(name,))
        return _region(alone, name, stores, clock, codec, key_pairs, serving, audit_file, notify_commits)

    return Parts(config, clock, Faults(time.monotonic, share=1.0 / config.workers),
                 config.admin_token or load_or_create_token(config.data_dir, "admin.token"), codec, key_pairs, regions,
                 SharedState(stores.open_runtime(config.data_dir)) if shared else None, make_region,
                 quotas=serving.quotas)


def _serving(config: ClusterConfig) -> _Serving:
    decoder = RequestDecoder(botocore.session.get_session().get_service_model("kms"))
    registry = build_registry(decoder.operation_names())
    principals = config.effective_principals()
    directory = PrincipalDirectory(principals)
    # Clients sign with the real time, so signatures are checked against the wall clock: moving the cluster's clock
    # (to drive deletion windows and rotations) must not make every signature expire.
    verifier = SigV4Verifier(directory, AdjustableClock(), config.max_skew_seconds)
    authorizer = Authorizer(AccessSettings(config.enforce_access, config.identity_policies))
    return _Serving(registry, decoder, verifier, directory, principals[0], authorizer, usage_tracked(registry),
                    _quotas(config))


def _quotas(config: ClusterConfig) -> RequestQuotas | None:
    if config.quotas != "aws":
        return None
    accounts = [config.account, *(p.account for p in config.effective_principals())]
    slots = RequestQuotas.slots_needed(accounts, config.regions)
    return RequestQuotas(SharedBuckets(config.data_dir / "quotas.bin", slots, shared=config.workers > 1), accounts,
                         config.regions, config.quota_overrides)


def _region(config: ClusterConfig, name: str, stores: StoreFactory, clock: AdjustableClock, codec: CommandCodec,
            key_pairs: KeyPairPool, serving: _Serving, audit_file: str,
            notify_commits: Callable[[], None] | None) -> RegionParts:
    shared = config.workers > 1
    region_dir = config.data_dir / name
    region_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(region_dir, 0o700)  # also when it already existed: it holds the root key
    root_hex = config.root_key_hex(name)
    root = RootKey.from_bytes(bytes.fromhex(root_hex)) if root_hex else RootKey.load_or_create(region_dir / "root.key")
    store = stores.open(name, region_dir, shared=shared)
    outbox = Outbox(name, store, codec, clock)
    retention = Retention(config.audit_retention_days * DAY, config.audit_retention_mib * MIB)
    sink = AuditSink(region_dir / "audit", config.audit_rotate_mib * MIB, audit_file, retention)
    trail = (SharedAuditTrail if shared else AuditTrail)(name, config.account, sink,
                                                         started=_tracking_start(store, clock.now()),
                                                         usage_tracked=serving.usage_tracked)
    region = Region(RegionIdentity(name, config.account), store, root, clock, change_log=outbox,
                    cluster_regions=config.regions, audit=trail, key_pairs=key_pairs.take)
    # In every process, whatever its role: an outbox that missed the records another process appended would number
    # its next record as one of theirs, and overwrite it.
    outbox.follow(region.follower)
    endpoint = KmsEndpoint(region, serving.registry, serving.decoder, serving.verifier,
                           verify_signatures=config.verify_signatures, anonymous=serving.anonymous,
                           principals=serving.directory, audit=trail, authorizer=serving.authorizer,
                           consistency=RegionConsistency(region, notify_commits) if shared else None,
                           metrics=RequestMetrics(name), admission=serving.quotas)
    return RegionParts(region, endpoint, outbox, trail, config.port_of(name))


def _tracking_start(store: Store, now: float) -> float:
    """When this region began recording key usage (GetKeyLastUsage's TrackingStartDate), kept across restarts."""
    store.declare(META)  # the region's own table; its trail is made (and asks this) before the region is
    raw = store.get(META, "tracking_start")
    if raw is not None:
        return float(raw.decode())
    store.commit(Batch().put(META, "tracking_start", repr(now).encode()))
    return now


# -- background work, per role -------------------------------------------------------------------------------


@dataclass
class HostJobs:
    """The region host's background work: ``background`` runs beside the ports, ``replication`` once they are open."""
    schedulers: dict[str, Scheduler]
    replication: ReplicationLinks
    trimming: OutboxTrimming
    background: Jobs


def host_jobs(parts: Parts) -> HostJobs:
    config = parts.config
    # Only the host schedules: a worker's scheduler would make its region record changed keys nothing takes.
    schedulers = {name: Scheduler(r.region) for name, r in parts.regions.items()}
    replications = {name: RegionReplication(r.region, r.outbox, parts.codec, config.replica_creating_seconds,
                                            _waker(schedulers[name]))
                    for name, r in parts.regions.items()}
    token = load_or_create_token(config.data_dir, "replication.token")
    links = ReplicationLinks(replications, {n: parts.url(r.port) for n, r in parts.regions.items()}, token,
                             parts.faults)
    # A store keeps a change feed only while several processes share it (trimming one without is a no-op).
    trimming = OutboxTrimming(replications, [r.region.store.trim_changes for r in parts.regions.values()])
    jobs: list[Component] = [KeyPairPoolJob(parts.key_pairs)]
    jobs += [SchedulerJob(s, config.scheduler_interval) for s in schedulers.values()]
    jobs += [AuditFlushing(_trails(parts)), trimming]
    if parts.runtime is not None:
        jobs.append(FollowWorkers(config.data_dir, [r.region for r in parts.regions.values()]))
    if config.compliance_webhook or config.compliance_file:
        sinks = Sinks(config.compliance_webhook, Path(config.compliance_file) if config.compliance_file else None)
        jobs.append(ComplianceNotifier({n: r.region for n, r in parts.regions.items()}, parts.clock,
                                       settings_of(config), sinks, config.data_dir, config.scheduler_interval))
    return HostJobs(schedulers, links, trimming, Jobs(jobs))


def worker_jobs(parts: Parts, worker_id: int | None = None) -> Jobs:
    jobs: list[Component] = [KeyPairPoolJob(parts.key_pairs), AuditFlushing(_trails(parts))]
    if worker_id is not None:  # its request counts, for the host's /metrics
        jobs.append(MetricsSnapshots(parts.request_metrics(), parts.config.data_dir, worker_id,
                                     lambda: {name: r.trail.sink.pending for name, r in parts.regions.items()}))
    return Jobs(jobs)


def _trails(parts: Parts) -> dict[str, AuditTrail]:
    return {name: r.trail for name, r in parts.regions.items()}


def _waker(scheduler: Scheduler) -> Callable[[float], None]:
    """For the applier: run the scheduler just after ``delay`` (a replica's Creating window ends then)."""
    def wake_after(delay: float) -> None:
        asyncio.get_running_loop().call_later(delay + 0.005, scheduler.run_due)
    return wake_after
