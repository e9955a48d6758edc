"""Starts a cluster: every configured region in this process (each on its own port) plus the gateway; with
``workers`` > 1 also the worker processes that serve the gateway beside it (cluster/workers.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import botocore.session
from aiohttp import web

from cluster.admin import AdminApi
from cluster.faults import Faults, fault_gate
from cluster.gateway import Gateway
from cluster.replication.commands import CommandCodec
from cluster.replication.log import Outbox
from cluster.replication.shipper import outbox_route
from cluster.replication.wiring import RegionReplication, consistency_report, lag_report
from cluster.shared_runtime import CommitNotifier, SharedAuditTrail, SharedState, follow_workers, following_runtime
from cluster.workers import WorkerProcesses, forwarding_admin_routes
from node.app import EndpointFor, Gate, kms_first, kms_handler, make_app
from node.audit.sink import CURRENT, DAY, MIB, WORKER_CURRENT, AuditSink, Retention
from node.audit.trail import AuditTrail
from node.auth.authorizer import AccessSettings, Authorizer
from node.auth.principals import PrincipalDirectory
from node.clock import AdjustableClock
from node.config import ClusterConfig
from node.consistency import RegionConsistency
from node.crypto.asymmetric import generate_key_pair
from node.crypto.keypool import KeyPairPool
from node.crypto.rootkey import RootKey
from node.edge import ConnectionGuard
from node.endpoint import KmsEndpoint, WireResponse
from node.ops import build_registry
from node.scheduler import Scheduler
from node.service import Region, RegionIdentity
from node.store.base import Batch, Store, StoreError
from node.store.factory import make_store_factory
from node.wire.sigv4 import SigV4Verifier
from node.wire.validation import RequestDecoder

log = logging.getLogger("trent.cluster")
FAULT_ACTIONS = ("down", "up", "partition", "heal", "latency", "errors", "throttle", "clear")


@dataclass
class RegionRuntime:
    region: Region
    endpoint: KmsEndpoint
    port: int
    replication: RegionReplication
    site: web.TCPSite | None = None


def write_private(path: Path, text: str) -> None:
    """Write ``path`` (mode 0600) whole or not at all: written beside it, then renamed over it, so a crash leaves
    the old file or none, never an empty or cut one (an empty token file would read as an empty token)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def make_private_dir(path: Path) -> None:
    """Create ``path`` (0700) if missing; an existing directory the user chose keeps its mode."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _fixed(endpoint: KmsEndpoint) -> Callable[[web.BaseRequest], KmsEndpoint]:
    def route(_request: web.BaseRequest) -> KmsEndpoint:
        return endpoint
    return route


def _tracking_start(store: Store, now: float) -> float:
    """When this region began recording key usage (GetKeyLastUsage's TrackingStartDate), kept across restarts."""
    raw = store.get("meta", "tracking_start")
    if raw is not None:
        return float(raw.decode())
    store.commit(Batch().put("meta", "tracking_start", repr(now).encode()))
    return now


def _waker(scheduler: Scheduler | None) -> Callable[[float], None]:
    def wake_after(delay: float) -> None:
        if scheduler is not None:
            asyncio.get_running_loop().call_later(delay + 0.005, scheduler.run_due)
    return wake_after


class Cluster:
    def __init__(self, config: ClusterConfig, *, worker: int = 0, leader_admin: str | None = None) -> None:
        """``worker`` 0 is the leader (the whole cluster); a worker (1..) serves only the gateway, beside it."""
        self.config = config
        self.data_dir = config.data_dir
        self.worker = worker
        self.leader_admin = leader_admin
        # Several processes over the same stores: change feeds, conditional commits, shared clock and faults.
        self.shared = config.workers > 1
        self.clock = AdjustableClock(self._load_clock_offset())
        self.regions: dict[str, RegionRuntime] = {}
        self.schedulers: dict[str, Scheduler] = {}  # the leader's only
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.admin_token = config.admin_token or self._load_or_create_token()
        self.faults = Faults(time.monotonic, share=1.0 / config.workers)
        self.workers = WorkerProcesses()
        self.runtime: SharedState | None = None
        self.stores = make_store_factory(config.store)
        # A worker tells the leader of its commits at once (the leader's replication long-polls wait on them).
        self.notify_commits = CommitNotifier(config.data_dir) if self.shared and worker else None
        self._admin_close: Any = None
        self._session: aiohttp.ClientSession | None = None
        self._region_runners: dict[str, web.AppRunner] = {}
        self.key_pairs: KeyPairPool | None = None
        # Every port of this process shares one set of connection limits (node/edge.py).
        self.guard = ConnectionGuard(config.edge)

    # -- persistent bits of the cluster itself ---------------------------------------------------------

    def _load_clock_offset(self) -> float:
        try:
            return float(json.loads((self.data_dir / "clock.json").read_text())["offset"])
        except (OSError, ValueError, KeyError):
            return 0.0

    def _save_clock_offset(self) -> None:
        tmp = self.data_dir / "clock.json.tmp"
        tmp.write_text(json.dumps({"offset": self.clock.offset}))
        os.replace(tmp, self.data_dir / "clock.json")

    def _load_or_create_token(self, name: str = "admin.token") -> str:
        make_private_dir(self.data_dir)
        path = self.data_dir / name
        if path.exists():
            token = path.read_text().strip()
            if token:
                return token
            # Empty: left by a crash of an older version mid-write. Never an empty token (it matches no header).
        token = secrets.token_urlsafe(24)
        write_private(path, token)
        return token

    # -- building ------------------------------------------------------------------------------------

    def _build_regions(self) -> None:
        model = botocore.session.get_session().get_service_model("kms")
        decoder = RequestDecoder(model)
        registry = build_registry(decoder.operation_names())
        principals = self.config.effective_principals()
        directory = PrincipalDirectory(principals)
        # Clients sign with the real time, so signatures are checked against the wall clock: moving the
        # cluster's clock (to drive deletion windows and rotations) must not make every signature expire.
        verifier = SigV4Verifier(directory, AdjustableClock(), self.config.max_skew_seconds)
        # Key material crosses between regions only wrapped under the cluster's transport key.
        codec = CommandCodec(RootKey.load_or_create(self.data_dir / "cluster.key"))
        authorizer = Authorizer(AccessSettings(self.config.enforce_access, self.config.identity_policies))
        self.key_pairs = KeyPairPool(generate_key_pair)
        retention = Retention(self.config.audit_retention_days * DAY, self.config.audit_retention_mib * MIB)
        for name in self.config.regions:
            region_dir = self.data_dir / name
            region_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(region_dir, 0o700)  # also when it already existed: it holds the root key
            root_hex = self.config.root_key_hex(name)
            root = RootKey.from_bytes(bytes.fromhex(root_hex)) if root_hex else RootKey.load_or_create(
                region_dir / "root.key")
            store = self.stores.open(name, region_dir, shared=self.shared)
            outbox = Outbox(name, store, codec, self.clock)
            region = Region(RegionIdentity(name, self.config.account), store, root, self.clock,
                            change_log=outbox, cluster_regions=self.config.regions)
            region.key_pairs = self.key_pairs.take
            sink = AuditSink(region_dir / "audit", self.config.audit_rotate_mib * MIB,
                             WORKER_CURRENT.format(self.worker) if self.worker else CURRENT, retention)
            trail = SharedAuditTrail if self.shared else AuditTrail
            region.audit = trail(name, self.config.account, sink, started=_tracking_start(store, self.clock.now()))
            endpoint = KmsEndpoint(region, registry, decoder, verifier,
                                   verify_signatures=self.config.verify_signatures, anonymous=principals[0],
                                   principals=directory, audit=region.audit, authorizer=authorizer,
                                   consistency=RegionConsistency(region, self.notify_commits) if self.shared else None)
            # Background work is the leader's: a worker's scheduler would only make its region record changed keys
            # that nothing ever takes.
            scheduler = None
            if not self.worker:
                scheduler = self.schedulers[name] = Scheduler(region)
            replication = RegionReplication(region, outbox, codec, self.config.replica_creating_seconds,
                                            _waker(scheduler))
            self.regions[name] = RegionRuntime(region, endpoint, self.config.port_of(name), replication)

    def admin(self) -> AdminApi:
        return AdminApi(self.admin_token, self.status, self.clock_state, self.advance_clock, self.fault_action,
                        identity={"worker": self.worker, "pid": os.getpid()})

    def _gate(self) -> Gate:
        gate = fault_gate(self.faults)
        if not self.shared:
            return gate
        # The leader writes the shared clock and faults; the workers follow them.
        return following_runtime(gate, self.runtime if self.worker else None, self._follow_runtime)

    def _follow_runtime(self, doc: dict[str, Any]) -> None:
        self.clock.follow(float(doc.get("clock_offset", 0.0)))
        self.faults.load(doc.get("faults", {}))

    def _publish_runtime(self) -> None:
        if self.runtime is not None and not self.worker:
            self.runtime.publish({"clock_offset": self.clock.offset, "faults": self.faults.describe()})

    async def start(self) -> None:
        make_private_dir(self.data_dir)
        self._build_regions()
        if self.shared:
            self.runtime = SharedState(self.stores.open_runtime(self.data_dir))
            self._publish_runtime()  # before any worker starts: faults of an earlier run are gone
        if self.worker:
            await self._start_worker()
            return
        for scheduler in self.schedulers.values():
            scheduler.run_due()  # work that fell due while the cluster was stopped
        admin_routes = self.admin().routes()
        gate = self._gate()
        gateway = Gateway({n: r.endpoint for n, r in self.regions.items()})
        await self._serve(gateway.route, gate, admin_routes, self.config.port, reuse_port=self.shared)
        token = self._load_or_create_token("replication.token")
        for name, runtime in self.regions.items():
            routes = [*admin_routes, outbox_route(name, runtime.replication.outbox, token, self.faults)]
            runner = await self._serve(_fixed(runtime.endpoint), gate, routes, None)
            self._region_runners[name] = runner
            runtime.site = await self._open_site(runner, runtime.port)
            self._tasks.append(asyncio.create_task(
                self.schedulers[name].run_forever(self.config.scheduler_interval)))
        self._tasks.append(asyncio.create_task(self._flush_audit_forever()))
        self._tasks.append(asyncio.create_task(self._trim_outboxes_forever()))
        self._session = aiohttp.ClientSession()
        for name, runtime in self.regions.items():
            peers = {p: self.url(r.port) for p, r in self.regions.items() if p != name}
            runtime.replication.start(peers, token, self.faults, self._session)
        if self.shared:
            self._tasks.append(asyncio.create_task(follow_workers(self.data_dir,
                                                                  (r.region for r in self.regions.values()))))
            # The admin API on a private loopback port, for the workers to pass admin calls to.
            admin_runner = await self._serve(self._no_kms, None, admin_routes, None)
            site = web.TCPSite(admin_runner, "127.0.0.1", 0)
            await site.start()
            host, port = admin_runner.addresses[0][:2]
            verbose = logging.getLogger().isEnabledFor(logging.INFO)
            await self.workers.start(self.config.workers - 1, pickle.dumps(self.config), f"http://{host}:{port}",
                                     verbose)
        self._write_cluster_file()

    @staticmethod
    def _no_kms(_request: web.BaseRequest) -> WireResponse:
        return WireResponse(404, b"")

    async def _start_worker(self) -> None:
        """A worker serves the gateway port (with the leader and the other workers) and nothing else."""
        assert self.leader_admin is not None
        health = next(r for r in self.admin().routes() if isinstance(r, web.RouteDef) and r.path == "/_trent/health")
        admin_routes, self._admin_close = forwarding_admin_routes(self.leader_admin, health)
        gateway = Gateway({n: r.endpoint for n, r in self.regions.items()})
        await self._serve(gateway.route, self._gate(), admin_routes, self.config.port, reuse_port=True)
        self._tasks.append(asyncio.create_task(self._flush_audit_forever()))

    def trim_outboxes(self) -> int:
        """Drop outbox records that every other region has applied (all cursors are in this process)."""
        removed = 0
        for name, runtime in self.regions.items():
            peers = [r.replication.cursors.get(name) for p, r in self.regions.items() if p != name]
            if peers:
                removed += runtime.replication.outbox.trim_through(min(peers))
        return removed

    async def _trim_outboxes_forever(self, interval: float = 30.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.trim_outboxes()
                for runtime in self.regions.values():
                    runtime.region.store.trim_changes()  # the change feed (0 without one)
            except StoreError:
                log.warning("outbox trimming deferred (store error)")

    async def _flush_audit_forever(self, interval: float = 0.2) -> None:
        """Audit records are fsynced in batches: at most ``interval`` after the call they describe."""
        while True:
            await asyncio.sleep(interval)
            for runtime in self.regions.values():
                if runtime.region.audit is not None:
                    try:
                        # fsync in a worker thread: the event loop keeps serving meanwhile.
                        await asyncio.to_thread(runtime.region.audit.flush)
                    except OSError:
                        log.exception("region %s: cannot write the audit log", runtime.region.name)

    async def _serve(self, endpoint_for: EndpointFor, gate: Gate | None, routes: list[web.RouteDef],
                     port: int | None, reuse_port: bool = False) -> web.AppRunner:
        """KMS calls to ``endpoint_for``, the rest to ``routes``; on ``port`` if given (else the caller opens sites)."""
        app = make_app(kms_handler(endpoint_for, gate), routes)
        # In-flight requests (replication long-polls among them) get a moment to finish, not a minute.
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0,
                               **self.guard.server_kwargs())
        await runner.setup()
        assert runner.server is not None
        kms_first(runner.server, endpoint_for, gate, self.guard)
        self._runners.append(runner)
        if port is not None:
            await self._open_site(runner, port, reuse_port)
        return runner

    async def _open_site(self, runner: web.AppRunner, port: int, reuse_port: bool = False) -> web.TCPSite:
        # reuse_port: several processes accept on the gateway port, the kernel spreading connections among them.
        site = web.TCPSite(runner, self.config.host, port, backlog=1024, reuse_address=True,
                           reuse_port=reuse_port or None)
        await site.start()
        return site

    def _write_cluster_file(self) -> None:
        doc = {
            "gateway": self.gateway_url,
            "regions": {n: self.url(r.port) for n, r in self.regions.items()},
            "pid": os.getpid(),
            "workers": self.workers.pids,
        }
        write_private(self.data_dir / "cluster.json", json.dumps(doc, indent=2))

    async def stop(self) -> None:
        await self.workers.stop()  # first: they stop taking requests while the leader still serves
        if self._admin_close is not None:
            await self._admin_close()
        if self.key_pairs is not None:
            self.key_pairs.stop()
        for runtime in self.regions.values():
            await runtime.replication.stop()
            runtime.replication.outbox.close()
        if self._session is not None:
            await self._session.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in self._runners:
            await runner.cleanup()
        for runtime in self.regions.values():
            if runtime.region.audit is not None:
                runtime.region.audit.close()
            runtime.region.store.close()
        if self.runtime is not None:
            self.runtime.close()
        if self.notify_commits is not None:
            self.notify_commits.close()
        if not self.worker:
            with contextlib.suppress(OSError):
                (self.data_dir / "cluster.json").unlink()

    # -- admin views -----------------------------------------------------------------------------------

    def url(self, port: int) -> str:
        return f"http://{self.config.host}:{port}"

    @property
    def gateway_url(self) -> str:
        return self.url(self.config.port)

    def status(self) -> dict[str, Any]:
        now = self.clock.now()
        producers = {n: r.replication for n, r in self.regions.items()}
        return {
            "gateway": self.gateway_url,
            "clock": self.clock_state(),
            "regions": {
                name: {"url": self.url(r.port), "up": not self.faults.is_down(name), "keys": len(r.region.keys),
                       "multi_region_keys": sum(1 for k in r.region.keys.values() if k.mrk is not None),
                       "aliases": len(r.region.aliases), "outbox_head": r.replication.outbox.head,
                       "replication": lag_report(r.replication, producers, now)}
                for name, r in self.regions.items()
            },
            "consistency": consistency_report({n: r.region for n, r in self.regions.items()}),
            "faults": self.faults.describe(),
        }

    async def fault_action(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Apply one fault command: {"action": down|up|partition|heal|latency|errors|throttle|clear, ...}."""
        action = str(doc.get("action", ""))
        if action not in FAULT_ACTIONS:
            raise ValueError(f"unknown fault {action!r} (one of: {', '.join(FAULT_ACTIONS)})")
        raw_regions = doc.get("regions", [])
        if not isinstance(raw_regions, list):
            raise ValueError("regions is a list of region names")
        regions = [str(r) for r in raw_regions]
        unknown = [r for r in regions if r not in self.regions]
        if unknown:
            raise ValueError(f"unknown region(s): {', '.join(unknown)}")
        if action == "clear":
            self.faults.clear()
        else:
            if not regions:
                raise ValueError(f"fault {action!r} needs a region")
            value = doc.get("value")
            self.faults.set(action, regions, None if value is None else float(value))
        await self._sync_sites()
        self._publish_runtime()  # before answering: the next request to any process sees it
        return self.faults.describe()

    async def _sync_sites(self) -> None:
        """A region that is down refuses connections on its own port; one that is back listens again."""
        for name, runtime in self.regions.items():
            down = self.faults.is_down(name)
            if down and runtime.site is not None:
                await runtime.site.stop()
                runtime.site = None
                # Connections already open (pooled clients, peers' long-polls) die too, as a dead host's would.
                server = self._region_runners[name].server
                for connection in server.connections if server is not None else ():
                    connection.force_close()
            elif not down and runtime.site is None:
                runtime.site = await self._open_site(self._region_runners[name], runtime.port)

    def clock_state(self) -> dict[str, Any]:
        return {"now": self.clock.now(), "offset": self.clock.offset}

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        self.clock.advance(seconds)
        self._save_clock_offset()
        self._publish_runtime()
        changed = {name: s.run_due() for name, s in self.schedulers.items()}
        return {**self.clock_state(), "changed": changed}
