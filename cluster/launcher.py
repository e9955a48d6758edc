"""Starts a cluster: every configured region in this process (each on its own port) plus the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
from aiohttp import web

from cluster.admin import AdminApi
from cluster.gateway import Gateway
from node.app import kms_handler, make_app
from node.auth.principals import PrincipalDirectory
from node.clock import AdjustableClock
from node.config import ClusterConfig
from node.crypto.rootkey import RootKey
from node.endpoint import KmsEndpoint
from node.ops import build_registry
from node.scheduler import Scheduler
from node.service import Region, RegionIdentity
from node.store.sqlite import SqliteStore
from node.wire.sigv4 import SigV4Verifier
from node.wire.validation import RequestDecoder

log = logging.getLogger("trent.cluster")


@dataclass
class RegionRuntime:
    region: Region
    endpoint: KmsEndpoint
    scheduler: Scheduler
    port: int


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (0700) if missing; an existing directory the user chose keeps its mode."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _fixed(endpoint: KmsEndpoint) -> Callable[[web.Request], KmsEndpoint]:
    def route(_request: web.Request) -> KmsEndpoint:
        return endpoint
    return route


class Cluster:
    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.clock = AdjustableClock(self._load_clock_offset())
        self.regions: dict[str, RegionRuntime] = {}
        self._runners: list[web.AppRunner] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.admin_token = config.admin_token or self._load_or_create_token()

    # -- persistent bits of the cluster itself ---------------------------------------------------------

    def _load_clock_offset(self) -> float:
        try:
            return float(json.loads((self.data_dir / "clock.json").read_text())["offset"])
        except (OSError, ValueError, KeyError):
            return 0.0

    def _save_clock_offset(self) -> None:
        tmp = self.data_dir / "clock.json.tmp"
        tmp.write_text(json.dumps({"offset": self.clock.offset}))
        os.replace(tmp, self.data_dir / "clock.json")

    def _load_or_create_token(self) -> str:
        make_private_dir(self.data_dir)
        path = self.data_dir / "admin.token"
        if path.exists():
            return path.read_text().strip()
        token = secrets.token_urlsafe(24)
        write_private(path, token)
        return token

    # -- building ------------------------------------------------------------------------------------

    def _build_regions(self) -> None:
        model = botocore.session.get_session().get_service_model("kms")
        decoder = RequestDecoder(model)
        registry = build_registry(decoder.operation_names())
        principals = self.config.effective_principals()
        directory = PrincipalDirectory(principals)
        # Clients sign with the real time, so signatures are checked against the wall clock: moving the
        # cluster's clock (to drive deletion windows and rotations) must not make every signature expire.
        verifier = SigV4Verifier(directory, AdjustableClock(), self.config.max_skew_seconds)
        for name in self.config.regions:
            region_dir = self.data_dir / name
            region_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(region_dir, 0o700)  # also when it already existed: it holds the root key
            root_hex = self.config.root_key_hex(name)
            root = RootKey.from_bytes(bytes.fromhex(root_hex)) if root_hex else RootKey.load_or_create(
                region_dir / "root.key")
            region = Region(RegionIdentity(name, self.config.account), SqliteStore(region_dir / "kms.db"),
                            root, self.clock, cluster_regions=self.config.regions)
            endpoint = KmsEndpoint(region, registry, decoder, verifier,
                                   verify_signatures=self.config.verify_signatures, anonymous=principals[0],
                                   principals=directory)
            self.regions[name] = RegionRuntime(region, endpoint, Scheduler(region), self.config.port_of(name))

    def admin(self) -> AdminApi:
        return AdminApi(self.admin_token, self.status, self.clock_state, self.advance_clock)

    async def start(self) -> None:
        make_private_dir(self.data_dir)
        self._build_regions()
        for runtime in self.regions.values():
            runtime.scheduler.run_due()  # work that fell due while the cluster was stopped
        admin_routes = self.admin().routes()
        gateway = Gateway({n: r.endpoint for n, r in self.regions.items()})
        await self._serve(make_app(kms_handler(gateway.route), admin_routes), self.config.port)
        for runtime in self.regions.values():
            app = make_app(kms_handler(_fixed(runtime.endpoint)), admin_routes)
            await self._serve(app, runtime.port)
            self._tasks.append(asyncio.create_task(runtime.scheduler.run_forever(self.config.scheduler_interval)))
        self._write_cluster_file()

    async def _serve(self, app: web.Application, port: int) -> None:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, port, backlog=1024)
        await site.start()
        self._runners.append(runner)

    def _write_cluster_file(self) -> None:
        doc = {
            "gateway": self.gateway_url,
            "regions": {n: self.url(r.port) for n, r in self.regions.items()},
            "pid": os.getpid(),
        }
        write_private(self.data_dir / "cluster.json", json.dumps(doc, indent=2))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for runner in self._runners:
            await runner.cleanup()
        for runtime in self.regions.values():
            runtime.region.store.close()
        with contextlib.suppress(OSError):
            (self.data_dir / "cluster.json").unlink()

    # -- admin views -----------------------------------------------------------------------------------

    def url(self, port: int) -> str:
        return f"http://{self.config.host}:{port}"

    @property
    def gateway_url(self) -> str:
        return self.url(self.config.port)

    def status(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway_url,
            "clock": self.clock_state(),
            "regions": {
                name: {"url": self.url(r.port), "up": True, "keys": len(r.region.keys),
                       "aliases": len(r.region.aliases)}
                for name, r in self.regions.items()
            },
        }

    def clock_state(self) -> dict[str, Any]:
        return {"now": self.clock.now(), "offset": self.clock.offset}

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        self.clock.advance(seconds)
        self._save_clock_offset()
        changed = {name: r.scheduler.run_due() for name, r in self.regions.items()}
        return {**self.clock_state(), "changed": changed}
