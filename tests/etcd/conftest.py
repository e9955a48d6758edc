"""A real 3-member etcd cluster (Debian's etcd-server) on loopback ports, for the tests of etcd-backed regions: one
per test module, in its own temporary directory, stopped (members killed if they will not stop) at its end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from trent.cluster.etcd_local import LocalEtcd, etcd_binary


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEtcd]:
    if etcd_binary() is None:
        pytest.skip("etcd is not installed (Debian package etcd-server, listed in deploy/debian-packages.txt)")
    cluster = LocalEtcd(Path(tmp_path_factory.mktemp("etcd")), members=3).start()
    try:
        yield cluster
    finally:
        cluster.stop()
