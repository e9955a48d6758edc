"""etcd store: a region's documents in etcd, so several nodes (on several hosts) serve one region.

Layout, under ``<prefix>/<region>/``: ``<table>/<id>`` holds a document (only what the region would write to disk:
wrapped material, never a root key); ``.head`` is rewritten by every commit that changes state some node holds in
memory, so its mod revision is the region's change head; other names starting with a dot are the nodes' own
(``.leader``, ``.nodes/...``: cluster/etcd_election.py) and reach whoever listens (``on_control``).

Each node keeps a mirror of the whole region in memory, filled by one range read at open and kept current by an
etcd watch (a thread of the store; no polling): reads never leave the process. A commit is one etcd transaction:
its puts and deletes plus the ``.head`` put, conditioned on ``.head``'s mod revision not having moved beyond the
change this node last saw (``commit_if``) — a node that lost the race gets ``StaleState``, catches up (the watch
brought the winner's change) and decides again, as several processes over one SQLite file do. The outbox numbers
its records from the mirror, and that condition makes the number part of the same transaction: two nodes can never
both append record N.

The change feed (node/store/base.py ``ChangeFeed``) is the watch's record of those commits: (revision, table, id),
with revisions as sequence numbers.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future

from node.store.base import Batch, ChangeFeed, StaleState, StoreError
from node.store.etcd_client import Ambiguous, EtcdClient, EtcdError, Json, b64, unb64

log = logging.getLogger("trent.store.etcd")
HEAD = ".head"
MAX_TXN_OPS = 120  # etcd refuses transactions of more than 128 operations (--max-txn-ops)
KEEP_CHANGES = 10000  # of the feed in memory; a reader further behind loads everything again
WATCH_WAIT = 5.0  # seconds an unconditional commit waits to see itself come back through the watch

ControlListener = Callable[[str, bytes | None, int], None]


class EtcdStore:
    def __init__(self, client: EtcdClient, region: str, watch_idle: float = 30.0,
                 stale_after: float | None = None) -> None:
        """``stale_after``: seconds without a watch on etcd after which this node's view may be stale, and it
        answers a retryable error rather than from memory (the lease TTL by default)."""
        self.client = client
        self.region = region
        self.base = f"{client.settings.prefix.rstrip('/')}/{region}/".encode()
        self._head_key = self.base + HEAD.encode()
        self._cond = threading.Condition()
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

    # -- the Store Protocol ---------------------------------------------------------------------------------------

    def declare(self, table: str, *, feed: bool = False) -> None:
        if not table.isidentifier():
            raise ValueError(f"bad table name {table!r}")
        with self._cond:
            self._tables.add(table)
            self._rows.setdefault(table, {})
            if feed:
                self._feed_tables.add(table)

    def scan(self, table: str) -> Iterator[tuple[str, bytes]]:
        self._check(table)
        with self._cond:
            rows = sorted(self._rows[table].items())
        yield from rows

    def get(self, table: str, ident: str) -> bytes | None:
        self._check(table)
        return self._rows[table].get(ident)

    def last_id(self, table: str) -> str | None:
        self._check(table)
        with self._cond:
            return max(self._rows[table], default=None)

    def scan_after(self, table: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        self._check(table)
        with self._cond:
            rows = sorted((i, d) for i, d in self._rows[table].items() if i > after)
        return rows[:max(limit, 0)]

    def commit(self, batch: Batch) -> None:
        """Unconditional (meta, cursors, trimming): chunks of etcd's transaction limit; the commit returns once the
        watch brought it back, so this node reads its own write."""
        if not batch:
            return
        for table in (*batch.puts, *batch.deletes):
            self._check(table)
        writes = self._writes(batch)
        moves = any(t in self._feed_tables for part in (batch.puts, batch.deletes) for t in part)
        for start in range(0, len(writes), MAX_TXN_OPS):
            chunk = writes[start:start + MAX_TXN_OPS]
            ops = [self._op(name, doc) for name, doc in chunk]
            if moves:
                ops.append({"request_put": {"key": b64(self._head_key), "value": b64(os.urandom(8))}})
            try:
                doc = self.client.txn([], ops)
            except EtcdError as exc:
                raise StoreError(f"etcd commit failed: {exc}") from exc
            self._await_watch(int(doc["header"]["revision"]), chunk)

    def _await_watch(self, rev: int, writes: list[tuple[str, bytes | None]]) -> None:
        names = [(table, ident) for table, _, ident in (name.partition("/") for name, _ in writes)]
        with self._cond:
            seen = self._cond.wait_for(lambda: self._applied >= rev or all(self._revs.get(n, 0) >= rev
                                                                            for n in names), WATCH_WAIT)
        if not seen:
            log.warning("region %s: the watch has not brought commit %d back yet; applying it here", self.region,
                        rev)
            self._apply(rev, writes)

    def commit_if(self, batch: Batch, expect: int) -> int:
        """Commit only if no commit beyond ``expect`` moved the head (else StaleState, nothing written); the new
        head."""
        for table in (*batch.puts, *batch.deletes):
            self._check(table)
        token = os.urandom(8)
        ops = self._ops(batch)
        if len(ops) >= MAX_TXN_OPS:
            raise StoreError(f"a commit of {len(ops)} writes is more than etcd takes in one transaction")
        ops.append({"request_put": {"key": b64(self._head_key), "value": b64(token)}})
        compare = [{"key": b64(self._head_key), "target": "MOD", "result": "LESS", "mod_revision": str(expect + 1)}]
        try:
            doc = self.client.txn(compare, ops)
        except Ambiguous as exc:
            rev = self._landed(token)
            if rev is None:
                raise StoreError(f"etcd commit outcome unknown: {exc}") from exc
            doc = {"succeeded": True, "header": {"revision": rev}}
        except EtcdError as exc:
            raise StoreError(f"etcd commit failed: {exc}") from exc
        if not doc.get("succeeded"):
            raise StaleState(f"region {self.region} changed beyond {expect} on another node")
        rev = int(doc["header"]["revision"])
        self._apply(rev, [*self._writes(batch), (HEAD, token)])
        return rev

    def put_if_absent(self, table: str, ident: str, doc: bytes) -> bytes:
        """Write ``doc`` unless the row exists; the row's value either way (what a node writes once for the whole
        region: the first one's value wins, and every node reads the winner's at once)."""
        self._check(table)
        key = b64(self._key(table, ident))
        try:
            answer = self.client.txn([{"key": key, "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                                     [{"request_put": {"key": key, "value": b64(doc)}}],
                                     [{"request_range": {"key": key}}])
        except EtcdError as exc:
            raise StoreError(f"etcd commit failed: {exc}") from exc
        if answer.get("succeeded"):
            rev, value = int(answer["header"]["revision"]), doc
        else:
            kv = answer["responses"][0]["response_range"]["kvs"][0]
            rev, value = int(kv["mod_revision"]), unb64(kv.get("value"))
        self._apply(rev, [(f"{table}/{ident}", value)])
        return value

    def _landed(self, token: bytes) -> int | None:
        """After a commit whose answer was lost: its revision if it was applied (and nothing followed yet)."""
        try:
            _, kv = self.client.get(self._head_key)
        except EtcdError:
            return None
        if kv is not None and unb64(kv.get("value")) == token:
            return int(kv["mod_revision"])
        return None

    def _ops(self, batch: Batch) -> list[Json]:
        for table in (*batch.puts, *batch.deletes):
            self._check(table)
        return [self._op(name, doc) for name, doc in self._writes(batch)]

    def _op(self, name: str, doc: bytes | None) -> Json:
        key = b64(self.base + name.encode())
        return {"request_put": {"key": key, "value": b64(doc)}} if doc is not None else \
            {"request_delete_range": {"key": key}}

    @staticmethod
    def _writes(batch: Batch) -> list[tuple[str, bytes | None]]:
        out: list[tuple[str, bytes | None]] = [(f"{t}/{i}", d) for t, docs in batch.puts.items()
                                               for i, d in docs.items()]
        return out + [(f"{t}/{i}", None) for t, ids in batch.deletes.items() for i in ids]

    def _key(self, table: str, ident: str) -> bytes:
        return self.base + f"{table}/{ident}".encode()

    def durable(self) -> Future[None] | None:
        return None  # a transaction answers once a quorum of etcd members has it on disk

    def change_feed(self) -> ChangeFeed | None:
        return self

    def trim_changes(self, keep: int = KEEP_CHANGES) -> int:
        with self._cond:
            return self._trim(keep)

    def _trim(self, keep: int) -> int:
        doomed = max(0, len(self._changes) - keep)
        if doomed:
            self._forgotten = self._changes[doomed - 1][0]
            del self._changes[:doomed]
        return doomed

    # -- the change feed --------------------------------------------------------------------------------------

    def data_version(self) -> int:
        """Asked before every request: the head, unless the watch has been broken for longer than ``stale_after``
        (etcd unreachable): then what this node holds may be behind the other nodes' writes, and the request gets
        a retryable error (through the gateway, the client's retry goes to a node that still follows etcd)."""
        lost = self._lost_since
        if lost is not None and time.monotonic() - lost > self.stale_after:
            raise StoreError(f"region {self.region}: no watch on etcd for {time.monotonic() - lost:.1f}s; "
                             "this node's view may be stale")
        return self._head

    def change_head(self) -> int:
        return self._head

    def changes_after(self, seq: int) -> tuple[int, list[tuple[int, str, str]]]:
        """(one past the newest change forgotten, or 0; the changes after ``seq``): a reader that has not seen a
        forgotten change is told to load everything again, as node/consistency.py expects."""
        with self._cond:
            changes = [c for c in self._changes if c[0] > seq] if self._changes and self._changes[-1][0] > seq else []
            return (self._forgotten + 1 if self._forgotten else 0), changes

    # -- for the nodes of a region --------------------------------------------------------------------------

    def catch_up(self, timeout: float = 2.0) -> bool:
        """Wait until the mirror holds every commit etcd has made so far (one linearizable read): a node's
        read-your-writes across nodes when it does not know something another node just made."""
        try:
            _, kv = self.client.get(self._head_key)
        except EtcdError:
            return False
        target = int(kv["mod_revision"]) if kv is not None else 0
        with self._cond:
            return self._cond.wait_for(lambda: self._head >= target, timeout)

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

    def _check(self, table: str) -> None:
        if table not in self._tables:
            raise ValueError(f"unknown table {table}")
