"""The region host (`trent up`): every configured region in this process on its own port, the gateway, the admin
API, replication between the regions and their background work; with ``--workers N`` it also starts the N-1
gateway workers (cluster/gateway_worker.py) and is the process they follow."""

from __future__ import annotations

import logging
import os
import pickle

from cluster.admin import AdminApi
from cluster.clock_control import ClockControl
from cluster.compose import HostJobs, Parts, compose, host_jobs
from cluster.fault_control import FaultControl, RegionSite
from cluster.files import remove_cluster_file, write_cluster_file
from cluster.gateway import Gateway
from cluster.replication.shipper import outbox_route
from cluster.serving import Servers, fixed
from cluster.status import status_report
from cluster.worker_processes import WorkerProcesses
from node.audit.sink import CURRENT
from node.config import ClusterConfig
from node.edge import ConnectionGuard


class RegionHost:
    def __init__(self, parts: Parts, jobs: HostJobs) -> None:
        self.parts = parts
        self.jobs = jobs
        self.config = parts.config
        self.servers = Servers(self.config.host, ConnectionGuard(self.config.edge))
        self.sites: dict[str, RegionSite] = {}
        self.clock = ClockControl(parts.clock, self.config.data_dir, jobs.schedulers, parts.publish_runtime)
        self.faults = FaultControl(parts.faults, self.servers, self.sites, parts.publish_runtime)
        self.workers = WorkerProcesses()

    @classmethod
    def from_config(cls, config: ClusterConfig) -> RegionHost:
        parts = compose(config, audit_file=CURRENT)
        return cls(parts, host_jobs(parts))

    @property
    def gateway_url(self) -> str:
        return self.parts.url(self.config.port)

    def region_urls(self) -> dict[str, str]:
        return {name: self.parts.url(r.port) for name, r in self.parts.regions.items()}

    def admin(self) -> AdminApi:
        return AdminApi(self.parts.admin_token, self.status, self.clock.state, self.clock.advance, self.faults.apply,
                        identity={"worker": 0, "pid": os.getpid()})

    def status(self) -> dict[str, object]:
        doc = status_report(self.parts, self.jobs.replication.replications, self.clock.state())
        if self.jobs.elections is not None:  # etcd-backed regions: their nodes, lease holder, etcd health
            for name, region in doc["regions"].items():
                region["etcd"] = self.jobs.elections.report(name)
        return doc

    async def start(self) -> None:
        parts = self.parts
        parts.publish_runtime()  # before any worker starts: faults of an earlier run are gone
        await self.jobs.background.start()  # the schedulers first do what fell due while the cluster was stopped
        admin_routes = self.admin().routes()
        gate = parts.gate(follows_runtime=False)  # the host sets the shared clock and faults
        gateway = Gateway({name: r.endpoint for name, r in parts.regions.items()})
        await self.servers.serve(gateway.route, gate, admin_routes, self.config.port,
                                 reuse_port=parts.runtime is not None)
        for name, r in parts.regions.items():
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
                                                  "pid": os.getpid(), "workers": self.workers.pids})

    async def stop(self) -> None:
        """Also after a start that failed half-way: each part stops only what it started."""
        await self.workers.stop()  # first: they stop taking requests while this process still serves
        await self.jobs.replication.stop()  # before the servers: it releases the peers' long-polls
        await self.jobs.background.stop()
        await self.servers.close()
        self.parts.close()
        remove_cluster_file(self.config.data_dir)
