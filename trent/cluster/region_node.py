"""`trent node --region R`: one region in a process of its own (its store, root key, region port, admin API and
replication puller), its peers given by URL. `trent up --processes` starts one per region (cluster/supervisor.py);
on separate hosts each is started from its `trent init` bundle (deploy/README.md).

Started by a supervisor, a node says "ready" on stdout once it serves, and dies with its supervisor."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import logging
import os
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trent.cluster.admin import AdminApi
from trent.cluster.clock_control import ClockControl
from trent.cluster.cluster_view import node_status
from trent.cluster.compose import HostJobs, Parts, compose, host_jobs
from trent.cluster.datadir import LOCK_FILE, DataDirInUse, DataDirLock, holder
from trent.cluster.fair_loop import run_server
from trent.cluster.fault_control import FaultControl
from trent.cluster.files import make_private_dir, write_private
from trent.cluster.handoff import prompt_thread_handoff
from trent.cluster.heap import freeze_start_up, tune_collector
from trent.cluster.lifecycle import start_role, stop_signal
from trent.cluster.links import LinkVerifier
from trent.cluster.metrics import collector_of, metrics_routes
from trent.cluster.replication.shipper import outbox_route
from trent.cluster.serving import Servers, fixed
from trent.cluster.tls import client_context, server_context
from trent.cluster.worker_processes import die_with_parent
from trent.node.audit.sink import CURRENT
from trent.node.config import ClusterConfig
from trent.node.edge import ConnectionGuard

NODE_FILE = "node.json"  # in the region's directory while its node runs


class RegionNode:
    def __init__(self, parts: Parts, jobs: HostJobs, region: str) -> None:
        self.parts = parts
        self.jobs = jobs
        self.region = region
        self.config = parts.config
        self.servers = Servers(self.config.host, ConnectionGuard(self.config.edge), server_context(self.config))
        self.clock = ClockControl(parts.clock, self.config.data_dir, jobs.schedulers, parts.publish_runtime)
        # A region that is down here answers nothing (its requests are cut, its outbox refused) while its admin
        # API still answers, so the gateway can bring it back up.
        self.faults = FaultControl(parts.faults, self.servers, {}, parts.publish_runtime,
                                   known=lambda name: name in self.config.regions, hsm_faults=parts.hsm_faults,
                                   hsm_clusters=tuple(c.cluster_id for c in parts.hsm_clusters),
                                   disks=parts.store_of)

    @classmethod
    def from_config(cls, config: ClusterConfig, region: str) -> RegionNode:
        if region not in config.regions:
            raise ValueError(f"region {region!r} is not one of the cluster's regions ({', '.join(config.regions)})")
        parts = compose(config, audit_file=CURRENT, hosted=[region])
        return cls(parts, host_jobs(parts, client_context(config)), region)

    @property
    def url(self) -> str:
        return self.servers.url(self.parts.regions[self.region].port)

    def admin(self) -> AdminApi:
        return AdminApi(self.parts.admin_token, self.status, self.clock.state, self.clock.advance, self.faults.apply,
                        identity={"region": self.region, "pid": os.getpid()},
                        signed=LinkVerifier(self.parts.admin_token), signed_for=self.region,
                        reports={"outbox-age": self._outbox_age})

    async def _outbox_age(self, query: Mapping[str, str]) -> dict[str, Any]:
        """For the gateway's status: the age, by this region's clock, of its outbox's first record after ``after``
        (a peer's cursor), so a peer's lag reads in seconds as it does in one process."""
        after = int(query.get("after", ""))  # a ValueError is the admin API's 400
        outbox = self.parts.regions[self.region].outbox
        oldest = outbox.oldest_after(after) if 0 <= after < outbox.head else None
        return {"age_seconds": round(max(0.0, self.parts.clock.now() - oldest), 3) if oldest is not None else 0.0}

    def status(self) -> dict[str, object]:
        doc = node_status(self.parts, self.jobs.replication.replications[self.region], self.clock.state())
        doc["url"] = self.url
        if self.jobs.elections is not None:
            doc["etcd"] = self.jobs.elections.report(self.region)  # the region's nodes, lease holder, etcd health
        return doc

    async def start(self) -> None:
        await self.jobs.background.start()
        r = self.parts.regions[self.region]
        routes = [*self.admin().routes(),
                  *metrics_routes(collector_of(self.parts, lambda: self.jobs.replication.replications),
                                  self.parts.admin_token, self.config.metrics_open),
                  outbox_route(self.region, r.outbox, self.jobs.replication.token, self.parts.faults)]
        await self.servers.serve(fixed(r.endpoint), self.parts.gate(follows_runtime=False), routes, r.port)
        await self.jobs.replication.start()
        write_private(self._node_file(), f'{{"pid": {os.getpid()}, "url": "{self.url}"}}')

    def _node_file(self) -> Path:
        return self.config.data_dir / self.region / NODE_FILE

    async def stop(self) -> None:
        await self.jobs.replication.stop()
        await self.jobs.background.stop()
        await self.servers.close()
        self.parts.close()
        with contextlib.suppress(OSError):
            self._node_file().unlink()


class NodeLocks:
    """One node per region directory; and no `trent up` on the data directory while nodes run on it (they share it:
    a shared lock beside `trent up`'s exclusive one). A supervised node's supervisor holds the directory already.
    OSError when either is held."""

    def __init__(self, config: ClusterConfig, region: str, supervised: bool) -> None:
        self._shared: int | None = None
        if not supervised:
            make_private_dir(config.data_dir)
            fd = os.open(config.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise DataDirInUse(f"{config.data_dir} is in use by a running cluster ({holder(config.data_dir)})"
                                   ) from None
            self._shared = fd
        try:
            self._region = DataDirLock(config.data_dir / region)
        except OSError:
            self.release()
            raise

    def release(self) -> None:
        if getattr(self, "_region", None) is not None:
            self._region.release()
        if self._shared is not None:
            os.close(self._shared)
            self._shared = None


async def serve(config: ClusterConfig, region: str, supervised: bool = False,
                faults: dict[str, Any] | None = None) -> int:
    """``faults``: in force from the start (as ``Faults.describe`` gives them; a restarted region's)."""
    prompt_thread_handoff()  # `trent node` and a supervised node alike
    stop = stop_signal()
    try:
        lock = NodeLocks(config, region, supervised)
    except OSError as exc:
        print(f"trent node {region}: cannot start: {exc}", file=sys.stderr)
        return 1
    def make() -> RegionNode:
        node = RegionNode.from_config(config, region)
        node.parts.faults.load(faults or {})
        return node

    role = await start_role(make, f"trent node {region}")
    if role is None:
        lock.release()
        return 1
    freeze_start_up()
    print("ready" if supervised else f"Trent node {region} is up on {role.url}", flush=True)
    parent = os.getppid()
    while not stop.is_set():
        if supervised and os.getppid() != parent:  # the supervisor is gone
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    await role.stop()
    lock.release()
    return 0


def supervised_main(argv: list[str] | None = None) -> int:
    """A node started by `trent up --processes`: its configuration through stdin, from its supervisor."""
    parser = argparse.ArgumentParser(prog="trent-node")
    parser.add_argument("--region", required=True)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=f"%(asctime)s {args.region} %(name)s %(levelname)s %(message)s")
    die_with_parent()
    config, faults = pickle.loads(sys.stdin.buffer.read())  # written by our parent process, through a pipe
    if not isinstance(config, ClusterConfig) or not isinstance(faults, dict):
        return 2
    tune_collector()
    return run_server(serve(config, args.region, supervised=True, faults=faults))


if __name__ == "__main__":
    sys.exit(supervised_main())
