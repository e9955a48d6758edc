"""The region host's gateway workers (`trent up --workers N`) as operating-system processes: how one is started (its
command and import path), how it dies with the host, and how its admin calls reach the host."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from trent.cluster.admin import TOKEN_HEADER


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (no orphaned workers after a leader crash)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# A worker starts isolated (-I: neither the working directory nor PYTHON* variables shape its import path), then takes
# the leader's import path as it is given (json is imported before that, from the standard library).
_WORKER_BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv.pop(1)); "
                "from trent.cluster.gateway_worker import main; sys.exit(main())")


def worker_import_path(path: list[str], cwd: Path, code_root: Path) -> list[str]:
    """The leader's import path without the working directory: a ``secrets.py`` lying where an operator runs
    `trent up` must not run in a worker. Kept only when this code itself is there (run from a source checkout)."""
    out: list[str] = []
    for entry in path:
        if (cwd / entry).resolve() == cwd and cwd != code_root:
            continue
        out.append(entry or str(cwd))  # "" is the working directory
    return out


def worker_command(worker: int, leader_admin: str, verbose: bool) -> list[str]:
    code_root = Path(__file__).resolve().parents[2]  # the directory the leader's own `trent` package is in
    path = worker_import_path(sys.path, Path.cwd().resolve(), code_root)
    return [sys.executable, "-I", "-c", _WORKER_BOOT, json.dumps(path), "--worker-id", str(worker), "--leader-pid",
            str(os.getpid()), "--leader-admin", leader_admin, *(["-v"] if verbose else [])]


class WorkerProcesses:
    """The leader's worker processes: started with the cluster's configuration, stopped with it."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, count: int, config_blob: bytes, leader_admin: str, verbose: bool,
                    timeout: float = 60.0) -> None:
        for worker in range(1, count + 1):
            args = worker_command(worker, leader_admin, verbose)
            proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.PIPE,
                                                        stdout=asyncio.subprocess.PIPE)
            self.procs.append(proc)
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(config_blob)
            await proc.stdin.drain()
            proc.stdin.close()
        for worker, proc in enumerate(self.procs, start=1):
            assert proc.stdout is not None
            try:
                line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            except TimeoutError:
                line = b""
            if line.strip() != b"ready":
                raise OSError(f"worker {worker} did not start (exit status {proc.returncode})")

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    async def stop(self, grace: float = 10.0) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self.procs.clear()


def forwarding_admin_routes(leader_admin: str, health: web.RouteDef) -> tuple[list[web.RouteDef],
                                                                               Callable[[], Any]]:
    """A worker's admin routes: its own health; everything else is the leader's (which runs the cluster)."""
    sessions: list[aiohttp.ClientSession] = []

    async def forward(request: web.Request) -> web.Response:
        if not sessions:
            sessions.append(aiohttp.ClientSession())
        headers = {TOKEN_HEADER: request.headers.get(TOKEN_HEADER, ""), "Content-Type": "application/json"}
        if "Authorization" in request.headers:  # a Prometheus scrape's bearer token
            headers["Authorization"] = request.headers["Authorization"]
        try:
            async with sessions[0].request(request.method, leader_admin + request.path_qs,
                                           data=await request.read(), headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=60)) as answer:
                return web.Response(status=answer.status, body=await answer.read(),
                                    headers={"Content-Type": answer.headers.get("Content-Type", "application/json")})
        except (aiohttp.ClientError, TimeoutError) as exc:
            return web.json_response({"error": f"the cluster's leader is not reachable: {exc}"}, status=503)

    async def close() -> None:
        for session in sessions:
            await session.close()

    routes = [health, web.route("*", "/_trent/{name:status|clock|faults|compliance|cost|metrics|reset}", forward),
              web.get("/metrics", forward), web.get("/_trent/console{tail:(/.*)?}", forward)]
    return routes, close


# A region node or the gateway of `trent up --processes`: started like a worker, the module's supervised_main runs.
_ROLE_BOOT = ("import sys, json, importlib; sys.path[:] = json.loads(sys.argv.pop(1)); "
              "sys.exit(importlib.import_module(sys.argv.pop(1)).supervised_main())")


def role_command(module: str, args: list[str]) -> list[str]:
    code_root = Path(__file__).resolve().parents[2]
    path = worker_import_path(sys.path, Path.cwd().resolve(), code_root)
    return [sys.executable, "-I", "-c", _ROLE_BOOT, json.dumps(path), module, *args]
