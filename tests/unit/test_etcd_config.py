"""The configuration of etcd-backed regions: store / region_stores / etcd_* keys, checked with messages that name
the key (and never echo a password)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trent.node.config import ConfigError, load_config
from trent.node.store.factory import EtcdStoreFactory, PerRegionStores, SqliteStoreFactory, make_store_factory


def test_etcd_keys_from_a_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "trent.toml"
    path.write_text('store = "etcd"\netcd_endpoints = ["http://10.0.0.5:2379", "https://10.0.0.6:2379/"]\n'
                    'etcd_prefix = "/trent/staging"\netcd_ca = "/etc/etcd/ca.pem"\netcd_cert = "/c.pem"\n'
                    'etcd_key = "/c.key"\netcd_user = "trent"\netcd_password = "s3cret-pw"\netcd_lease_ttl = 3\n')
    config = load_config(path)
    assert config.store == "etcd"
    assert config.etcd.endpoints == ("http://10.0.0.5:2379", "https://10.0.0.6:2379")
    assert (config.etcd.prefix, config.etcd.lease_ttl, config.etcd.user) == ("/trent/staging", 3, "trent")
    assert "s3cret-pw" not in repr(config)
    flagged = load_config(None, {"store": "etcd", "etcd_endpoints": "http://a:1,http://b:2"})
    assert flagged.etcd.endpoints == ("http://a:1", "http://b:2")
    assert load_config(None, {}).etcd.endpoints == ("http://127.0.0.1:2379",)


@pytest.mark.parametrize(("raw", "message"), [
    ({"etcd_endpoints": "ftp://x:1"}, "etcd_endpoints: ftp://x:1 is not an etcd URL"),
    ({"etcd_endpoints": []}, "etcd_endpoints"),
    ({"etcd_prefix": "trent"}, "etcd_prefix must be a key path"),
    ({"etcd_cert": "/c.pem"}, "etcd_cert and etcd_key go together"),
    ({"etcd_password": "hunter2"}, "etcd_password needs etcd_user"),
    ({"etcd_lease_ttl": 0}, "etcd_lease_ttl must be a whole number"),
    ({"etcd_lease_ttl": 2.5}, "etcd_lease_ttl must be a whole number"),
    ({"region_stores": {"mars-1": "etcd"}}, "not one of the regions"),
    ({"region_stores": {"us-east-1": "dynamo"}}, "region_stores.us-east-1 must be one of: etcd, sqlite"),
])
def test_bad_etcd_settings_are_refused_by_name(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(None, raw)
    assert "hunter2" not in str(caught.value)


def test_a_misspelt_etcd_key_in_a_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "trent.toml"
    path.write_text('etcd_endpoint = ["http://10.0.0.5:2379"]\n')
    with pytest.raises(ConfigError, match="did you mean 'etcd_endpoints'"):
        load_config(path)


def test_region_stores_choose_a_backend_per_region() -> None:
    config = load_config(None, {"region_stores": {"eu-west-1": "etcd"}})
    factory = make_store_factory(config.store, config.etcd, config.region_stores)
    assert isinstance(factory, PerRegionStores)
    assert isinstance(factory.default, SqliteStoreFactory)
    assert isinstance(factory.by_region["eu-west-1"], EtcdStoreFactory)
    assert isinstance(make_store_factory("sqlite"), SqliteStoreFactory)


def test_an_unreachable_etcd_is_one_clear_error_at_open(tmp_path: Path) -> None:
    config = load_config(None, {"store": "etcd", "etcd_endpoints": "http://127.0.0.1:9"})
    with pytest.raises(OSError, match="etcd: cannot read region us-east-1: no etcd endpoint answered"):
        make_store_factory(config.store, config.etcd).open("us-east-1", tmp_path, shared=False)
