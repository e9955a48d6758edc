"""What the processes of one cluster share beyond the regions' stores (`trent up --workers N`); the stores' side is
node/consistency.py.

- the clock offset and the faults: the leader publishes them (``SharedState``) before it answers an admin call;
  every process takes them on before its fault gate looks at a request (``following_runtime``);
- the audit files: each process writes its own; GetKeyLastUsage reads the others' as they grow
  (``SharedAuditTrail``);
- the leader's wake-ups: a worker that committed tells the leader at once (``CommitNotifier``: one datagram), and
  the leader catches up with that region (``follow_workers``), so the replication long-polls it answers hear of a
  worker's outbox records without the leader polling every few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from trent.node.app import Gate, Verdict
from trent.node.audit.sink import current_files
from trent.node.audit.trail import AuditTrail, KeyUsage
from trent.node.endpoint import KmsEndpoint
from trent.node.fast_path import KmsRequest
from trent.node.service import Region
from trent.node.store.base import Batch, Store

log = logging.getLogger("trent.shared")
STATE_TABLE, STATE_ID = "state", "0"
# How often the leader catches up even if no worker said it committed: a worker killed between its commit and its
# datagram must not hide the commit for long (the scheduler's own tick catches up too).
FALLBACK_SECONDS = 1.0


class SharedState:
    """The cluster's clock offset and faults as the leader last set them, for every process to follow (kept in a
    store with a change feed: StoreFactory.open_runtime)."""

    def __init__(self, store: Store) -> None:
        feed = store.change_feed()
        if feed is None:
            raise ValueError("the shared runtime state needs a store with a change feed")
        self._store, self._feed = store, feed
        store.declare(STATE_TABLE)
        self._version: int | None = None

    def publish(self, doc: dict[str, Any]) -> None:
        self._store.commit(Batch().put(STATE_TABLE, STATE_ID, json.dumps(doc).encode()))

    def changed(self) -> dict[str, Any] | None:
        """The state, if another process changed it since the last look (or on the first look); else None."""
        version = self._feed.data_version()  # a memory read unless a publisher signalled
        if version == self._version:
            return None
        self._version = version
        raw = self._store.get(STATE_TABLE, STATE_ID)
        doc: dict[str, Any] | None = None if raw is None else json.loads(raw)
        return doc

    def close(self) -> None:
        self._store.close()


def following_runtime(faults: Gate, state: SharedState | None, follow: Callable[[dict[str, Any]], None]) -> Gate:
    """The fault gate of a worker: the faults (and the clock) the leader published are taken on before it looks."""
    if state is None:
        return faults

    def gate(endpoint: KmsEndpoint, request: KmsRequest) -> Verdict:
        doc = state.changed()
        if doc is not None:
            follow(doc)
        return faults(endpoint, request)

    return gate


# -- the leader's wake-ups --------------------------------------------------------------------------------------


def wakeup_address(data_dir: Path) -> bytes:
    """An abstract UNIX socket name (no file, no path-length limit) that every process of the cluster derives from
    the data directory they share."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:32]
    return b"\0trent-commits-" + digest.encode()


class CommitNotifier:
    """A worker's side: after a write, one datagram to the leader. Never blocks: a full queue means the leader
    already has wake-ups to read (and catches up with everything when it does)."""

    def __init__(self, data_dir: Path) -> None:
        self._address = wakeup_address(data_dir)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setblocking(False)

    def __call__(self) -> None:
        with contextlib.suppress(OSError):  # full queue, or no leader listening: nothing to wake
            self._sock.sendto(b"c", self._address)

    def close(self) -> None:
        self._sock.close()


async def follow_workers(data_dir: Path, regions: Iterable[Region], fallback: float = FALLBACK_SECONDS) -> None:
    """The leader's side: catch up with the workers' commits as they tell of them (and every ``fallback`` seconds
    in any case)."""
    regions = list(regions)
    wake = asyncio.Event()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        sock.bind(wakeup_address(data_dir))
        loop.add_reader(sock.fileno(), _drain, sock, wake)
    except OSError as exc:
        # Another leader over the same data directory holds the name: catch up on the short interval instead.
        log.warning("cannot listen for the workers' commits (%s); polling every 5 ms", exc)
        fallback = 0.005
    try:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), fallback)
            wake.clear()
            for region in regions:
                try:
                    region.sync()
                except Exception:
                    log.exception("region %s: cannot catch up with the workers' changes", region.name)
    finally:
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(sock.fileno())
        sock.close()


def _drain(sock: socket.socket, wake: asyncio.Event) -> None:
    """Read every queued wake-up: one catch-up answers them all."""
    with contextlib.suppress(OSError):
        while sock.recv(16):
            pass
    wake.set()


# -- audit files ----------------------------------------------------------------------------------------------


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


