"""Disaster-recovery drills on a private cluster: a Region down in the middle of a multi-Region rotation, a
partition during a burst of writes, and a SIGKILL while replication is still catching up. After each drill the
cluster must converge (no lag, consistent shared state) with nothing lost and nothing applied twice."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.harness import REGIONS, RunningCluster, all_key_ids, error, poll

Fresh = Callable[..., RunningCluster]
US, EU, AP = REGIONS


@dataclass
class Tracked:
    """What clients were told about one multi-Region key (acknowledged calls only)."""

    key_id: str
    primary: str
    regions: set[str]
    rotations: int = 0


@dataclass
class Workload:
    """A bounded, seeded mix of CreateKey(MultiRegion) / ReplicateKey / RotateKeyOnDemand calls."""

    c: RunningCluster
    primaries: tuple[str, ...]
    seed: int
    keys: dict[str, Tracked] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)

    def run(self, writes: int) -> None:
        rng = random.Random(self.seed)
        clients = {r: self.c.client(r) for r in REGIONS}
        for _ in range(writes):
            roll = rng.random()
            if len(self.keys) < 3 or roll < 0.2:
                self._create(clients, rng)
            elif roll < 0.55:
                self._replicate(clients, rng)
            else:
                self._rotate(clients, rng)

    def _create(self, clients: dict[str, Any], rng: random.Random) -> None:
        primary = rng.choice(self.primaries)
        key_id = clients[primary].create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        self.keys[key_id] = Tracked(key_id, primary, {primary})

    def _replicate(self, clients: dict[str, Any], rng: random.Random) -> None:
        candidates = [(k, r) for k in self.keys.values() for r in REGIONS if r not in k.regions]
        if not candidates:
            self._create(clients, rng)
            return
        key, target = rng.choice(candidates)
        meta = clients[key.primary].replicate_key(KeyId=key.key_id, ReplicaRegion=target)["ReplicaKeyMetadata"]
        assert meta["Arn"] == f"arn:aws:kms:{target}:111122223333:key/{key.key_id}"
        key.regions.add(target)

    def _rotate(self, clients: dict[str, Any], rng: random.Random) -> None:
        key = rng.choice(list(self.keys.values()))
        try:
            clients[key.primary].rotate_key_on_demand(KeyId=key.key_id)
        except ClientError as exc:
            # One rotation at a time per key: while a replica has not got the last one, the next is refused.
            code = exc.response["Error"]["Code"]
            assert code in ("ConflictException", "LimitExceededException"), exc
            self.refused[code] = self.refused.get(code, 0) + 1
            return
        key.rotations += 1


# -- convergence --------------------------------------------------------------------------------------------------


def _status(c: RunningCluster) -> dict[str, Any]:
    doc: dict[str, Any] = c.admin("/_trent/status")
    return doc


def _lags(status: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(region, peer): link["lag_records"] for region, doc in status["regions"].items()
            for peer, link in doc["replication"].items()}


def _converged(c: RunningCluster) -> bool:
    status = _status(c)
    return bool(status["consistency"]["consistent"] and not any(_lags(status).values())
                and all(doc["up"] for doc in status["regions"].values()))


def _no_rotation_pending(c: RunningCluster, keys: dict[str, Tracked]) -> bool:
    for key in keys.values():
        status = c.client(key.primary).get_key_rotation_status(KeyId=key.key_id)
        if "OnDemandRotationStartDate" in status:
            return False
    return True


def wait_converged(c: RunningCluster, keys: dict[str, Tracked], timeout: float = 60) -> dict[str, Any]:
    """Poll (bounded) until every link has zero lag, shared state is consistent and no rotation is pending; the
    last condition can make new log records (the final flip), so the first ones are checked again."""
    poll(lambda: _converged(c) and _no_rotation_pending(c, keys) and _converged(c), timeout=timeout, interval=0.1)
    return _status(c)


def _rotations(kms: Any, key_id: str) -> list[dict[str, Any]]:
    out = kms.list_key_rotations(KeyId=key_id, IncludeKeyMaterial="ALL_KEY_MATERIAL", Limit=1000)
    assert "NextMarker" not in out
    return list(out["Rotations"])


def verify(c: RunningCluster, keys: dict[str, Tracked]) -> None:
    """Every acknowledged key is where it should be (and nowhere else), with identical material everywhere."""
    clients = {r: c.client(r) for r in REGIONS}
    status = _status(c)
    per_region = {r: status["regions"][r]["multi_region_keys"] for r in REGIONS}
    assert per_region == {r: sum(1 for k in keys.values() if r in k.regions) for r in REGIONS}
    for key in keys.values():
        views = {}
        for region in REGIONS:
            kms = clients[region]
            if region not in key.regions:
                with pytest.raises(ClientError) as exc:
                    kms.describe_key(KeyId=key.key_id)
                assert exc.value.response["Error"]["Code"] == "NotFoundException"
                continue
            meta = kms.describe_key(KeyId=key.key_id)["KeyMetadata"]
            assert meta["KeyState"] == "Enabled", (region, meta)
            config = meta["MultiRegionConfiguration"]
            assert config["MultiRegionKeyType"] == ("PRIMARY" if region == key.primary else "REPLICA")
            assert config["PrimaryKey"]["Region"] == key.primary
            assert {r["Region"] for r in config["ReplicaKeys"]} == key.regions - {key.primary}
            rotations = _rotations(kms, key.key_id)
            views[region] = (meta["CurrentKeyMaterialId"], rotations)
        (current, rotations), *_ = views.values()
        for region, view in views.items():
            assert view == (current, rotations), f"{key.key_id}: {region} differs"
        # Nothing lost, nothing applied twice: the original material plus one version per acknowledged rotation.
        material_ids = [r["KeyMaterialId"] for r in rotations]
        assert len(material_ids) == len(set(material_ids)) == 1 + key.rotations, (key, rotations)
        assert [r["KeyMaterialState"] for r in rotations].count("CURRENT") == 1
        assert next(r for r in rotations if r["KeyMaterialState"] == "CURRENT")["KeyMaterialId"] == current
        assert sum(1 for r in rotations if r.get("RotationType") == "ON_DEMAND") == key.rotations


def cross_decrypt(c: RunningCluster, keys: dict[str, Tracked]) -> None:
    clients = {r: c.client(r) for r in REGIONS}
    for key in keys.values():
        for source in sorted(key.regions):
            context = {"key": key.key_id, "from": source}
            out = clients[source].encrypt(KeyId=key.key_id, Plaintext=source.encode(), EncryptionContext=context)
            for target in sorted(key.regions):
                back = clients[target].decrypt(CiphertextBlob=out["CiphertextBlob"], EncryptionContext=context)
                assert back["Plaintext"] == source.encode()
                assert back["KeyId"] == f"arn:aws:kms:{target}:111122223333:key/{key.key_id}"


def _mrk(c: RunningCluster, primary: str, replicas: tuple[str, ...]) -> Tracked:
    kms = c.client(primary)
    key_id = kms.create_key(MultiRegion=True, Description="drill")["KeyMetadata"]["KeyId"]
    for region in replicas:
        kms.replicate_key(KeyId=key_id, ReplicaRegion=region)
    for region in replicas:
        replica = c.client(region)
        poll(lambda r=replica: _state(r, key_id) == "Enabled", timeout=20)  # type: ignore[misc]
    return Tracked(key_id, primary, {primary, *replicas})


def _state(kms: Any, key_id: str) -> str | None:
    try:
        return str(kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"])
    except ClientError:
        return None


def _current(c: RunningCluster, region: str, key_id: str) -> str:
    return str(c.client(region).describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"])


# -- drill 1: a Region down during a rotation ----------------------------------------------------------------------


def test_region_down_during_rotation_completes_when_it_returns(fresh_cluster: Fresh) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    key = _mrk(c, US, (EU, AP))
    us, eu, ap = (c.client(r) for r in REGIONS)
    before = _current(c, US, key.key_id)
    old_blob = eu.encrypt(KeyId=key.key_id, Plaintext=b"before the drill")["CiphertextBlob"]

    assert c.trent("fault", "down", EU).returncode == 0
    us.rotate_key_on_demand(KeyId=key.key_id)
    key.rotations = 1
    # ap-northeast-2 takes the new material and says so; the primary still waits for eu-west-1.
    poll(lambda: not _lags(_status(c))[(AP, US)] and not _lags(_status(c))[(US, AP)], timeout=20)
    status = us.get_key_rotation_status(KeyId=key.key_id)
    assert "OnDemandRotationStartDate" in status
    for region in (US, AP):
        assert _current(c, region, key.key_id) == before
    with pytest.raises(ClientError) as exc:
        us.rotate_key_on_demand(KeyId=key.key_id)
    assert exc.value.response["Error"]["Code"] == "ConflictException"
    # Meanwhile crypto carries on with the old material in the Regions that are up.
    blob = ap.encrypt(KeyId=key.key_id, Plaintext=b"during")["CiphertextBlob"]
    assert us.decrypt(CiphertextBlob=blob)["Plaintext"] == b"during"

    status = _status(c)
    assert status["regions"][EU]["up"] is False
    assert status["regions"][EU]["replication"][US]["lag_records"] > 0
    assert status["regions"][EU]["replication"][US]["connected"] is False
    assert status["consistency"]["divergent_keys"] == [key.key_id]  # eu-west-1 lacks the pending material
    text = c.trent("status").stdout
    assert "DOWN" in text and "DIVERGENT" in text

    assert c.trent("fault", "up", EU).returncode == 0
    wait_converged(c, {key.key_id: key})
    after = _current(c, US, key.key_id)
    assert after != before
    assert {_current(c, r, key.key_id) for r in REGIONS} == {after}
    assert "OnDemandRotationStartDate" not in us.get_key_rotation_status(KeyId=key.key_id)
    verify(c, {key.key_id: key})
    # Old and new ciphertexts open everywhere; the new one names the new material.
    for region in REGIONS:
        assert c.client(region).decrypt(CiphertextBlob=old_blob)["Plaintext"] == b"before the drill"
    fresh = eu.encrypt(KeyId=key.key_id, Plaintext=b"after")
    out = ap.decrypt(CiphertextBlob=fresh["CiphertextBlob"])
    assert out["Plaintext"] == b"after"
    if "KeyMaterialId" in out:
        assert out["KeyMaterialId"] == after
    assert "consistent" in c.trent("status").stdout


def test_rotation_pending_survives_a_clear_of_other_faults(fresh_cluster: Fresh) -> None:
    """`trent fault clear` brings the Region back as `fault up` does."""
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    key = _mrk(c, EU, (AP,))
    c.trent("fault", "down", AP)
    c.trent("fault", "latency", US, "50ms")
    c.client(EU).rotate_key_on_demand(KeyId=key.key_id)
    key.rotations = 1
    assert "OnDemandRotationStartDate" in c.client(EU).get_key_rotation_status(KeyId=key.key_id)
    c.trent("fault", "clear")
    wait_converged(c, {key.key_id: key})
    verify(c, {key.key_id: key})


# -- drill 2: a partition during 200 writes ------------------------------------------------------------------------


def test_partition_during_200_writes_heals_to_identical_material(fresh_cluster: Fresh) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    assert c.trent("fault", "partition", US, EU).returncode == 0
    work = Workload(c, primaries=(US, EU, AP), seed=20240601)
    work.run(200)
    assert len(work.keys) >= 10
    assert sum(k.rotations for k in work.keys.values()) >= 10
    # Some keys span the partition: their replicas (and rotations) are held back until it heals.
    status = _status(c)
    assert _lags(status)[(EU, US)] > 0 or _lags(status)[(US, EU)] > 0
    assert not status["regions"][EU]["replication"][US]["connected"]

    assert c.trent("fault", "heal", US, EU).returncode == 0
    status = wait_converged(c, work.keys)
    assert status["consistency"]["multi_region_keys"] == len(work.keys)
    assert all(link["connected"] for doc in status["regions"].values() for link in doc["replication"].values())
    verify(c, work.keys)
    cross_decrypt(c, work.keys)


# -- drill 3: SIGKILL while replication is running ---------------------------------------------------------------


def test_sigkill_mid_replication_loses_nothing_and_applies_nothing_twice(fresh_cluster: Fresh) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    seeded = [_mrk(c, US, (EU, AP)), _mrk(c, AP, (US,))]
    # eu-west-1 down: every change for it piles up in the other Regions' outboxes.
    assert c.trent("fault", "down", EU).returncode == 0
    work = Workload(c, primaries=(US, AP), seed=7)
    work.keys.update({k.key_id: k for k in seeded})
    work.run(120)
    backlog = _lags(_status(c))
    assert backlog[(EU, US)] + backlog[(EU, AP)] >= 40
    # eu-west-1 comes back and starts on its backlog (one commit per record); SIGKILL lands as soon as it has
    # applied something, usually in the middle of it.
    c.admin("/_trent/faults", {"action": "up", "regions": [EU]})
    poll(lambda: sum(link["cursor"] for link in _status(c)["regions"][EU]["replication"].values()) > 0,
         timeout=20, interval=0.005)
    c.kill()

    c.start()
    c.trent("fault", "clear")
    wait_converged(c, work.keys)
    verify(c, work.keys)
    cross_decrypt(c, work.keys)

    # Kill once more right after convergence and restart: re-reading the logs applies nothing again.
    heads = {r: doc["outbox_head"] for r, doc in _status(c)["regions"].items()}
    c.kill()
    c.start()
    wait_converged(c, work.keys)
    assert {r: doc["outbox_head"] for r, doc in _status(c)["regions"].items()} == heads
    verify(c, work.keys)


# -- a primary hand-off across a partition -----------------------------------------------------------------------


def test_primary_handoff_across_a_partition_completes_after_heal(fresh_cluster: Fresh) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    key = _mrk(c, US, (EU, AP))
    us, eu = c.client(US), c.client(EU)
    blob = us.encrypt(KeyId=key.key_id, Plaintext=b"before the hand-off")["CiphertextBlob"]
    assert c.trent("fault", "partition", US, EU).returncode == 0
    us.update_primary_region(KeyId=key.key_id, PrimaryRegion=EU)
    # The old primary waits (Updating) for a new primary that cannot hear it yet; crypto keeps working.
    meta = us.describe_key(KeyId=key.key_id)["KeyMetadata"]
    assert meta["KeyState"] == "Updating"
    assert us.decrypt(CiphertextBlob=blob)["Plaintext"] == b"before the hand-off"
    assert eu.describe_key(KeyId=key.key_id)["KeyMetadata"]["MultiRegionConfiguration"]["MultiRegionKeyType"] == (
        "REPLICA")
    assert not _status(c)["consistency"]["consistent"]

    assert c.trent("fault", "heal", US, EU).returncode == 0
    key.primary = EU
    poll(lambda: _state(us, key.key_id) == "Enabled", timeout=20)
    wait_converged(c, {key.key_id: key})
    eu.rotate_key_on_demand(KeyId=key.key_id)  # the new primary rotates; the old one is a replica now
    key.rotations = 1
    wait_converged(c, {key.key_id: key})
    verify(c, {key.key_id: key})
    cross_decrypt(c, {key.key_id: key})


def test_region_rebuilt_from_nothing_is_followed_from_its_new_start(fresh_cluster: Any) -> None:
    """A region whose data is lost starts a new log; its peers must read that log from the start, not wait for
    sequence numbers they had already passed in the old one."""
    import shutil

    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    lost, other = c.client("ap-northeast-2"), c.client("us-east-1")
    old = lost.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    lost.replicate_key(KeyId=old, ReplicaRegion="us-east-1")
    poll(lambda: _key_state(other, old) == "Enabled", timeout=20)
    for _ in range(4):  # the old log grows well past what the rebuilt one will write
        lost.rotate_key_on_demand(KeyId=old)
        poll(lambda: "OnDemandRotationStartDate" not in lost.get_key_rotation_status(KeyId=old), timeout=20)
    c.stop()
    shutil.rmtree(c.data_dir / "ap-northeast-2")  # the region's disks are gone
    c.start()
    with pytest.raises(ClientError):
        lost.describe_key(KeyId=old)
    fresh = lost.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    lost.replicate_key(KeyId=fresh, ReplicaRegion="us-east-1")
    poll(lambda: _key_state(other, fresh) == "Enabled", timeout=20)
    blob = lost.encrypt(KeyId=fresh, Plaintext=b"after the rebuild")["CiphertextBlob"]
    assert other.decrypt(CiphertextBlob=blob)["Plaintext"] == b"after the rebuild"


def _key_state(client: Any, key_id: str) -> str:
    try:
        state: str = client.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]
    except ClientError:
        return "absent"
    return state


# -- a Region's disk fails -----------------------------------------------------------------------------------------


def test_a_failed_disk_stops_its_region_until_it_starts_again(fresh_cluster: Fresh) -> None:
    """`trent fault disk`: the Region's next fsync fails. The call that wrote is refused, and so is every call after
    it in that Region, reads included (what the disk kept is unknown); nothing more is written there; the other
    Regions go on. Started again, the Region serves what its disk kept, and replication catches up."""
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    key = _mrk(c, US, (EU,))
    us, eu = c.client(US), c.client(EU)
    done = c.trent("fault", "disk", EU)
    assert "next fsync fails" in done.stdout
    retrying = c.client(EU, retries=3)  # an SDK retries the 500: three more attempts
    refused = error(retrying.create_key, Description="on a failing disk")
    assert (refused["Code"], refused["Status"]) == ("KMSInternalException", 500)
    assert error(eu.describe_key, KeyId=key.key_id)["Code"] == "KMSInternalException"
    assert error(eu.list_keys)["Code"] == "KMSInternalException"
    assert {r: doc["store"] for r, doc in _status(c)["regions"].items()} == {US: "ok", EU: "failed", AP: "ok"}
    assert "store failed" in c.trent("status").stdout
    # The other Regions serve and write as before; what they send eu-west-1 waits.
    us.rotate_key_on_demand(KeyId=key.key_id)
    key.rotations += 1
    assert us.encrypt(KeyId=key.key_id, Plaintext=b"x")["KeyId"].endswith(key.key_id)

    c.kill()  # what a failed disk leaves: the process gone, the disk as it is
    c.start()
    wait_converged(c, {key.key_id: key})
    verify(c, {key.key_id: key})
    cross_decrypt(c, {key.key_id: key})
    # The refused CreateKey's commit reached the disk's cache before its fsync "failed": it may be there or not,
    # but whole, and nothing the retries of that call asked for was written after it.
    extra = all_key_ids(c.client(EU)) - {key.key_id}
    assert len(extra) <= 1
    for key_id in extra:
        assert eu.describe_key(KeyId=key_id)["KeyMetadata"]["Description"] == "on a failing disk"
