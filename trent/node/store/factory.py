"""Choosing a region's store backend: the config's ``store`` names one of ``BACKENDS`` (``region_stores`` may name
another for some regions); adding a backend is one more factory class here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from trent.node.store.base import Store, StoreFactory
from trent.node.store.etcd_client import EtcdClient, EtcdSettings
from trent.node.store.sqlite import SqliteStore


class SqliteStoreFactory:
    """One SQLite database per region, ``kms.db`` in the region's directory."""

    def __init__(self, _etcd: EtcdSettings | None = None) -> None:
        pass

    def open(self, region: str, directory: Path, *, shared: bool) -> Store:
        # Group sync: a region's fsyncs wait in a thread of its store, not on the loop every region shares.
        return SqliteStore(directory / "kms.db", feed=shared, group_sync=True)

    def open_runtime(self, directory: Path) -> Store:
        return SqliteStore(directory / "runtime.db", feed=True)


class EtcdStoreFactory:
    """A region's documents in etcd (node/store/etcd.py): any number of nodes serve it. The small runtime store of
    ``--workers`` stays a local SQLite file: it is one host's."""

    def __init__(self, etcd: EtcdSettings | None = None) -> None:
        self.settings = etcd or EtcdSettings()

    def open(self, region: str, directory: Path, *, shared: bool) -> Store:
        from trent.node.store.base import StoreError
        from trent.node.store.etcd import EtcdStore  # (its watch thread starts only when a region uses it)
        try:
            return EtcdStore(EtcdClient(self.settings), region)
        except StoreError as exc:  # etcd unreachable at start: one line for the operator, not a traceback
            raise OSError(str(exc)) from exc

    def open_runtime(self, directory: Path) -> Store:
        return SqliteStore(directory / "runtime.db", feed=True)


class PerRegionStores:
    """The factory of each region's backend: ``default`` unless ``by_region`` names another."""

    def __init__(self, default: StoreFactory, by_region: Mapping[str, StoreFactory]) -> None:
        self.default = default
        self.by_region = dict(by_region)

    def open(self, region: str, directory: Path, *, shared: bool) -> Store:
        return self.by_region.get(region, self.default).open(region, directory, shared=shared)

    def open_runtime(self, directory: Path) -> Store:
        return self.default.open_runtime(directory)


BACKENDS: dict[str, Callable[[EtcdSettings | None], StoreFactory]] = {
    "sqlite": SqliteStoreFactory, "etcd": EtcdStoreFactory}


def make_store_factory(backend: str = "sqlite", etcd: EtcdSettings | None = None,
                       region_stores: Mapping[str, str] | None = None) -> StoreFactory:
    """The factory of the backend the config names (``store`` key; ``region_stores``: other backends for some
    regions); ValueError for one that does not exist."""
    def make(name: str) -> StoreFactory:
        maker = BACKENDS.get(name)
        if maker is None:
            raise ValueError(f"unknown store backend {name!r} (one of: {', '.join(sorted(BACKENDS))})")
        return maker(etcd)
    default = make(backend)
    if not region_stores:
        return default
    return PerRegionStores(default, {region: make(name) for region, name in region_stores.items()})
