"""The region host (`trent up`): every configured region in this process on its own port, the gateway, the admin
API, replication between the regions and their background work; with ``--workers N`` it also starts the N-1
gateway workers (cluster/gateway_worker.py) and is the process they follow."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
from collections.abc import Mapping
from typing import Any

from trent.cluster.admin import AdminApi
from trent.cluster.any_region import AnyRegion
from trent.cluster.clock_control import ClockControl
from trent.cluster.compliance_watch import compliance_report, settings_of
from trent.cluster.compose import HostJobs, Parts, compose, host_jobs
from trent.cluster.console import console_routes
from trent.cluster.cost_meter import cost_report
from trent.cluster.fault_control import FaultControl, RegionSite
from trent.cluster.files import remove_cluster_file, write_cluster_file
from trent.cluster.gateway import Gateway
from trent.cluster.metrics import ClusterCollector, LiveMapping, clear_snapshots, collector_of, metrics_routes
from trent.cluster.replication.shipper import outbox_route
from trent.cluster.reset import ResetControl
from trent.cluster.seed_file import Seed, load_seed
from trent.cluster.seeding import apply_seed
from trent.cluster.serving import Servers, fixed
from trent.cluster.status import status_report
from trent.cluster.tls import client_context, server_context
from trent.cluster.worker_processes import WorkerProcesses
from trent.node.audit.sink import CURRENT
from trent.node.config import ClusterConfig
from trent.node.edge import ConnectionGuard


class RegionHost:
    def __init__(self, parts: Parts, jobs: HostJobs, seed: Seed | None = None) -> None:
        self.parts = parts
        self.jobs = jobs
        self.config = parts.config
        self.servers = Servers(self.config.host, ConnectionGuard(self.config.edge), server_context(self.config))
        self.sites: dict[str, RegionSite] = {}
        self.clock = ClockControl(parts.clock, self.config.data_dir, jobs.schedulers, parts.publish_runtime)
        self.faults = FaultControl(parts.faults, self.servers, self.sites, parts.publish_runtime,
                                   hsm_faults=parts.hsm_faults,
                                   hsm_clusters=tuple(c.cluster_id for c in parts.hsm_clusters),
                                   disks=parts.store_of)
        self.workers = WorkerProcesses()
        self.seed = seed
        self.resets = ResetControl({name: (r.region, r.outbox) for name, r in parts.regions.items()},
                                   jobs.replication, after=self.apply_seed)
        self.any_region: AnyRegion | None = None
        if self.config.any_region and parts.make_region is not None:
            self.any_region = AnyRegion(parts, parts.make_region, jobs.schedulers,
                                        lambda name, r: self.resets.add_region(name, r.region, r.outbox))

    @classmethod
    def from_config(cls, config: ClusterConfig) -> RegionHost:
        # The seed file first: one that cannot be used stops the start before anything is made.
        seed = load_seed(config.seed, config.regions) if config.seed is not None else None
        parts = compose(config, audit_file=CURRENT)
        return cls(parts, host_jobs(parts, client_context(config)), seed)

    def apply_seed(self) -> dict[str, int]:
        """The seed file's keys and aliases the regions lack, created (at every start, and after a reset)."""
        if self.seed is None:
            return {}
        return apply_seed(self.seed, {name: self.parts.regions[name].region for name in self.config.regions})

    @property
    def gateway_url(self) -> str:
        return self.parts.url(self.config.port)

    def region_urls(self) -> dict[str, str]:
        return {name: self.parts.url(r.port) for name, r in self.parts.regions.items()}

    def admin(self) -> AdminApi:
        return AdminApi(self.parts.admin_token, self.status, self.clock.state, self.clock.advance, self.faults.apply,
                        identity={"worker": 0, "pid": os.getpid()},
                        reports={"compliance": self.compliance, "cost": self.cost}, reset=self.resets.reset)

    async def cost(self, query: Mapping[str, str]) -> dict[str, Any]:
        regions = self.parts.regions  # all of them, for one region's share too: the free tier is the account's
        now = self.parts.clock.now()
        # The key records as they are now, taken on the event loop; the logs are read off it.
        keys = {n: list(r.region.keys.values()) for n, r in regions.items()}
        return await asyncio.to_thread(cost_report, keys, {n: r.trail for n, r in regions.items()}, query, now)

    async def compliance(self, query: Mapping[str, str]) -> dict[str, Any]:
        regions = {name: r.region for name, r in self.parts.regions.items()}
        return compliance_report(regions, self.parts.clock, settings_of(self.config), query)

    def metrics(self) -> ClusterCollector:
        return collector_of(self.parts, lambda: self.jobs.replication.replications)

    def status(self) -> dict[str, object]:
        doc = status_report(self.parts, self.jobs.replication.replications, self.clock.state())
        if self.jobs.elections is not None:  # etcd-backed regions: their nodes, lease holder, etcd health
            for name, region in doc["regions"].items():
                region["etcd"] = self.jobs.elections.report(name)
        return doc

    async def start(self) -> None:
        parts = self.parts
        parts.publish_runtime()  # before any worker starts: faults of an earlier run are gone
        self.apply_seed()  # before anything serves or schedules: the seeded keys are there from the first request
        await self.jobs.background.start()  # the schedulers first do what fell due while the cluster was stopped
        clear_snapshots(self.config.data_dir)
        admin_routes = [*self.admin().routes(),
                        *metrics_routes(self.metrics(), parts.admin_token, self.config.metrics_open),
                        *console_routes(parts.admin_token, self.status,
                                        LiveMapping(lambda: {name: r.region for name, r in parts.regions.items()}),
                                        self.config.data_dir)]
        gate = parts.gate(follows_runtime=False)  # the host sets the shared clock and faults
        gateway = Gateway({name: r.endpoint for name, r in parts.regions.items()},
                          create=self.any_region.for_request if self.any_region is not None else None)
        if self.any_region is not None:
            await self.any_region.start()
        await self.servers.serve(gateway.route, gate, admin_routes, self.config.port,
                                 reuse_port=parts.runtime is not None)
        for name in self.config.regions:  # (a region made on first use meanwhile is served by the gateway alone)
            r = parts.regions[name]
            routes = [*admin_routes, outbox_route(name, r.outbox, self.jobs.replication.token, parts.faults)]
            runner = await self.servers.serve(fixed(r.endpoint), gate, routes)
            self.sites[name] = RegionSite(runner, r.port, await self.servers.open_site(runner, r.port))
        await self.jobs.replication.start()
        if self.config.workers > 1:
            # The admin API on a private loopback port, for the workers to pass admin calls to.
            admin_url = await self.servers.serve_private(admin_routes)
            verbose = logging.getLogger().isEnabledFor(logging.INFO)
            await self.workers.start(self.config.workers - 1, pickle.dumps(self.config), admin_url, verbose)
        write_cluster_file(self.config.data_dir, {"gateway": self.gateway_url, "regions": self.region_urls(),
                                                  "pid": os.getpid(), "workers": self.workers.pids,
                                                  "ca": str(self.config.tls_ca) if self.config.tls_ca else None})

    async def stop(self) -> None:
        """Also after a start that failed half-way: each part stops only what it started."""
        await self.workers.stop()  # first: they stop taking requests while this process still serves
        await self.jobs.replication.stop()  # before the servers: it releases the peers' long-polls
        await self.jobs.background.stop()
        await self.servers.close()
        if self.any_region is not None:
            await self.any_region.stop()
        self.parts.close()
        remove_cluster_file(self.config.data_dir)
