"""A load generator that does not bottleneck on itself: raw HTTP/1.1 over asyncio streams, requests signed once
(SigV4 signatures stay valid for five minutes and the server does not track replays), several processes.

Each process runs ``connections`` concurrent loops for ``seconds`` and returns its latencies."""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

CONTENT_LENGTH_RE = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    region: str
    access_key: str = "test"
    secret_key: str = "test"


@dataclass(frozen=True)
class Call:
    operation: str
    body: bytes
    raw: bytes | None = None  # a request signed already, sent as it is (an XKS proxy's: not a KMS request)


def signed_request(target: Target, call: Call, *, keep_alive: bool = True) -> bytes:
    """The raw bytes of a signed KMS request, as boto3 would send them."""
    url = f"http://{target.host}:{target.port}/"
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{call.operation}",
               "Host": f"{target.host}:{target.port}"}
    request = AWSRequest(method="POST", url=url, data=call.body, headers=headers)
    SigV4Auth(Credentials(target.access_key, target.secret_key), "kms", target.region).add_auth(request)
    lines = ["POST / HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in request.headers.items()]
    lines += [f"Content-Length: {len(call.body)}", "Connection: keep-alive" if keep_alive else "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + call.body


@dataclass
class Outcome:
    latencies: array[float] = field(default_factory=lambda: array("d"))
    errors: int = 0
    first_error: str = ""

    def record(self, head: bytes, body: bytes, started: float) -> None:
        """One answer: its latency from ``started`` when it is a 200, else one more error (the first one kept)."""
        if head[9:12] != b"200":
            self.errors += 1
            self.first_error = self.first_error or (head[:12] + body[:200]).decode(errors="replace")
            return
        self.latencies.append(time.perf_counter() - started)


READ_TIMEOUT = 30.0
CLOSE_RE = re.compile(rb"connection:\s*close", re.IGNORECASE)


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    async def read() -> tuple[bytes, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        m = CONTENT_LENGTH_RE.search(head)
        body = await reader.readexactly(int(m.group(1))) if m else await reader.read()
        return head, body
    # A server that stops answering must not hang the run.
    return await asyncio.wait_for(read(), READ_TIMEOUT)


async def _loop_keep_alive(target: Target, raw: bytes, deadline: float, out: Outcome) -> None:
    reader, writer = await asyncio.open_connection(target.host, target.port)
    try:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(raw)
            head, body = await _read_response(reader)
            if CLOSE_RE.search(head):  # a server without keep-alive (moto's): reconnect, as a client pool would
                writer.close()
                reader, writer = await asyncio.open_connection(target.host, target.port)
            out.record(head, body, started)
    finally:
        writer.close()


async def _loop_new_connection(target: Target, raw: bytes, deadline: float, out: Outcome) -> None:
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(target.host, target.port)
        writer.write(raw)
        head, body = await _read_response(reader)
        writer.close()
        out.record(head, body, started)


async def _run(target: Target, calls: list[Call], connections: int, seconds: float, keep_alive: bool) -> Outcome:
    raws = [c.raw if c.raw is not None else signed_request(target, c, keep_alive=keep_alive) for c in calls]
    deadline = time.perf_counter() + seconds
    out = Outcome()
    loop = _loop_keep_alive if keep_alive else _loop_new_connection
    results = await asyncio.gather(*(loop(target, raws[i % len(raws)], deadline, out) for i in range(connections)),
                                   return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            out.errors += 1
            out.first_error = out.first_error or repr(result)
    return out


def _process_main(args: tuple[Target, list[Call], int, float, bool]) -> tuple[bytes, int, str, float]:
    cpu = time.process_time()
    out = asyncio.run(_run(*args))
    # The generator's own CPU (user + system): on a machine it shares with the server, what it takes from it.
    return out.latencies.tobytes(), out.errors, out.first_error, time.process_time() - cpu


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    first_error: str = ""
    client_cpu_seconds: float | None = None  # the load generator's own CPU over the run, all its processes
    generator: str = "python"

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)  # a copy: the arrival order is sampled for the report
        out: dict[str, Any] = {
            "requests": self.requests, "errors": self.errors, "seconds": round(self.seconds, 3),
            "req_per_s": round(self.throughput, 1),
            **{f"p{p}_ms".replace(".", "_"): round(percentile(ordered, p) * 1000, 3) for p in (50, 90, 99, 99.9)}}
        out["generator"] = self.generator
        if self.client_cpu_seconds is not None:
            # Cores the generator kept busy, and its CPU per request: what it took from a server sharing the machine.
            out["client_cores"] = round(self.client_cpu_seconds / self.seconds, 3) if self.seconds else None
            out["client_cpu_ms_per_request"] = round(self.client_cpu_seconds * 1000 / max(self.requests, 1), 4)
        return out


def percentile(ordered: Sequence[float], p: float) -> float:
    """The ``p``th percentile (0-100) of samples sorted ascending: the one at index p% of their count (nan for
    none)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def run_load(target: Target, calls: list[Call], *, connections: int, seconds: float, processes: int = 2,
             keep_alive: bool = True) -> LoadResult:
    """Spread ``connections`` over ``processes`` client processes for ``seconds``."""
    processes = max(1, min(processes, connections))
    share = [connections // processes + (1 if i < connections % processes else 0) for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with ctx.Pool(processes) as pool:
        parts = pool.map(_process_main, [(target, calls, n, seconds, keep_alive) for n in share])
    elapsed = time.perf_counter() - started
    latencies: list[float] = []
    errors, first, cpu = 0, "", 0.0
    for raw, errs, first_error, used in parts:
        chunk = array("d")
        chunk.frombytes(raw)
        latencies.extend(chunk)
        errors += errs
        first = first or first_error
        cpu += used
    # The pool's start-up is not load time: measure over the requested window.
    return LoadResult(len(latencies), errors, min(elapsed, seconds), latencies, first, cpu)
