"""Key policies: GetKeyPolicy, PutKeyPolicy (with KMS's lockout safety check), ListKeyPolicies."""

from __future__ import annotations

from trent.node.auth.policy import parse_policy
from trent.node.model.errors import KmsError, not_found, validation
from trent.node.model.key import KeyRecord
from trent.node.model.operations import KeyAction, Operation
from trent.node.model.states import OpClass
from trent.node.ops.common import key_for
from trent.node.ops.paging import page_response, paginate
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region

POLICY_NAME = "default"


def get_key_policy(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.ANY, allow_alias=False)
    name = params.get("PolicyName") or POLICY_NAME
    if name != POLICY_NAME:
        raise not_found(f"Policy {name} does not exist on {key.arn}.")
    return {"Policy": key.policy, "PolicyName": POLICY_NAME}


LOCKOUT_MESSAGE = "The new key policy will not allow you to update the key policy in the future."


def check_policy_document(policy: str, ctx: RequestContext) -> None:
    """Size, characters, JSON and grammar, as KMS checks a key policy (MalformedPolicyDocumentException,
    LimitExceededException); the lockout check needs the key. Parsed through the authorizer's cache when there is
    one, so the lockout check that follows finds it there."""
    if ctx.authorizer is not None:
        ctx.authorizer.policy(policy)
    else:
        parse_policy(policy)


def check_new_policy(region: Region, ctx: RequestContext, key: KeyRecord, policy: str, bypass: bool) -> None:
    """KMS refuses a policy that would lock the caller out of the key, unless told to skip the check (the document
    itself is checked first, by ``check_policy_document``)."""
    if bypass or ctx.authorizer is None or not ctx.authorizer.settings.enforce:
        return
    if not ctx.authorizer.allows(policy, ctx.principal, key, "PutKeyPolicy", region):
        raise KmsError("MalformedPolicyDocumentException", LOCKOUT_MESSAGE)


def put_key_policy(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.METADATA, allow_alias=False)
    name = params.get("PolicyName") or POLICY_NAME
    if name != POLICY_NAME:
        raise validation(f"PolicyName {name} is not valid: the only key policy a key has is named 'default'.")
    policy = params["Policy"]
    check_policy_document(policy, ctx)
    check_new_policy(region, ctx, key, policy, bool(params.get("BypassPolicyLockoutSafetyCheck")))
    if policy != key.policy:
        region.commit(keys=[key.with_changes(policy=policy)])
    return {}


def list_key_policies(region: Region, params: Params, ctx: RequestContext) -> Response:
    key_for(region, params, OpClass.ANY, allow_alias=False)
    # One policy per key, but Limit/Marker still behave as on every other list: a foreign marker is refused.
    page, marker = paginate([POLICY_NAME], str, params.get("Limit"), params.get("Marker"), default=100)
    return page_response("PolicyNames", list(page), marker)


def register(registry: Registry) -> None:
    for name, handler, read_only in (("GetKeyPolicy", get_key_policy, True), ("PutKeyPolicy", put_key_policy, False),
                                     ("ListKeyPolicies", list_key_policies, True)):
        registry.add(Operation(name=name, handler=handler, read_only=read_only, keys=(KeyAction("KeyId", name),)))
