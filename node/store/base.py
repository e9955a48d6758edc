"""The narrow storage Protocol a region writes through: opaque documents in a few named tables."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

TABLES = ("keys", "aliases", "meta")


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

    def commit(self, batch: Batch) -> None:
        """Durably apply the batch (committed before returning) or raise StoreError having written nothing."""
        ...

    def close(self) -> None: ...
