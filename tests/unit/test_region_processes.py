"""The pieces of regions in processes of their own, without a network: signed node links, the published latency
matrix, the gateway's region pool, status put together from nodes' reports, `trent init` bundles, the new
configuration keys."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from trent.cluster.bundle import apply_bundle, init_cluster
from trent.cluster.cluster_view import cluster_status, consistency
from trent.cluster.gateway_proxy import region_urls
from trent.cluster.latency import AWS_RTT_MS, matrix_for, one_way_seconds, rtt_ms
from trent.cluster.links import LinkVerifier, sign
from trent.cluster.region_pool import RegionPool
from trent.node.config import ClusterConfig, ConfigError, load_config

KEY = "link-secret"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _check(verifier: LinkVerifier, headers: dict[str, str], method: str = "GET", path: str = "/p",
           query: dict[str, str] | None = None, body: bytes = b"") -> bool:
    return verifier.verify(method, path, (query or {}).items(), headers.get("X-Trent-Signature"), body)


def test_a_signed_request_is_accepted_once_and_only_as_signed() -> None:
    clock = Clock()
    verifier = LinkVerifier(KEY, now=clock)
    headers = sign(KEY, "GET", "/p", {"after": "3"}, now=clock)
    assert _check(verifier, headers, query={"after": "3"})
    assert not _check(verifier, headers, query={"after": "3"})  # replayed
    fresh = sign(KEY, "POST", "/p", {}, b'{"a": 1}', now=clock)
    assert not _check(verifier, fresh, method="POST", body=b'{"a": 2}')  # another body
    assert not _check(verifier, sign(KEY, "GET", "/p", now=clock), path="/q")  # another path
    assert not _check(verifier, sign("other-cluster", "GET", "/p", now=clock))  # another key
    assert not _check(verifier, {})
    for broken in ("", "t=1", "garbage", "t=x,n=y,s=z", "t=inf,n=y,s=z"):
        assert not _check(verifier, {"X-Trent-Signature": broken})


def test_a_signature_is_fresh_only_within_the_window() -> None:
    clock = Clock()
    verifier = LinkVerifier(KEY, now=clock, window=60)
    old = sign(KEY, "GET", "/p", now=lambda: clock.now - 61)
    ahead = sign(KEY, "GET", "/p", now=lambda: clock.now + 61)
    assert not _check(verifier, old) and not _check(verifier, ahead)
    assert _check(verifier, sign(KEY, "GET", "/p", now=lambda: clock.now - 59))


def test_the_latency_matrix_is_symmetric_and_from_the_published_table() -> None:
    assert rtt_ms("us-east-1", "eu-west-1") == rtt_ms("eu-west-1", "us-east-1") == 81.0
    assert rtt_ms("ap-northeast-1", "ap-northeast-2") == 31.0
    assert rtt_ms("us-east-1", "us-east-1") == 0.0
    assert rtt_ms("us-east-1", "me-south-1") == 100.0  # not in the table: the default
    assert one_way_seconds("us-east-1", "ap-northeast-2") == pytest.approx(0.089)
    assert len(AWS_RTT_MS) == 45 and all(10 < v < 400 for v in AWS_RTT_MS.values())
    assert matrix_for(["us-east-1", "eu-west-1"]) == {"us-east-1": {"eu-west-1": 81.0},
                                                      "eu-west-1": {"us-east-1": 81.0}}


def test_the_pool_prefers_healthy_nodes_in_turn_and_keeps_the_others_last() -> None:
    pool = RegionPool({"r": ("http://a", "http://b", "http://c")})
    firsts = [pool.order("r")[0].url for _ in range(3)]
    assert sorted(firsts) == ["http://a", "http://b", "http://c"]  # round-robin
    pool.backends["r"][0].healthy = False
    for _ in range(3):
        order = [b.url for b in pool.order("r")]
        assert order[-1] == "http://a" and len(order) == 3
    assert pool.order("unknown") == [] and not pool.knows("unknown")


def test_the_gateway_maps_a_region_to_several_nodes_or_to_its_local_port() -> None:
    config = load_config(None, {"regions": "us-east-1,eu-west-1", "port": 5000,
                                "peers": {"us-east-1": "http://10.0.0.1:1,http://10.0.0.2:1"}})
    assert region_urls(config) == {"us-east-1": ("http://10.0.0.1:1", "http://10.0.0.2:1"),
                                   "eu-west-1": ("http://127.0.0.1:5002",)}


def _view(materials: list[str], stamp: list[int], related: list[str]) -> dict[str, object]:
    return {"materials": materials, "current": materials[-1], "stamp": stamp, "related": related}


def test_consistency_from_the_nodes_reports() -> None:
    both = ["a", "b"]
    same = {"a": {"k": _view(["m1"], [1, 1], both)}, "b": {"k": _view(["m1"], [1, 1], both)}}
    assert consistency(same)["consistent"]
    missing = {"a": {"k": _view(["m1"], [1, 1], both)}, "b": {}}
    assert consistency(missing) == {"multi_region_keys": 1, "consistent": False, "divergent_keys": ["k"],
                                    "missing": {"k": ["b"]}}
    behind = {"a": {"k": _view(["m1", "m2"], [1, 2], both)}, "b": {"k": _view(["m1"], [1, 1], both)}}
    assert consistency(behind)["divergent_keys"] == ["k"]
    # A region whose node did not answer is not counted as missing the key.
    status = cluster_status("http://g", ["a", "b"], {"a": "http://a", "b": "http://b"},
                            {"a": {"url": "http://a", "up": True, "keys": 1, "multi_region_keys": 1, "aliases": 0,
                                   "outbox_head": 7, "links": {"b": {"cursor": 2, "head": 9, "connected": False}},
                                   "mrk": {"k": _view(["m1"], [1, 1], both)}, "clock": {"offset": 0},
                                   "faults": {}, "pid": 1}, "b": None})
    assert status["consistency"]["consistent"]
    assert status["regions"]["b"]["up"] is False and status["regions"]["b"]["reachable"] is False
    assert status["regions"]["a"]["replication"]["b"]["lag_records"] == 7  # the peer's last known head


def test_config_keys_of_region_processes() -> None:
    config = load_config(None, {"peers": {"eu-west-1": ["http://10.0.0.2:4600"]}, "latency_profile": "aws"})
    assert config.peers == {"eu-west-1": ("http://10.0.0.2:4600",)} and config.latency_profile == "aws"
    for bad, message in (({"latency_profile": "mars"}, "latency_profile"),
                         ({"peers": {"eu-west-1": "ftp://x"}}, "not a node URL"),
                         ({"peers": {"Not A Region": "http://x:1"}}, "not a region name"),
                         ({"peers": "http://x"}, "peers must be a table"),
                         ({"tls_cert": "/c.pem"}, "go together")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, bad)


def test_a_bundle_ties_the_data_directory_to_its_cluster(tmp_path: Path) -> None:
    (bundle,) = init_cluster(tmp_path / "one", ["us-east-1=127.0.0.1"], ["us-east-1"])
    (stranger,) = init_cluster(tmp_path / "two", ["us-east-1=127.0.0.1"], ["us-east-1"])
    data = tmp_path / "data"
    config = apply_bundle(ClusterConfig(data_dir=data, bundle=bundle))
    assert config.admin_token == (bundle / "admin.token").read_text()
    assert config.tls_cert == bundle / "node.pem" and config.tls_ca == bundle / "ca.pem"
    assert (data / "cluster.key").read_bytes().hex() == (bundle / "transport.key").read_text()
    assert (data / "cluster.key").stat().st_mode & 0o777 == 0o600
    assert apply_bundle(ClusterConfig(data_dir=data, bundle=bundle)).admin_token == config.admin_token  # again
    with pytest.raises(ConfigError, match="belongs to cluster"):
        apply_bundle(ClusterConfig(data_dir=data, bundle=stranger))
    # A certificate that is not from the bundle's CA, and a secret readable by others, are refused.
    forged = tmp_path / "forged"
    shutil.copytree(bundle, forged)
    (forged / "node.pem").write_text((stranger / "node.pem").read_text())
    (forged / "node.pem").chmod(0o600)
    with pytest.raises(ConfigError, match="not issued by"):
        apply_bundle(ClusterConfig(data_dir=tmp_path / "d2", bundle=forged))
    (bundle / "admin.token").chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        apply_bundle(ClusterConfig(data_dir=data, bundle=bundle))


def test_init_extends_a_cluster_with_new_nodes_of_the_same_cluster(tmp_path: Path) -> None:
    (first,) = init_cluster(tmp_path / "c", ["a=10.0.0.1"])
    (second,) = init_cluster(tmp_path / "c", ["b=b.example"])
    docs = [json.loads((b / "bundle.json").read_text()) for b in (first, second)]
    assert docs[0]["cluster_id"] == docs[1]["cluster_id"]
    assert (first / "transport.key").read_text() == (second / "transport.key").read_text()
    with pytest.raises(ValueError, match="NAME=ADDRESS"):
        init_cluster(tmp_path / "c", ["nameless"])


def test_bundles_give_every_node_of_a_region_the_same_root_key_and_no_other_region_s(tmp_path: Path) -> None:
    out = tmp_path / "c"
    a1, a2, b = init_cluster(out, ["us-east-1=10.0.0.1", "us-east-1-b=10.0.0.2", "eu-west-1=10.0.0.3"],
                             ["us-east-1", "eu-west-1"])
    one = apply_bundle(ClusterConfig(data_dir=tmp_path / "d1", bundle=a1))
    two = apply_bundle(ClusterConfig(data_dir=tmp_path / "d2", bundle=a2))
    other = apply_bundle(ClusterConfig(data_dir=tmp_path / "d3", bundle=b))
    assert one.root_keys == two.root_keys and set(one.root_keys) == {"us-east-1"}
    assert set(other.root_keys) == {"eu-west-1"}
    assert (a1 / "root-keys.json").stat().st_mode & 0o777 == 0o600
    # A node added later gets the same key; a region directory with a root key of its own keeps it.
    (late,) = init_cluster(out, ["us-east-1-3=10.0.0.4"])
    assert apply_bundle(ClusterConfig(data_dir=tmp_path / "d4", bundle=late)).root_keys == one.root_keys
    (tmp_path / "d5" / "us-east-1").mkdir(parents=True)
    (tmp_path / "d5" / "us-east-1" / "root.key").write_bytes(b"\x01" * 32)
    assert apply_bundle(ClusterConfig(data_dir=tmp_path / "d5", bundle=a1)).root_keys == {}
