"""What the demos share: a private `trent up` (own data directory, free loopback ports, stopped afterwards), a
timeline printed as it goes, and what an application sees of a call."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

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


class Timeline:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:7.3f}s] {text}", flush=True)


def attempt(what: str, call: Any, *, width: int = 28, message_limit: int | None = None, **kwargs: Any) -> str:
    """What an application sees: the answer, or the error code and message (cut at ``message_limit``)."""
    started = time.monotonic()
    try:
        call(**kwargs)
        outcome = "OK"
    except ClientError as exc:
        err = exc.response["Error"]
        outcome = f"{err['Code']}: {err.get('Message', '')[:message_limit]}"
    return f"{what:<{width}} -> {outcome} ({(time.monotonic() - started) * 1000:.0f} ms)"
