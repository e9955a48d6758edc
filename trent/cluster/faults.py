"""Faults injected on purpose for DR drills: a region down, a partition between two regions, added latency,
a share of 5xx answers, a request-rate limit. One object per cluster, consulted by the HTTP adapters and the
replication pullers."""

from __future__ import annotations

import asyncio
import math
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trent.node.app import Gate, Verdict
from trent.node.endpoint import KmsEndpoint, WireResponse, error_response
from trent.node.fast_path import KmsRequest
from trent.node.model.errors import KmsError


@dataclass
class TokenBucket:
    rate: float
    tokens: float
    stamp: float

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate)

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class Faults:
    monotonic: Callable[[], float]
    rng: random.Random = field(default_factory=random.Random)
    down: set[str] = field(default_factory=set)
    partitions: set[frozenset[str]] = field(default_factory=set)
    latency: dict[str, float] = field(default_factory=dict)
    errors: dict[str, float] = field(default_factory=dict)
    throttle: dict[str, TokenBucket] = field(default_factory=dict)
    # This process's share of the cluster's requests (1/N with N processes serving it): a throttle rate is for
    # the whole cluster, so each process lets through its share of it.
    share: float = 1.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def is_down(self, region: str) -> bool:
        return region in self.down

    def can_replicate(self, source: str, target: str) -> bool:
        return (source not in self.down and target not in self.down
                and frozenset((source, target)) not in self.partitions)

    def delay_for(self, region: str) -> float:
        return self.latency.get(region, 0.0)

    def request_error(self, region: str) -> KmsError | None:
        """The injected error (if any) this request to ``region`` gets."""
        bucket = self.throttle.get(region)
        if bucket is not None:
            with self._lock:
                allowed = bucket.take(self.monotonic())
            if not allowed:
                return KmsError("ThrottlingException", "Rate exceeded")
        share = self.errors.get(region, 0.0)
        if share > 0 and self.rng.random() < share:
            if self.rng.random() < 0.5:
                return KmsError("KMSInternalException", "Injected internal error.", 500)
            return KmsError("KeyUnavailableException", "Injected: the key is unavailable.", 500)
        return None

    def set(self, kind: str, regions: list[str], value: float | None = None) -> None:
        if kind == "down":
            self.down.update(regions)
        elif kind == "up":
            self.down.difference_update(regions)
        elif kind == "partition":
            if len(regions) != 2 or regions[0] == regions[1]:
                raise ValueError("a partition names two different regions")
            self.partitions.add(frozenset(regions))
        elif kind == "heal":
            if len(regions) != 2:
                raise ValueError("heal names the two regions of a partition")
            self.partitions.discard(frozenset(regions))
        elif kind == "latency":
            delay = float(value or 0.0)
            if not 0.0 <= delay <= 600.0:
                raise ValueError("a latency is between 0 s and 10 minutes")
            self._put(self.latency, regions, delay)
        elif kind == "errors":
            share = float(value or 0.0)
            if not 0.0 <= share <= 1.0:
                raise ValueError("an error share is between 0% and 100%")
            self._put(self.errors, regions, share)
        elif kind == "throttle":
            rate = float(value or 0.0)
            if not 0 < rate < float("inf"):
                raise ValueError("a throttle rate is a positive number of requests per second")
            # A burst of at least one request, so rates below 1/s still let a request through now and then.
            mine = rate * self.share
            self.throttle.update({r: TokenBucket(mine, max(1.0, mine), self.monotonic()) for r in regions})
        else:
            raise ValueError(f"unknown fault {kind!r}")

    @staticmethod
    def _put(table: dict[str, float], regions: list[str], value: float) -> None:
        """Set ``value`` for every region; 0 removes the fault."""
        for region in regions:
            if value:
                table[region] = value
            else:
                table.pop(region, None)

    def clear(self) -> None:
        self.down.clear()
        self.partitions.clear()
        self.latency.clear()
        self.errors.clear()
        self.throttle.clear()

    def describe(self) -> dict[str, Any]:
        return {
            "down": sorted(self.down),
            "partitions": sorted(sorted(p) for p in self.partitions),
            "latency_ms": {r: s * 1000 for r, s in self.latency.items()},
            "errors_percent": {r: s * 100 for r, s in self.errors.items()},
            "throttle_per_second": {r: b.rate / self.share for r, b in self.throttle.items()},
        }

    def load(self, described: dict[str, Any]) -> None:
        """Take on the faults another process describes (``describe``'s form): every process serving the cluster
        applies the same ones."""
        self.down = set(described.get("down", ()))
        self.partitions = {frozenset(p) for p in described.get("partitions", ())}
        self.latency = {r: float(ms) / 1000 for r, ms in described.get("latency_ms", {}).items()}
        self.errors = {r: float(p) / 100 for r, p in described.get("errors_percent", {}).items()}
        rates = {r: float(v) for r, v in described.get("throttle_per_second", {}).items()}
        kept = {r: b for r, b in self.throttle.items() if r in rates and math.isclose(b.rate, rates[r] * self.share)}
        self.throttle = kept
        for region, rate in rates.items():
            if region not in kept:
                self.set("throttle", [region], rate)


# Told of each request a fault refused before it reached its endpoint (the metrics count it).
Refused = Callable[[KmsEndpoint, KmsRequest, KmsError], None]


def fault_gate(faults: Faults, refused: Refused | None = None) -> Gate:
    """The HTTP adapters' gate: a down region's connections are cut; latency, 5xx and throttling are injected."""

    def gate(endpoint: KmsEndpoint, request: KmsRequest) -> Verdict:
        if not (faults.down or faults.latency or faults.errors or faults.throttle):
            return None  # no fault set anywhere (nearly always): nothing to look up for this region
        region = endpoint.region.name
        if faults.is_down(region):
            if request.transport is not None:
                request.transport.close()
            error = KmsError("ServiceUnavailableException", f"{region} is down.", 503)
            if refused is not None:
                refused(endpoint, request, error)
            return error_response(error)
        delay = faults.delay_for(region)
        if delay > 0:
            return _after(delay, faults, endpoint, request, refused)
        return _injected_error(faults, endpoint, request, refused)

    return gate


async def _after(delay: float, faults: Faults, endpoint: KmsEndpoint, request: KmsRequest,
                 refused: Refused | None) -> WireResponse | None:
    await asyncio.sleep(delay)
    return _injected_error(faults, endpoint, request, refused)


def _injected_error(faults: Faults, endpoint: KmsEndpoint, request: KmsRequest,
                    refused: Refused | None) -> WireResponse | None:
    error = faults.request_error(endpoint.region.name)
    if error is None:
        return None
    if refused is not None:
        refused(endpoint, request, error)
    return error_response(error)
