"""Rotation: Enable/DisableKeyRotation, GetKeyRotationStatus, RotateKeyOnDemand, ListKeyRotations."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from trent.node.model.errors import KmsError, unsupported
from trent.node.model.imported import EXTERNAL, catalogue, rotate_in, rotation_entry
from trent.node.model.key import SYMMETRIC_DEFAULT, KeyRecord, MaterialVersion
from trent.node.model.mrk_rules import bump, rotation_in_progress, snapshot_of, start_rotation
from trent.node.model.operations import KeyAction, Operation
from trent.node.model.rotation import (
    MAX_ON_DEMAND_ROTATIONS,
    ON_DEMAND,
    ON_DEMAND_CONFLICT_WINDOW,
    disable_rotation,
    enable_rotation,
    rotate,
)
from trent.node.model.states import OpClass
from trent.node.ops.common import key_for, require_rotatable
from trent.node.ops.paging import page_response, paginate
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region

DEFAULT_PERIOD_DAYS = 365


def _require_primary(region: Region, key: KeyRecord) -> None:
    """Rotation of a multi-Region key is shared: it is set and started on the primary only."""
    if key.mrk is not None and not key.mrk.is_primary(region.name):
        raise unsupported(f"{key.arn} is a replica key; rotate or change rotation on the primary key in "
                          f"{key.mrk.primary_region}.")


def _commit_shared(region: Region, updated: KeyRecord) -> None:
    """Commit a change; for a multi-Region primary it is shared state, so it travels to the replicas too."""
    if updated.mrk is None:
        region.commit(keys=[updated])
        return
    region.commit(keys=[updated], commands=[snapshot_of(updated)])


def enable_key_rotation(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.ROTATION_SETTINGS, allow_alias=False)
    require_rotatable(key)
    _require_primary(region, key)
    period = params.get("RotationPeriodInDays") or DEFAULT_PERIOD_DAYS
    settings = enable_rotation(key.rotation, period, region.now())
    if settings != key.rotation:
        changed = key.with_changes(rotation=settings)
        _commit_shared(region, bump(changed) if changed.mrk is not None else changed)
    return {}


def disable_key_rotation(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.ROTATION_SETTINGS, allow_alias=False)
    require_rotatable(key)
    _require_primary(region, key)
    if key.rotation.enabled:
        changed = key.with_changes(rotation=disable_rotation(key.rotation))
        _commit_shared(region, bump(changed) if changed.mrk is not None else changed)
    return {}


def get_key_rotation_status(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.ROTATION_STATUS, allow_alias=False)
    require_rotatable(key)
    # While deletion is pending AWS reports rotation off; the setting comes back on cancel.
    enabled = key.rotation.enabled and not key.pending_deletion
    out: dict[str, Any] = {"KeyRotationEnabled": enabled, "KeyId": key.arn}
    if enabled:
        out["RotationPeriodInDays"] = key.rotation.period_days
        if key.rotation.next_rotation is not None:
            out["NextRotationDate"] = key.rotation.next_rotation
    if key.mrk is not None and key.mrk.pending_type == ON_DEMAND and key.mrk.pending_since is not None:
        # A multi-Region rotation is in progress until every replica holds the new material.
        out["OnDemandRotationStartDate"] = key.mrk.pending_since
    return out


def on_demand_rotations(key: KeyRecord) -> int:
    """On-demand rotations so far. The limit is per key: a multi-Region key's history is shared (every region holds
    every material version), while the counter is per region and starts at 0 in a replica that becomes primary."""
    return max(key.rotation.on_demand_count, sum(1 for v in key.materials if v.rotation_type == ON_DEMAND))


def rotate_key_on_demand(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.ROTATE_ON_DEMAND, allow_alias=False)
    if key.origin == EXTERNAL and key.key_spec == SYMMETRIC_DEFAULT:
        return _rotate_imported(region, key)
    require_rotatable(key)
    _require_primary(region, key)
    if rotation_in_progress(key):
        raise KmsError("ConflictException", f"A rotation of {key.arn} is already in progress; it completes "
                       "when every replica key holds the new key material.", 409)
    done = on_demand_rotations(key)
    if done >= MAX_ON_DEMAND_ROTATIONS:
        raise KmsError("LimitExceededException", f"{key.arn} has reached the limit of "
                       f"{MAX_ON_DEMAND_ROTATIONS} on-demand rotations.")
    now = region.now()
    due = key.rotation.next_rotation
    if key.rotation.enabled and due is not None and due - now <= ON_DEMAND_CONFLICT_WINDOW:
        raise KmsError("ConflictException", f"An automatic rotation of {key.arn} is in progress or due "
                       "within 20 minutes; try again later.", 409)
    rotated = rotate(key, now, ON_DEMAND) if key.mrk is None else start_rotation(key, now, ON_DEMAND)
    counted = replace(rotated.rotation, on_demand_count=done + 1)
    _commit_shared(region, rotated.with_changes(rotation=counted))
    return {"KeyId": key.arn}


def _rotate_imported(region: Region, key: KeyRecord) -> Response:
    """Imported material rotates only on demand, to material already imported as NEW_KEY_MATERIAL."""
    _require_primary(region, key)
    done = on_demand_rotations(key)
    if done >= MAX_ON_DEMAND_ROTATIONS:
        raise KmsError("LimitExceededException", f"{key.arn} has reached the limit of "
                       f"{MAX_ON_DEMAND_ROTATIONS} on-demand rotations.")
    rotated = rotate_in(key, region.now())
    counted = rotated.with_changes(rotation=replace(rotated.rotation, on_demand_count=done + 1))
    if counted.mrk is not None:
        # Every replica holds it (rotate_in checked): the multi-Region rotation completes here and now.
        counted = bump(counted, pending_material_id=None, pending_since=None, pending_type=None, holders=())
    _commit_shared(region, counted)
    return {"KeyId": key.arn}


def _rotation_entry(key: KeyRecord, version: MaterialVersion) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "KeyId": key.key_id,
        "KeyMaterialId": version.material_id.hex(),
        "KeyMaterialState": "CURRENT" if version.material_id == key.current_material_id else "NON_CURRENT",
    }
    if version.rotation_type is not None:
        entry["RotationDate"] = version.created
        entry["RotationType"] = version.rotation_type
    return entry


def list_key_rotations(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.ANY, allow_alias=False)
    if key.origin == EXTERNAL and key.key_spec == SYMMETRIC_DEFAULT:
        return _list_imported(key, params)
    require_rotatable(key)
    include_all = params.get("IncludeKeyMaterial") == "ALL_KEY_MATERIAL"
    # Positions are zero-padded indexes: versions are append-only, so a position never moves.
    pending = key.mrk.pending_material_id if key.mrk is not None else None
    versions = [(f"{i:08d}", v) for i, v in enumerate(key.materials)
                if (include_all or v.rotation_type is not None) and v.material_id != pending]
    page, marker = paginate(versions, lambda p: p[0], params.get("Limit"), params.get("Marker"), default=100)
    return page_response("Rotations", [_rotation_entry(key, v) for _, v in page], marker)


def _list_imported(key: KeyRecord, params: Params) -> Response:
    """Every material ever imported (ALL_KEY_MATERIAL), with its import state and expiry; else the rotations."""
    include_all = params.get("IncludeKeyMaterial") == "ALL_KEY_MATERIAL"
    entries = [(f"{i:08d}", e) for i, e in enumerate(catalogue(key)) if include_all or e.rotated_at is not None]
    page, marker = paginate(entries, lambda p: p[0], params.get("Limit"), params.get("Marker"), default=100)
    return page_response("Rotations", [rotation_entry(key, e) for _, e in page], marker)


def register(registry: Registry) -> None:
    for name, handler in (("EnableKeyRotation", enable_key_rotation), ("DisableKeyRotation", disable_key_rotation),
                          ("RotateKeyOnDemand", rotate_key_on_demand)):
        registry.add(Operation(name=name, handler=handler, keys=(KeyAction("KeyId", name),)))
    registry.add(Operation(name="GetKeyRotationStatus", handler=get_key_rotation_status, read_only=True,
                           cross_account=True, keys=(KeyAction("KeyId", "GetKeyRotationStatus"),)))
    registry.add(Operation(name="ListKeyRotations", handler=list_key_rotations, read_only=True,
                           keys=(KeyAction("KeyId", "ListKeyRotations"),)))
