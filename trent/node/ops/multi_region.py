"""Multi-Region keys: ReplicateKey and UpdatePrimaryRegion. Both are called in the primary's region and change
shared state, so both travel to the other regions as a snapshot in this region's outbox."""

from __future__ import annotations

from dataclasses import replace

from trent.node.model.errors import KmsError, unsupported, validation
from trent.node.model.key import KeyRecord
from trent.node.model.mrk import MultiRegionState, ReplicaInit
from trent.node.model.mrk_rules import bump, snapshot_of
from trent.node.model.operations import KeyAction, Operation
from trent.node.model.states import KeyState, OpClass, check_state
from trent.node.ops.common import key_metadata
from trent.node.ops.keys import default_policy
from trent.node.ops.policies import check_new_policy, check_policy_document
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.ops.tags import validate_new_tags
from trent.node.service import Region


def primary_key(region: Region, params: Params, operation: str) -> KeyRecord:
    key = region.resolve(params["KeyId"], allow_alias=False)
    if key.mrk is None:
        raise unsupported(f"{key.arn} is not a multi-Region key; {operation} needs one.")
    if not key.mrk.is_primary(region.name):
        raise unsupported(f"{key.arn} is a replica key; call {operation} on the primary key in "
                          f"{key.mrk.primary_region}.")
    return key


def replicate_key(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = primary_key(region, params, "ReplicateKey")
    check_state(OpClass.REPLICATE, key.state, key.arn)
    target = params["ReplicaRegion"]
    assert key.mrk is not None
    if target in key.mrk.related_regions():
        raise KmsError("AlreadyExistsException",
                       f"Multi-Region key {region.key_arn(key.key_id)} already has a related key in {target}.")
    if target not in region.cluster_regions:
        raise validation(f"{target} is not a Region of this cluster (Regions: {', '.join(region.cluster_regions)}).")
    tags = validate_new_tags(params.get("Tags") or [], existing=())
    policy = params.get("Policy")
    if policy is not None:
        check_policy_document(policy, ctx)
    policy = policy if policy is not None else default_policy(region.account)
    now = region.now()
    init = ReplicaInit(params.get("Description") or "", policy, tags, now)
    updated = bump(key, replica_regions=(*key.mrk.replica_regions, target))
    replica = KeyRecord(
        key_id=key.key_id, region=target, account=key.account, created=now, state=KeyState.CREATING,
        description=init.description, key_usage=key.key_usage, key_spec=key.key_spec, origin=key.origin,
        policy=policy, tags=tags, materials=key.materials, current_material_id=key.current_material_id,
        multi_region=True, mrk=updated.mrk,
    )
    if params.get("Policy") is not None:
        # ReplicateKey has CreateKey's lockout safety check (and its BypassPolicyLockoutSafetyCheck).
        check_new_policy(region, ctx, replica, policy, bool(params.get("BypassPolicyLockoutSafetyCheck")))
    region.commit(keys=[updated], commands=[snapshot_of(updated, {target: init})])
    return {"ReplicaKeyMetadata": key_metadata(region, replica), "ReplicaPolicy": policy,
            "ReplicaTags": [{"TagKey": k, "TagValue": v} for k, v in tags]}


def update_primary_region(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = primary_key(region, params, "UpdatePrimaryRegion")
    check_state(OpClass.UPDATE_PRIMARY, key.state, key.arn)
    target = params["PrimaryRegion"]
    assert key.mrk is not None
    if target == region.name:
        raise unsupported(f"{key.arn} is already the primary key.")
    if target not in key.mrk.replica_regions:
        raise KmsError("NotFoundException", f"{key.key_id} has no replica key in {target}; replicate it there "
                       "first.")
    st = key.mrk
    handed: MultiRegionState = replace(
        st, primary_region=target, epoch=st.epoch + 1, version=st.version + 1,
        replica_regions=(*(r for r in st.replica_regions if r != target), region.name), holders=(),
    )
    # Fenced hand-off: a new epoch; this key stays Updating until the new primary has taken over.
    # A primary still Updating from taking over returns, in the end, to the state it had before that.
    resume = key.resume_state if key.state is KeyState.UPDATING and key.resume_state else key.state
    updating = key.with_changes(mrk=handed, state=KeyState.UPDATING, resume_state=resume, ready_at=None)
    region.commit(keys=[updating], commands=[snapshot_of(updating)])
    return {}


def register(registry: Registry) -> None:
    registry.add(Operation(name="ReplicateKey", handler=replicate_key, keys=(KeyAction("KeyId", "ReplicateKey"),),
                           logged_response=("ReplicaKeyMetadata", "ReplicaPolicy")))
    registry.add(Operation(name="UpdatePrimaryRegion", handler=update_primary_region,
                           keys=(KeyAction("KeyId", "UpdatePrimaryRegion"),)))
