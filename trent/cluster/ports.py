"""Free loopback ports for clusters started by tests, demos and benchmarks."""

from __future__ import annotations

import random
import socket

# Below Linux's ephemeral range (32768+): clients' own outgoing connections never take these ports between the
# probe and the cluster's bind, and thousands of TIME_WAIT sockets from a benchmark cannot exhaust them.
LOW, HIGH = 20000, 32700


def free_port_block(count: int, low: int = LOW, high: int = HIGH) -> int:
    """A base port such that base .. base+count-1 are all free right now (probed as the cluster binds)."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(low, high - count)
        try:
            for port in range(base, base + count):
                with socket.socket() as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError(f"no {count} free consecutive ports between {low} and {high}")
