"""The composition root: everything a process of the cluster serves, built from the configuration and nothing else.

``compose`` builds what every role serves: per region its store, state, audit trail, outbox and endpoint, and what
the regions share (the clock, the faults, the registry, decoder, verifier, authorizer, the key-pair pool). The
region host adds its background work with ``host_jobs``; a gateway worker with ``worker_jobs``. Stores come from
the factory the configuration names (node/store/factory.py), and the multi-process pieces (node/consistency.py,
cluster/shared_runtime.py) are chosen only here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import botocore.session

from trent.cluster.clock_control import load_clock
from trent.cluster.compliance_watch import ComplianceNotifier, Sinks, settings_of
from trent.cluster.etcd_node import ElectedLinks, ElectedWork, Elections, etcd_stores, prepare_region
from trent.cluster.faults import Faults, fault_gate
from trent.cluster.files import load_or_create_token, make_private_dir
from trent.cluster.jobs import (
    AuditFlushing,
    FollowWorkers,
    Jobs,
    KeyPairPoolJob,
    OutboxTrimming,
    ReplicationLinks,
    SchedulerJob,
)
from trent.cluster.latency import one_way_seconds
from trent.cluster.lifecycle import Component
from trent.cluster.metrics import LiveMapping, MetricsSnapshots, count_refusals
from trent.cluster.replication.commands import CommandCodec
from trent.cluster.replication.log import Outbox
from trent.cluster.replication.wiring import RegionReplication
from trent.cluster.shared_runtime import SharedAuditTrail, SharedState, following_runtime
from trent.node.app import Gate
from trent.node.audit.sink import DAY, MIB, AuditSink, Retention
from trent.node.audit.trail import AuditTrail
from trent.node.auth.authorizer import AccessSettings, Authorizer
from trent.node.auth.principals import Principal, PrincipalDirectory
from trent.node.clock import AdjustableClock
from trent.node.config import ClusterConfig
from trent.node.consistency import RegionConsistency
from trent.node.crypto.asymmetric import generate_key_pair
from trent.node.crypto.keypool import KeyPairPool
from trent.node.crypto.rootkey import RootKey
from trent.node.crypto.wrapping_keys import WrappingKeys
from trent.node.endpoint import KmsEndpoint
from trent.node.hsm.faults import HsmFaults
from trent.node.hsm.softhsm import TokenSetupError
from trent.node.keystores.clusters import HsmClusterSpec, default_clusters, region_clusters
from trent.node.keystores.records import KeyStoreCodec
from trent.node.keystores.service import KeyStoreService
from trent.node.metrics import RequestMetrics
from trent.node.ops import build_registry
from trent.node.ops.registry import Registry
from trent.node.ops.tables import usage_tracked
from trent.node.quotas.admission import RequestQuotas
from trent.node.quotas.buckets import SharedBuckets
from trent.node.scheduler import Scheduler
from trent.node.service import META, Region, RegionIdentity
from trent.node.store.base import Batch, Store, StoreFactory
from trent.node.store.etcd import EtcdStore
from trent.node.store.factory import make_store_factory
from trent.node.wire.sigv4 import SigV4Verifier
from trent.node.wire.validation import RequestDecoder
from trent.node.xks.client import XksClient
from trent.node.xks.model import kms_model
from trent.node.xks.stores import XksStores, watch_health

XKS_HEALTH_INTERVAL = 30.0  # AWS checks an external store's proxy every few minutes; `trent status` shows the last

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
    # Builds a region the configuration does not name, standing alone (--any-region: cluster/any_region.py).
    make_region: Callable[[str], RegionParts] | None = None
    # --quotas aws: the request quotas, in buckets every process shares.
    quotas: RequestQuotas | None = field(default=None, kw_only=True)
    # Faults injected into HSM clusters (`trent fault hsm ...`), shared by every region's key stores.
    hsm_faults: HsmFaults = field(default_factory=HsmFaults, kw_only=True)
    hsm_clusters: tuple[HsmClusterSpec, ...] = field(default=(), kw_only=True)

    def request_metrics(self) -> dict[str, RequestMetrics]:
        """This process's request counts per region (each endpoint keeps its own)."""
        return {name: r.endpoint.metrics for name, r in self.regions.items() if r.endpoint.metrics is not None}

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
        self.hsm_faults.load(doc.get("hsm_faults", {}))

    def publish_runtime(self) -> None:
        if self.runtime is not None:
            self.runtime.publish({"clock_offset": self.clock.offset, "faults": self.faults.describe(),
                                  "hsm_faults": self.hsm_faults.describe()})

    def store_of(self, region: str) -> Store | None:
        """The store of a region this process serves (None for another's)."""
        hosted = self.regions.get(region)
        return None if hosted is None else hosted.region.store

    def url(self, port: int) -> str:
        scheme = "https" if self.config.tls_cert is not None else "http"  # client-facing TLS (cluster/tls.py)
        return f"{scheme}://{self.config.host}:{port}"

    def close(self) -> None:
        for parts in self.regions.values():
            if parts.region.key_stores is not None:
                parts.region.key_stores.close()
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


def compose(config: ClusterConfig, audit_file: str, notify_commits: Callable[[], None] | None = None,
            hosted: Sequence[str] | None = None) -> Parts:
    """Every region's parts; ``audit_file``: this process's own audit file name in each region's audit folder;
    ``notify_commits``: told after each of this process's commits (a worker's, so the host catches up at once);
    ``hosted``: only these regions (`trent node`: one region, its peers elsewhere)."""
    make_private_dir(config.data_dir)
    shared = config.workers > 1
    stores = make_store_factory(config.store, config.etcd, config.region_stores)
    clock = load_clock(config.data_dir)
    # Key material crosses between regions only wrapped under the cluster's transport key.
    codec = CommandCodec(RootKey.load_or_create(config.data_dir / "cluster.key"))
    key_pairs = KeyPairPool(generate_key_pair)
    wrapping = WrappingKeys(key_pairs.take_ready, generate_key_pair, key_pairs.want)
    serving = _serving(config)
    regions = {name: _region(config, name, stores, clock, codec, key_pairs, serving, audit_file, notify_commits,
                             wrapping) for name in (hosted or config.regions)}

    def make_region(name: str) -> RegionParts:
        # A cluster of its own as far as multi-Region keys go: no replica goes to it or comes from it.
        alone = replace(config, regions=(name,))
        return _region(alone, name, stores, clock, codec, key_pairs, serving, audit_file, notify_commits, wrapping)

    hsm_faults = HsmFaults()
    clusters = config.hsm_clusters if config.hsm_clusters is not None else default_clusters()
    for name, r in regions.items():
        r.region.key_stores = _key_stores(config, name, r.region, clusters, hsm_faults)
    return Parts(config, clock, Faults(time.monotonic, share=1.0 / config.workers),
                 config.admin_token or load_or_create_token(config.data_dir, "admin.token"), codec, key_pairs, regions,
                 SharedState(stores.open_runtime(config.data_dir)) if shared else None, make_region,
                 quotas=serving.quotas, hsm_faults=hsm_faults, hsm_clusters=clusters)


def _key_stores(config: ClusterConfig, name: str, region: Region, clusters: tuple[HsmClusterSpec, ...],
                faults: HsmFaults) -> KeyStoreService:
    """The region's custom key stores: over the tokens of the HSM clusters serving it (made on first start; none
    where SoftHSM2 is missing and none is configured), and external key stores over their proxies either way."""
    region_dir = config.data_dir / name
    root_hex = config.root_key_hex(name)
    root = RootKey.from_bytes(bytes.fromhex(root_hex)) if root_hex else RootKey.load_or_create(region_dir / "root.key")
    try:
        # (no clusters: no token is made, nor SoftHSM2 loaded)
        directory = region_clusters(clusters, name, region_dir, config.data_dir)
    except (TokenSetupError, OSError) as exc:
        logging.getLogger("trent.keystores").error("region %s: HSM tokens unavailable: %s", name, exc)
        directory = region_clusters((), name, region_dir, config.data_dir)
    service = KeyStoreService(region, KeyStoreCodec(root), directory, faults)
    service.xks = XksStores(XksClient(config.xks_trusted_ca, config.xks_allow_http, config.xks_timeout_ms / 1000), name)
    return service


def _serving(config: ClusterConfig) -> _Serving:
    decoder = RequestDecoder(kms_model(botocore.session.get_session().get_service_data("kms")))
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
    # --any-region: room for the regions it may make (cluster/any_region.py's limit), quotas applied there too.
    from trent.cluster.any_region import MAX_NEW_REGIONS  # (that module imports this one)

    spare = MAX_NEW_REGIONS if config.any_region else 0
    slots = RequestQuotas.slots_needed(accounts, config.regions, spare)
    return RequestQuotas(SharedBuckets(config.data_dir / "quotas.bin", slots, shared=config.workers > 1), accounts,
                         config.regions, config.quota_overrides, spare)


def _region(config: ClusterConfig, name: str, stores: StoreFactory, clock: AdjustableClock, codec: CommandCodec,
            key_pairs: KeyPairPool, serving: _Serving, audit_file: str,
            notify_commits: Callable[[], None] | None, wrapping: WrappingKeys | None = None) -> RegionParts:
    shared = config.workers > 1
    region_dir = config.data_dir / name
    region_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(region_dir, 0o700)  # also when it already existed: it holds the root key
    root_hex = config.root_key_hex(name)
    root = RootKey.from_bytes(bytes.fromhex(root_hex)) if root_hex else RootKey.load_or_create(region_dir / "root.key")
    store = stores.open(name, region_dir, shared=shared)
    # A store with a change feed of its own (etcd) is shared by every node of the region, whatever --workers says.
    followed = shared or store.change_feed() is not None
    if isinstance(store, EtcdStore):
        prepare_region(store, root, META, clock.now())
    outbox = Outbox(name, store, codec, clock)
    retention = Retention(config.audit_retention_days * DAY, config.audit_retention_mib * MIB)
    sink = AuditSink(region_dir / "audit", config.audit_rotate_mib * MIB, audit_file, retention)
    trail = (SharedAuditTrail if shared else AuditTrail)(name, config.account, sink,
                                                         started=_tracking_start(store, clock.now()),
                                                         usage_tracked=serving.usage_tracked)
    region = Region(RegionIdentity(name, config.account), store, root, clock, change_log=outbox,
                    cluster_regions=config.regions, audit=trail, key_pairs=key_pairs.take, wrapping_keys=wrapping)
    # In every process, whatever its role: an outbox that missed the records another process appended would number
    # its next record as one of theirs, and overwrite it.
    outbox.follow(region.follower)
    endpoint = KmsEndpoint(region, serving.registry, serving.decoder, serving.verifier,
                           verify_signatures=config.verify_signatures, anonymous=serving.anonymous,
                           principals=serving.directory, audit=trail, authorizer=serving.authorizer,
                           consistency=RegionConsistency(region, notify_commits) if followed else None,
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
    # etcd-backed regions: which node of each does the background work (cluster/etcd_node.py).
    elections: Elections | None = None


def host_jobs(parts: Parts, client_tls: ssl.SSLContext | None = None) -> HostJobs:
    """``client_tls``: how pullers check peers served over https (the cluster CA)."""
    config = parts.config
    # Only the host schedules: a worker's scheduler would make its region record changed keys nothing takes.
    schedulers = {name: Scheduler(r.region) for name, r in parts.regions.items()}
    replications = {name: RegionReplication(r.region, r.outbox, parts.codec, config.replica_creating_seconds,
                                            _waker(schedulers[name]))
                    for name, r in parts.regions.items()}
    token = load_or_create_token(config.data_dir, "replication.token")
    urls = {n: parts.url(r.port) for n, r in parts.regions.items()}
    urls |= {n: peer_urls[0] for n, peer_urls in config.peers.items() if n not in urls}  # regions elsewhere
    delay = one_way_seconds if config.latency_profile == "aws" else None
    elected = etcd_stores({name: r.region.store for name, r in parts.regions.items()})
    if elected:
        return _elected_jobs(parts, schedulers, replications, elected,
                             ElectedLinks(replications, urls, token, parts.faults, delay, client_tls,
                                          elected=frozenset(elected)))
    links = ReplicationLinks(replications, urls, token, parts.faults, delay, client_tls)
    # A store keeps a change feed only while several processes share it (trimming one without is a no-op).
    trimming = OutboxTrimming(replications, [r.region.store.trim_changes for r in parts.regions.values()],
                              config.outbox_trim_interval)
    jobs: list[Component] = [KeyPairPoolJob(parts.key_pairs), KeyStoreConnections(parts)]
    jobs += [SchedulerJob(s, config.scheduler_interval) for s in schedulers.values()]
    jobs += [AuditFlushing(_trails(parts)), trimming]
    if parts.runtime is not None:
        jobs.append(FollowWorkers(config.data_dir, [r.region for r in parts.regions.values()]))
    if config.compliance_webhook or config.compliance_file:
        sinks = Sinks(config.compliance_webhook, Path(config.compliance_file) if config.compliance_file else None)
        # Read afresh at every tick: the regions --any-region adds are watched too.
        regions = LiveMapping(lambda: {n: r.region for n, r in parts.regions.items()})
        jobs.append(ComplianceNotifier(regions, parts.clock, settings_of(config), sinks, config.data_dir,
                                       config.scheduler_interval))
    return HostJobs(schedulers, links, trimming, Jobs(jobs))


def _elected_jobs(parts: Parts, schedulers: dict[str, Scheduler], replications: dict[str, RegionReplication],
                  elected: dict[str, EtcdStore], links: ElectedLinks) -> HostJobs:
    """Host jobs where some regions are on etcd: their scheduler and pullers run on the region's lease holder."""
    config = parts.config
    trimming = OutboxTrimming(replications, [r.region.store.trim_changes for n, r in parts.regions.items()
                                             if n not in elected], config.outbox_trim_interval)
    per_region: dict[str, list[Component]] = {name: [SchedulerJob(schedulers[name], config.scheduler_interval)]
                                              for name in elected}
    always: list[Component] = [SchedulerJob(s, config.scheduler_interval) for n, s in schedulers.items()
                               if n not in elected]
    work = ElectedWork(per_region, links, [trimming], frozenset(elected))
    scheme = "https" if config.tls_cert is not None else "http"
    elections = Elections(elected, work, lambda name: {"url": f"{scheme}://{config.host}:{config.port_of(name)}"},
                          {name: parts.regions[name].region.sync for name in elected})
    jobs: list[Component] = [KeyPairPoolJob(parts.key_pairs), KeyStoreConnections(parts), *always,
                             AuditFlushing(_trails(parts)), elections]
    return HostJobs(schedulers, links, trimming, Jobs(jobs), elections)


class KeyStoreConnections:
    """Connections that were under way when the cluster stopped are made again at start; pools close at stop."""

    def __init__(self, parts: Parts) -> None:
        self._services = [r.region.key_stores for r in parts.regions.values() if r.region.key_stores is not None]
        self._watchers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for service in self._services:
            service.resume()
            if service.xks is not None:
                self._watchers.append(asyncio.get_running_loop().create_task(watch_health(
                    service, service.xks, XKS_HEALTH_INTERVAL)))

    async def stop(self) -> None:
        for watcher in self._watchers:
            watcher.cancel()
        for service in self._services:
            service.close()
            if service.xks is not None:
                await service.xks.client.close()


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
