"""`trent up --processes`: each region in a `trent node` process of its own and the gateway in a `trent gateway`
process, under this one supervisor (same ports, data directory layout, admin API and CLI as `trent up`). It makes
the cluster's secrets before the first start, starts and stops the processes, and carries out the faults that are
about processes: `trent fault crash REGION` (SIGKILL, nothing else) and `trent fault restart REGION` (the same
region again, on the same data, with the faults in force)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import signal
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web

from trent.cluster.files import load_or_create_token, make_private_dir, remove_cluster_file, write_cluster_file
from trent.cluster.gateway_proxy import PROCESSES_PATH, region_urls
from trent.cluster.links import SIGNATURE_HEADER, LinkVerifier, sign
from trent.cluster.serving import Servers
from trent.cluster.tls import client_context
from trent.cluster.worker_processes import role_command
from trent.node.config import ClusterConfig
from trent.node.crypto.rootkey import RootKey
from trent.node.edge import ConnectionGuard

log = logging.getLogger("trent.supervisor")
START_TIMEOUT = 60.0


class Supervisor:
    def __init__(self, config: ClusterConfig, verbose: bool = False) -> None:
        self.config = config
        self.verbose = verbose
        self.servers = Servers("127.0.0.1", ConnectionGuard(config.edge))
        self.nodes: dict[str, asyncio.subprocess.Process] = {}
        self.gateway: asyncio.subprocess.Process | None = None
        self.token = ""
        self.admin_url = ""
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self._crashing: set[str] = set()  # killed on purpose: their exit is no news
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    @property
    def urls(self) -> dict[str, str]:
        return {name: urls[0] for name, urls in region_urls(self.config).items()}

    @property
    def gateway_url(self) -> str:
        scheme = "https" if self.config.tls_cert is not None else "http"
        return f"{scheme}://{self.config.host}:{self.config.port}"

    async def start(self) -> None:
        config = self.config
        make_private_dir(config.data_dir)
        # Made once, here, before any node starts: the nodes would race to make them.
        self.token = config.admin_token or load_or_create_token(config.data_dir, "admin.token")
        load_or_create_token(config.data_dir, "replication.token")
        RootKey.load_or_create(config.data_dir / "cluster.key")
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_context(config) or True))
        verifier = LinkVerifier(self.token)

        async def processes(request: web.Request) -> web.Response:
            body = await request.read()
            if not verifier.verify(request.method, request.path, request.query.items(),
                                   request.headers.get(SIGNATURE_HEADER), body):
                return web.json_response({"error": "a signed request is required"}, status=403)
            try:
                doc = json.loads(body)
                return web.json_response(await self.act(str(doc["action"]), [str(r) for r in doc["regions"]]))
            except (ValueError, KeyError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)

        self.admin_url = await self.servers.serve_private([web.post(PROCESSES_PATH, processes)])
        await asyncio.gather(*(self._start_node(name) for name in config.regions))
        self.gateway = await self._spawn("trent.cluster.gateway_proxy", [], (config, self.token, self.admin_url))
        self._write_cluster_file()

    def _write_cluster_file(self) -> None:
        write_cluster_file(self.config.data_dir, {
            "gateway": self.gateway_url, "regions": self.urls, "pid": os.getpid(), "workers": [],
            "ca": str(self.config.tls_ca) if self.config.tls_ca else None,
            "processes": {"gateway": self.gateway.pid if self.gateway else None,
                          **{name: (p.pid if p.returncode is None else None) for name, p in self.nodes.items()}}})

    async def _spawn(self, module: str, args: list[str], payload: object) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*role_command(module, [*args, *(["-v"] if self.verbose else [])]),
                                                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(pickle.dumps(payload))
        await proc.stdin.drain()
        proc.stdin.close()
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise OSError(f"{module} {' '.join(args)} did not start (exit status {proc.returncode})")
        return proc

    async def _start_node(self, region: str, faults: dict[str, Any] | None = None) -> None:
        # Its peers are the other regions' processes, on their ports of this host.
        config = replace(self.config, peers=region_urls(self.config))
        proc = await self._spawn("trent.cluster.region_node", ["--region", region], (config, faults or {}))
        self.nodes[region] = proc
        self._watchers.append(asyncio.create_task(self._watch(region, proc)))

    async def _watch(self, region: str, proc: asyncio.subprocess.Process) -> None:
        """A region's process that ends on its own stays down (as a crashed host would) and is said so."""
        code = await proc.wait()
        if region in self._crashing or self._stopping:
            self._crashing.discard(region)
            return
        log.warning("%s's process (pid %d) exited with %s; `trent fault restart %s` starts it again", region,
                    proc.pid, code, region)
        with contextlib.suppress(OSError):
            self._write_cluster_file()

    async def act(self, action: str, regions: list[str]) -> dict[str, Any]:
        unknown = [r for r in regions if r not in self.nodes]
        if unknown or not regions:
            raise ValueError(f"unknown region(s): {', '.join(unknown)}" if unknown else f"{action} needs a region")
        async with self._lock:  # one change of processes at a time
            for region in regions:
                if action == "crash":
                    await self.crash(region)
                elif action == "restart":
                    await self.restart(region)
                else:
                    raise ValueError(f"unknown process action {action!r} (crash or restart)")
            self._write_cluster_file()
        return {"processes": {name: (p.pid if p.returncode is None else None) for name, p in self.nodes.items()}}

    async def crash(self, region: str) -> None:
        """SIGKILL: no shutdown, no flush, exactly what a power cut leaves."""
        proc = self.nodes[region]
        if proc.returncode is None:
            self._crashing.add(region)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            await proc.wait()

    async def restart(self, region: str) -> None:
        if self.nodes[region].returncode is None:
            raise ValueError(f"{region} is running (crash it first)")
        # It starts with the faults in force (a partition must hold from its first pull on).
        await self._start_node(region, await self._faults_in_force(exclude=region))

    async def _faults_in_force(self, exclude: str) -> dict[str, Any]:
        for name, proc in self.nodes.items():
            if name != exclude and proc.returncode is None:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError, ValueError, KeyError):
                    faults: dict[str, Any] = (await self._node_call(name, "GET", "/_trent/status"))["faults"]
                    return faults
        return {}

    async def _node_call(self, region: str, method: str, path: str, doc: dict[str, Any] | None = None) -> Any:
        assert self._session is not None
        body = json.dumps(doc).encode() if doc is not None else b""
        query = {"region": region}
        headers = {**sign(self.token, method, path, query, body), "Content-Type": "application/json"}
        async with self._session.request(method, self.urls[region] + path, params=query, data=body or None,
                                         headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as answer:
            return json.loads(await answer.read())

    async def stop(self) -> None:
        self._stopping = True
        procs = [p for p in [self.gateway, *self.nodes.values()] if p is not None]
        for proc in procs:  # the gateway first: it stops taking requests while the regions still answer
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for watcher in self._watchers:
            watcher.cancel()
        if self._session is not None:
            await self._session.close()
        await self.servers.close()
        remove_cluster_file(self.config.data_dir)
