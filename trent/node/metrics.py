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
    """For one region: per (operation, error code) a latency histogram whose buckets also count the requests, and
    the requests a fault refused before they were timed."""

    __slots__ = ("refused", "region", "series")

    def __init__(self, region: str) -> None:
        self.region = region
        # (operation, error code) -> [one count per bucket (not cumulative), the count above the last bucket,
        # the sum of seconds]: one lookup per request does both the count and the histogram.
        self.series: dict[tuple[str, str], list[float]] = {}
        self.refused: dict[tuple[str, str], int] = {}

    def observe(self, operation: str, error_code: str, seconds: float) -> None:
        """One answered request that reached the endpoint."""
        series = self.series.get((operation, error_code))
        if series is None:
            series = self.series[(operation, error_code)] = [0.0] * _WIDTH
        series[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        series[-1] += seconds

    def count(self, operation: str, error_code: str) -> None:
        """A request refused before its region's endpoint (an injected fault): counted, not timed."""
        key = (operation, error_code)
        self.refused[key] = self.refused.get(key, 0) + 1

    @property
    def counts(self) -> dict[tuple[str, str], int]:
        """Requests by (operation, error code), timed or not."""
        out = {key: int(sum(series[:-1])) for key, series in self.series.items()}
        for key, n in self.refused.items():
            out[key] = out.get(key, 0) + n
        return out

    @property
    def latency(self) -> dict[str, list[float]]:
        """The histograms by operation (every error code together)."""
        out: dict[str, list[float]] = {}
        for (operation, _), series in self.series.items():
            mine = out.setdefault(operation, [0.0] * _WIDTH)
            for i, value in enumerate(series):
                mine[i] += value
        return out

    def snapshot(self) -> dict[str, Any]:
        """The counts as JSON-ready data (for another process to add to its own)."""
        return {"series": [[op, code, list(s)] for (op, code), s in self.series.items()],
                "refused": [[op, code, n] for (op, code), n in self.refused.items()]}

    def add(self, snapshot: dict[str, Any]) -> None:
        """Add another process's ``snapshot`` of the same region to these counts."""
        for op, code, other in snapshot.get("series", ()):
            if not isinstance(other, list) or len(other) != _WIDTH:
                continue  # written with other buckets: not comparable
            mine = self.series.setdefault((str(op), str(code)), [0.0] * _WIDTH)
            for i, value in enumerate(other):
                mine[i] += float(value)
        for op, code, n in snapshot.get("refused", ()):
            key = (str(op), str(code))
            self.refused[key] = self.refused.get(key, 0) + int(n)

    def copy(self) -> RequestMetrics:
        out = RequestMetrics(self.region)
        out.add(self.snapshot())
        return out


_WIDTH = len(LATENCY_BUCKETS) + 2
