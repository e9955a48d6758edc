"""etcd reached over TLS with a client certificate (etcd --client-cert-auth) and with etcd's own users: the region
works through either, a client without its certificate or with a wrong password is refused with a clear error that
never shows the password, and a user limited to the cluster's prefix is all Trent needs. Each test runs a one-member
etcd of its own (certificates from `trent init`'s CA)."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_replication_log import ACCOUNT, ROOT, A, B, mrk
from trent.cluster.bundle import init_cluster
from trent.cluster.etcd_local import LocalEtcd, etcd_binary
from trent.node.clock import FixedClock
from trent.node.service import Region, RegionIdentity
from trent.node.store.base import StoreError
from trent.node.store.etcd import EtcdStore
from trent.node.store.etcd_client import EtcdClient, EtcdSettings

pytestmark = pytest.mark.skipif(etcd_binary() is None, reason="etcd is not installed (Debian package etcd-server)")


@pytest.fixture
def tls_etcd(tmp_path: Path) -> Iterator[tuple[LocalEtcd, Path, Path]]:
    """A TLS etcd demanding client certificates: (it, the CA, a client bundle's directory)."""
    server, client = init_cluster(tmp_path / "pki", ["etcd=127.0.0.1,localhost", "trent=127.0.0.1"])
    ca = tmp_path / "pki" / "cluster" / "ca.pem"
    cluster = LocalEtcd(tmp_path / "etcd", members=1, tls=(server / "node.pem", server / "node.key", ca))
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(client / "node.pem", client / "node.key")
    cluster.client_tls = context
    cluster.start()
    try:
        yield cluster, ca, client
    finally:
        cluster.stop()


def test_a_region_over_tls_with_a_client_certificate(tls_etcd: tuple[LocalEtcd, Path, Path]) -> None:
    cluster, ca, client = tls_etcd
    assert all(e.startswith("https://") for e in cluster.endpoints)
    settings = EtcdSettings(endpoints=cluster.endpoints, ca_file=str(ca), cert_file=str(client / "node.pem"),
                            key_file=str(client / "node.key"))
    store = EtcdStore(EtcdClient(settings), A)
    try:
        region = Region(RegionIdentity(A, ACCOUNT), store, ROOT, FixedClock(), cluster_regions=(A, B))
        region.commit(keys=[mrk(1)])
        assert EtcdClient(settings).health()[0]["healthy"]
    finally:
        store.close()
    # Without the client certificate, or trusting another CA, nothing is read. (With TLS 1.3 the refusal of a
    # missing certificate may come only after the request was sent: either way it is a StoreError saying so.)
    with pytest.raises(StoreError, match=r"certificate|no etcd endpoint answered"):
        EtcdStore(EtcdClient(EtcdSettings(endpoints=cluster.endpoints, ca_file=str(ca), timeout=2)), A)
    with pytest.raises(StoreError, match="CERTIFICATE_VERIFY_FAILED"):
        EtcdStore(EtcdClient(EtcdSettings(endpoints=cluster.endpoints, timeout=2)), A)  # the system's CAs


def test_a_region_with_an_etcd_user_limited_to_its_prefix(tmp_path: Path) -> None:
    cluster = LocalEtcd(tmp_path / "etcd", members=1).start()
    try:
        def etcdctl(*args: str) -> None:
            subprocess.run(["etcdctl", "--endpoints", cluster.endpoints[0], *args], check=True, capture_output=True,
                           timeout=30, env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})

        etcdctl("user", "add", "root:root-pw")
        etcdctl("role", "add", "trent")
        etcdctl("role", "grant-permission", "trent", "--prefix=true", "readwrite", "/trent-sec/")
        etcdctl("user", "add", "trent:trent-pw-123")
        etcdctl("user", "grant-role", "trent", "trent")
        etcdctl("auth", "enable")
        settings = EtcdSettings(endpoints=cluster.endpoints, prefix="/trent-sec", user="trent",
                                password="trent-pw-123")
        store = EtcdStore(EtcdClient(settings), A)
        try:
            region = Region(RegionIdentity(A, ACCOUNT), store, ROOT, FixedClock(), cluster_regions=(A, B))
            region.commit(keys=[mrk(2)])
            other = EtcdStore(EtcdClient(settings), A)  # a second node: reads it, and follows by watch
            try:
                other.declare("keys", feed=True)
                assert other.get("keys", mrk(2).key_id) is not None
            finally:
                other.close()
        finally:
            store.close()
        with pytest.raises(StoreError) as refused:
            EtcdStore(EtcdClient(EtcdSettings(endpoints=cluster.endpoints, prefix="/trent-sec", user="trent",
                                              password="wrong-pw-456")), A)
        assert "etcd_user" in str(refused.value) and "wrong-pw-456" not in str(refused.value)
        # Outside its prefix the user can do nothing.
        with pytest.raises(StoreError, match="permission denied"):
            EtcdStore(EtcdClient(EtcdSettings(endpoints=cluster.endpoints, prefix="/elsewhere", user="trent",
                                              password="trent-pw-123")), A)
    finally:
        cluster.stop()
