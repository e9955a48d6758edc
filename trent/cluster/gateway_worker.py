"""A gateway worker of `trent up --workers N` (started by the region host, never by hand): it serves the gateway
port beside the host (SO_REUSEPORT) over the same stores, follows the host's clock and faults, and passes admin
calls other than health to the host. As a process it reads the cluster's configuration from stdin, says "ready" on
stdout, and stops when told to (SIGTERM/SIGINT) or when the host is gone."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pickle
import sys
from collections.abc import Awaitable, Callable

from trent.cluster.admin import health_route
from trent.cluster.compose import Parts, compose, worker_jobs
from trent.cluster.fair_loop import run_server
from trent.cluster.gateway import Gateway
from trent.cluster.heap import freeze_start_up, tune_collector
from trent.cluster.jobs import Jobs
from trent.cluster.lifecycle import start_role, stop_signal
from trent.cluster.serving import Servers
from trent.cluster.shared_runtime import CommitNotifier
from trent.cluster.tls import server_context
from trent.cluster.worker_processes import die_with_parent, forwarding_admin_routes
from trent.node.audit.sink import WORKER_CURRENT
from trent.node.config import ClusterConfig
from trent.node.edge import ConnectionGuard


class GatewayWorker:
    def __init__(self, parts: Parts, jobs: Jobs, worker_id: int, host_admin: str,
                 notifier: CommitNotifier | None = None) -> None:
        self.parts = parts
        self.notifier = notifier
        self.jobs = jobs
        self.worker_id = worker_id
        self.host_admin = host_admin
        self.servers = Servers(parts.config.host, ConnectionGuard(parts.config.edge), server_context(parts.config))
        self._close_admin: Callable[[], Awaitable[None]] | None = None

    @classmethod
    def from_config(cls, config: ClusterConfig, worker_id: int, host_admin: str) -> GatewayWorker:
        # A worker tells the host of its commits at once (the host's replication long-polls wait on them).
        notifier = CommitNotifier(config.data_dir)
        parts = compose(config, audit_file=WORKER_CURRENT.format(worker_id),  # each process its own audit file
                        notify_commits=notifier)
        return cls(parts, worker_jobs(parts, worker_id), worker_id, host_admin, notifier)

    async def start(self) -> None:
        health = health_route(self.parts.admin_token, {"worker": self.worker_id, "pid": os.getpid()})
        routes, self._close_admin = forwarding_admin_routes(self.host_admin, health)
        gateway = Gateway({name: r.endpoint for name, r in self.parts.regions.items()})
        await self.servers.serve(gateway.route, self.parts.gate(follows_runtime=True), routes, self.parts.config.port,
                                 reuse_port=True)
        await self.jobs.start()

    async def stop(self) -> None:
        if self._close_admin is not None:
            await self._close_admin()
        await self.jobs.stop()
        await self.servers.close()
        self.parts.close()
        if self.notifier is not None:
            self.notifier.close()


async def serve(config: ClusterConfig, worker: int, leader_pid: int, leader_admin: str) -> int:
    stop = stop_signal()
    role = await start_role(lambda: GatewayWorker.from_config(config, worker, leader_admin), f"trent worker {worker}")
    if role is None:
        return 1
    freeze_start_up()
    print("ready", flush=True)
    while not stop.is_set():
        if os.getppid() != leader_pid:  # the leader is gone (and the death signal did not arrive)
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    await role.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trent-worker")
    parser.add_argument("--worker-id", type=int, required=True)
    parser.add_argument("--leader-pid", type=int, required=True)
    parser.add_argument("--leader-admin", required=True)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    die_with_parent()
    if os.getppid() != args.leader_pid:
        return 1  # the leader died before the death signal was armed
    # The leader's own configuration object (it alone parses files and flags), from the pipe it started us with.
    config = pickle.loads(sys.stdin.buffer.read())  # written by our parent process, through a pipe
    if not isinstance(config, ClusterConfig):
        return 2
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format=f"%(asctime)s worker{args.worker_id} %(name)s %(levelname)s %(message)s")
    tune_collector()
    return run_server(serve(config, args.worker_id, args.leader_pid, args.leader_admin))


if __name__ == "__main__":
    sys.exit(main())
