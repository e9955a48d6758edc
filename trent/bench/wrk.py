"""An independent load generator for the suite: wrk (C, Debian package ``wrk``), replaying one request signed once.

A Python generator shares the machine's cores with the server it measures, and at many connections spends more of
them than the server would like: comparing it with wrk on the same load tells the server's share of a fall-off from
the generator's. wrk cannot sign each request, so it replays one: a SigV4 signature stays valid for five minutes
and neither AWS nor Trent refuses a replay within that window (keep each run well inside it). The generator's own
CPU (user + system, from the kernel's accounting of the finished process) is reported beside its numbers.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from trent.bench.loadgen import Call, LoadResult, Target, signed_request

# What the script's done() prints: totals, then the latency percentiles (microseconds).
_TOTALS_RE = re.compile(r"^TRENT-WRK requests=(\d+) non2xx=(\d+) socket=(\d+) duration_us=(\d+)$", re.MULTILINE)
_PERCENTILE_RE = re.compile(r"^TRENT-WRK p([\d.]+)=(\d+)$", re.MULTILINE)
MAX_SECONDS = 240.0  # a replayed signature must stay within its five minutes for the whole run
PERCENTILES = (50, 90, 99, 99.9)


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(value: bytes) -> str:
    """A Lua string literal holding exactly these bytes."""
    out = []
    for byte in value:
        ch = chr(byte)
        out.append(ch if 32 <= byte < 127 and ch not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def script(target: Target, call: Call) -> str:
    """The Lua script: the signed request's method, headers and body as wrk sends them on every connection, and a
    done() that prints what the suite reads back."""
    raw = signed_request(target, call)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = [f"wrk.method = {_lua_string(b'POST')}", f"wrk.body = {_lua_string(body)}"]
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b": ")
        if name.lower() in (b"content-length", b"connection"):
            continue  # wrk writes the length of its body itself, and keeps connections alive
        lines.append(f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}")
    percentiles = ", ".join(str(p) for p in PERCENTILES)
    lines.append(f"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("TRENT-WRK requests=%d non2xx=%d socket=%d duration_us=%d\\n", summary.requests, e.status,
                         e.connect + e.read + e.write + e.timeout, summary.duration))
  for _, p in ipairs({{{percentiles}}}) do
    io.write(string.format("TRENT-WRK p%s=%d\\n", tostring(p), latency:percentile(p)))
  end
end
""")
    return "\n".join(lines) + "\n"


def run_wrk(target: Target, call: Call, *, connections: int, seconds: float, threads: int = 1) -> LoadResult:
    """``connections`` keep-alive connections from ``threads`` wrk threads for ``seconds``. wrk reports percentiles,
    not every latency: the result's latencies are those percentiles (the summary's p50..p99.9 read back the same)."""
    if not available():
        raise RuntimeError("wrk is not installed (Debian package wrk, deploy/debian-packages.txt)")
    if seconds > MAX_SECONDS:
        raise ValueError(f"a wrk run replays one signature: at most {MAX_SECONDS:g} s")
    with tempfile.TemporaryDirectory(prefix="trent-wrk-") as work:
        path = Path(work) / "signed.lua"
        path.write_text(script(target, call))
        started = time.perf_counter()
        proc = subprocess.Popen(
            # wrk takes whole seconds only.
            ["wrk", f"-t{max(1, min(threads, connections))}", f"-c{connections}", f"-d{max(1, math.ceil(seconds))}s",
             "--latency",
             "-s", str(path), f"http://{target.host}:{target.port}/"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        output = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - started
    totals = _TOTALS_RE.search(output)
    if proc.returncode != 0 or totals is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {output[-500:]}")
    requests, non2xx, socket_errors, duration_us = (int(x) for x in totals.groups())
    found = {float(p): int(us) / 1e6 for p, us in _PERCENTILE_RE.findall(output)}
    latencies = _as_samples(found)
    return LoadResult(requests - non2xx, non2xx + socket_errors, min(duration_us / 1e6, elapsed), latencies,
                      f"{non2xx} answers other than 2xx" if non2xx else "", usage.ru_utime + usage.ru_stime, "wrk")


def _as_samples(found: dict[float, float]) -> list[float]:
    """A thousand samples whose percentiles (bench.loadgen.percentile) are wrk's: the report reads them as it
    reads the Python generator's."""
    samples: list[float] = []
    points = sorted(found.items())
    for i in range(1000):
        rank = i / 10  # this sample's percentile
        value = next((v for p, v in points if rank <= p + 1e-9), points[-1][1] if points else 0.0)
        samples.append(value)
    return samples
