"""A region's request counts and latencies in this process, kept as plain numbers on the request path.

Each request costs a dictionary increment and a histogram bucket (no locks, no label lookups: the endpoint runs on
the event loop's thread); the Prometheus text is made from these only when someone scrapes (cluster/metrics.py).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

# Seconds. From a cached DescribeKey (well under a millisecond) to a call held up by a slow disk.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
SUCCESS = "OK"  # the error-code label of a call that succeeded (as `trent audit` prints it)
NO_OPERATION = "-"  # a request refused before its operation was known (a bad signature, an unknown target)


class RequestMetrics:
    """Counts by (operation, error code) and a latency histogram by operation, for one region."""

    __slots__ = ("counts", "latency", "region")

    def __init__(self, region: str) -> None:
        self.region = region
        self.counts: dict[tuple[str, str], int] = {}
        # operation -> [one count per bucket (not cumulative), the count above the last bucket, the sum of seconds]
        self.latency: dict[str, list[float]] = {}

    def observe(self, operation: str, error_code: str, seconds: float) -> None:
        """One answered request that reached the endpoint."""
        key = (operation, error_code)
        counts = self.counts
        counts[key] = counts.get(key, 0) + 1
        histogram = self.latency.get(operation)
        if histogram is None:
            histogram = self.latency[operation] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        histogram[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        histogram[-1] += seconds

    def count(self, operation: str, error_code: str) -> None:
        """A request refused before its region's endpoint (an injected fault): counted, not timed."""
        key = (operation, error_code)
        self.counts[key] = self.counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        """The counts as JSON-ready data (for another process to add to its own)."""
        return {"counts": [[op, code, n] for (op, code), n in self.counts.items()],
                "latency": {op: list(h) for op, h in self.latency.items()}}

    def add(self, snapshot: dict[str, Any]) -> None:
        """Add another process's ``snapshot`` of the same region to these counts."""
        for op, code, n in snapshot.get("counts", ()):
            key = (str(op), str(code))
            self.counts[key] = self.counts.get(key, 0) + int(n)
        for op, other in snapshot.get("latency", {}).items():
            if len(other) != len(LATENCY_BUCKETS) + 2:
                continue  # written with other buckets: not comparable
            mine = self.latency.setdefault(str(op), [0.0] * (len(LATENCY_BUCKETS) + 2))
            for i, value in enumerate(other):
                mine[i] += float(value)

    def copy(self) -> RequestMetrics:
        out = RequestMetrics(self.region)
        out.add(self.snapshot())
        return out
