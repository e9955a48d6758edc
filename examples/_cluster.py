"""Starts a private `trent up` for a demo (own data directory, free loopback ports) and stops it afterwards."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trent.cluster.ports import free_port_block
from trent.cluster.running import RunningCluster
from trent.node.config import DEFAULT_REGIONS


@contextlib.contextmanager
def demo_cluster(replica_delay: str = "0.5") -> Iterator[RunningCluster]:
    with tempfile.TemporaryDirectory(prefix="trent-demo-") as tmp:
        cluster = RunningCluster(Path(tmp) / "data", free_port_block(len(DEFAULT_REGIONS) + 1),
                                 extra_args=("--replica-delay", replica_delay), verbose=False)
        try:
            cluster.start()
            yield cluster
        finally:
            if cluster.proc is not None:
                cluster.stop()
