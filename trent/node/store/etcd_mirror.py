"""The part of the etcd store (node/store/etcd.py) that follows etcd: a mirror of the whole region in memory, filled by
one range read at open and kept current by an etcd watch (a thread of its own; no polling), with the record of the
commits it saw (the change feed) and the node-owned keys (names with a dot: ``.leader``, ``.nodes/...``)."""

from __future__ import annotations

import contextlib
import http.client
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from trent.node.store.base import StoreError
from trent.node.store.etcd_client import EtcdClient, EtcdError, Json, unb64

log = logging.getLogger("trent.store.etcd")
HEAD = ".head"
KEEP_CHANGES = 10000  # of the feed in memory; a reader further behind loads everything again

ControlListener = Callable[[str, bytes | None, int], None]


class EtcdMirror:
    def __init__(self, client: EtcdClient, region: str, watch_idle: float = 30.0,
                 stale_after: float | None = None) -> None:
        """``stale_after``: seconds without a watch on etcd after which this node's view may be stale, and it
        answers a retryable error rather than from memory (the lease TTL by default)."""
        self.client = client
        self.region = region
        self.base = f"{client.settings.prefix.rstrip('/')}/{region}/".encode()
        self._head_key = self.base + HEAD.encode()
        self._cond = threading.Condition()
        self._jitter = random.Random()  # the pause after a lost commit race (etcd.py)
        self._rows: dict[str, dict[str, bytes]] = {}
        self._revs: dict[tuple[str, str], int] = {}  # the revision each row (or its deletion) was applied at
        # Deletions remembered in _revs (against an older change arriving late), forgotten once the watch is past
        # them: trimmed outbox records must not pile up there for the life of the node.
        self._tombstones: deque[tuple[int, tuple[str, str]]] = deque()
        self._tables: set[str] = set()
        self._feed_tables: set[str] = set()
        self._changes: list[tuple[int, str, str]] = []
        self._forgotten = 0  # the newest change trimmed away (a reader that has not seen it must reload)
        self._head = 0
        self._control: list[ControlListener] = []
        self._changed: list[Callable[[], None]] = []  # told (from the watch thread) of other nodes' commits
        self._controls: dict[str, bytes] = {}
        self._stopping = threading.Event()
        self._watch_conn: http.client.HTTPConnection | None = None
        self._watch_idle = watch_idle
        self.watching = False  # the watch stream is open (status)
        self.stale_after = float(client.settings.lease_ttl if stale_after is None else stale_after)
        self._lost_since: float | None = None  # when the watch broke (None while it is open)
        try:
            self._applied = self._load()
        except EtcdError as exc:
            raise StoreError(f"etcd: cannot read region {region}: {exc}") from exc
        self._thread = threading.Thread(target=self._watch_forever, name=f"etcd watch {region}", daemon=True)
        self._thread.start()

    # -- loading and the watch ---------------------------------------------------------------------------------

    def _load(self) -> int:
        """Read the whole region at one revision into the mirror; the revision read at."""
        rows: dict[str, dict[str, bytes]] = {}
        revs: dict[tuple[str, str], int] = {}
        controls: dict[str, bytes] = {}
        head, revision = 0, 0
        for at, kv in self.client.range_prefix(self.base):
            revision = at
            if not kv:
                continue
            name = unb64(kv["key"])[len(self.base):].decode()
            mod = int(kv.get("mod_revision", 0))
            if name == HEAD:
                head = mod
            elif name.startswith("."):
                controls[name] = unb64(kv.get("value"))
            elif "/" in name:
                table, ident = name.split("/", 1)
                rows.setdefault(table, {})[ident] = unb64(kv.get("value"))
                revs[(table, ident)] = mod
        with self._cond:
            for table in self._tables:  # (a reload after compaction keeps every declared table, empty or not)
                rows.setdefault(table, {})
            self._rows, self._revs, self._controls = rows, revs, controls
            self._tombstones.clear()
            self._head = max(self._head, head)
            self._cond.notify_all()
        return revision

    def _watch_forever(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                self.watching = True
                # From the last revision applied, not the one after: its changes come again (and change nothing),
                # but a compaction at the next one is reported instead of silently losing a deletion made there
                # (etcd drops a key deleted at the compaction revision from the history a watch reads).
                result = self.client.watch(self.base, max(self._applied, 1), self._on_events, self._stopping,
                                           self._watch_idle, self._opened, self._connected)
                failures = 0
                if result.get("compact_revision"):
                    # The changes since our revision are gone from etcd: read the region afresh, and make every
                    # reader of the feed load everything again.
                    log.warning("region %s: watch fell behind etcd's compaction; reloading", self.region)
                    self._applied = self._load()
                    with self._cond:
                        self._forgotten = self._head = max(self._head, self._applied)
                        self._changes.clear()
                        self._cond.notify_all()
            except (EtcdError, OSError, ValueError) as exc:
                self.watching = False
                if self._lost_since is None:
                    self._lost_since = time.monotonic()
                failures += 1
                if not self._stopping.is_set() and failures > 1:
                    log.warning("region %s: etcd watch: %s; reconnecting", self.region, exc)
                self._stopping.wait(min(0.05 * failures, 1.0))
        self.watching = False

    def _opened(self, conn: http.client.HTTPConnection | None) -> None:
        self._watch_conn = conn

    def _connected(self) -> None:
        self._lost_since = None

    def _on_events(self, revision: int, events: list[Json]) -> None:
        if not events:
            # A progress notification: every change up to ``revision`` has been sent, so a watch made again after
            # a break may start there (not from the last change, which etcd may have compacted away meanwhile).
            self._applied = max(self._applied, revision)
            return
        by_rev: dict[int, list[tuple[str, bytes | None]]] = {}
        for event in events:
            kv = event.get("kv", {})
            name = unb64(kv.get("key"))[len(self.base):].decode()
            doc = None if event.get("type") == "DELETE" else unb64(kv.get("value"))
            by_rev.setdefault(int(kv.get("mod_revision", revision)), []).append((name, doc))
        for rev in sorted(by_rev):
            self._apply(rev, by_rev[rev], watched=True)
            self._applied = max(self._applied, rev)
        self._forget_tombstones()

    def _forget_tombstones(self) -> None:
        with self._cond:
            while self._tombstones and self._tombstones[0][0] <= self._applied:
                rev, name = self._tombstones.popleft()
                if self._revs.get(name) == rev and name[1] not in self._rows.get(name[0], {}):
                    del self._revs[name]
            self._cond.notify_all()

    def _apply(self, rev: int, writes: list[tuple[str, bytes | None]], watched: bool = False) -> None:
        """One transaction's writes (all at revision ``rev``), into the mirror and the feed; ``watched``: brought by
        the watch (a commit of another node, or one of ours coming back)."""
        controls: list[tuple[str, bytes | None]] = []
        with self._cond:
            moved = False
            changed: list[tuple[int, str, str]] = []
            for name, doc in writes:
                if name == HEAD:
                    moved = rev > self._head
                    continue
                if name.startswith("."):
                    controls.append((name, doc))
                    if doc is None:
                        self._controls.pop(name, None)
                    else:
                        self._controls[name] = doc
                    continue
                if "/" not in name:
                    continue
                table, ident = name.split("/", 1)
                if self._revs.get((table, ident), 0) >= rev:
                    continue  # applied already (our own commit, before the watch brought it)
                self._revs[(table, ident)] = rev
                if doc is None:
                    self._rows.setdefault(table, {}).pop(ident, None)
                    self._tombstones.append((rev, (table, ident)))
                else:
                    self._rows.setdefault(table, {})[ident] = doc
                if table in self._feed_tables:
                    changed.append((rev, table, ident))
            if moved:
                self._head = rev
                # A commit that changed no followed row still moves the head: a marker lets readers pass it.
                self._changes.extend(changed or [(rev, "", "")])
                if len(self._changes) > 2 * KEEP_CHANGES:
                    self._trim(KEEP_CHANGES)
            self._cond.notify_all()
        for name, doc in controls:
            for listener in list(self._control):
                listener(name, doc, rev)
        if moved and watched:
            for tell in list(self._changed):
                tell()

    def _trim(self, keep: int) -> int:
        doomed = max(0, len(self._changes) - keep)
        if doomed:
            self._forgotten = self._changes[doomed - 1][0]
            del self._changes[:doomed]
        return doomed

    # -- for the nodes of a region --------------------------------------------------------------------------

    def on_change(self, listener: Callable[[], None]) -> None:
        """``listener()`` from the watch thread whenever another node's commit moved the region's head (so its
        followers can catch up at once, without waiting for a request)."""
        self._changed.append(listener)

    def on_control(self, listener: ControlListener) -> None:
        """``listener(name, value or None, revision)`` for every change of a node-owned key (a name with a dot)."""
        self._control.append(listener)

    def controls(self, prefix: str) -> dict[str, bytes]:
        with self._cond:
            return {n: v for n, v in self._controls.items() if n.startswith(prefix)}

    def control_key(self, name: str) -> bytes:
        return self.base + name.encode()

    def close(self) -> None:
        self._stopping.set()
        self._stop_watch_conn()
        self._thread.join(timeout=5)
        self.client.close()

    def _stop_watch_conn(self) -> None:
        """Cut the watch stream (on close; tests use it to break the stream as a network would)."""
        conn = self._watch_conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
