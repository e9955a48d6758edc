"""In-memory store for unit tests, with failure injection to prove a failed write changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

from node.store.base import TABLES, Batch, StoreError


class MemoryStore:
    def __init__(self) -> None:
        self.tables: dict[str, dict[str, bytes]] = {t: {} for t in TABLES}
        self.fail_commits = 0  # the next N commits raise StoreError
        self.commits = 0

    def scan(self, table: str) -> Iterator[tuple[str, bytes]]:
        yield from sorted(self.tables[table].items())

    def get(self, table: str, ident: str) -> bytes | None:
        return self.tables[table].get(ident)

    def commit(self, batch: Batch) -> None:
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
