"""Key rotation end to end (KMS-REFERENCE.md §7): settings, on-demand rotation, ListKeyRotations, and automatic
rotation driven by the cluster's movable clock.

Tests that move the clock use a private cluster (module-scoped, shared by those tests only); the session cluster is
never moved.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.e2e.harness import RunningCluster, code_of, error_of, private_cluster, server_now, ts

DAY = 86400.0
MINUTE = 60.0


def unvalidated_client(cluster: RunningCluster, region: str = "us-east-1") -> Any:
    """A client without botocore's own parameter checks, so out-of-range values reach the server."""
    return boto3.client(
        "kms", endpoint_url=cluster.gateway_url, region_name=region, aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, parameter_validation=False),
    )




def new_key(kms: Any) -> dict[str, Any]:
    meta: dict[str, Any] = kms.create_key(Description="test_rotation")["KeyMetadata"]
    return meta


def current_material(kms: Any, key_id: str) -> str:
    mid: str = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    return mid


def rotations(kms: Any, key_id: str, **kwargs: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = kms.list_key_rotations(KeyId=key_id, **kwargs)["Rotations"]
    return entries


# ==== without moving the clock (session cluster) ==========================================================


def test_enable_rotation_with_the_default_period(kms: Any, cluster: RunningCluster) -> None:
    key = new_key(kms)
    status = kms.get_key_rotation_status(KeyId=key["KeyId"])
    assert status["KeyRotationEnabled"] is False
    assert "NextRotationDate" not in status
    before = server_now(cluster)
    kms.enable_key_rotation(KeyId=key["KeyId"])
    status = kms.get_key_rotation_status(KeyId=key["Arn"])
    assert status["KeyRotationEnabled"] is True
    assert status["KeyId"] in (key["KeyId"], key["Arn"])
    assert status["RotationPeriodInDays"] == 365
    assert before + 365 * DAY - 5 <= ts(status["NextRotationDate"]) <= server_now(cluster) + 365 * DAY + 5
    assert "OnDemandRotationStartDate" not in status


def test_custom_periods_and_their_bounds(kms: Any, cluster: RunningCluster) -> None:
    key = new_key(kms)
    for period in (90, 2560, 180):
        kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=period)
        status = kms.get_key_rotation_status(KeyId=key["KeyId"])
        assert status["RotationPeriodInDays"] == period
        # Changing the period keeps the schedule's anchor: still "enabled now + period".
        assert abs(ts(status["NextRotationDate"]) - (server_now(cluster) + period * DAY)) < 60
    raw = unvalidated_client(cluster)
    for bad in (89, 2561, 0, -1):
        err = error_of(raw.enable_key_rotation, KeyId=key["KeyId"], RotationPeriodInDays=bad)
        assert err["Error"]["Code"] == "ValidationException", bad
        assert "rotationPeriodInDays" in err["Error"]["Message"]
    # A refused change leaves the setting as it was.
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["RotationPeriodInDays"] == 180


def test_disable_key_rotation(kms: Any) -> None:
    key = new_key(kms)
    kms.disable_key_rotation(KeyId=key["KeyId"])  # already off: no error
    kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=100)
    kms.disable_key_rotation(KeyId=key["KeyId"])
    status = kms.get_key_rotation_status(KeyId=key["KeyId"])
    assert status["KeyRotationEnabled"] is False
    assert "NextRotationDate" not in status
    kms.enable_key_rotation(KeyId=key["KeyId"])
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["RotationPeriodInDays"] == 365


def test_rotation_settings_need_an_enabled_key(kms: Any) -> None:
    key = new_key(kms)
    kms.disable_key(KeyId=key["KeyId"])
    for call in (kms.enable_key_rotation, kms.disable_key_rotation, kms.rotate_key_on_demand):
        err = error_of(call, KeyId=key["KeyId"])
        assert err["Error"]["Code"] == "DisabledException"
        assert err["Error"]["Message"] == f"{key['Arn']} is disabled."
    # Reading the status and the history is allowed in any state.
    assert kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"] is False
    assert rotations(kms, key["KeyId"]) == []
    missing = str(uuid.uuid4())
    for call in (kms.enable_key_rotation, kms.get_key_rotation_status, kms.rotate_key_on_demand,
                 kms.list_key_rotations):
        assert code_of(call, KeyId=missing) == "NotFoundException"


def test_rotation_reported_off_while_pending_deletion(kms: Any) -> None:
    key = new_key(kms)
    kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=120)
    kms.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    status = kms.get_key_rotation_status(KeyId=key["KeyId"])
    assert status["KeyRotationEnabled"] is False
    assert "NextRotationDate" not in status
    for call in (kms.enable_key_rotation, kms.disable_key_rotation, kms.rotate_key_on_demand):
        err = error_of(call, KeyId=key["KeyId"])
        assert err["Error"]["Code"] == "KMSInvalidStateException"
        assert err["Error"]["Message"] == f"{key['Arn']} is pending deletion."
    kms.cancel_key_deletion(KeyId=key["KeyId"])
    status = kms.get_key_rotation_status(KeyId=key["KeyId"])
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 120


def test_rotate_on_demand_changes_the_current_material(kms: Any) -> None:
    key = new_key(kms)
    kid = key["KeyId"]
    ec = {"generation": "0"}
    blobs = {current_material(kms, kid): kms.encrypt(KeyId=kid, Plaintext=b"gen", EncryptionContext=ec)}
    seen = [current_material(kms, kid)]
    for _ in range(3):
        assert kms.rotate_key_on_demand(KeyId=kid)["KeyId"] == key["Arn"]
        now_current = current_material(kms, kid)
        assert now_current not in seen
        seen.append(now_current)
        enc = kms.encrypt(KeyId=kid, Plaintext=b"gen", EncryptionContext=ec)
        blobs[now_current] = enc
        # New ciphertexts use the new material.
        assert kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=ec)["KeyMaterialId"] == \
            now_current
        assert kms.generate_data_key(KeyId=kid, NumberOfBytes=8)["KeyMaterialId"] == now_current
    # Every ciphertext still decrypts and reports the material it was made with.
    for material_id, enc in blobs.items():
        out = kms.decrypt(CiphertextBlob=enc["CiphertextBlob"], EncryptionContext=ec)
        assert out["Plaintext"] == b"gen"
        assert out["KeyMaterialId"] == material_id
        re_enc = kms.re_encrypt(CiphertextBlob=enc["CiphertextBlob"], SourceEncryptionContext=ec,
                                DestinationKeyId=kid)
        assert re_enc["SourceKeyMaterialId"] == material_id
        assert re_enc["DestinationKeyMaterialId"] == seen[-1]
    # Automatic rotation was never switched on by rotating on demand.
    assert kms.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is False


def test_on_demand_rotation_keeps_the_automatic_schedule(kms: Any) -> None:
    key = new_key(kms)
    kms.enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=90)
    before = kms.get_key_rotation_status(KeyId=key["KeyId"])
    kms.rotate_key_on_demand(KeyId=key["KeyId"])
    after = kms.get_key_rotation_status(KeyId=key["KeyId"])
    assert after["KeyRotationEnabled"] is True
    assert after["RotationPeriodInDays"] == 90
    assert after["NextRotationDate"] == before["NextRotationDate"]


def test_list_key_rotations(kms: Any, cluster: RunningCluster) -> None:
    key = new_key(kms)
    kid = key["KeyId"]
    original = current_material(kms, kid)
    assert kms.list_key_rotations(KeyId=kid)["Rotations"] == []
    assert kms.list_key_rotations(KeyId=kid)["Truncated"] is False
    only_original = rotations(kms, kid, IncludeKeyMaterial="ALL_KEY_MATERIAL")
    assert len(only_original) == 1
    assert only_original[0]["KeyMaterialId"] == original
    assert only_original[0]["KeyMaterialState"] == "CURRENT"
    assert "RotationType" not in only_original[0]
    start = server_now(cluster)
    for _ in range(3):
        kms.rotate_key_on_demand(KeyId=kid)
    end = server_now(cluster)
    done = rotations(kms, kid)
    assert len(done) == 3
    assert rotations(kms, key["Arn"], IncludeKeyMaterial="ROTATIONS_ONLY") == done
    assert [r["RotationType"] for r in done] == ["ON_DEMAND"] * 3
    assert [r["KeyMaterialState"] for r in done] == ["NON_CURRENT", "NON_CURRENT", "CURRENT"]
    assert done[-1]["KeyMaterialId"] == current_material(kms, kid)
    assert len({r["KeyMaterialId"] for r in done} | {original}) == 4
    dates = [ts(r["RotationDate"]) for r in done]
    assert dates == sorted(dates)
    assert start - 5 <= dates[0] and dates[-1] <= end + 5
    for r in done:
        assert r["KeyId"] in (kid, key["Arn"])
    everything = rotations(kms, kid, IncludeKeyMaterial="ALL_KEY_MATERIAL")
    assert len(everything) == 4
    assert everything[0]["KeyMaterialId"] == original
    assert everything[0]["KeyMaterialState"] == "NON_CURRENT"
    assert everything[1:] == done


def test_list_key_rotations_pagination(kms: Any) -> None:
    key = new_key(kms)
    for _ in range(3):
        kms.rotate_key_on_demand(KeyId=key["KeyId"])
    expected = rotations(kms, key["KeyId"], IncludeKeyMaterial="ALL_KEY_MATERIAL")
    collected: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"KeyId": key["KeyId"], "IncludeKeyMaterial": "ALL_KEY_MATERIAL", "Limit": 1}
    pages = 0
    while True:
        page = kms.list_key_rotations(**kwargs)
        pages += 1
        assert len(page["Rotations"]) == 1
        collected.extend(page["Rotations"])
        if not page["Truncated"]:
            assert "NextMarker" not in page
            break
        kwargs["Marker"] = page["NextMarker"]
    assert pages == 4
    assert collected == expected
    # boto3's paginator walks the same pages.
    paginator = kms.get_paginator("list_key_rotations")
    walked = [r for p in paginator.paginate(KeyId=key["KeyId"], PaginationConfig={"PageSize": 2})
              for r in p["Rotations"]]
    assert walked == expected[1:]


def test_on_demand_rotation_limit_is_25(kms: Any) -> None:
    key = new_key(kms)
    for _ in range(25):
        kms.rotate_key_on_demand(KeyId=key["KeyId"])
    before = current_material(kms, key["KeyId"])
    err = error_of(kms.rotate_key_on_demand, KeyId=key["KeyId"])
    assert err["Error"]["Code"] == "LimitExceededException"
    assert current_material(kms, key["KeyId"]) == before
    assert len(rotations(kms, key["KeyId"])) == 25
    # Disabling and re-enabling automatic rotation does not reset the count.
    kms.enable_key_rotation(KeyId=key["KeyId"])
    kms.disable_key_rotation(KeyId=key["KeyId"])
    assert code_of(kms.rotate_key_on_demand, KeyId=key["KeyId"]) == "LimitExceededException"


def test_rotation_refuses_aliases_for_settings(kms: Any) -> None:
    key = new_key(kms)
    alias = f"alias/rot-{uuid.uuid4().hex[:10]}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    # These operations take a key id or key ARN only.
    for call in (kms.enable_key_rotation, kms.get_key_rotation_status, kms.rotate_key_on_demand):
        assert code_of(call, KeyId=alias) == "NotFoundException"


# ==== on the moved clock (a private cluster, never the session one) ========================================


@pytest.fixture(scope="module")
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    yield from private_cluster(tmp_path_factory, "rotation-clock")


def advance(cluster: RunningCluster, seconds: float) -> None:
    cluster.advance_clock(f"{seconds}s")


def test_conflict_when_automatic_rotation_is_due_within_20_minutes(clocked: RunningCluster) -> None:
    kms = clocked.client("us-east-1")
    key = new_key(kms)
    kid = key["KeyId"]
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    next_date = ts(kms.get_key_rotation_status(KeyId=kid)["NextRotationDate"])
    # 30 minutes before the date: on-demand rotation works, and does not move the schedule.
    advance(clocked, 90 * DAY - 30 * MINUTE)
    kms.rotate_key_on_demand(KeyId=kid)
    assert ts(kms.get_key_rotation_status(KeyId=kid)["NextRotationDate"]) == pytest.approx(next_date)
    # 10 minutes before: ConflictException (409), nothing rotated.
    advance(clocked, 20 * MINUTE)
    material = current_material(kms, kid)
    err = error_of(kms.rotate_key_on_demand, KeyId=kid)
    assert err["Error"]["Code"] == "ConflictException"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert current_material(kms, kid) == material
    assert [r["RotationType"] for r in rotations(kms, kid)] == ["ON_DEMAND"]
    # Once the automatic rotation has happened, on-demand rotation works again.
    advance(clocked, 11 * MINUTE)
    assert [r["RotationType"] for r in rotations(kms, kid)] == ["ON_DEMAND", "AUTOMATIC"]
    kms.rotate_key_on_demand(KeyId=kid)
    assert [r["RotationType"] for r in rotations(kms, kid)] == ["ON_DEMAND", "AUTOMATIC", "ON_DEMAND"]
    # A key without automatic rotation never conflicts.
    plain = new_key(kms)["KeyId"]
    kms.rotate_key_on_demand(KeyId=plain)


def test_automatic_rotation_on_the_moved_clock(clocked: RunningCluster) -> None:
    kms = clocked.client("us-east-1")
    key = new_key(kms)
    kid = key["KeyId"]
    idle = new_key(kms)["KeyId"]  # rotation never enabled: must not rotate
    original = current_material(kms, kid)
    ec = {"when": "before"}
    old_blob = kms.encrypt(KeyId=kid, Plaintext=b"before rotation", EncryptionContext=ec)["CiphertextBlob"]
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    due = ts(kms.get_key_rotation_status(KeyId=kid)["NextRotationDate"])

    advance(clocked, 89 * DAY)
    assert rotations(kms, kid) == []
    advance(clocked, 2 * DAY)
    done = rotations(kms, kid)
    assert len(done) == 1
    assert done[0]["RotationType"] == "AUTOMATIC"
    assert done[0]["KeyMaterialState"] == "CURRENT"
    assert ts(done[0]["RotationDate"]) == pytest.approx(due, abs=2)
    rotated = current_material(kms, kid)
    assert rotated != original and done[0]["KeyMaterialId"] == rotated
    old = kms.decrypt(CiphertextBlob=old_blob, EncryptionContext=ec)
    assert old["Plaintext"] == b"before rotation" and old["KeyMaterialId"] == original
    new = kms.encrypt(KeyId=kid, Plaintext=b"after", EncryptionContext=ec)["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=new, EncryptionContext=ec)["KeyMaterialId"] == rotated
    status = kms.get_key_rotation_status(KeyId=kid)
    assert status["KeyRotationEnabled"] is True
    assert ts(status["NextRotationDate"]) == pytest.approx(due + 90 * DAY, abs=2)
    assert rotations(kms, idle) == []

    # A long jump catches up: every period that passed is one rotation, each dated when it fell due.
    advance(clocked, 181 * DAY)
    done = rotations(kms, kid)
    assert [r["RotationType"] for r in done] == ["AUTOMATIC"] * 3
    assert [ts(r["RotationDate"]) for r in done] == pytest.approx([due, due + 90 * DAY, due + 180 * DAY], abs=2)
    assert kms.decrypt(CiphertextBlob=old_blob, EncryptionContext=ec)["KeyMaterialId"] == original
    assert ts(kms.get_key_rotation_status(KeyId=kid)["NextRotationDate"]) == pytest.approx(due + 270 * DAY, abs=2)

    # Disabling automatic rotation stops it.
    kms.disable_key_rotation(KeyId=kid)
    advance(clocked, 100 * DAY)
    assert len(rotations(kms, kid)) == 3


def test_a_disabled_key_is_not_rotated_until_enabled_again(clocked: RunningCluster) -> None:
    kms = clocked.client("us-east-1")
    key = new_key(kms)
    kid = key["KeyId"]
    blob = kms.encrypt(KeyId=kid, Plaintext=b"asleep")["CiphertextBlob"]
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    kms.disable_key(KeyId=kid)
    advance(clocked, 200 * DAY)
    assert rotations(kms, kid) == []
    kms.enable_key(KeyId=kid)
    reenabled_at = server_now(clocked)
    done = rotations(kms, kid)
    assert len(done) == 1  # once, however many periods were missed
    assert done[0]["RotationType"] == "AUTOMATIC"
    assert ts(done[0]["RotationDate"]) == pytest.approx(reenabled_at, abs=5)
    status = kms.get_key_rotation_status(KeyId=kid)
    assert ts(status["NextRotationDate"]) == pytest.approx(reenabled_at + 90 * DAY, abs=5)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"asleep"
    # The schedule resumes from the re-enabling.
    advance(clocked, 91 * DAY)
    assert [r["RotationType"] for r in rotations(kms, kid)] == ["AUTOMATIC", "AUTOMATIC"]


def test_a_key_re_enabled_before_its_date_keeps_its_schedule(clocked: RunningCluster) -> None:
    kms = clocked.client("us-east-1")
    kid = new_key(kms)["KeyId"]
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    due = ts(kms.get_key_rotation_status(KeyId=kid)["NextRotationDate"])
    kms.disable_key(KeyId=kid)
    advance(clocked, 30 * DAY)
    kms.enable_key(KeyId=kid)
    assert rotations(kms, kid) == []
    assert ts(kms.get_key_rotation_status(KeyId=kid)["NextRotationDate"]) == pytest.approx(due)
    advance(clocked, 61 * DAY)
    assert len(rotations(kms, kid)) == 1


def test_no_rotation_while_pending_deletion_and_the_setting_returns(clocked: RunningCluster) -> None:
    kms = clocked.client("us-east-1")
    kid = new_key(kms)["KeyId"]
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    advance(clocked, 80 * DAY)
    kms.schedule_key_deletion(KeyId=kid, PendingWindowInDays=30)
    assert kms.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is False
    advance(clocked, 20 * DAY)  # the rotation date passes while deletion is pending
    assert rotations(kms, kid) == []
    assert kms.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"] is False
    kms.cancel_key_deletion(KeyId=kid)
    status = kms.get_key_rotation_status(KeyId=kid)
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 90
    assert rotations(kms, kid) == []  # cancelled keys come back Disabled: still no rotation
    kms.enable_key(KeyId=kid)
    assert [r["RotationType"] for r in rotations(kms, kid)] == ["AUTOMATIC"]


def test_shortening_an_elapsed_period_rotates_once_now(clocked: RunningCluster) -> None:
    kms = clocked.client("us-east-1")
    kid = new_key(kms)["KeyId"]
    kms.enable_key_rotation(KeyId=kid)  # 365 days
    advance(clocked, 200 * DAY)
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)  # 90 days have long passed since enabling
    changed_at = server_now(clocked)
    # The rotation is due at once: the next scheduler tick (or this advance, whichever is first) performs it.
    advance(clocked, MINUTE)
    assert kms.get_key_rotation_status(KeyId=kid)["RotationPeriodInDays"] == 90
    done = rotations(kms, kid)
    assert [r["RotationType"] for r in done] == ["AUTOMATIC"]
    assert changed_at - 5 <= ts(done[0]["RotationDate"]) <= changed_at + MINUTE + 5  # not back-dated
    assert ts(kms.get_key_rotation_status(KeyId=kid)["NextRotationDate"]) == \
        pytest.approx(ts(done[0]["RotationDate"]) + 90 * DAY, abs=5)


def test_rotation_state_survives_a_restart(clocked: RunningCluster) -> None:
    kms = clocked.client("us-east-1")
    kid = new_key(kms)["KeyId"]
    kms.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    kms.rotate_key_on_demand(KeyId=kid)
    blob = kms.encrypt(KeyId=kid, Plaintext=b"durable")["CiphertextBlob"]
    status = kms.get_key_rotation_status(KeyId=kid)
    listed = rotations(kms, kid, IncludeKeyMaterial="ALL_KEY_MATERIAL")
    clocked.restart()
    kms = clocked.client("us-east-1")
    assert kms.get_key_rotation_status(KeyId=kid) | {"ResponseMetadata": None} == \
        status | {"ResponseMetadata": None}
    assert rotations(kms, kid, IncludeKeyMaterial="ALL_KEY_MATERIAL") == listed
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"durable"
    # The schedule survived too: the automatic rotation still happens on its date.
    advance(clocked, 91 * DAY)
    assert [r["RotationType"] for r in rotations(kms, kid)] == ["ON_DEMAND", "AUTOMATIC"]
