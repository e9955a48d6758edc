"""Rotation as data (node/model/rotation.py) and the rotation operations (node/ops/rotation.py) on a memory store."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from trent.node.auth.principals import Principal
from trent.node.clock import FixedClock
from trent.node.crypto.handles import new_material
from trent.node.crypto.rootkey import RootKey
from trent.node.model.errors import KmsError
from trent.node.model.key import KeyRecord, MaterialVersion, RotationSettings
from trent.node.model.rotation import (
    AUTOMATIC,
    DAY,
    MAX_CATCH_UP,
    ON_DEMAND,
    apply_automatic_rotations,
    disable_rotation,
    enable_rotation,
    on_reenable,
    rotate,
    rotation_due,
)
from trent.node.model.states import KeyState
from trent.node.ops import encryption, keys
from trent.node.ops import rotation as rotation_ops
from trent.node.ops.registry import RequestContext
from trent.node.service import Region, RegionIdentity
from trent.node.store.memory import MemoryStore

T0 = 1_800_000_000.0
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"


def make_key(**changes: Any) -> KeyRecord:
    first = MaterialVersion(new_material(KEY_ID), T0)
    key = KeyRecord(key_id=KEY_ID, region="us-east-1", account="111122223333", created=T0,
                    state=KeyState.ENABLED, materials=(first,), current_material_id=first.material_id)
    return key.with_changes(**changes)


def rotating(period: int = 90, enabled_at: float = T0, **changes: Any) -> KeyRecord:
    return make_key(rotation=enable_rotation(RotationSettings(), period, enabled_at), **changes)


# -- enable / disable --------------------------------------------------------------------------------------


def test_first_enable_anchors_on_now() -> None:
    settings = enable_rotation(RotationSettings(), 90, T0)
    assert settings.enabled and settings.period_days == 90
    assert settings.next_rotation == T0 + 90 * DAY


def test_changing_the_period_keeps_the_anchor() -> None:
    settings = enable_rotation(RotationSettings(), 365, T0)
    later = enable_rotation(settings, 90, T0 + 10 * DAY)
    assert later.period_days == 90
    assert later.next_rotation == T0 + 90 * DAY  # anchor T0, not the time of the call
    again = enable_rotation(later, 2560, T0 + 20 * DAY)
    assert again.next_rotation == T0 + 2560 * DAY
    # Calling with the same period changes nothing at all.
    assert enable_rotation(again, 2560, T0 + 30 * DAY) == again


def test_the_anchor_after_an_automatic_rotation_is_that_rotation() -> None:
    key = rotating(90)
    rotated = apply_automatic_rotations(key, T0 + 91 * DAY)
    assert rotated is not None
    changed = enable_rotation(rotated.rotation, 180, T0 + 100 * DAY)
    assert changed.next_rotation == T0 + 90 * DAY + 180 * DAY


def test_disable_then_enable_starts_a_new_schedule_and_keeps_the_count() -> None:
    settings = replace(enable_rotation(RotationSettings(), 90, T0), on_demand_count=7)
    off = disable_rotation(settings)
    assert not off.enabled and off.next_rotation is None and off.on_demand_count == 7
    on = enable_rotation(off, 120, T0 + 50 * DAY)
    assert on.next_rotation == T0 + 50 * DAY + 120 * DAY
    assert on.on_demand_count == 7


def test_rotate_appends_and_makes_current() -> None:
    key = make_key()
    original = key.current_material_id
    rotated = rotate(key, T0 + 5, ON_DEMAND)
    assert len(rotated.materials) == 2
    assert rotated.materials[0].material_id == original
    assert rotated.current_material_id == rotated.materials[1].material_id != original
    assert rotated.materials[1].created == T0 + 5 and rotated.materials[1].rotation_type == ON_DEMAND
    assert key.current_material_id == original  # records are never changed in place


# -- automatic rotation and catch-up --------------------------------------------------------------------------


def test_rotation_due_only_for_enabled_keys_with_rotation_on() -> None:
    assert rotation_due(make_key()) is None
    assert rotation_due(rotating(90)) == T0 + 90 * DAY
    for state in (KeyState.DISABLED, KeyState.PENDING_DELETION, KeyState.PENDING_IMPORT):
        assert rotation_due(rotating(90, state=state)) is None


def test_nothing_is_due_before_the_date() -> None:
    key = rotating(90)
    assert apply_automatic_rotations(key, T0 + 90 * DAY - 1) is None
    assert apply_automatic_rotations(make_key(), T0 + 1000 * DAY) is None
    assert apply_automatic_rotations(rotating(90, state=KeyState.DISABLED), T0 + 1000 * DAY) is None


def test_one_rotation_exactly_at_the_date() -> None:
    key = rotating(90)
    rotated = apply_automatic_rotations(key, T0 + 90 * DAY)
    assert rotated is not None
    assert [(v.created, v.rotation_type) for v in rotated.materials[1:]] == [(T0 + 90 * DAY, AUTOMATIC)]
    assert rotated.rotation.next_rotation == T0 + 180 * DAY
    assert rotated.rotation.enabled and rotated.rotation.period_days == 90


def test_catch_up_rotates_once_per_missed_period_each_dated_when_due() -> None:
    key = rotating(90)
    rotated = apply_automatic_rotations(key, T0 + 300 * DAY)
    assert rotated is not None
    assert [v.created for v in rotated.materials[1:]] == [T0 + 90 * DAY, T0 + 180 * DAY, T0 + 270 * DAY]
    assert all(v.rotation_type == AUTOMATIC for v in rotated.materials[1:])
    assert rotated.current_material_id == rotated.materials[-1].material_id
    assert len({v.material_id for v in rotated.materials}) == 4
    assert rotated.rotation.next_rotation == T0 + 360 * DAY
    # Running again at the same instant is a no-op.
    assert apply_automatic_rotations(rotated, T0 + 300 * DAY) is None


def test_catch_up_is_bounded_and_resumes() -> None:
    key = rotating(90)
    far = T0 + (MAX_CATCH_UP + 5) * 90 * DAY
    first = apply_automatic_rotations(key, far)
    assert first is not None
    assert len(first.materials) == 1 + MAX_CATCH_UP
    assert first.rotation.next_rotation is not None and first.rotation.next_rotation <= far
    second = apply_automatic_rotations(first, far)
    assert second is not None
    assert len(second.materials) == 1 + MAX_CATCH_UP + 5
    assert second.rotation.next_rotation == T0 + (MAX_CATCH_UP + 6) * 90 * DAY


def test_on_demand_rotation_count_survives_automatic_rotation() -> None:
    key = rotating(90)
    key = key.with_changes(rotation=replace(key.rotation, on_demand_count=3))
    rotated = apply_automatic_rotations(key, T0 + 91 * DAY)
    assert rotated is not None and rotated.rotation.on_demand_count == 3


# -- re-enabling a key ------------------------------------------------------------------------------------


def test_on_reenable_after_the_date_rotates_once_and_resumes_from_now() -> None:
    key = rotating(90)
    now = T0 + 400 * DAY  # four periods missed while disabled
    back = on_reenable(key, now)
    assert [(v.created, v.rotation_type) for v in back.materials[1:]] == [(now, AUTOMATIC)]
    assert back.rotation.next_rotation == now + 90 * DAY
    assert back.current_material_id == back.materials[-1].material_id
    assert rotation_due(back) == now + 90 * DAY


def test_on_reenable_before_the_date_keeps_the_schedule() -> None:
    key = rotating(90)
    assert on_reenable(key, T0 + 30 * DAY) == key
    assert on_reenable(key, T0 + 90 * DAY - 1) == key


def test_on_reenable_without_rotation_changes_nothing() -> None:
    key = make_key()
    assert on_reenable(key, T0 + 1000 * DAY) == key
    off = rotating(90).with_changes(rotation=disable_rotation(rotating(90).rotation))
    assert on_reenable(off, T0 + 1000 * DAY) == off


# -- the operations over a Region -------------------------------------------------------------------------


@pytest.fixture()
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture()
def region(clock: FixedClock) -> Region:
    return Region(RegionIdentity("us-east-1", "111122223333"), MemoryStore(), RootKey.from_bytes(b"\x01" * 32),
                  clock)


def ctx(operation: str) -> RequestContext:
    principal = Principal("test", "test", "arn:aws:iam::111122223333:root", "111122223333")
    return RequestContext("req-1", operation, principal, "127.0.0.1", "pytest")


def create(region: Region) -> str:
    key_id: str = keys.create_key(region, {}, ctx("CreateKey"))["KeyMetadata"]["KeyId"]
    return key_id


def raises(code: str, fn: Any, *args: Any) -> KmsError:
    with pytest.raises(KmsError) as info:
        fn(*args)
    assert info.value.code == code
    return info.value


def test_enable_status_and_default_period(region: Region) -> None:
    kid = create(region)
    assert rotation_ops.enable_key_rotation(region, {"KeyId": kid}, ctx("EnableKeyRotation")) == {}
    status = rotation_ops.get_key_rotation_status(region, {"KeyId": kid}, ctx("GetKeyRotationStatus"))
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 365
    assert status["NextRotationDate"] == T0 + 365 * DAY


def test_status_is_false_while_pending_deletion(region: Region) -> None:
    kid = create(region)
    rotation_ops.enable_key_rotation(region, {"KeyId": kid, "RotationPeriodInDays": 100}, ctx("EnableKeyRotation"))
    keys.schedule_key_deletion(region, {"KeyId": kid, "PendingWindowInDays": 7}, ctx("ScheduleKeyDeletion"))
    status = rotation_ops.get_key_rotation_status(region, {"KeyId": kid}, ctx("GetKeyRotationStatus"))
    assert status == {"KeyRotationEnabled": False, "KeyId": region.keys[kid].arn}
    keys.cancel_key_deletion(region, {"KeyId": kid}, ctx("CancelKeyDeletion"))
    status = rotation_ops.get_key_rotation_status(region, {"KeyId": kid}, ctx("GetKeyRotationStatus"))
    assert status["KeyRotationEnabled"] is True and status["RotationPeriodInDays"] == 100


def test_on_demand_limit_and_conflict(region: Region, clock: FixedClock) -> None:
    kid = create(region)
    for _ in range(25):
        rotation_ops.rotate_key_on_demand(region, {"KeyId": kid}, ctx("RotateKeyOnDemand"))
    assert region.keys[kid].rotation.on_demand_count == 25
    raises("LimitExceededException", rotation_ops.rotate_key_on_demand, region, {"KeyId": kid},
           ctx("RotateKeyOnDemand"))
    other = create(region)
    rotation_ops.enable_key_rotation(region, {"KeyId": other, "RotationPeriodInDays": 90}, ctx("EnableKeyRotation"))
    clock.advance(90 * DAY - 20 * 60 - 1)
    rotation_ops.rotate_key_on_demand(region, {"KeyId": other}, ctx("RotateKeyOnDemand"))
    clock.advance(2)
    err = raises("ConflictException", rotation_ops.rotate_key_on_demand, region, {"KeyId": other},
                 ctx("RotateKeyOnDemand"))
    assert err.status == 409
    assert region.keys[other].rotation.next_rotation == T0 + 90 * DAY  # the schedule did not move


def test_old_ciphertexts_decrypt_after_rotations(region: Region) -> None:
    kid = create(region)
    blob = encryption.encrypt(region, {"KeyId": kid, "Plaintext": b"old"}, ctx("Encrypt"))["CiphertextBlob"]
    first = region.keys[kid].current_material_id.hex()
    for _ in range(3):
        rotation_ops.rotate_key_on_demand(region, {"KeyId": kid}, ctx("RotateKeyOnDemand"))
    out = encryption.decrypt(region, {"CiphertextBlob": blob}, ctx("Decrypt"))
    assert out["Plaintext"] == b"old" and out["KeyMaterialId"] == first
    listed = rotation_ops.list_key_rotations(region, {"KeyId": kid}, ctx("ListKeyRotations"))["Rotations"]
    assert [r["RotationType"] for r in listed] == [ON_DEMAND] * 3
    assert [r["KeyMaterialState"] for r in listed] == ["NON_CURRENT", "NON_CURRENT", "CURRENT"]


def test_enable_key_after_the_date_rotates_once(region: Region, clock: FixedClock) -> None:
    kid = create(region)
    rotation_ops.enable_key_rotation(region, {"KeyId": kid, "RotationPeriodInDays": 90}, ctx("EnableKeyRotation"))
    keys.disable_key(region, {"KeyId": kid}, ctx("DisableKey"))
    clock.advance(300 * DAY)
    keys.enable_key(region, {"KeyId": kid}, ctx("EnableKey"))
    key = region.keys[kid]
    assert [v.rotation_type for v in key.materials] == [None, AUTOMATIC]
    assert key.rotation.next_rotation == clock.now() + 90 * DAY


def test_a_shorter_period_already_elapsed_makes_the_rotation_due_now() -> None:
    settings = enable_rotation(RotationSettings(), 365, T0)
    now = T0 + 200 * DAY
    shorter = enable_rotation(settings, 90, now)
    assert shorter.next_rotation == now  # not T0 + 90 days: that is before the change was made
    key = make_key(rotation=shorter)
    rotated = apply_automatic_rotations(key, now + 1)
    assert rotated is not None
    assert [v.created for v in rotated.materials[1:]] == [now]  # one rotation, not a catch-up of two
    assert rotated.rotation.next_rotation == now + 90 * DAY
