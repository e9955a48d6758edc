"""Grants: CreateGrant, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant (per region, die with the key)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from trent.node.auth.authorizer import Verdict, denied, not_allowed
from trent.node.auth.policy import ROOT_ARN_RE, Caller, Decision
from trent.node.model.errors import KmsError, not_found, validation
from trent.node.model.grants import (
    MAX_GRANTS_PER_KEY,
    Constraints,
    GrantRecord,
    grant_id_of_token,
    new_grant_id,
    new_token,
)
from trent.node.model.key import KeyRecord
from trent.node.model.operations import ANY_KEY, GrantScope, KeyAction, Operation
from trent.node.model.states import OpClass
from trent.node.ops.common import finish_dry_run, key_for
from trent.node.ops.paging import check_limit, page_response, paginate
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region

GRANT_ID_RE = re.compile(r"[0-9a-f]{64}")
PRINCIPAL_RE = re.compile(r"arn:aws[a-z-]*:(iam|sts)::\d{12}:[\w+=,.@/:-]+")


def _invalid_operations(operations: tuple[str, ...], key: KeyRecord, scopes: Mapping[str, GrantScope]) -> list[str]:
    """The grant operations asked for that a grant on ``key`` cannot allow (each declared with its keys)."""
    return [op for op in operations if (scope := scopes.get(op)) is None or not scope.allows(key)]


def _check_principal(value: str | None, field: str) -> None:
    if value is not None and not PRINCIPAL_RE.fullmatch(value):
        raise validation(f"1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: "
                         "Member must be a valid IAM principal ARN")


def create_grant(region: Region, params: Params, ctx: RequestContext, scopes: Mapping[str, GrantScope]) -> Response:
    key = key_for(region, params, OpClass.CRYPTO, allow_alias=False)
    grantee, service = params.get("GranteePrincipal"), params.get("GranteeServicePrincipal")
    if (grantee is None) == (service is None):
        raise validation("Specify exactly one of GranteePrincipal and GranteeServicePrincipal.")
    _check_principal(grantee, "granteePrincipal")
    _check_principal(params.get("RetiringPrincipal"), "retiringPrincipal")
    constraints = Constraints.from_wire(params.get("Constraints"))
    if service is not None and (constraints.source_arn is None or not (
            params.get("RetiringPrincipal") or params.get("RetiringServicePrincipal"))):
        raise validation("A grant for a service principal needs a SourceArn constraint and a retiring principal.")
    operations = tuple(dict.fromkeys(params["Operations"]))
    invalid = _invalid_operations(operations, key, scopes)
    if invalid:
        raise validation(f"Grant operations {', '.join(invalid)} are not valid for {key.arn} "
                         f"(KeySpec {key.key_spec}, KeyUsage {key.key_usage}).")
    grant = GrantRecord(
        grant_id=new_grant_id(), key_id=key.key_id, created=region.now(), operations=operations,
        issuing_account=f"arn:aws:iam::{region.account}:root", grantee_principal=grantee,
        grantee_service_principal=service, retiring_principal=params.get("RetiringPrincipal"),
        retiring_service_principal=params.get("RetiringServicePrincipal"), name=params.get("Name"),
        constraints=constraints,
    )
    _check_derived_grant(region, ctx, key, params, grant)
    finish_dry_run(params)
    existing = region.grants_of(key.key_id)
    if grant.name is not None:
        for old in existing:
            if old.name == grant.name and old.same_request(grant):
                return {"GrantId": old.grant_id, "GrantToken": new_token(old.grant_id)}  # idempotent retry
    if len(existing) >= MAX_GRANTS_PER_KEY:
        raise KmsError("LimitExceededException", f"{key.arn} has reached the limit of {MAX_GRANTS_PER_KEY} grants.")
    region.commit(grants=[grant])
    return {"GrantId": grant.grant_id, "GrantToken": new_token(grant.grant_id)}


def grant_entry(region: Region, grant: GrantRecord) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "KeyId": region.key_arn(grant.key_id), "GrantId": grant.grant_id, "CreationDate": grant.created,
        "IssuingAccount": grant.issuing_account, "Operations": list(grant.operations),
    }
    for field, value in (("Name", grant.name), ("GranteePrincipal", grant.grantee_principal),
                         ("RetiringPrincipal", grant.retiring_principal),
                         ("GranteeServicePrincipal", grant.grantee_service_principal),
                         ("RetiringServicePrincipal", grant.retiring_service_principal),
                         ("Constraints", grant.constraints.to_wire())):
        if value is not None:
            entry[field] = value
    return entry


def list_grants(region: Region, params: Params, ctx: RequestContext) -> Response:
    check_limit(params.get("Limit"), 100)
    key = key_for(region, params, OpClass.ANY, allow_alias=False)
    grant_id = params.get("GrantId")
    if grant_id is not None and not GRANT_ID_RE.fullmatch(grant_id):
        raise KmsError("InvalidGrantIdException", f"Invalid grant ID {grant_id}.")
    grants = [g for g in region.grants_of(key.key_id)
              if (grant_id is None or g.grant_id == grant_id)
              and (params.get("GranteePrincipal") is None or g.grantee_principal == params["GranteePrincipal"])
              and (params.get("GranteeServicePrincipal") is None
                   or g.grantee_service_principal == params["GranteeServicePrincipal"])]
    page, marker = paginate(grants, _position, params.get("Limit"), params.get("Marker"), default=50)
    return page_response("Grants", [grant_entry(region, g) for g in page], marker)


def list_retirable_grants(region: Region, params: Params, ctx: RequestContext) -> Response:
    check_limit(params.get("Limit"), 100)
    principal, service = params.get("RetiringPrincipal"), params.get("RetiringServicePrincipal")
    if (principal is None) == (service is None):
        raise validation("Specify exactly one of RetiringPrincipal and RetiringServicePrincipal.")
    grants = sorted((g for g in region.grants.values()
                     if (principal is not None and g.retiring_principal == principal)
                     or (service is not None and g.retiring_service_principal == service)), key=_position)
    page, marker = paginate(grants, _position, params.get("Limit"), params.get("Marker"), default=50)
    return page_response("Grants", [grant_entry(region, g) for g in page], marker)


def _position(grant: GrantRecord) -> str:
    return f"{grant.created:020.6f}/{grant.grant_id}"


def _grant_by_id(region: Region, key: KeyRecord, grant_id: str) -> GrantRecord:
    if not GRANT_ID_RE.fullmatch(grant_id):
        raise KmsError("InvalidGrantIdException", f"Invalid grant ID {grant_id}.")
    grant = region.grants.get(grant_id)
    if grant is None or grant.key_id != key.key_id:
        raise not_found(f"Grant ID {grant_id} not found.")
    return grant


def retire_grant(region: Region, params: Params, ctx: RequestContext) -> Response:
    token = params.get("GrantToken")
    if token is not None:
        grant = region.grants.get(grant_id_of_token(token))
        if grant is None:
            raise not_found("The grant named by the grant token does not exist.")
    else:
        if params.get("KeyId") is None or params.get("GrantId") is None:
            raise validation("Specify a GrantToken, or both KeyId and GrantId.")
        grant = _grant_by_id(region, region.resolve(params["KeyId"], allow_alias=False), params["GrantId"])
    _check_may_retire(region, ctx, grant)
    finish_dry_run(params)
    region.commit(delete_grants=[grant.grant_id])
    return {}


def _check_may_retire(region: Region, ctx: RequestContext, grant: GrantRecord) -> None:
    """The grant decides who may retire it (its retiring principal, its grantee when it includes RetireGrant, the
    key's account); beyond that only an IAM policy in the key's account can delegate kms:RetireGrant. A key policy
    has no say (AWS: "The kms:RetireGrant permission is not effective in a key policy")."""
    authorizer = ctx.authorizer
    if authorizer is None or not authorizer.settings.enforce:
        return
    principal = ctx.principal
    key = region.keys[grant.key_id]
    iam = authorizer.identity_decision(region, principal, key, "RetireGrant")
    if iam is Decision.EXPLICIT_DENY:
        raise denied(principal, "RetireGrant", key, "with an explicit deny in an identity-based policy")
    caller = Caller(principal.arn, principal.account)
    retiring = grant.retiring_principal
    retiring_account = ROOT_ARN_RE.fullmatch(retiring) if retiring else None
    if (principal.arn == retiring
            or (principal.arn == grant.grantee_principal and "RetireGrant" in grant.operations)
            or principal.arn == grant.issuing_account
            # A retiring principal that is an account: its root, or whom its IAM policies delegate to.
            or (retiring_account is not None and retiring_account.group(1) == principal.account
                and (caller.is_root or iam is Decision.ALLOW))
            or (principal.account == region.account and iam is Decision.ALLOW)):
        return
    raise not_allowed(principal, "RetireGrant", key)


def _check_derived_grant(region: Region, ctx: RequestContext, key: KeyRecord, params: Params,
                         grant: GrantRecord) -> None:
    """A principal that may create grants only through a grant (one that includes CreateGrant) can create grants
    for no more operations, and with constraints no looser, than that grant's."""
    authorizer = ctx.authorizer
    if authorizer is None or not authorizer.settings.enforce:
        return
    if authorizer.policy_verdict(region, ctx.principal, key, "CreateGrant", params) is Verdict.ALLOWED:
        return
    for parent in region.grants_of(key.key_id):
        if (parent.permits(ctx.principal.arn, "CreateGrant", None, constrained=False)
                and set(grant.operations) <= set(parent.operations)
                and grant.constraints.at_least_as_strict_as(parent.constraints)):
            return
    raise not_allowed(ctx.principal, "CreateGrant", key)


def revoke_grant(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.ANY, allow_alias=False)
    grant = _grant_by_id(region, key, params["GrantId"])
    finish_dry_run(params)
    region.commit(delete_grants=[grant.grant_id])
    return {}


def register(registry: Registry) -> None:
    def create(region: Region, params: Params, ctx: RequestContext) -> Response:
        # The grant operations come from every operation's declaration: known once all are registered.
        return create_grant(region, params, ctx, registry.grant_scopes())

    registry.add(Operation(name="CreateGrant", handler=create, cross_account=True,
                           keys=(KeyAction("KeyId", "CreateGrant", grant=ANY_KEY),), logged_response=("GrantId",)))
    registry.add(Operation(name="ListGrants", handler=list_grants, read_only=True, cross_account=True,
                           keys=(KeyAction("KeyId", "ListGrants"),)))
    registry.add(Operation(name="ListRetirableGrants", handler=list_retirable_grants, read_only=True))
    # Authorized by the grant itself and IAM (_check_may_retire), not by a key action.
    registry.add(Operation(name="RetireGrant", handler=retire_grant, cross_account=True, consumes_key_name=True,
                           grant=ANY_KEY))
    registry.add(Operation(name="RevokeGrant", handler=revoke_grant, cross_account=True,
                           keys=(KeyAction("KeyId", "RevokeGrant"),)))
