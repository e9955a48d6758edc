"""The narrow storage Protocol a region writes through: opaque documents in a few named tables."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

# keys/aliases: the region's state; outbox: its replication log (ids are zero-padded sequence numbers, so id
# order is log order); cursors: how far it has applied each peer's log; meta: anything else.
TABLES = ("keys", "aliases", "meta", "outbox", "cursors", "grants")


@dataclass
class Batch:
    """Writes applied atomically: all or nothing."""

    puts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    deletes: dict[str, set[str]] = field(default_factory=dict)

    def put(self, table: str, ident: str, doc: bytes) -> Batch:
        self.puts.setdefault(table, {})[ident] = doc
        self.deletes.get(table, set()).discard(ident)
        return self

    def delete(self, table: str, ident: str) -> Batch:
        self.deletes.setdefault(table, set()).add(ident)
        self.puts.get(table, {}).pop(ident, None)
        return self

    def __bool__(self) -> bool:
        return any(self.puts.values()) or any(self.deletes.values())


class StoreError(Exception):
    """The store could not commit; nothing of the batch was written."""


class Store(Protocol):
    def scan(self, table: str) -> Iterator[tuple[str, bytes]]: ...

    def get(self, table: str, ident: str) -> bytes | None: ...

    def last_id(self, table: str) -> str | None:
        """The greatest id in ``table`` (string order), or None if it is empty."""
        ...

    def scan_after(self, table: str, after: str, limit: int) -> list[tuple[str, bytes]]:
        """Up to ``limit`` rows whose id sorts after ``after``, in id order."""
        ...

    def commit(self, batch: Batch) -> None:
        """Durably apply the batch (committed before returning) or raise StoreError having written nothing."""
        ...

    def close(self) -> None: ...
