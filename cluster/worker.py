"""A worker process of `trent up --workers N` (started by the leader, never by hand): it reads the cluster's
configuration from stdin, serves the gateway port beside the leader, says "ready" on stdout, and stops when told
to (SIGTERM/SIGINT) or when the leader is gone."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import pickle
import signal
import sys

from cluster.heap import freeze_start_up, tune_collector
from cluster.launcher import Cluster
from cluster.workers import die_with_parent
from node.config import ClusterConfig


async def serve(config: ClusterConfig, worker: int, leader_pid: int, leader_admin: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    cluster = Cluster(config, worker=worker, leader_admin=leader_admin)
    try:
        await cluster.start()
    except (OSError, ValueError) as exc:
        print(f"trent worker {worker}: cannot start: {exc}", file=sys.stderr)
        with contextlib.suppress(Exception):
            await cluster.stop()
        return 1
    freeze_start_up()
    print("ready", flush=True)
    while not stop.is_set():
        if os.getppid() != leader_pid:  # the leader is gone (and the death signal did not arrive)
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    await cluster.stop()
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
    return asyncio.run(serve(config, args.worker_id, args.leader_pid, args.leader_admin))


if __name__ == "__main__":
    sys.exit(main())
