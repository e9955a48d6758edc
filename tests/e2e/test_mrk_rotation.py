"""Rotating multi-Region keys (KMS-REFERENCE.md §6, §7): rotation is shared state, set and started on the primary
only; a new material version becomes current in every region only once every replica holds it, so a region that
is down keeps the rotation in progress."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.e2e.harness import RunningCluster, poll
from tests.e2e.test_multi_region import (
    REGIONS,
    TIMEOUT,
    A,
    B,
    C,
    arn,
    clients,
    create_mrk,
    encrypt,
    error_of,
    replicate,
    wait_for,
)


def material_everywhere(kms: dict[str, Any], key_id: str) -> dict[str, str]:
    return {r: kms[r].describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"] for r in REGIONS}


def wait_current_everywhere(kms: dict[str, Any], key_id: str, material_id: str) -> None:
    for region in REGIONS:
        wait_for(kms[region], key_id, lambda m: m["CurrentKeyMaterialId"] == material_id)


def wait_rotation_done(kms: Any, key_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status: dict[str, Any] = kms.get_key_rotation_status(KeyId=key_id)
        return None if "OnDemandRotationStartDate" in status else status
    result: dict[str, Any] = poll(done, timeout=TIMEOUT, interval=0.02)
    return result


def rotations(kms: Any, key_id: str, **kwargs: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = kms.list_key_rotations(KeyId=key_id, **kwargs)["Rotations"]
    return entries


def test_on_demand_rotation_reaches_every_region(cluster: RunningCluster) -> None:
    kms = clients(cluster)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(cluster, key_id)
    first = material_everywhere(kms, key_id)[A]
    old_blobs = {r: encrypt(kms[r], key_id, f"old from {r}".encode()) for r in REGIONS}

    assert kms[A].rotate_key_on_demand(KeyId=key_id)["KeyId"] == arn(A, key_id)
    new = wait_for(kms[A], key_id, lambda m: m["CurrentKeyMaterialId"] != first)["CurrentKeyMaterialId"]
    wait_current_everywhere(kms, key_id, new)
    wait_rotation_done(kms[A], key_id)

    for source in REGIONS:
        made = kms[source].encrypt(KeyId=key_id, Plaintext=b"new")
        for target in REGIONS:
            out = kms[target].decrypt(CiphertextBlob=made["CiphertextBlob"])
            assert out["Plaintext"] == b"new" and out["KeyMaterialId"] == new
            old = kms[target].decrypt(CiphertextBlob=old_blobs[source])
            assert old["Plaintext"] == f"old from {source}".encode() and old["KeyMaterialId"] == first

    # The history is shared: every region lists the same rotation.
    history = {r: rotations(kms[r], key_id) for r in REGIONS}
    for region, entries in history.items():
        assert [(e["KeyMaterialId"], e["KeyMaterialState"], e["RotationType"]) for e in entries] == [
            (new, "CURRENT", "ON_DEMAND")], region
        assert entries[0]["KeyId"] in (key_id, arn(region, key_id))
    everything = rotations(kms[B], key_id, IncludeKeyMaterial="ALL_KEY_MATERIAL")
    assert [(e["KeyMaterialId"], e["KeyMaterialState"]) for e in everything] == [
        (first, "NON_CURRENT"), (new, "CURRENT")]
    # ReEncrypt in a replica moves an old blob to the new material.
    moved = kms[C].re_encrypt(CiphertextBlob=old_blobs[A], DestinationKeyId=key_id)
    assert moved["SourceKeyMaterialId"] == first and moved["DestinationKeyMaterialId"] == new


def test_rotation_is_refused_on_replicas(cluster: RunningCluster) -> None:
    kms = clients(cluster)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(cluster, key_id)
    before = material_everywhere(kms, key_id)
    for region in (B, C):
        for call, kwargs in ((kms[region].rotate_key_on_demand, {}), (kms[region].enable_key_rotation, {}),
                             (kms[region].enable_key_rotation, {"RotationPeriodInDays": 100}),
                             (kms[region].disable_key_rotation, {})):
            err = error_of(call, KeyId=key_id, **kwargs)
            assert err["Code"] == "UnsupportedOperationException", (region, call)
        # Reading the status and the history of a replica is fine.
        status = kms[region].get_key_rotation_status(KeyId=key_id)
        assert status["KeyRotationEnabled"] is False and status["KeyId"] == arn(region, key_id)
        assert rotations(kms[region], key_id) == []
    assert material_everywhere(kms, key_id) == before


def test_rotation_settings_follow_the_primary(cluster: RunningCluster) -> None:
    kms = clients(cluster)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(cluster, key_id)
    kms[A].enable_key_rotation(KeyId=key_id, RotationPeriodInDays=180)
    primary = kms[A].get_key_rotation_status(KeyId=key_id)
    assert primary["KeyRotationEnabled"] is True and primary["RotationPeriodInDays"] == 180
    for region in (B, C):
        status = poll(lambda r=region: (s := kms[r].get_key_rotation_status(KeyId=key_id))["KeyRotationEnabled"]
                      and s, timeout=TIMEOUT, interval=0.02)
        assert status["RotationPeriodInDays"] == 180
        assert status["NextRotationDate"] == primary["NextRotationDate"]
        assert status["KeyId"] == arn(region, key_id)
    kms[A].enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    for region in (B, C):
        poll(lambda r=region: kms[r].get_key_rotation_status(KeyId=key_id).get("RotationPeriodInDays") == 90,
             timeout=TIMEOUT, interval=0.02)
    kms[A].disable_key_rotation(KeyId=key_id)
    for region in (B, C):
        poll(lambda r=region: not kms[r].get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"],
             timeout=TIMEOUT, interval=0.02)
        assert "NextRotationDate" not in kms[region].get_key_rotation_status(KeyId=key_id)
    # A replica added later inherits the setting.
    kms[A].enable_key_rotation(KeyId=key_id, RotationPeriodInDays=400)
    other = create_mrk(kms[A])["KeyId"]
    kms[A].enable_key_rotation(KeyId=other, RotationPeriodInDays=365)
    replicate(cluster, other, targets=(C,))
    assert kms[C].get_key_rotation_status(KeyId=other)["RotationPeriodInDays"] == 365


def test_automatic_rotation_of_a_multi_region_key(fresh_cluster: Callable[..., RunningCluster]) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    kms = clients(c)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(c, key_id)
    first = material_everywhere(kms, key_id)[A]
    blob = encrypt(kms[B], key_id, b"before automatic rotation")
    kms[A].enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    for region in (B, C):
        poll(lambda r=region: kms[r].get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"],
             timeout=TIMEOUT, interval=0.02)
    c.advance_clock("91d")
    new = wait_for(kms[A], key_id, lambda m: m["CurrentKeyMaterialId"] != first)["CurrentKeyMaterialId"]
    wait_current_everywhere(kms, key_id, new)
    for region in REGIONS:
        entries = rotations(kms[region], key_id)
        assert [(e["KeyMaterialId"], e["RotationType"]) for e in entries] == [(new, "AUTOMATIC")], region
        assert kms[region].decrypt(CiphertextBlob=blob)["Plaintext"] == b"before automatic rotation"
        # The replicas see the next date the primary scheduled.
        status = kms[region].get_key_rotation_status(KeyId=key_id)
        assert status["KeyRotationEnabled"] is True
        assert "OnDemandRotationStartDate" not in status
    poll(lambda: len({kms[r].get_key_rotation_status(KeyId=key_id)["NextRotationDate"] for r in REGIONS}) == 1,
         timeout=TIMEOUT, interval=0.02)
    next_date = kms[B].get_key_rotation_status(KeyId=key_id)["NextRotationDate"].timestamp()
    now = c.admin("/_trent/clock")["now"]
    assert now < next_date <= now + 90 * 86400
    # A replica that is disabled does not stop the shared schedule, and never rotates by itself.
    kms[B].disable_key(KeyId=key_id)
    c.advance_clock("91d")
    third = wait_for(kms[A], key_id, lambda m: m["CurrentKeyMaterialId"] != new)["CurrentKeyMaterialId"]
    wait_current_everywhere(kms, key_id, third)
    assert len(rotations(kms[B], key_id)) == 2
    kms[B].enable_key(KeyId=key_id)
    assert len(rotations(kms[B], key_id)) == 2


def test_rotation_with_a_region_down(fresh_cluster: Callable[..., RunningCluster]) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    kms = clients(c)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(c, key_id)
    first = material_everywhere(kms, key_id)[A]
    c.trent("fault", "down", C)
    try:
        kms[A].rotate_key_on_demand(KeyId=key_id)
        status = kms[A].get_key_rotation_status(KeyId=key_id)
        assert "OnDemandRotationStartDate" in status
        started = status["OnDemandRotationStartDate"]
        # The new material is not current anywhere while a replica does not hold it.
        for region in (A, B):
            assert kms[region].describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"] == first
            # The replica that is up knows the rotation is in progress too.
            poll(lambda r=region: "OnDemandRotationStartDate" in kms[r].get_key_rotation_status(KeyId=key_id),
                 timeout=TIMEOUT, interval=0.02)
        # Encryption keeps using the current material meanwhile; the pending version is not listed.
        blob = encrypt(kms[A], key_id, b"during")
        assert kms[B].decrypt(CiphertextBlob=blob)["KeyMaterialId"] == first
        assert rotations(kms[A], key_id) == []
        err = error_of(kms[A].rotate_key_on_demand, KeyId=key_id)
        assert err["Code"] == "ConflictException"
        assert kms[A].get_key_rotation_status(KeyId=key_id)["OnDemandRotationStartDate"] == started
        status_cli = json.loads(c.trent("status", "--json").stdout)
        assert status_cli["consistency"]["consistent"] is False
        assert key_id in status_cli["consistency"]["divergent_keys"]
    finally:
        c.trent("fault", "clear")
    new = wait_for(kms[A], key_id, lambda m: m["CurrentKeyMaterialId"] != first)["CurrentKeyMaterialId"]
    wait_current_everywhere(kms, key_id, new)
    for region in REGIONS:
        wait_rotation_done(kms[region], key_id)
        assert [e["KeyMaterialId"] for e in rotations(kms[region], key_id)] == [new]
        assert kms[region].decrypt(CiphertextBlob=blob)["Plaintext"] == b"during"
    assert kms[C].decrypt(CiphertextBlob=encrypt(kms[B], key_id, b"after"))["KeyMaterialId"] == new

    def consistent() -> dict[str, Any] | None:
        doc: dict[str, Any] = json.loads(c.trent("status", "--json").stdout)
        return doc if doc["consistency"]["consistent"] else None
    doc = poll(consistent, timeout=TIMEOUT, interval=0.1)
    assert doc["consistency"]["divergent_keys"] == []
    # The next on-demand rotation is accepted again; a restart in the middle of it loses nothing.
    kms[A].rotate_key_on_demand(KeyId=key_id)
    c.restart()
    kms = clients(c)
    third = wait_for(kms[A], key_id, lambda m: m["CurrentKeyMaterialId"] not in (first, new))["CurrentKeyMaterialId"]
    wait_current_everywhere(kms, key_id, third)
    for region in REGIONS:
        wait_rotation_done(kms[region], key_id)
        assert kms[region].decrypt(CiphertextBlob=blob)["Plaintext"] == b"during"
        assert len(rotations(kms[region], key_id)) == 2
    poll(consistent, timeout=TIMEOUT, interval=0.1)
