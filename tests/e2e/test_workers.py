"""`trent up --workers 2`: two processes serve the gateway port over the same stores. Every check goes through
fresh connections (a new client each time), which the kernel spreads over both processes, so whatever one
process acknowledged, the other must already see."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.byok import external_key, wrap
from tests.e2e.harness import RunningCluster, code_of, poll, private_cluster
from tests.e2e.test_mrk_rotation import material_everywhere, wait_current_everywhere, wait_rotation_done
from tests.e2e.test_multi_region import REGIONS, A, C, clients, create_mrk, encrypt, replicate, wait_for
from trent.cluster.audit_view import audit_events
from trent.cluster.running import admin_send, alive

ACCOUNT = "111122223333"
FRESH = 12  # fresh connections per check: all on one process by chance with probability 2^-11


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    yield from private_cluster(tmp_path_factory, "workers", "--workers", "2", "--replica-delay", "0.3", kill=False)


def fresh(cluster: RunningCluster, region: str = A) -> Any:
    """A client with its own new connection."""
    return cluster.client(region)


def health(cluster: RunningCluster) -> dict[str, Any]:
    """The answering process names itself to the admin token's holders only; every call is a new connection."""
    return admin_send(cluster.gateway_url, (cluster.data_dir / "admin.token").read_text().strip(), "/_trent/health")


def everywhere(cluster: RunningCluster, call: Callable[[Any], Any], region: str = A) -> list[Any]:
    return [call(fresh(cluster, region)) for _ in range(FRESH)]


def test_both_processes_answer_on_the_gateway_port(workers: RunningCluster) -> None:
    assert workers.proc is not None
    seen: dict[int, int] = {}

    def both() -> bool:
        doc = health(workers)
        seen[doc["worker"]] = doc["pid"]
        return len(seen) == 2
    poll(both, timeout=10, interval=0)
    assert seen[0] == workers.proc.pid
    assert [seen[1]] == workers.worker_pids()


def test_a_new_key_is_usable_at_once_through_every_process(workers: RunningCluster) -> None:
    for _ in range(6):
        key_id = fresh(workers).create_key()["KeyMetadata"]["KeyId"]
        blobs = everywhere(workers, lambda kms, k=key_id: kms.encrypt(KeyId=k, Plaintext=b"x")["CiphertextBlob"])
        assert {kms_state(workers, key_id) for _ in range(4)} == {"Enabled"}
        assert {fresh(workers).decrypt(CiphertextBlob=b)["Plaintext"] for b in blobs} == {b"x"}


def kms_state(cluster: RunningCluster, key_id: str) -> str:
    state: str = fresh(cluster).describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]
    return state


def test_a_disabled_key_is_refused_at_once_by_every_process(workers: RunningCluster) -> None:
    key_id = fresh(workers).create_key()["KeyMetadata"]["KeyId"]
    everywhere(workers, lambda kms: kms.encrypt(KeyId=key_id, Plaintext=b"x"))
    fresh(workers).disable_key(KeyId=key_id)
    codes = everywhere(workers, lambda kms: code_of(kms.encrypt, KeyId=key_id, Plaintext=b"x"))
    assert set(codes) == {"DisabledException"}
    fresh(workers).enable_key(KeyId=key_id)
    everywhere(workers, lambda kms: kms.encrypt(KeyId=key_id, Plaintext=b"x"))


def concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at once (each in its own thread, released together); return results or exceptions."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_concurrent_tags_and_aliases_from_every_process_lose_nothing(workers: RunningCluster) -> None:
    key_id = fresh(workers).create_key()["KeyMetadata"]["KeyId"]
    n = 16
    tag_clients = [fresh(workers) for _ in range(n)]
    results = concurrently([
        (lambda i=i: tag_clients[i].tag_resource(KeyId=key_id, Tags=[{"TagKey": f"t{i}", "TagValue": str(i)}]))
        for i in range(n)])
    assert not [r for r in results if isinstance(r, Exception)]
    tags = fresh(workers).list_resource_tags(KeyId=key_id)["Tags"]
    assert sorted(t["TagKey"] for t in tags) == sorted(f"t{i}" for i in range(n))

    alias_clients = [fresh(workers) for _ in range(n)]
    results = concurrently([(lambda i=i: alias_clients[i].create_alias(AliasName=f"alias/w-{key_id}-{i}",
                                                                        TargetKeyId=key_id)) for i in range(n)])
    assert not [r for r in results if isinstance(r, Exception)]
    names = {a["AliasName"] for a in fresh(workers).list_aliases(KeyId=key_id)["Aliases"]}
    assert names == {f"alias/w-{key_id}-{i}" for i in range(n)}


def test_one_alias_name_is_created_once_however_many_processes_race_for_it(workers: RunningCluster) -> None:
    keys = [fresh(workers).create_key()["KeyMetadata"]["KeyId"] for _ in range(8)]
    name = f"alias/race-{keys[0]}"
    racing = [fresh(workers) for _ in keys]
    results = concurrently([(lambda i=i: racing[i].create_alias(AliasName=name, TargetKeyId=keys[i]))
                            for i in range(len(keys))])
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == len(keys) - 1
    assert {r.response["Error"]["Code"] for r in failures if isinstance(r, ClientError)} == {"AlreadyExistsException"}
    targets = {fresh(workers).describe_key(KeyId=name)["KeyMetadata"]["KeyId"] for _ in range(FRESH)}
    assert len(targets) == 1


def deny_encrypt_policy() -> str:
    root = f"arn:aws:iam::{ACCOUNT}:root"
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "all", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*", "Resource": "*"},
        {"Sid": "no-encrypt", "Effect": "Deny", "Principal": {"AWS": root}, "Action": "kms:Encrypt",
         "Resource": "*"}]})


def test_a_key_policy_change_takes_effect_at_once_in_every_process(workers: RunningCluster) -> None:
    key_id = fresh(workers).create_key()["KeyMetadata"]["KeyId"]
    default = fresh(workers).get_key_policy(KeyId=key_id, PolicyName="default")["Policy"]
    # Every process has decided (and cached) that the caller may encrypt under the default policy.
    everywhere(workers, lambda kms: kms.encrypt(KeyId=key_id, Plaintext=b"x"))
    fresh(workers).put_key_policy(KeyId=key_id, PolicyName="default", Policy=deny_encrypt_policy())
    codes = everywhere(workers, lambda kms: code_of(kms.encrypt, KeyId=key_id, Plaintext=b"x"))
    assert set(codes) == {"AccessDeniedException"}
    fresh(workers).put_key_policy(KeyId=key_id, PolicyName="default", Policy=default)
    everywhere(workers, lambda kms: kms.encrypt(KeyId=key_id, Plaintext=b"x"))


def test_a_grant_and_its_revocation_apply_at_once_in_every_process(workers: RunningCluster) -> None:
    key_id = fresh(workers).create_key()["KeyMetadata"]["KeyId"]
    grantee = f"arn:aws:iam::{ACCOUNT}:role/app"
    grant = fresh(workers).create_grant(KeyId=key_id, GranteePrincipal=grantee, Operations=["Encrypt"])
    listed = everywhere(workers, lambda kms: [g["GrantId"] for g in kms.list_grants(KeyId=key_id)["Grants"]])
    assert listed == [[grant["GrantId"]]] * FRESH
    fresh(workers).revoke_grant(KeyId=key_id, GrantId=grant["GrantId"])
    assert everywhere(workers, lambda kms: kms.list_grants(KeyId=key_id)["Grants"]) == [[]] * FRESH


def test_faults_apply_to_every_process_at_once(workers: RunningCluster) -> None:
    key_id = fresh(workers).create_key()["KeyMetadata"]["KeyId"]
    assert workers.trent("fault", "errors", A, "100%").returncode == 0
    try:
        codes = everywhere(workers, lambda kms: code_of(kms.encrypt, KeyId=key_id, Plaintext=b"x"))
        assert set(codes) <= {"KMSInternalException", "KeyUnavailableException"}
        # Other regions are untouched; the admin API answers from every process.
        everywhere(workers, lambda kms: kms.list_keys(Limit=1), region="eu-west-1")
        statuses = [workers.admin("/_trent/status")["faults"]["errors_percent"] for _ in range(FRESH)]
        assert statuses == [{A: 100.0}] * FRESH
    finally:
        assert workers.trent("fault", "clear").returncode == 0
    everywhere(workers, lambda kms: kms.encrypt(KeyId=key_id, Plaintext=b"x"))


def test_a_clock_advance_is_honoured_by_every_process(workers: RunningCluster) -> None:
    key_id = fresh(workers).create_key()["KeyMetadata"]["KeyId"]
    before = workers.admin("/_trent/clock")["now"]
    fresh(workers).schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert workers.trent("clock", "advance", "8d").returncode == 0
    assert set(everywhere(workers, lambda kms: code_of(kms.describe_key, KeyId=key_id))) == {"NotFoundException"}
    # New keys in every process are dated by the moved clock.
    created = everywhere(workers, lambda kms: kms.create_key()["KeyMetadata"]["CreationDate"].timestamp())
    assert min(created) >= before + 8 * 86400 - 5


def test_multi_region_keys_replicate_and_rotate_with_workers(workers: RunningCluster) -> None:
    kms = clients(workers)
    key_id = create_mrk(fresh(workers))["KeyId"]
    replicate(workers, key_id)
    first = material_everywhere(kms, key_id)[A]
    blobs = {r: encrypt(fresh(workers, r), key_id, f"from {r}".encode()) for r in REGIONS}
    fresh(workers).rotate_key_on_demand(KeyId=key_id)
    new = wait_for(kms[A], key_id, lambda m: m["CurrentKeyMaterialId"] != first)["CurrentKeyMaterialId"]
    wait_current_everywhere(kms, key_id, new)
    wait_rotation_done(kms[A], key_id)
    for region in REGIONS:
        for source, blob in blobs.items():
            assert fresh(workers, region).decrypt(CiphertextBlob=blob)["Plaintext"] == f"from {source}".encode()


def test_every_process_audits_and_last_usage_covers_them_all(workers: RunningCluster) -> None:
    key_id = fresh(workers).create_key()["KeyMetadata"]["KeyId"]
    ids = [kms.encrypt(KeyId=key_id, Plaintext=b"x")["ResponseMetadata"]["RequestId"]
           for kms in [fresh(workers) for _ in range(FRESH)]]
    audit_dir = workers.data_dir / A / "audit"

    def logged() -> bool:
        out = workers.trent("audit", "--key", key_id, "--event", "Encrypt", "--json").stdout
        return {json.loads(line)["requestID"] for line in out.splitlines()} == set(ids)
    poll(logged, timeout=10, interval=0.1)
    # Both processes wrote (each to its own file), and the merged view is in time order.
    assert all(_has(path, key_id) for path in (audit_dir / "audit.jsonl", audit_dir / "audit.w1.jsonl"))
    times = [e["eventTime"] for e in audit_events(workers.data_dir, region=A)]
    assert times == sorted(times)

    # Uses are tracked at CloudTrail's whole seconds: the last use is unambiguous once it is in a later second.
    earlier = int(time.time())
    poll(lambda: int(time.time()) > earlier, timeout=2, interval=0.01)
    last = fresh(workers).encrypt(KeyId=key_id, Plaintext=b"y")["ResponseMetadata"]["RequestId"]

    def everyone_sees_it() -> bool:
        seen = everywhere(workers, lambda kms: kms.get_key_last_usage(KeyId=key_id)["KeyLastUsage"])
        return all(u.get("KmsRequestId") == last for u in seen)
    poll(everyone_sees_it, timeout=10, interval=0.1)


def _has(path: Path, key_id: str) -> bool:
    return path.exists() and key_id in path.read_text()


def test_imported_key_material_through_every_process(workers: RunningCluster) -> None:
    """An import token made by one process opens in another (it is sealed under the region's root key, not held in
    a process), and the imported material is usable through every process at once."""
    key_id = external_key(fresh(workers))["KeyId"]
    material = os.urandom(32)
    tokens = everywhere(workers, lambda kms: kms.get_parameters_for_import(
        KeyId=key_id, WrappingAlgorithm="RSAES_OAEP_SHA_256", WrappingKeySpec="RSA_2048"))
    for params in tokens:  # each through a new connection: whichever process answers
        fresh(workers).import_key_material(KeyId=key_id, ImportToken=params["ImportToken"],
                                           EncryptedKeyMaterial=wrap(params["PublicKey"], "RSAES_OAEP_SHA_256",
                                                                     material),
                                           ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE")
    assert {kms_state(workers, key_id) for _ in range(4)} == {"Enabled"}
    blobs = everywhere(workers, lambda kms: kms.encrypt(KeyId=key_id, Plaintext=b"byok")["CiphertextBlob"])
    assert {fresh(workers).decrypt(CiphertextBlob=b)["Plaintext"] for b in blobs} == {b"byok"}


# Last in this module: it stops the module's cluster.
def test_a_disk_fault_stops_the_region_in_every_process_until_they_start_again(workers: RunningCluster) -> None:
    """`trent fault disk`: the next sync of the region's database fails, in whichever process makes it. The
    processes' commits follow one another in the same write-ahead log, so from then on every process refuses the
    region, reads included, and the other regions go on. Starting the cluster again ends it. (Late in this module:
    the region stays failed until that restart.)"""
    key_id = fresh(workers, C).create_key()["KeyMetadata"]["KeyId"]
    assert workers.trent("fault", "disk", C).returncode == 0
    assert code_of(fresh(workers, C).create_key) == "KMSInternalException"  # its sync failed, or came after one
    codes = everywhere(workers, lambda kms: code_of(kms.describe_key, KeyId=key_id), region=C)
    assert set(codes) == {"KMSInternalException"}
    assert {workers.admin("/_trent/status")["regions"][C]["store"] for _ in range(FRESH)} == {"failed"}
    assert {workers.admin("/_trent/status")["regions"][A]["store"] for _ in range(FRESH)} == {"ok"}
    made = everywhere(workers, lambda kms: kms.create_key()["KeyMetadata"]["KeyId"])  # region A goes on
    assert workers.stop() == 0
    workers.start()
    assert {workers.admin("/_trent/status")["regions"][C]["store"] for _ in range(FRESH)} == {"ok"}
    everywhere(workers, lambda kms: kms.encrypt(KeyId=key_id, Plaintext=b"x"), region=C)
    fresh(workers, C).create_key()
    assert fresh(workers).describe_key(KeyId=made[-1])["KeyMetadata"]["Enabled"]


def test_no_worker_outlives_the_cluster(workers: RunningCluster) -> None:
    pids = workers.worker_pids()
    assert pids and all(alive(p) for p in pids)
    assert workers.stop() == 0
    poll(lambda: not any(alive(p) for p in pids), timeout=10)
    # Even a leader killed outright takes its workers with it.
    workers.start()
    pids = workers.worker_pids()
    assert workers.proc is not None
    os.kill(workers.proc.pid, signal.SIGKILL)
    workers.proc.wait(10)
    workers.proc = None
    poll(lambda: not any(alive(p) for p in pids), timeout=10)
