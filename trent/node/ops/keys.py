"""Key lifecycle: CreateKey, DescribeKey, ListKeys, UpdateKeyDescription, Enable/DisableKey, deletion."""

from __future__ import annotations

from trent.node.crypto.asymmetric import new_key_material
from trent.node.deferred import Deferred
from trent.node.model.errors import unsupported, validation
from trent.node.model.ids import new_key_id
from trent.node.model.imported import EXTERNAL, check_importable, settled_state
from trent.node.model.key import ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT, KeyRecord, MaterialVersion
from trent.node.model.key_specs import UNSUPPORTED_SPECS, USAGES
from trent.node.model.mrk import MultiRegionState
from trent.node.model.operations import ANY_KEY, KeyAction, Operation
from trent.node.model.rotation import on_reenable
from trent.node.model.states import KeyState, OpClass
from trent.node.ops import key_store_keys
from trent.node.ops.common import key_for, key_metadata
from trent.node.ops.paging import page_response, paginate
from trent.node.ops.policies import check_new_policy, check_policy_document
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.ops.tags import validate_new_tags
from trent.node.service import Region

DAY = 86400.0


def default_policy(account: str) -> str:
    # The exact text (and pretty-printing) AWS attaches when CreateKey is called without a Policy.
    return (
        '{\n  "Version" : "2012-10-17",\n  "Id" : "key-default-1",\n  "Statement" : [ {\n'
        '    "Sid" : "Enable IAM User Permissions",\n    "Effect" : "Allow",\n    "Principal" : {\n'
        f'      "AWS" : "arn:aws:iam::{account}:root"\n    }},\n    "Action" : "kms:*",\n'
        '    "Resource" : "*"\n  } ]\n}'
    )


def _spec_and_usage(params: Params) -> tuple[str, str]:
    spec = params.get("KeySpec")
    legacy = params.get("CustomerMasterKeySpec")
    if spec is not None and legacy is not None:
        raise validation("You cannot specify KeySpec and CustomerMasterKeySpec in the same request. "
                         "CustomerMasterKeySpec is deprecated.")
    spec = spec or legacy or SYMMETRIC_DEFAULT
    valid = USAGES[spec]  # the model's enum has already refused any other spec
    usage = params.get("KeyUsage")
    if usage is None and spec != SYMMETRIC_DEFAULT:
        # Only a symmetric encryption key may leave KeyUsage to its default (the KeyUsage documentation).
        raise validation(f"KeyUsage is required for KeySpec {spec}. Valid values: {', '.join(valid)}.")
    usage = usage or ENCRYPT_DECRYPT
    if usage not in valid:
        raise validation(f"KeyUsage {usage} is not compatible with KeySpec {spec}")
    if spec in UNSUPPORTED_SPECS:
        raise unsupported(f"KeySpec {UNSUPPORTED_SPECS[spec]}")
    return spec, usage


def create_key(region: Region, params: Params, ctx: RequestContext) -> Response | Deferred:
    if ctx.principal.account != region.account:
        # AWS would create the key in the caller's own account; this cluster holds keys of one account only.
        raise unsupported(f"This cluster holds keys of account {region.account} only; principals of account "
                          f"{ctx.principal.account} can use its keys (by ARN) but not create keys here.")
    spec, usage = _spec_and_usage(params)
    store_id = key_store_keys.check_create(region, params, spec, usage)  # None: not in a custom key store
    origin = params.get("Origin") or "AWS_KMS"
    if origin == EXTERNAL:
        check_importable(spec)
    tags = validate_new_tags(params.get("Tags") or [], existing=())
    policy = params.get("Policy")
    if policy is not None:
        check_policy_document(policy, ctx)  # before the (possibly slow) key generation
    now = region.now()
    multi_region = bool(params.get("MultiRegion"))
    key_id = new_key_id(multi_region=multi_region)
    # EXTERNAL: no material until ImportKeyMaterial brings it. A key store's key has its material in the token,
    # made there once everything else is checked.
    materials = () if origin == EXTERNAL or store_id is not None else (
        MaterialVersion(new_key_material(spec, key_id, region.key_pairs), now),)
    key = KeyRecord(
        key_id=key_id, region=region.name, account=region.account, created=now,
        state=KeyState.PENDING_IMPORT if origin == EXTERNAL else KeyState.ENABLED,
        description=params.get("Description") or "", key_usage=usage, key_spec=spec, origin=origin,
        policy=policy if policy is not None else default_policy(region.account), tags=tags,
        materials=materials, current_material_id=materials[0].material_id if materials else b"",
        multi_region=multi_region,
        mrk=MultiRegionState(region.name, epoch=1, version=1) if multi_region else None,
    )
    if policy is not None:
        check_new_policy(region, ctx, key, policy, bool(params.get("BypassPolicyLockoutSafetyCheck")))
    if store_id is not None:
        return key_store_keys.create_in_store(region, store_id, key, params)
    region.commit(keys=[key])
    if origin == EXTERNAL and region.wrapping_keys is not None:
        region.wrapping_keys.prepare()  # GetParametersForImport is coming: have wrapping keys ready by then
    return {"KeyMetadata": key_metadata(region, key)}


def describe_key(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.ANY, allow_alias=True)
    return {"KeyMetadata": key_metadata(region, key)}


def list_keys(region: Region, params: Params, ctx: RequestContext) -> Response:
    # A caller lists its own account's keys: another account's principal has none here.
    keys = sorted(region.keys) if ctx.principal.account == region.account else []
    page, marker = paginate(keys, str, params.get("Limit"), params.get("Marker"), default=100)
    entries: list[object] = [{"KeyId": k, "KeyArn": region.key_arn(k)} for k in page]
    return page_response("Keys", entries, marker)


def update_key_description(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.METADATA, allow_alias=False)
    region.commit(keys=[key.with_changes(description=params["Description"])])
    return {}


def _set_enabled(region: Region, params: Params, enabled: bool) -> Response:
    state = KeyState.ENABLED if enabled else KeyState.DISABLED
    unavailable = region.resolve(params["KeyId"], allow_alias=False)
    if unavailable.state is KeyState.UNAVAILABLE:
        # A key of a disconnected custom key store: the change takes effect when the store is connected again.
        waiting = key_store_keys.pending_availability(region, unavailable, state)
        if waiting is not None:
            region.commit(keys=[waiting])
            return {}
    key = key_for(region, params, OpClass.ENABLE_DISABLE, allow_alias=False)
    if key.state is not state:
        updated = key.with_changes(state=state)
        if enabled and updated.mrk is None:
            # Multi-Region keys rotate only on the primary, through the scheduler's two-phase rotation.
            updated = on_reenable(updated, region.now())
        region.commit(keys=[updated])
    return {}


def enable_key(region: Region, params: Params, ctx: RequestContext) -> Response:
    return _set_enabled(region, params, True)


def disable_key(region: Region, params: Params, ctx: RequestContext) -> Response:
    return _set_enabled(region, params, False)


def schedule_key_deletion(region: Region, params: Params, ctx: RequestContext) -> Response:
    days = params.get("PendingWindowInDays")
    days = 30 if days is None else days
    if not 7 <= days <= 30:
        bound = "greater than or equal to 7" if days < 7 else "less than or equal to 30"
        raise validation(f"1 validation error detected: Value '{days}' at 'pendingWindowInDays' failed to "
                         f"satisfy constraint: Member must have value {bound}")
    key = key_for(region, params, OpClass.SCHEDULE_DELETION, allow_alias=False)
    if key.mrk is not None and key.mrk.is_primary(region.name) and key.mrk.replica_regions:
        # A primary outlives its replicas: its window starts only when the last replica is deleted.
        waiting = key.with_changes(state=KeyState.PENDING_REPLICA_DELETION, pending_window_days=days)
        region.commit(keys=[waiting])
        return {"KeyId": key.arn, "KeyState": waiting.state.value, "PendingWindowInDays": days}
    deletion_date = region.now() + days * DAY
    updated = key.with_changes(state=KeyState.PENDING_DELETION, deletion_date=deletion_date,
                               pending_window_days=days)
    region.commit(keys=[updated])
    return {"KeyId": key.arn, "DeletionDate": deletion_date, "KeyState": updated.state.value,
            "PendingWindowInDays": days}


def cancel_key_deletion(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.CANCEL_DELETION, allow_alias=False)
    # AWS never returns a key straight to Enabled from a cancelled deletion; a key whose imported material is
    # missing goes back to PendingImport instead.
    cancelled = key.with_changes(state=KeyState.DISABLED, deletion_date=None, pending_window_days=None)
    if cancelled.origin == EXTERNAL:
        cancelled = cancelled.with_changes(state=settled_state(cancelled))
    region.commit(keys=[key_store_keys.pending_availability(region, cancelled, KeyState.DISABLED) or cancelled])
    return {"KeyId": key.arn}


def register(registry: Registry) -> None:
    registry.add(Operation(name="CreateKey", handler=create_key, logged_response=("KeyMetadata",)))
    registry.add(Operation(name="DescribeKey", handler=describe_key, read_only=True, cross_account=True,
                           keys=(KeyAction("KeyId", "DescribeKey", grant=ANY_KEY),)))
    registry.add(Operation(name="ListKeys", handler=list_keys, read_only=True))
    for name, handler in (("UpdateKeyDescription", update_key_description), ("EnableKey", enable_key),
                          ("DisableKey", disable_key)):
        registry.add(Operation(name=name, handler=handler, keys=(KeyAction("KeyId", name),)))
    registry.add(Operation(name="ScheduleKeyDeletion", handler=schedule_key_deletion,
                           keys=(KeyAction("KeyId", "ScheduleKeyDeletion"),),
                           logged_response=("KeyId", "DeletionDate", "KeyState", "PendingWindowInDays")))
    registry.add(Operation(name="CancelKeyDeletion", handler=cancel_key_deletion,
                           keys=(KeyAction("KeyId", "CancelKeyDeletion"),), logged_response=("KeyId",)))
