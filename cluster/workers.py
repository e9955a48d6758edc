"""Several processes serving one cluster (`trent up --workers N`).

The first process (the leader) runs everything a single process runs: the region ports, replication, the
scheduler, outbox trimming, the admin API. The other N-1 processes (workers) serve the gateway port beside it
(SO_REUSEPORT: the kernel spreads connections) over the same SQLite stores. What keeps them in step:

- every request starts by catching up with the region's change feed (Region.sync: one look at the store's data
  version when nothing changed), and every commit is conditional on having seen every change before it; a request
  that loses that race catches up and runs again (``retrying``);
- the clock offset and the faults live in a small shared database (runtime.db) the leader writes before it answers
  an admin call, and every process looks at (one data-version check) before handling a request;
- workers pass admin calls other than health to the leader;
- each process writes its own audit file; GetKeyLastUsage reads the others' as they grow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from node.app import Gate, Verdict
from node.audit.sink import current_files
from node.audit.trail import AuditTrail, KeyUsage
from node.endpoint import KmsEndpoint, WireResponse
from node.model.errors import KmsError
from node.ops.registry import Handler, Operation, Params, Registry, RequestContext, Response
from node.service import STALE_ATTEMPTS, Region
from node.store.base import StaleState
from node.store.signal import CommitSignal

log = logging.getLogger("trent.workers")
RUNTIME_DB = "runtime.db"


class SharedState:
    """The cluster's clock offset and faults as the leader last set them, for every process to follow."""

    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY, doc TEXT NOT NULL)")
        self._version: int | None = None
        # Asked before every request: SQLite is consulted only when a publisher moved the signal.
        self._signal = CommitSignal(path.with_name(path.name + "-signal"))

    def publish(self, doc: dict[str, Any]) -> None:
        self._db.execute("INSERT OR REPLACE INTO state (id, doc) VALUES (0, ?)", (json.dumps(doc),))
        self._signal.bump()

    def changed(self) -> dict[str, Any] | None:
        """The state, if another process changed it since the last look (or on the first look); else None."""
        version = self._signal.data_version(self._db)
        if version == self._version:
            return None
        self._version = version
        row = self._db.execute("SELECT doc FROM state WHERE id = 0").fetchone()
        doc: dict[str, Any] | None = None if row is None else json.loads(row[0])
        return doc

    def close(self) -> None:
        self._db.close()
        self._signal.close()


def shared_gate(inner: Gate, state: SharedState | None, follow: Callable[[dict[str, Any]], None]) -> Gate:
    """The fault gate of a process that shares its regions: first take on the shared clock and faults, then (for a
    request that gets through) catch up with what other processes committed to the region."""

    def gate(endpoint: KmsEndpoint, request: web.BaseRequest) -> Verdict:
        if state is not None:
            doc = state.changed()
            if doc is not None:
                follow(doc)
        verdict = inner(endpoint, request)
        if verdict is None:
            endpoint.region.sync()
            return None
        return verdict if isinstance(verdict, WireResponse) else _synced_after(verdict, endpoint)

    return gate


async def _synced_after(verdict: Awaitable[WireResponse | None], endpoint: KmsEndpoint) -> WireResponse | None:
    refused = await verdict
    if refused is None:
        endpoint.region.sync()  # what other processes committed while this request waited
    return refused


def retrying(registry: Registry) -> Registry:
    """The same operations, each run again (after catching up) when its commit found that another process had
    changed the region first."""
    out = Registry()
    for operation in registry:
        out.add(operation if operation.read_only else replace(operation, handler=_retrying(operation)))
    return out


def _retrying(operation: Operation) -> Handler:
    handler = operation.handler

    def run(region: Region, params: Params, ctx: RequestContext) -> Response:
        def authorize_again() -> None:
            # Decided again on the current state, authorization included (a key policy or grant may have changed).
            if ctx.authorizer is not None:
                ctx.authorizer.check_request(region, ctx.principal, operation, params)
        try:
            return region.run_fresh(lambda: handler(region, params, ctx), after_sync=authorize_again)
        except StaleState:
            log.warning("region %s: %s lost %d races for the store; answering a retryable error", region.name,
                        ctx.operation, STALE_ATTEMPTS)
            raise KmsError("KMSInternalException", "The request conflicted with concurrent changes; retry it.",
                           500) from None
    return run


class SharedAuditTrail(AuditTrail):
    """A region's audit trail in one of several processes: it writes its own file, and reads the other processes'
    files as they grow (their flushed records) so last usage covers every process."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # the rebuild has read every process's files
        self._offsets: dict[Path, tuple[int, int]] = {}
        for path in self._peers():
            with contextlib.suppress(OSError):
                st = path.stat()
                self._offsets[path] = (st.st_ino, st.st_size)

    def _peers(self) -> list[Path]:
        return [p for p in current_files(self.sink.directory) if p != self.sink.path]

    def usage_of(self, key_id: str) -> KeyUsage | None:
        self.catch_up()  # the uses the other processes have recorded since the last look
        return super().usage_of(key_id)

    def catch_up(self) -> None:
        for path in self._peers():
            try:
                st = path.stat()
                inode, start = self._offsets.get(path, (st.st_ino, 0))
                if inode != st.st_ino or st.st_size < start:
                    start = 0  # rotated: a new file
                if st.st_size <= start:
                    continue
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read(st.st_size - start)
            except OSError:
                continue
            complete = data.rfind(b"\n") + 1  # a line still being written waits for the next look
            self._offsets[path] = (st.st_ino, start + complete)
            for line in data[:complete].splitlines():
                with contextlib.suppress(ValueError):
                    self._track_newer(orjson.loads(line))

    def _track_newer(self, event: dict[str, Any]) -> None:
        """Track ``event`` unless this process already knows a later use of its key."""
        keys = [str(r.get("ARN", "")).rsplit("/", 1)[-1] for r in event.get("resources") or ()]
        before: dict[str, KeyUsage] = {k: self.last_usage[k] for k in keys if k in self.last_usage}
        self._track(event)
        for key_id, usage in before.items():
            if usage.at > self.last_usage[key_id].at:
                self.last_usage[key_id] = usage
