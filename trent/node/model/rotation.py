"""Rotation as data: a rotation appends a material version and makes it current; old versions stay forever."""

from __future__ import annotations

from dataclasses import replace

from trent.node.crypto.handles import new_material
from trent.node.model.key import KeyRecord, MaterialVersion, RotationSettings
from trent.node.model.states import KeyState

DAY = 86400.0
AUTOMATIC = "AUTOMATIC"
ON_DEMAND = "ON_DEMAND"
MAX_ON_DEMAND_ROTATIONS = 25
# RotateKeyOnDemand is refused while an automatic rotation is due this soon (ConflictException).
ON_DEMAND_CONFLICT_WINDOW = 20 * 60.0
# Bound on catch-up rotations applied at once after a big clock jump.
MAX_CATCH_UP = 1000


def rotate(key: KeyRecord, at: float, rotation_type: str) -> KeyRecord:
    version = MaterialVersion(new_material(key.key_id), at, rotation_type)
    return key.with_changes(materials=(*key.materials, version), current_material_id=version.material_id)


def enable_rotation(settings: RotationSettings, period_days: int, now: float) -> RotationSettings:
    if settings.enabled and settings.next_rotation is not None:
        # Changing the period keeps the schedule's anchor (the last rotation or the enabling). A shorter period
        # that has already elapsed since the anchor makes the rotation due now: never a rotation dated in the past
        # (before the change was even made), and never several at once.
        anchor = settings.next_rotation - settings.period_days * DAY
        return replace(settings, period_days=period_days, next_rotation=max(anchor + period_days * DAY, now))
    return replace(settings, enabled=True, period_days=period_days, next_rotation=now + period_days * DAY)


def disable_rotation(settings: RotationSettings) -> RotationSettings:
    return replace(settings, enabled=False, next_rotation=None)


def rotation_due(key: KeyRecord) -> float | None:
    """When the scheduler next has automatic-rotation work for this key, if ever (given its current state)."""
    if key.rotation.enabled and key.state is KeyState.ENABLED:
        return key.rotation.next_rotation
    return None


def apply_automatic_rotations(key: KeyRecord, now: float) -> KeyRecord | None:
    """Every rotation due by ``now``, each dated when it fell due; None if nothing is due.

    A key that was disabled past its date rotates once on re-enable, then resumes its period from then.
    """
    due = rotation_due(key)
    if due is None or due > now:
        return None
    period = key.rotation.period_days * DAY
    count = 0
    while due <= now and count < MAX_CATCH_UP:
        key = rotate(key, due, AUTOMATIC)
        due += period
        count += 1
    return key.with_changes(rotation=replace(key.rotation, next_rotation=due))


def on_reenable(key: KeyRecord, now: float) -> KeyRecord:
    """A key that missed its rotation while disabled rotates once when enabled again, then resumes."""
    due = key.rotation.next_rotation
    if not key.rotation.enabled or due is None or due > now:
        return key
    rotated = rotate(key, now, AUTOMATIC)
    return rotated.with_changes(
        rotation=replace(key.rotation, next_rotation=now + key.rotation.period_days * DAY)
    )
