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


class StaleState(StoreError):
    """A conditional commit found changes (made by another process) beyond those its writer had seen: nothing was
    written, and the writer must catch up and decide again."""


# The tables whose changes the change feed records (what a region holds in memory, and its outbox numbering).
FEED_TABLES = frozenset({"keys", "aliases", "grants", "outbox"})


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


class ChangeFeed(Protocol):
    """A store several processes share: what the others changed, and commits conditional on having seen it all."""

    def data_version(self) -> int:
        """A number that changes whenever another process commits."""
        ...

    def change_head(self) -> int: ...

    def changes_after(self, seq: int) -> tuple[int, list[tuple[int, str, str]]]:
        """(oldest change still recorded, [(seq, table, id), ...] after ``seq``)."""
        ...

    def commit_if(self, batch: Batch, expect: int) -> int:
        """Commit unless changes beyond ``expect`` exist (then raise StaleState); return the new change head."""
        ...
