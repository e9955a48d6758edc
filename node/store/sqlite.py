"""SQLite store: WAL, synchronous=FULL, one database per region; a commit returns only once durable."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from node.store.base import TABLES, Batch, StoreError


class SqliteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # check_same_thread=False: the launcher may close it from another thread; access is serialised by _lock.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        for table in TABLES:
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, doc BLOB NOT NULL)")

    def scan(self, table: str) -> Iterator[tuple[str, bytes]]:
        self._check(table)
        with self._lock:
            rows = self._db.execute(f"SELECT id, doc FROM {table} ORDER BY id").fetchall()
        yield from rows

    def get(self, table: str, ident: str) -> bytes | None:
        self._check(table)
        with self._lock:
            row = self._db.execute(f"SELECT doc FROM {table} WHERE id = ?", (ident,)).fetchone()
        return None if row is None else bytes(row[0])

    def last_id(self, table: str) -> str | None:
        self._check(table)
        with self._lock:
            row = self._db.execute(f"SELECT max(id) FROM {table}").fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def scan_after(self, table: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        self._check(table)
        with self._lock:
            rows = self._db.execute(f"SELECT id, doc FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
                                    (after, max(limit, 0))).fetchall()
        return [(str(i), bytes(d)) for i, d in rows]

    def commit(self, batch: Batch) -> None:
        if not batch:
            return
        for table in (*batch.puts, *batch.deletes):
            self._check(table)  # before the transaction: a bad table name must not leave one open
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for table, docs in batch.puts.items():
                    self._db.executemany(f"INSERT OR REPLACE INTO {table} (id, doc) VALUES (?, ?)", docs.items())
                for table, idents in batch.deletes.items():
                    self._db.executemany(f"DELETE FROM {table} WHERE id = ?", ((i,) for i in idents))
                self._db.execute("COMMIT")
            except BaseException as exc:
                # Whatever went wrong (an SQLite error, a closed database, an interrupt), no transaction may stay
                # open: it would hold the write lock and leak half a batch into the next commit.
                self._rollback()
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"commit failed: {exc}") from exc
                raise

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # closed or broken connection: nothing was committed, and nothing more can be done here

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @staticmethod
    def _check(table: str) -> None:
        if table not in TABLES:
            raise ValueError(f"unknown table {table}")
