"""SIGKILL at random moments during mixed writes, restart, and nothing acknowledged is lost or half written
(tests/crash_harness.py; `make torture` runs many more rounds). A run's seed is random unless TRENT_CRASH_SEED
gives one; every failure names it, with the round and the moment of the kill."""

from __future__ import annotations

import os
import random
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.crash_checks import Checker, Tally
from tests.crash_harness import FAST_PLAN, run
from tests.crash_workload import ID_TAG, Change, Ciphertext, Ledger
from trent.cluster.ports import free_port_block
from trent.cluster.running import RunningCluster, admin_send, poll


def test_acknowledged_writes_survive_sigkill_at_random_moments(tmp_path: Path) -> None:
    seed = int(os.environ.get("TRENT_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    tally = run(tmp_path, FAST_PLAN, seed)
    assert not tally.failures, tally.summary()
    # A kill per round, one more for a round killed again while restarting or killed a worker first, and one for
    # each cluster's first start.
    extra = sum(p.again + (p.kill == "worker") for p in FAST_PLAN)
    kills = len(FAST_PLAN) + extra + len({p.workers for p in FAST_PLAN})
    assert (tally.rounds, tally.kills) == (len(FAST_PLAN), kills), tally.summary()
    # Enough happened before each kill to test something, of every kind of write.
    assert {"key", "mrk", "alias", "alias-update", "grant", "tag", "rotation", "rotate", "replica"} <= set(
        tally.acked), tally.summary()
    assert sum(tally.acked.values()) >= 100 and tally.ciphertexts >= 20, tally.summary()


def test_the_checks_notice_what_a_crash_lost(tmp_path: Path) -> None:
    """The checks fail a cluster that lost acknowledged changes, or kept half of one (here: changes a client was
    told of that never happened, and a key created without the tag it was created with)."""
    c = RunningCluster(tmp_path / "data", free_port_block(4), verbose=False).start()
    try:
        kms = c.client("us-east-1")
        key_id = kms.create_key(Description="crash-half")["KeyMetadata"]["KeyId"]  # no crash-id tag: half written
        blob = kms.encrypt(KeyId=key_id, Plaintext=b"one")["CiphertextBlob"]
        ledger = Ledger()
        ledger.changes += [
            Change("alias", ("alias", "us-east-1", "alias/crash-lost"), key_id, acked=True),
            Change("tag", ("tag", "us-east-1", key_id, "lost"), "v", acked=True),
            Change("tag", ("tag", "us-east-1", key_id, ID_TAG), "crash-half", acked=False),  # maybe: fine
            Change("key", ("key", "us-east-1", "crash-never-made"), True, acked=True),
        ]
        ledger.ciphertexts.append(Ciphertext("us-east-1", key_id, blob, b"two", {}))
        tally = Tally()
        checker = Checker(c, ("us-east-1", "eu-west-1", "ap-northeast-2"), tally, "self-test", set())
        checker.sweep()
        checker.check(ledger)
    finally:
        c.kill()
    found = "\n".join(tally.failures)
    assert len(tally.failures) == 5, found
    for problem in ("alias/crash-lost", "'lost'", "crash-never-made", "decrypts in us-east-1 to something else",
                    f"key {key_id} whole"):
        assert problem in found, found
    assert tally.maybe_absent["tag"] == 1


def test_token_files_left_empty_by_a_crash_are_not_empty_tokens(tmp_path: Path) -> None:
    """A first start killed between creating a token file and writing it used to leave it empty, and the next start
    took the empty string for the token: the admin API (clock, faults) and the replication log then answered
    requests carrying no token at all."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    for name in ("admin.token", "replication.token"):
        (data / name).write_bytes(b"")
    c = RunningCluster(data, free_port_block(4), verbose=False).start()
    try:
        for name in ("admin.token", "replication.token"):
            assert len((data / name).read_text().strip()) >= 16, name
        with pytest.raises(urllib.error.HTTPError) as refused:
            admin_send(c.gateway_url, "", "/_trent/clock", {"advance": "30d"})
        assert refused.value.code == 403
        url = f"{c.region_url('us-east-1')}/_trent/replication/log?after=0&limit=1&wait=0"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 403
        # The cluster runs on its new tokens: the admin API with its token, and replication between regions.
        assert c.admin("/_trent/clock")["offset"] == 0
        kms = c.client("us-east-1")
        key_id = kms.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        kms.replicate_key(KeyId=key_id, ReplicaRegion="eu-west-1")
        poll(lambda: c.client("eu-west-1").describe_key(KeyId=key_id), timeout=20)
    finally:
        c.kill()
