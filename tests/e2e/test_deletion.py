"""Key deletion on the moved clock (KMS-REFERENCE.md §3): the waiting period, what disappears with the key, and
that cancelled deletions never happen. Every test here moves time, so they share one private cluster."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import RunningCluster, all_key_ids, code_of, error_of, private_cluster, server_now, ts

DAY = 86400.0
FOREIGN_BLOB_MESSAGE = (
    "The ciphertext refers to a customer master key that does not exist, does not exist in this region, "
    "or you are not allowed to access."
)


@pytest.fixture(scope="module")
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    yield from private_cluster(tmp_path_factory, "deletion-clock")


def all_aliases(kms: Any) -> dict[str, str]:
    names: dict[str, str] = {}
    for page in kms.get_paginator("list_aliases").paginate():
        for entry in page["Aliases"]:
            names[entry["AliasName"]] = entry.get("TargetKeyId", "")
    return names


def test_a_key_is_deleted_when_its_window_ends(clocked: RunningCluster) -> None:
    kms = clocked.client("us-east-1")
    meta = kms.create_key(Description="doomed")["KeyMetadata"]
    kid, arn = meta["KeyId"], meta["Arn"]
    survivor = kms.create_key(Description="survivor")["KeyMetadata"]["KeyId"]
    names = [f"alias/doomed-{uuid.uuid4().hex[:8]}", f"alias/doomed-{uuid.uuid4().hex[:8]}"]
    for name in names:
        kms.create_alias(AliasName=name, TargetKeyId=kid)
    blob = kms.encrypt(KeyId=kid, Plaintext=b"last words")["CiphertextBlob"]

    before = server_now(clocked)
    out = kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    assert out["KeyId"] == arn
    assert out["KeyState"] == "PendingDeletion"
    assert out["PendingWindowInDays"] == 7
    deletion_date = ts(out["DeletionDate"])
    assert before + 7 * DAY - 5 <= deletion_date <= server_now(clocked) + 7 * DAY + 5
    described = kms.describe_key(KeyId=kid)["KeyMetadata"]
    assert described["KeyState"] == "PendingDeletion" and described["Enabled"] is False
    assert ts(described["DeletionDate"]) == pytest.approx(deletion_date, abs=1)
    # Scheduling again while pending is a state error.
    assert code_of(kms.schedule_key_deletion, KeyId=kid, PendingWindowInDays=7) == "KMSInvalidStateException"

    clocked.advance_clock("6d")
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    assert set(names) <= set(all_aliases(kms))
    assert kid in all_key_ids(kms)

    clocked.advance_clock("2d")
    err = error_of(kms.describe_key, KeyId=kid)
    assert err["Error"]["Code"] == "NotFoundException"
    assert err["Error"]["Message"] == f"Key '{arn}' does not exist"
    assert code_of(kms.describe_key, KeyId=arn) == "NotFoundException"
    assert kid not in all_key_ids(kms)
    listed = all_aliases(kms)
    assert not set(names) & set(listed)
    assert kid not in listed.values()
    for name in names:
        assert code_of(kms.encrypt, KeyId=name, Plaintext=b"x") == "NotFoundException"
        assert code_of(kms.describe_key, KeyId=name) == "NotFoundException"
    assert code_of(kms.list_aliases, KeyId=kid) == "NotFoundException"
    assert code_of(kms.cancel_key_deletion, KeyId=kid) == "NotFoundException"
    # Its ciphertexts now name a key this region does not have.
    err = error_of(kms.decrypt, CiphertextBlob=blob)
    assert err["Error"]["Code"] == "AccessDeniedException"
    assert err["Error"]["Message"] == FOREIGN_BLOB_MESSAGE
    # Other keys are untouched, and the alias names are free again.
    assert kms.describe_key(KeyId=survivor)["KeyMetadata"]["KeyState"] == "Enabled"
    kms.create_alias(AliasName=names[0], TargetKeyId=survivor)
    assert all_aliases(kms)[names[0]] == survivor


def test_the_default_window_is_30_days(clocked: RunningCluster) -> None:
    kms = clocked.client("eu-west-1")
    kid = kms.create_key()["KeyMetadata"]["KeyId"]
    out = kms.schedule_key_deletion(KeyId=kid)
    assert out["PendingWindowInDays"] == 30
    clocked.advance_clock("29d")
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    clocked.advance_clock("1d1m")
    assert code_of(kms.describe_key, KeyId=kid) == "NotFoundException"


def test_a_cancelled_deletion_never_happens(clocked: RunningCluster) -> None:
    kms = clocked.client("us-east-1")
    kid = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=kid, Plaintext=b"reprieve")["CiphertextBlob"]
    kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    clocked.advance_clock("3d")
    assert kms.cancel_key_deletion(KeyId=kid)["KeyId"].endswith(f":key/{kid}")
    clocked.advance_clock("8d")
    meta = kms.describe_key(KeyId=kid)["KeyMetadata"]
    assert meta["KeyState"] == "Disabled"
    assert "DeletionDate" not in meta
    kms.enable_key(KeyId=kid)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"reprieve"
    # A second scheduling starts a new window from now.
    kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    clocked.advance_clock("6d23h")
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingDeletion"
    clocked.advance_clock("2h")
    assert code_of(kms.describe_key, KeyId=kid) == "NotFoundException"


def test_deletion_is_per_region(clocked: RunningCluster) -> None:
    us, ap = clocked.client("us-east-1"), clocked.client("ap-northeast-2")
    doomed = ap.create_key()["KeyMetadata"]["KeyId"]
    kept = us.create_key()["KeyMetadata"]["KeyId"]
    ap.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=7)
    clocked.advance_clock("8d")
    assert code_of(ap.describe_key, KeyId=doomed) == "NotFoundException"
    assert us.describe_key(KeyId=kept)["KeyMetadata"]["KeyState"] == "Enabled"


def test_pending_deletion_survives_a_restart(clocked: RunningCluster) -> None:
    kms = clocked.client("us-east-1")
    kid = kms.create_key()["KeyMetadata"]["KeyId"]
    deletion_date = kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=10)["DeletionDate"]
    clocked.advance_clock("5d")
    offset = clocked.admin("/_trent/clock")["offset"]
    clocked.restart()
    assert clocked.admin("/_trent/clock")["offset"] == pytest.approx(offset)
    kms = clocked.client("us-east-1")
    meta = kms.describe_key(KeyId=kid)["KeyMetadata"]
    assert meta["KeyState"] == "PendingDeletion"
    assert meta["DeletionDate"] == deletion_date
    clocked.advance_clock("5d1m")
    assert code_of(kms.describe_key, KeyId=kid) == "NotFoundException"


def test_window_bounds(clocked: RunningCluster) -> None:
    kms = clocked.client("us-east-1")
    kid = kms.create_key()["KeyMetadata"]["KeyId"]
    for days in (6, 31, 365):
        assert code_of(kms.schedule_key_deletion, KeyId=kid, PendingWindowInDays=days) == "ValidationException"
    assert kms.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Enabled"
    assert kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=30)["PendingWindowInDays"] == 30
