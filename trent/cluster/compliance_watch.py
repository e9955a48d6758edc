"""Rotation-age monitoring of a running cluster: the findings of its regions (node/compliance.py) for the admin API,
`trent compliance` and metrics, and the job that tells a webhook and/or a file when a key crosses the threshold.

Driven by the cluster's clock, so `trent clock advance 100d` makes a 90-day rule fire within a tick. Each crossing
(a key's current material passing the age threshold, imported material coming within the expiry window) is sent
once: what was delivered is remembered in the data directory, so a restart does not send it again; what could not
be delivered is tried again next tick."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from trent.cluster.lifecycle import cancelled
from trent.node.audit.events import cloudtrail_time
from trent.node.clock import Clock
from trent.node.compliance import AGE, EXPIRING, KINDS, ComplianceSettings, Finding, counts, evaluate
from trent.node.config import ClusterConfig
from trent.node.service import Region

log = logging.getLogger("trent.compliance")
STATE_FILE = "compliance-notified.json"
NOTIFIED_KINDS = (AGE, EXPIRING)
WEBHOOK_TIMEOUT = 5.0  # seconds for one delivery, connecting included


def settings_of(config: ClusterConfig) -> ComplianceSettings:
    return ComplianceSettings(config.compliance_max_age_days, config.compliance_expiry_days)


def cluster_findings(regions: Mapping[str, Region], clock: Clock, settings: ComplianceSettings,
                     region: str | None = None) -> list[Finding]:
    """The findings of every region this process serves (or one): the plain function metrics read."""
    chosen = {name: r.keys.values() for name, r in regions.items() if region is None or name == region}
    return evaluate(chosen, clock.now(), settings)


def compliance_report(regions: Mapping[str, Region], clock: Clock, settings: ComplianceSettings,
                      query: Mapping[str, str]) -> dict[str, Any]:
    """The admin API's answer: ``region`` limits it to one region (an unknown one is a ValueError, answered 400)."""
    region = query.get("region")
    if region is not None and region not in regions:
        raise ValueError(f"unknown region {region!r}")
    findings = cluster_findings(regions, clock, settings, region)
    return {
        "now": clock.now(),
        "settings": {"max_age_days": settings.max_age_days, "expiry_days": settings.expiry_days},
        "findings": [f.to_json() for f in findings],
        "counts": {kind: sum(1 for f in findings if f.kind == kind) for kind in KINDS},
        "by_region": {f"{r}/{k}": n for (r, k), n in sorted(counts(findings).items())},
    }


@dataclass(frozen=True)
class Sinks:
    webhook: str | None = None
    file: Path | None = None


def notification(finding: Finding, settings: ComplianceSettings, now: float) -> dict[str, Any]:
    event = "RotationAgeExceeded" if finding.kind == AGE else "ImportedMaterialExpiring"
    return {"source": "trent", "event": event, "time": cloudtrail_time(now), "region": finding.region,
            "thresholdDays": settings.max_age_days if finding.kind == AGE else settings.expiry_days,
            **finding.to_json()}


class ComplianceNotifier:
    """The job: every ``interval`` seconds, the crossings not yet delivered go to the sinks."""

    def __init__(self, regions: Mapping[str, Region], clock: Clock, settings: ComplianceSettings, sinks: Sinks,
                 data_dir: Path, interval: float = 1.0) -> None:
        self.regions = regions  # (may be live: cluster.metrics.LiveMapping)
        self.clock = clock
        self.settings = settings
        self.sinks = sinks
        self.interval = interval
        self._state = data_dir / STATE_FILE
        self._sent = self._load()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._failing: set[str] = set()

    def _load(self) -> set[str]:
        try:
            return set(json.loads(self._state.read_text()))
        except (OSError, ValueError, TypeError):
            return set()

    def _save(self) -> None:
        tmp = self._state.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(self._sent)))
        os.replace(tmp, self._state)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT))
        self._task = asyncio.create_task(self._forever(), name="compliance notifier")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancelled(task)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                log.exception("compliance notifications failed")
            await asyncio.sleep(self.interval)

    async def tick(self) -> int:
        """Deliver the crossings each sink has not had yet; how many deliveries were made. A sink that fails is left
        until the next tick (the rest of its crossings wait, in order); the other sink goes on."""
        findings = cluster_findings(self.regions, self.clock, self.settings)
        senders = {"file": self._to_file, "webhook": self._to_webhook}
        sinks = [name for name, where in (("file", self.sinks.file), ("webhook", self.sinks.webhook)) if where]
        crossings = [(f"{f.region}/{f.key_id}/{f.kind}/{f.material_id}",
                      json.dumps(notification(f, self.settings, self.clock.now())))
                     for f in findings if f.kind in NOTIFIED_KINDS]
        delivered = 0
        # The file first, each sink through all its crossings: a webhook that is slow to answer (or never does)
        # delays no line of the file.
        for sink in sinks:
            for ident, line in crossings:
                if f"{sink}:{ident}" in self._sent:
                    continue
                if not await senders[sink](line):
                    break  # the rest wait for the next tick, in order
                if sink in self._failing:
                    self._failing.discard(sink)
                    log.warning("compliance notifications to the %s are delivered again", sink)
                self._sent.add(f"{sink}:{ident}")
                self._save()
                delivered += 1
        self._forget_deleted()
        return delivered

    def _forget_deleted(self) -> None:
        """What was sent about keys that no longer exist is forgotten, so the remembered set does not only grow."""
        gone = set()
        for ident in self._sent:  # "<sink>:<region>/<key id>/<kind>/<material id>"
            region_name, _, rest = ident.split(":", 1)[-1].partition("/")
            region = self.regions.get(region_name)
            if region is None or rest.split("/", 1)[0] not in region.keys:
                gone.add(ident)
        if gone:
            self._sent -= gone
            self._save()

    def _failed(self, sink: str, why: str) -> None:
        """Said once when a sink starts failing (it is retried every tick), not once a tick."""
        if sink not in self._failing:
            self._failing.add(sink)
            log.warning("%s; retrying every %g s", why, self.interval)

    async def _to_file(self, line: str) -> bool:
        assert self.sinks.file is not None
        try:
            fd = os.open(self.sinks.file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as out:
                out.write(line + "\n")
        except OSError as exc:
            self._failed("file", f"cannot write compliance notifications to {self.sinks.file}: {exc}")
            return False
        return True

    async def _to_webhook(self, line: str) -> bool:
        assert self.sinks.webhook is not None
        if self._session is None:
            return False
        try:
            async with self._session.post(self.sinks.webhook, data=line,
                                          headers={"Content-Type": "application/json"}) as response:
                if response.status >= 300:
                    self._failed("webhook", f"the compliance webhook answered {response.status}")
                    return False
        except TimeoutError:
            self._failed("webhook", f"the compliance webhook did not answer within {WEBHOOK_TIMEOUT:g} s")
            return False
        except aiohttp.ClientError as exc:
            # A webhook's path and query are often its secret: only errors that name no more than host and port
            # are quoted (a redirect loop's error carries the whole URL).
            quoted = isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ServerDisconnectedError) and str(exc)
            self._failed("webhook", f"the compliance webhook is not reachable: {quoted or type(exc).__name__}")
            return False
        return True
