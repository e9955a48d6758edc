"""How a region applies multi-Region commands to its own key record. Pure functions: record in, record out,
plus the commands the change obliges this region to send on (acknowledgements, a new primary's snapshot)."""

from __future__ import annotations

from dataclasses import replace

from trent.node.crypto.handles import new_material
from trent.node.model.imported import EXTERNAL, holds_pending, merged_from_primary, settled_state, shared_imports
from trent.node.model.key import KeyRecord, MaterialVersion, RotationSettings
from trent.node.model.mrk import (
    Command,
    HoldsMaterial,
    KeySnapshot,
    ReplicaGone,
    ReplicaInit,
    SharedMaterial,
)
from trent.node.model.states import KeyState

DAY = 86400.0


def snapshot_of(key: KeyRecord, replica_init: dict[str, ReplicaInit] | None = None) -> KeySnapshot:
    assert key.mrk is not None
    return KeySnapshot(
        key_id=key.key_id, origin_region=key.region, key_spec=key.key_spec, key_usage=key.key_usage,
        origin=key.origin,
        # Imported material never leaves its region: an EXTERNAL key's snapshot names its materials by id only.
        materials=() if key.origin == EXTERNAL else tuple(
            SharedMaterial(m.material, m.created, m.rotation_type) for m in key.materials),
        imported=shared_imports(key) if key.origin == EXTERNAL else (),
        current_material_id=key.current_material_id, rotation_enabled=key.rotation.enabled,
        rotation_period_days=key.rotation.period_days, next_rotation=key.rotation.next_rotation,
        state=key.mrk, replica_init=replica_init or {},
    )


def bump(key: KeyRecord, **changes: object) -> KeyRecord:
    """A change by the primary to shared state: a new version of the same epoch."""
    assert key.mrk is not None
    return key.with_changes(mrk=replace(key.mrk, version=key.mrk.version + 1, **changes))  # type: ignore[arg-type]


def _merged_materials(key: KeyRecord | None, snap: KeySnapshot) -> tuple[MaterialVersion, ...]:
    known = {m.material_id for m in key.materials} if key is not None else set()
    extra = tuple(MaterialVersion(m.material, m.created, m.rotation_type) for m in snap.materials
                  if m.material.material_id not in known)
    return (key.materials if key is not None else ()) + extra


def _shared_fields(key: KeyRecord | None, snap: KeySnapshot) -> dict[str, object]:
    rotation = RotationSettings(
        enabled=snap.rotation_enabled, period_days=snap.rotation_period_days, next_rotation=snap.next_rotation,
        on_demand_count=key.rotation.on_demand_count if key is not None else 0,
    )
    shared: dict[str, object] = {
        "key_spec": snap.key_spec, "key_usage": snap.key_usage, "origin": snap.origin,
        "materials": _merged_materials(key, snap), "current_material_id": snap.current_material_id,
        "rotation": rotation, "mrk": snap.state, "multi_region": True}
    if snap.origin == EXTERNAL:
        shared.update(merged_from_primary(key, snap.imported))
    return shared


def apply_snapshot(
    region: str, account: str, local: KeyRecord | None, snap: KeySnapshot, now: float, creating_delay: float
) -> tuple[KeyRecord | None, list[Command]]:
    """The record this region should hold after ``snap`` (None: no change) and the commands to send."""
    if local is not None and local.mrk is not None and local.mrk.stamp >= snap.state.stamp:
        return None, []  # already applied (or superseded): re-delivery and reordering are harmless
    if region not in snap.state.related_regions():
        return None, []  # not (or no longer) part of this key's topology
    if local is None:
        init = snap.replica_init.get(region)
        if snap.state.is_primary(region) and snap.origin_region != region:
            # Named primary of a key this region does not hold (its replica was deleted meanwhile): decline.
            return None, [decline_hand_off(region, snap, holds_key=False)]
        if init is None or snap.state.is_primary(region):
            return None, []
        ready = creating_delay <= 0
        # A replica of a key with imported material has none until it is imported in its own region.
        usable = KeyState.PENDING_IMPORT if snap.origin == EXTERNAL else KeyState.ENABLED
        local = KeyRecord(
            # Created when ReplicateKey was called: the date its response showed.
            key_id=snap.key_id, region=region, account=account, created=init.created,
            state=usable if ready else KeyState.CREATING, description=init.description,
            policy=init.policy, tags=init.tags, resume_state=None if ready else usable,
            ready_at=None if ready else now + creating_delay, **_shared_fields(None, snap),  # type: ignore[arg-type]
        )
    else:
        local = local.with_changes(**_shared_fields(local, snap))
        if local.origin == EXTERNAL:
            local = local.with_changes(state=settled_state(local))
    out: list[Command] = []
    state = snap.state
    if state.is_primary(region) and snap.origin_region != region:
        if not can_take_over(local):
            # AWS requires the new primary to be Enabled when the hand-off starts; the old primary could not see
            # this key's state, so the hand-off is declined here and authority goes back where it came from.
            back = decline_hand_off(region, snap, holds_key=True)
            return local.with_changes(mrk=back.state), [back]
        # A hand-off named this region primary: take authority in the new epoch and tell everyone. (A region that
        # was itself Updating — a hand-off it started being handed back — returns to its own state.)
        if local.state is KeyState.UPDATING and local.resume_state is not None:
            local = local.with_changes(state=local.resume_state, resume_state=None, ready_at=None)
        local = bump(local)
        out.append(snapshot_of(local))
        if local.state is KeyState.ENABLED and creating_delay > 0:
            # As in AWS, the new primary is Updating for a few seconds too (the replica delay); it can be used
            # for crypto meanwhile, and the scheduler returns it to Enabled.
            local = local.with_changes(state=KeyState.UPDATING, resume_state=KeyState.ENABLED,
                                       ready_at=now + creating_delay)
    elif local.state is KeyState.UPDATING and not state.is_primary(region) and local.resume_state is not None:
        # The old primary learns the new primary has taken over: the hand-off is complete here.
        local = local.with_changes(state=local.resume_state, resume_state=None, ready_at=None)
    if state.pending_material_id is not None and not state.is_primary(region) and region not in state.holders and (
            local.origin != EXTERNAL or holds_pending(local)):
        # Imported material is held only once this region has imported the same bytes itself.
        out.append(HoldsMaterial(snap.key_id, region, state.pending_material_id, state.epoch))
    return local, out


# The states in which a replica may become the primary (Creating ends by itself, shortly).
TAKE_OVER_STATES = frozenset({KeyState.ENABLED, KeyState.CREATING})


def can_take_over(local: KeyRecord) -> bool:
    state = local.resume_state if local.state is KeyState.UPDATING and local.resume_state else local.state
    return state in TAKE_OVER_STATES


def decline_hand_off(region: str, snap: KeySnapshot, *, holds_key: bool) -> KeySnapshot:
    """The snapshot with which ``region``, named primary by ``snap``, hands authority back to the region that
    sent it, in a newer epoch (so it supersedes the hand-off everywhere). ``region`` stays a replica if it holds
    the key; the old primary takes authority again when it applies this."""
    st = snap.state
    back_to = snap.origin_region
    replicas = tuple(r for r in st.replica_regions if r not in (back_to, region))
    returned = replace(st, primary_region=back_to, replica_regions=(*replicas, region) if holds_key else replicas,
                       epoch=st.epoch + 1, version=st.version + 1, holders=())
    return replace(snap, origin_region=region, state=returned, replica_init={})


def awaits_creation(region: str, local: KeyRecord | None, snap: KeySnapshot) -> bool:
    """``snap`` lists ``region`` as a replica this region has not created yet (the ReplicateKey snapshot that
    creates it is still on its way, through another region's log): it must be applied once the replica exists."""
    return (local is None and region in snap.state.replica_regions and not snap.state.is_primary(region)
            and region not in snap.replica_init)


def _maybe_flip(key: KeyRecord) -> KeyRecord:
    """Make the pending material current once every replica holds it."""
    assert key.mrk is not None
    st = key.mrk
    if st.pending_material_id is None or not set(st.replica_regions) <= set(st.holders):
        return key
    if key.origin == EXTERNAL:
        return key  # imported material waits in PENDING_ROTATION for RotateKeyOnDemand on the primary
    return bump(key.with_changes(current_material_id=st.pending_material_id), pending_material_id=None,
                pending_since=None, pending_type=None, holders=())


def apply_holds(region: str, local: KeyRecord | None, cmd: HoldsMaterial, now: float) -> KeyRecord | None:
    if local is None or local.mrk is None or not local.mrk.is_primary(region):
        return None
    st = local.mrk
    if cmd.epoch != st.epoch or st.pending_material_id != cmd.material_id or cmd.region in st.holders:
        return None
    if cmd.region not in st.replica_regions:
        return None
    held = local.with_changes(mrk=replace(st, holders=(*st.holders, cmd.region)))
    return _maybe_flip(bump(held))


def apply_replica_gone(region: str, local: KeyRecord | None, cmd: ReplicaGone, now: float) -> KeyRecord | None:
    if local is None or local.mrk is None or not local.mrk.is_primary(region):
        return None
    st = local.mrk
    if cmd.region not in st.replica_regions:
        return None
    updated = bump(local, replica_regions=tuple(r for r in st.replica_regions if r != cmd.region),
                   holders=tuple(r for r in st.holders if r != cmd.region))
    updated = _maybe_flip(updated)
    assert updated.mrk is not None
    if updated.state is KeyState.PENDING_REPLICA_DELETION and not updated.mrk.replica_regions:
        window = updated.pending_window_days or 30
        updated = updated.with_changes(state=KeyState.PENDING_DELETION, deletion_date=now + window * DAY)
    return updated


def start_rotation(key: KeyRecord, now: float, rotation_type: str) -> KeyRecord:
    """Primary side of an MRK rotation: distribute a new material version, current once every replica has it."""
    assert key.mrk is not None
    version = MaterialVersion(new_material(key.key_id), now, rotation_type)
    pending = key.with_changes(materials=(*key.materials, version))
    pending = bump(pending, pending_material_id=version.material_id, pending_since=now, pending_type=rotation_type,
                   holders=())
    return _maybe_flip(pending)


def rotation_in_progress(key: KeyRecord) -> bool:
    return key.mrk is not None and key.mrk.pending_material_id is not None
