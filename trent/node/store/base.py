"""The narrow storage Protocol a region writes through: opaque documents in named tables.

The store knows no table of its own: whoever keeps documents in it declares the tables it owns (the region its
keys, aliases and grants; replication its outbox and cursors), and which of them the change feed records.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


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
    written, and the writer must catch up and decide again. ``head``: the change head that beat it, where the store
    said (0 where it did not)."""

    def __init__(self, message: str, head: int = 0) -> None:
        super().__init__(message)
        self.head = head


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


class Store(Protocol):
    def declare(self, table: str, *, feed: bool = False) -> None:
        """Make ``table`` usable (idempotent; its documents survive). ``feed``: the change feed records which of
        its rows every commit changed (it is state some process holds in memory)."""
        ...

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

    def durable(self) -> Future[None] | None:
        """None when every commit so far is durable (a store whose commit returns only then); else a future done
        once they are, or failed with StoreError. Nothing that rests on a commit is answered before that."""
        ...

    def fail_next_sync(self) -> bool:
        """A drill (`trent fault disk`): the next sync of this store's commits to its disk fails, as a failing disk's
        would. False for a store with no disk of its own to fail (in memory, or in etcd)."""
        ...

    def change_feed(self) -> ChangeFeed | None:
        """The feed of what other processes serving the same data commit; None for a store only this process
        writes."""
        ...

    def trim_changes(self, keep: int = 10000) -> int:
        """Forget all but the newest ``keep`` changes of the feed (a reader further behind loads everything
        again); how many were forgotten (0 without a feed)."""
        ...

    def close(self) -> None: ...


class StoreFactory(Protocol):
    """Opens a region's store: the one place a backend is chosen (config key ``store``)."""

    def open(self, region: str, directory: Path, *, shared: bool) -> Store:
        """The store of ``region`` whose files (if any) live in ``directory``; ``shared``: several processes serve
        the region, so the store keeps a change feed (``Store.change_feed``)."""
        ...

    def open_runtime(self, directory: Path) -> Store:
        """The small store the processes of one cluster share (its clock offset and faults), with a change feed;
        ``directory`` is the cluster's data directory."""
        ...


def store_failed(store: Store) -> bool:
    """Whether ``store`` failed to make its commits durable (node/store/groupsync.py): what it holds on disk is
    unknown, and its region answers nothing until it starts again."""
    pending = store.durable()
    return pending is not None and pending.done() and pending.exception() is not None
