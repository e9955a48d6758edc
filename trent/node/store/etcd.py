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
with revisions as sequence numbers. The mirror and the watch: node/store/etcd_mirror.py.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future

from trent.node.store.base import Batch, ChangeFeed, StaleState, StoreError
from trent.node.store.etcd_client import Ambiguous, EtcdError, Json, b64, unb64
from trent.node.store.etcd_mirror import HEAD, KEEP_CHANGES, EtcdMirror

log = logging.getLogger("trent.store.etcd")
MAX_TXN_OPS = 120  # etcd refuses transactions of more than 128 operations (--max-txn-ops)
WATCH_WAIT = 5.0  # seconds an unconditional commit waits to see itself come back through the watch


class EtcdStore(EtcdMirror):
    """The store Protocol over the mirror: reads from memory, commits as etcd transactions."""

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
            # On a lost race, the head that beat it comes back in the same round trip: what to wait for.
            doc = self.client.txn(compare, ops, [{"request_range": {"key": b64(self._head_key)}}])
        except Ambiguous as exc:
            rev = self._landed(token)
            if rev is None:
                raise StoreError(f"etcd commit outcome unknown: {exc}") from exc
            doc = {"succeeded": True, "header": {"revision": rev}}
        except EtcdError as exc:
            raise StoreError(f"etcd commit failed: {exc}") from exc
        if not doc.get("succeeded"):
            # The caller waits for the watch to bring that head (node/catch_up.py: off the event loop for a request)
            # and decides again.
            kvs = ((doc.get("responses") or [{}])[0].get("response_range") or {}).get("kvs") or [{}]
            raise StaleState(f"region {self.region} changed beyond {expect} on another node",
                             int(kvs[0].get("mod_revision", 0)))
        rev = int(doc["header"]["revision"])
        self._apply(rev, [*self._writes(batch), (HEAD, token)])
        return rev

    def wait_for_head(self, head: int, timeout: float = 2.0) -> bool:
        """Block until the watch brought the change ``head`` (a commit of another node that beat one of ours)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._head >= head, timeout)

    def pause_after_race(self) -> None:
        """Before deciding again after a lost commit race: a random few milliseconds, so two nodes that keep
        colliding on one row do not keep doing it in step."""
        time.sleep(self._jitter.uniform(0.0, 0.015))

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

    def fail_next_sync(self) -> bool:
        return False  # the disks are etcd's members' (stop a member to fail one)

    def change_feed(self) -> ChangeFeed | None:
        return self

    def trim_changes(self, keep: int = KEEP_CHANGES) -> int:
        with self._cond:
            return self._trim(keep)

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

    def _check(self, table: str) -> None:
        if table not in self._tables:
            raise ValueError(f"unknown table {table}")
