"""Deleting multi-Region keys (KMS-REFERENCE.md §3, §6): a primary outlives its replicas in
PendingReplicaDeletion, and its own waiting period starts only when the last replica is gone. Moves the clock, so
it runs on one private cluster (no Creating period)."""

from __future__ import annotations

from collections.abc import Callable

from tests.e2e.harness import RunningCluster, poll
from tests.e2e.test_multi_region import (
    TIMEOUT,
    A,
    B,
    C,
    arn,
    clients,
    create_mrk,
    describe,
    encrypt,
    error_of,
    replicate,
    wait_for,
    wait_gone,
    wait_state,
    wait_topology,
)

DAY = 86400.0


def server_now(cluster: RunningCluster) -> float:
    now: float = cluster.admin("/_trent/clock")["now"]
    return now


def test_deleting_a_multi_region_key(fresh_cluster: Callable[..., RunningCluster]) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    kms = clients(c)

    # -- the primary waits for its replicas ----------------------------------------------------------------
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(c, key_id)
    old_blob = encrypt(kms[A], key_id, b"made before deletion")
    kms[A].create_alias(AliasName="alias/doomed", TargetKeyId=key_id)
    kms[B].create_alias(AliasName="alias/doomed", TargetKeyId=key_id)

    out = kms[A].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=10)
    assert out["KeyId"] == arn(A, key_id)
    assert out["KeyState"] == "PendingReplicaDeletion"
    assert out["PendingWindowInDays"] == 10
    assert "DeletionDate" not in out
    meta = kms[A].describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeyState"] == "PendingReplicaDeletion" and meta["Enabled"] is False
    assert meta["PendingDeletionWindowInDays"] == 10
    assert "DeletionDate" not in meta
    # Unusable for crypto and for replication; rotation is reported off.
    for call, kwargs in ((kms[A].encrypt, {"KeyId": key_id, "Plaintext": b"x"}),
                         (kms[A].decrypt, {"CiphertextBlob": old_blob})):
        err = error_of(call, **kwargs)
        assert err["Code"] == "KMSInvalidStateException"
        assert err["Message"].startswith(arn(A, key_id) + " is pending")
    assert error_of(kms[A].schedule_key_deletion, KeyId=key_id)["Code"] == "KMSInvalidStateException"
    assert kms[A].get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is False
    # The replicas are untouched and keep working.
    for region in (B, C):
        assert kms[region].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"
        assert kms[region].decrypt(CiphertextBlob=old_blob)["Plaintext"] == b"made before deletion"

    # A moved clock does not delete a primary that still has replicas.
    c.advance_clock("31d")
    assert kms[A].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingReplicaDeletion"

    # -- replicas go first, then the primary's window starts --------------------------------------------------
    for region in (B, C):
        scheduled = kms[region].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        assert scheduled["KeyState"] == "PendingDeletion" and "DeletionDate" in scheduled
        assert scheduled["KeyId"] == arn(region, key_id)
    c.advance_clock("8d")
    for region in (B, C):
        wait_gone(kms[region], key_id)
        err = error_of(kms[region].describe_key, KeyId=key_id)
        assert err["Code"] == "NotFoundException"
        # Its alias went with it.
        assert "alias/doomed" not in {a["AliasName"] for a in kms[region].list_aliases()["Aliases"]}
    primary = wait_state(kms[A], key_id, "PendingDeletion")
    assert primary["MultiRegionConfiguration"]["ReplicaKeys"] == []
    assert "PendingDeletionWindowInDays" not in primary
    deletion = primary["DeletionDate"].timestamp()
    assert abs(deletion - (server_now(c) + 10 * DAY)) < 120
    # Cancelling now is still possible, but this time the primary goes.
    c.advance_clock("11d")
    wait_gone(kms[A], key_id)
    assert error_of(kms[A].decrypt, CiphertextBlob=old_blob)["Code"] == "AccessDeniedException"
    assert "alias/doomed" not in {a["AliasName"] for a in kms[A].list_aliases()["Aliases"]}

    # -- CancelKeyDeletion of a PendingReplicaDeletion primary ------------------------------------------------
    other = create_mrk(kms[A])["KeyId"]
    replicate(c, other, targets=(B,))
    kms[A].schedule_key_deletion(KeyId=other)
    assert kms[A].describe_key(KeyId=other)["KeyMetadata"]["PendingDeletionWindowInDays"] == 30
    cancelled = kms[A].cancel_key_deletion(KeyId=other)
    assert cancelled["KeyId"] == arn(A, other)
    meta = kms[A].describe_key(KeyId=other)["KeyMetadata"]
    assert meta["KeyState"] == "Disabled"
    assert "PendingDeletionWindowInDays" not in meta and "DeletionDate" not in meta
    kms[A].enable_key(KeyId=other)
    assert kms[B].decrypt(CiphertextBlob=encrypt(kms[A], other, b"alive"))["Plaintext"] == b"alive"
    # A cancelled primary is not deleted when its replica later goes: it simply has no replicas left.
    kms[B].schedule_key_deletion(KeyId=other, PendingWindowInDays=7)
    c.advance_clock("8d")
    wait_gone(kms[B], other)
    wait_for(kms[A], other, lambda m: m["MultiRegionConfiguration"]["ReplicaKeys"] == [])
    assert kms[A].describe_key(KeyId=other)["KeyMetadata"]["KeyState"] == "Enabled"

    # -- a deleted replica can be re-created and opens old ciphertexts ------------------------------------------
    blob = encrypt(kms[A], other, b"made while the replica existed")
    kms[A].rotate_key_on_demand(KeyId=other)  # only the primary now: completes at once
    after_rotation = encrypt(kms[A], other, b"made after rotation")
    again = kms[A].replicate_key(KeyId=other, ReplicaRegion=B, Description="second life")
    assert again["ReplicaKeyMetadata"]["Arn"] == arn(B, other)
    replica = wait_state(kms[B], other, "Enabled")
    assert replica["Description"] == "second life"
    assert replica["CurrentKeyMaterialId"] == kms[A].describe_key(KeyId=other)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert kms[B].decrypt(CiphertextBlob=blob)["Plaintext"] == b"made while the replica existed"
    assert kms[B].decrypt(CiphertextBlob=after_rotation)["Plaintext"] == b"made after rotation"
    wait_topology(c, other, A, (B,))


def test_replica_cancel_and_primary_deleted_after_update(fresh_cluster: Callable[..., RunningCluster]) -> None:
    """A replica's deletion can be cancelled (it stays in the topology); to remove only the primary's region,
    move the primary first, then delete the old primary as an ordinary replica."""
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    kms = clients(c)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(c, key_id)
    blob = encrypt(kms[A], key_id, b"moving house")

    kms[C].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert kms[C].cancel_key_deletion(KeyId=key_id)["KeyId"] == arn(C, key_id)
    assert kms[C].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    c.advance_clock("8d")
    assert kms[C].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"
    kms[C].enable_key(KeyId=key_id)

    kms[A].update_primary_region(KeyId=key_id, PrimaryRegion=B)
    wait_topology(c, key_id, B, (A, C))
    wait_state(kms[A], key_id, "Enabled")
    out = kms[A].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert out["KeyState"] == "PendingDeletion" and "DeletionDate" in out
    c.advance_clock("8d")
    wait_gone(kms[A], key_id)
    wait_topology(c, key_id, B, (C,))
    for region in (B, C):
        assert kms[region].decrypt(CiphertextBlob=blob)["Plaintext"] == b"moving house"
    # The old primary's region can hold a replica again.
    kms[B].replicate_key(KeyId=key_id, ReplicaRegion=A)
    wait_state(kms[A], key_id, "Enabled")
    assert kms[A].decrypt(CiphertextBlob=blob)["KeyId"] == arn(A, key_id)
    poll(lambda: describe(kms[A], key_id) is not None, timeout=TIMEOUT)


def test_update_primary_region_to_a_replica_pending_deletion(fresh_cluster: Callable[..., RunningCluster]) -> None:
    """A replica pending deletion never becomes the primary (AWS requires it Enabled): otherwise its deletion
    would leave the other keys without a primary."""
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    kms = clients(c)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(c, key_id)
    kms[B].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    kms[A].update_primary_region(KeyId=key_id, PrimaryRegion=B)
    wait_state(kms[A], key_id, "Enabled")
    wait_topology(c, key_id, A, (B, C))
    assert kms[B].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    c.advance_clock("8d")
    wait_gone(kms[B], key_id)
    wait_topology(c, key_id, A, (C,))
    # The primary still works as one: it rotates, and its remaining replica follows.
    first = kms[A].describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    kms[A].rotate_key_on_demand(KeyId=key_id)
    new = wait_for(kms[A], key_id, lambda m: m["CurrentKeyMaterialId"] != first)["CurrentKeyMaterialId"]
    wait_for(kms[C], key_id, lambda m: m["CurrentKeyMaterialId"] == new)
    kms[A].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    assert kms[A].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingReplicaDeletion"


def test_replica_deleted_while_the_primary_moves(fresh_cluster: Callable[..., RunningCluster]) -> None:
    """The replica's deletion notice reaches the new primary before the hand-off does (the old primary is cut off
    from both): the new primary must still learn the replica is gone, or it waits for it forever."""
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    kms = clients(c)
    key_id = create_mrk(kms[A])["KeyId"]
    replicate(c, key_id)
    blob = encrypt(kms[A], key_id, b"survives")
    for other in (B, C):
        c.admin("/_trent/faults", {"action": "partition", "regions": [A, other]})
    try:
        kms[A].update_primary_region(KeyId=key_id, PrimaryRegion=B)
        kms[C].schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
        c.advance_clock("8d")
        wait_gone(kms[C], key_id)
    finally:
        c.admin("/_trent/faults", {"action": "clear"})
    wait_topology(c, key_id, B, (A,))
    wait_state(kms[A], key_id, "Enabled")
    first = kms[B].describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    kms[B].rotate_key_on_demand(KeyId=key_id)
    new = wait_for(kms[B], key_id, lambda m: m["CurrentKeyMaterialId"] != first)["CurrentKeyMaterialId"]
    wait_for(kms[A], key_id, lambda m: m["CurrentKeyMaterialId"] == new)
    assert kms[A].decrypt(CiphertextBlob=blob)["Plaintext"] == b"survives"
