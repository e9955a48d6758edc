"""node/hsm and node/keystores without a cluster: a real SoftHSM2 token in a temporary directory, the session pool's
bounds and timeouts, injected faults, login failures in KMS's words, the token crypto, the cluster configuration."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest

from trent.node.hsm.faults import HsmFaults
from trent.node.hsm.pool import HsmFailed, HsmLoginFailed, HsmUnavailable, SessionPool
from trent.node.hsm.softhsm import SoftHsmDirectory, find_library
from trent.node.keystores import token_crypto
from trent.node.keystores.clusters import (
    ClusterConfigError,
    HsmClusterSpec,
    certificate_fingerprint,
    ensure_trust_anchor,
    parse_clusters,
    region_clusters,
)
from trent.node.model.errors import KmsError

LABEL, PIN, SO_PIN = "cluster-unittestabc", "unit-pin-1", "so-pin-12"
needs_softhsm = pytest.mark.skipif(find_library() is None, reason="SoftHSM2 is not installed (Debian: softhsm2)")


@pytest.fixture(scope="module")
def tokens(tmp_path_factory: pytest.TempPathFactory) -> SoftHsmDirectory:
    library = find_library()
    if library is None:
        pytest.skip("SoftHSM2 is not installed (Debian: softhsm2)")
    directory = SoftHsmDirectory(tmp_path_factory.mktemp("softhsm"), library)
    directory.prepare()
    directory.create_token(LABEL, SO_PIN, PIN)
    return directory


@pytest.fixture
def pool(tokens: SoftHsmDirectory) -> Iterator[SessionPool]:
    p = SessionPool(tokens.library, LABEL, PIN, size=2, name="unit")
    p.open()
    yield p
    p.close()


def test_wrong_pin_is_invalid_credentials(tokens: SoftHsmDirectory) -> None:
    wrong = SessionPool(tokens.library, LABEL, "not-the-pin", size=1)
    with pytest.raises(HsmLoginFailed) as info:
        wrong.open()
    assert info.value.code == "INVALID_CREDENTIALS" and "not-the-pin" not in str(info.value)
    wrong.close()
    missing = SessionPool(tokens.library, "cluster-nosuchtoken", PIN, size=1)
    with pytest.raises(HsmLoginFailed) as info:
        missing.open()
    assert info.value.code == "CLUSTER_NOT_FOUND"
    missing.close()


def test_keys_are_made_and_used_inside_the_token(pool: SessionPool) -> None:
    object_id = token_crypto.new_object_id()
    key_id = "1234abcd-12ab-34cd-56ef-1234567890ab"
    pool.call(lambda s: token_crypto.generate_key(s, object_id, key_id), 5)
    attrs = pool.call(lambda s: token_crypto.key_attributes(s, object_id), 5)
    assert attrs["sensitive"] is True and attrs["extractable"] is False and attrs["never_extractable"] is True
    assert attrs["local"] is True and attrs["value_len"] == 32
    blob = pool.call(lambda s: token_crypto.seal(s, key_id, object_id, b"hello", {"a": "b"}), 5)
    assert pool.call(lambda s: token_crypto.unseal(s, blob, object_id, {"a": "b"}), 5) == b"hello"
    for context in ({"a": "c"}, None):
        with pytest.raises(KmsError) as info:
            pool.call(lambda s, ctx=context: token_crypto.unseal(s, blob, object_id, ctx), 5)  # type: ignore[misc]
        assert info.value.code == "InvalidCiphertextException"
    other = token_crypto.new_object_id()
    with pytest.raises(KmsError):  # a blob names its token object: another object's key never opens it
        pool.call(lambda s: token_crypto.unseal(s, blob, other, {"a": "b"}), 5)
    assert len(pool.call(lambda s: token_crypto.random_bytes(s, 40), 5)) == 40
    assert pool.call(lambda s: token_crypto.destroy(s, object_id), 5) is True
    assert pool.call(lambda s: token_crypto.destroy(s, object_id), 5) is False
    with pytest.raises(HsmFailed):
        pool.call(lambda s: token_crypto.key_attributes(s, object_id), 5)


def test_the_pool_is_bounded_and_a_hung_token_holds_only_its_own_threads(tokens: SoftHsmDirectory) -> None:
    running, most = [0], [0]
    lock = threading.Lock()
    release = threading.Event()

    def hang(_: float) -> None:  # the token of cluster "a" answers only when released
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1

    faults = HsmFaults(sleep=hang)
    hung = SessionPool(tokens.library, LABEL, PIN, size=2, name="hung", before_call=faults.hook("a"))
    other = SessionPool(tokens.library, LABEL, PIN, size=2, name="other", before_call=faults.hook("b"))
    try:
        hung.open()
        faults.set("a", "latency", 1.0)
        futures = [hung.submit(lambda s: token_crypto.random_bytes(s, 4)) for _ in range(5)]
        time.sleep(0.2)
        assert most[0] == 2  # never more calls at once than sessions
        with pytest.raises(FutureTimeout):
            futures[-1].result(timeout=0.1)  # the caller decides how long it waits
        started = time.monotonic()
        assert len(other.call(lambda s: token_crypto.random_bytes(s, 8), 2)) == 8  # another pool is not held up
        assert time.monotonic() - started < 1.0
        release.set()
        assert all(len(f.result(5)) == 4 for f in futures)
    finally:
        release.set()
        hung.close()
        other.close()


def test_injected_faults(tokens: SoftHsmDirectory) -> None:
    slept: list[float] = []
    faults = HsmFaults(sleep=slept.append)
    pool = SessionPool(tokens.library, LABEL, PIN, size=1, before_call=faults.hook("cluster-unittestabc"))
    try:
        faults.set("cluster-unittestabc", "down")
        with pytest.raises(HsmUnavailable):
            pool.call(lambda s: token_crypto.random_bytes(s, 8), 5)
        faults.set("cluster-unittestabc", "up")
        faults.set("cluster-unittestabc", "latency", 0.2)
        pool.call(lambda s: token_crypto.random_bytes(s, 8), 5)
        assert slept == [0.2]
        faults.set("cluster-unittestabc", "errors", 1.0)
        with pytest.raises(HsmFailed):
            pool.call(lambda s: token_crypto.random_bytes(s, 8), 5)
        assert faults.describe() == {"cluster-unittestabc": {"down": False, "latency_ms": 200.0,
                                                             "errors_percent": 100.0}}
        copy = HsmFaults()
        copy.load(faults.describe())
        assert copy.describe() == faults.describe()
        faults.set("cluster-unittestabc", "clear")
        assert faults.describe() == {}
        with pytest.raises(ValueError):
            faults.set("cluster-unittestabc", "errors", 2.0)
        # Down while logging in: the store's connection fails with NETWORK_ERRORS.
        faults.set("cluster-other", "down")
        down = SessionPool(tokens.library, LABEL, PIN, size=1, before_call=faults.hook("cluster-other"))
        with pytest.raises(HsmLoginFailed) as info:
            down.open()
        assert info.value.code == "NETWORK_ERRORS"
        down.close()
    finally:
        pool.close()


def test_cluster_configuration() -> None:
    regions = ("us-east-1", "eu-west-1")
    specs = parse_clusters([{"id": "cluster-abcdefghijk", "kmsuser_password": "password1", "regions": ["eu-west-1"]},
                            {"id": "cluster-bcdefghijkl", "kmsuser_password": "password2",
                             "backup_of": "cluster-abcdefghijk", "hsms": 3}], regions)
    assert specs[0].serves("eu-west-1") and not specs[0].serves("us-east-1") and specs[1].hsms == 3
    assert "password1" not in repr(specs[0])
    bad = [
        ({"id": "cluster-short", "kmsuser_password": "password1"}, "id must be"),
        ({"id": "cluster-abcdefghijk", "kmsuser_password": "short"}, "7 to 32"),
        ({"id": "cluster-abcdefghijk", "kmsuser_password": "password1", "hsms": -1}, "hsms"),
        ({"id": "cluster-abcdefghijk", "kmsuser_password": "password1", "regions": ["mars-1"]}, "not configured"),
        ({"id": "cluster-abcdefghijk", "kmsuser_password": "password1", "pasword": "x"}, "unknown key"),
        ({"id": "cluster-abcdefghijk", "kmsuser_password": "password1", "backup_of": "cluster-nowhereabcd"},
         "backup_of"),
    ]
    for item, words in bad:
        with pytest.raises(ClusterConfigError) as info:
            parse_clusters([item], regions)
        assert words in str(info.value) and "password1" not in str(info.value)
    with pytest.raises(ClusterConfigError):
        parse_clusters([{"id": "cluster-abcdefghijk", "kmsuser_password": "password1", "backup_of":
                         "cluster-bcdefghijkl"}, {"id": "cluster-bcdefghijkl", "kmsuser_password": "password1",
                                                  "backup_of": "cluster-abcdefghijk"}], regions)


@needs_softhsm
def test_region_tokens_are_made_once_and_follow_the_configured_password(tmp_path: Path) -> None:
    spec = HsmClusterSpec("cluster-regionalabcd", "first-password")
    directory = region_clusters((spec,), "eu-west-1", tmp_path / "eu-west-1", tmp_path)
    cluster = directory.get(spec.cluster_id)
    assert cluster is not None and cluster.trust_anchor_path.exists()
    fingerprint = certificate_fingerprint(cluster.trust_anchor_pem())
    assert fingerprint is not None and certificate_fingerprint("garbage") is None
    assert (tmp_path / "eu-west-1" / "hsm" / "so.pin").stat().st_mode & 0o077 == 0
    pool = SessionPool(cluster.library, cluster.lineage_id, "first-password", size=1)
    pool.open()
    pool.close()
    ensure_trust_anchor(cluster.trust_anchor_path, spec.cluster_id)  # kept: the same certificate as before
    assert certificate_fingerprint(cluster.trust_anchor_path.read_text()) == fingerprint


def test_hsm_clusters_in_the_config_file(tmp_path: Path) -> None:
    from trent.node.config import ConfigError, load_config

    path = tmp_path / "trent.toml"
    path.write_text('[[hsm_clusters]]\nid = "cluster-abcdefghijk"\nkmsuser_password = "password1"\nhsms = 3\n')
    config = load_config(path)
    assert config.hsm_clusters is not None and config.hsm_clusters[0].hsms == 3
    assert load_config(None).hsm_clusters is None  # none configured: the default cluster where SoftHSM2 is
    path.write_text('[[hsm_clusters]]\nid = "cluster-abcdefghijk"\nkmsuser_password = "password1"\nhsm = 3\n')
    with pytest.raises(ConfigError, match="unknown key 'hsm'"):
        load_config(path)
    path.write_text('[[hsm_cluster]]\nid = "cluster-abcdefghijk"\n')
    with pytest.raises(ConfigError, match="hsm_clusters"):
        load_config(path)


def test_trent_fault_hsm_words() -> None:
    from trent.cluster.cli import fault_value
    from trent.cluster.keystore_cli import hsm_fault_command

    assert hsm_fault_command(["cluster-abcdefghijk", "down"], fault_value) == {
        "action": "hsm", "cluster": "cluster-abcdefghijk", "fault": "down"}
    assert hsm_fault_command(["cluster-abcdefghijk", "latency", "200ms"], fault_value)["value"] == 0.2
    assert hsm_fault_command(["cluster-abcdefghijk", "errors", "5%"], fault_value)["value"] == 0.05
    for words in (["cluster-abcdefghijk"], ["cluster-abcdefghijk", "sideways"], ["cluster-abcdefghijk", "latency"],
                  ["cluster-abcdefghijk", "down", "now"]):
        with pytest.raises(ValueError, match="usage: trent fault hsm"):
            hsm_fault_command(words, fault_value)


@needs_softhsm
def test_a_configured_trust_anchor_must_be_a_certificate(tmp_path: Path) -> None:
    missing = HsmClusterSpec("cluster-anchoredabcd", "password1", trust_anchor_certificate=tmp_path / "nope.crt")
    with pytest.raises(ClusterConfigError, match="not a readable PEM certificate"):
        region_clusters((missing,), "eu-west-1", tmp_path / "eu-west-1", tmp_path)
    ensure_trust_anchor(tmp_path / "mine.crt", "cluster-anchoredabcd")
    given = HsmClusterSpec("cluster-anchoredabcd", "password1", trust_anchor_certificate=tmp_path / "mine.crt")
    cluster = region_clusters((given,), "eu-west-1", tmp_path / "eu-west-1", tmp_path).get("cluster-anchoredabcd")
    assert cluster is not None and cluster.trust_anchor_pem() == (tmp_path / "mine.crt").read_text()
