"""Choosing a region's store backend: the config's ``store`` names one of ``BACKENDS``; adding a backend (etcd) is
one more factory class here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from node.store.base import Store, StoreFactory
from node.store.sqlite import SqliteStore


class SqliteStoreFactory:
    """One SQLite database per region, ``kms.db`` in the region's directory."""

    def open(self, region: str, directory: Path, *, shared: bool) -> Store:
        # Group sync: a region's fsyncs wait in a thread of its store, not on the loop every region shares.
        return SqliteStore(directory / "kms.db", feed=shared, group_sync=True)

    def open_runtime(self, directory: Path) -> Store:
        return SqliteStore(directory / "runtime.db", feed=True)


BACKENDS: dict[str, Callable[[], StoreFactory]] = {"sqlite": SqliteStoreFactory}


def make_store_factory(backend: str = "sqlite") -> StoreFactory:
    """The factory of the backend the config names (``store`` key); ValueError for one that does not exist."""
    make = BACKENDS.get(backend)
    if make is None:
        raise ValueError(f"unknown store backend {backend!r} (one of: {', '.join(sorted(BACKENDS))})")
    return make()
