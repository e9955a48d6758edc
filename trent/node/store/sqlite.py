"""SQLite store: WAL, one database per region. A commit is durable when it returns (synchronous=FULL), or, with
``group_sync``, once ``durable()`` says so: commits are written at once (synchronous=NORMAL) and a thread of the
store's fsyncs the WAL after them, one fsync for every commit written before it (node/store/groupsync.py).

With the change feed on (several processes serving one region), every commit also records which rows of the
region's state it changed, in the same transaction, so other processes can catch up with exactly those rows; and a
commit may be made conditional on no other process having changed anything since its writer last caught up.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

from trent.node.store.base import Batch, ChangeFeed, StaleState, StoreError
from trent.node.store.groupsync import FileSync, GroupSync
from trent.node.store.signal import CommitSignal


class SqliteStore:
    def __init__(self, path: Path, *, feed: bool = False, group_sync: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # check_same_thread=False: a role may close it from another thread; access is serialised by _lock.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit is written to the WAL without an fsync; the group sync makes it durable.
        self._db.execute("PRAGMA synchronous=NORMAL" if group_sync else "PRAGMA synchronous=FULL")
        # The tables the store's users declared (it knows none of its own), and those the change feed records.
        self._tables: set[str] = set()
        self._feed_tables: set[str] = set()
        # Off in a single process: nobody else reads it, and the commit path stays as it always was.
        self.feed = feed
        self._signal: CommitSignal | None = None
        if feed:
            self._db.execute("CREATE TABLE IF NOT EXISTS changes "
                             "(seq INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, id TEXT NOT NULL)")
            self._signal = CommitSignal(path.with_name(path.name + "-signal"))
        self._file_sync = FileSync(f"{path}-wal", str(path))
        # With the feed, other processes write the database too: a sync failed in any of them fails it for all.
        self._group = GroupSync(self._file_sync, str(path), self._signal) if group_sync else None

    def declare(self, table: str, *, feed: bool = False) -> None:
        if not table.isidentifier():
            raise ValueError(f"bad table name {table!r}")
        with self._lock:
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} (id TEXT PRIMARY KEY, doc BLOB NOT NULL)")
        self._tables.add(table)
        if feed:
            self._feed_tables.add(table)

    # -- the change feed (several processes over one database) -----------------------------------------

    def change_feed(self) -> ChangeFeed | None:
        return self if self.feed else None

    def data_version(self) -> int:
        """Changes whenever another connection (another process) commits; cheap enough to ask per request: SQLite
        is asked only when the commit signal moved (writers move it after committing, before answering anyone)."""
        if self._signal is not None:
            return self._signal.data_version(self._db, self._lock)
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def change_head(self) -> int:
        """The newest change's number (0 if none was ever recorded)."""
        with self._lock:
            return self._head()

    def _head(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
        return 0 if row is None else int(row[0])

    def changes_after(self, seq: int) -> tuple[int, list[tuple[int, str, str]]]:
        """The oldest change still recorded (0 if none) and every change after ``seq``, oldest first. An oldest
        change beyond ``seq + 1`` means some were trimmed away: the reader must load everything again."""
        with self._lock:
            oldest = self._db.execute("SELECT min(seq) FROM changes").fetchone()[0]
            rows = self._db.execute("SELECT seq, tbl, id FROM changes WHERE seq > ? ORDER BY seq",
                                    (seq,)).fetchall()
        if rows and self._group is not None:
            # Another process's commits, perhaps not durable yet: nothing that rests on them is answered before
            # this process's next fsync of the WAL they share.
            self._group.wrote()
        return int(oldest or 0), [(int(s), str(t), str(i)) for s, t, i in rows]

    def trim_changes(self, keep: int = 10000) -> int:
        """Forget all but the newest ``keep`` changes (a reader further behind loads everything again)."""
        if not self.feed:
            return 0
        with self._lock:
            cursor = self._db.execute("DELETE FROM changes WHERE seq <= ?", (self._head() - keep,))
        return int(cursor.rowcount)

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
        if batch:
            self._commit(batch, None)

    def commit_if(self, batch: Batch, expect: int) -> int:
        """Commit only if no change beyond ``expect`` was recorded (else raise StaleState having written nothing);
        return the newest change's number after this commit. Needs the change feed."""
        head = self._commit(batch, expect)
        assert head is not None
        return head

    def _commit(self, batch: Batch, expect: int | None) -> int | None:
        for table in (*batch.puts, *batch.deletes):
            self._check(table)  # before the transaction: a bad table name must not leave one open
        if self._group is not None and (failure := self._group.failure) is not None:
            # Its disk failed a sync: what it holds is unknown, and nothing more goes onto it (a refused call retried
            # would otherwise write again, unanswered, each time).
            raise StoreError(f"not written: sync failed: {failure}")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if expect is not None and self._head() > expect:
                    raise StaleState(f"changes beyond {expect} were committed elsewhere")
                for table, docs in batch.puts.items():
                    self._db.executemany(f"INSERT OR REPLACE INTO {table} (id, doc) VALUES (?, ?)", docs.items())
                for table, idents in batch.deletes.items():
                    self._db.executemany(f"DELETE FROM {table} WHERE id = ?", ((i,) for i in idents))
                head: int | None = None
                if self.feed:
                    changed = [(t, i) for part in (batch.puts, batch.deletes) for t, ids in part.items()
                               if t in self._feed_tables for i in ids]
                    if changed:
                        self._db.executemany("INSERT INTO changes (tbl, id) VALUES (?, ?)", changed)
                    head = self._head()
                self._db.execute("COMMIT")
                if self._group is not None:
                    self._group.wrote()
                if self._signal is not None:
                    self._signal.bump()
                return head
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

    def durable(self) -> Future[None] | None:
        return None if self._group is None else self._group.durable()

    def fail_next_sync(self) -> bool:
        if self._group is None:
            return False  # (commits synced as they are made: the runtime store of --workers, never a region's)
        self._group.fail_next()
        return True

    def close(self) -> None:
        if self._group is not None:
            self._group.close()  # what is written is made durable first
        self._file_sync.close()
        with self._lock:
            self._db.close()
            if self._signal is not None:
                self._signal.close()

    def _check(self, table: str) -> None:
        if table not in self._tables:
            raise ValueError(f"unknown table {table}")
