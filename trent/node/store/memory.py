"""In-memory store for unit tests, with failure injection to prove a failed write changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future

from trent.node.store.base import Batch, ChangeFeed, StoreError


class MemoryStore:
    def __init__(self) -> None:
        self.tables: dict[str, dict[str, bytes]] = {}
        self.fail_commits = 0  # the next N commits raise StoreError
        self.commits = 0

    def declare(self, table: str, *, feed: bool = False) -> None:
        self.tables.setdefault(table, {})

    def durable(self) -> Future[None] | None:
        return None  # nothing is ever written to a disk

    def fail_next_sync(self) -> bool:
        return False  # no disk to fail

    def change_feed(self) -> ChangeFeed | None:
        return None  # only this process writes it

    def trim_changes(self, keep: int = 10000) -> int:
        return 0

    def scan(self, table: str) -> Iterator[tuple[str, bytes]]:
        yield from sorted(self.tables[table].items())

    def get(self, table: str, ident: str) -> bytes | None:
        return self.tables[table].get(ident)

    def last_id(self, table: str) -> str | None:
        return max(self.tables[table], default=None)

    def scan_after(self, table: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        return sorted((i, d) for i, d in self.tables[table].items() if i > after)[:max(limit, 0)]

    def commit(self, batch: Batch) -> None:
        for table in (*batch.puts, *batch.deletes):
            if table not in self.tables:
                raise ValueError(f"unknown table {table}")
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise StoreError("injected failure")
        for table, docs in batch.puts.items():
            self.tables[table].update(docs)
        for table, idents in batch.deletes.items():
            for ident in idents:
                self.tables[table].pop(ident, None)
        self.commits += 1

    def close(self) -> None:
        pass
