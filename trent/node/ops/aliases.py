"""Aliases: CreateAlias, UpdateAlias, DeleteAlias, ListAliases."""

from __future__ import annotations

from trent.node.model.errors import KmsError, not_found, validation
from trent.node.model.ids import check_alias_name
from trent.node.model.key import AliasRecord, KeyRecord
from trent.node.model.managed import SERVICES
from trent.node.model.operations import KeyAction, Operation
from trent.node.model.states import OpClass, check_state
from trent.node.ops.common import key_for
from trent.node.ops.paging import check_limit, page_response, paginate
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region

MAX_ALIASES_PER_KEY = 50


def _target(region: Region, params: Params) -> KeyRecord:
    target = params["TargetKeyId"]
    if target.startswith("alias/") or (target.startswith("arn:") and ":alias/" in target):
        raise validation("Aliases must refer to keys. Not aliases")
    return region.resolve(target, allow_alias=False)


def _key_class(key: KeyRecord) -> tuple[str, str]:
    # AWS asks for the same kind of key (symmetric, asymmetric or HMAC) and the same usage, not the same spec.
    spec = key.key_spec
    kind = "SYMMETRIC" if spec == "SYMMETRIC_DEFAULT" else "HMAC" if spec.startswith("HMAC_") else "ASYMMETRIC"
    return kind, key.key_usage


def create_alias(region: Region, params: Params, ctx: RequestContext) -> Response:
    name = params["AliasName"]
    check_alias_name(name)
    key = _target(region, params)
    check_state(OpClass.METADATA, key.state, key.arn)
    if name in region.aliases:
        raise KmsError("AlreadyExistsException", f"An alias with the name {region.alias_arn(name)} already exists")
    if len(region.aliases_of(key.key_id)) >= MAX_ALIASES_PER_KEY:
        raise KmsError("LimitExceededException", f"A key can have at most {MAX_ALIASES_PER_KEY} aliases.")
    now = region.now()
    region.commit(aliases=[AliasRecord(name, key.key_id, now, now)])
    return {}


def update_alias(region: Region, params: Params, ctx: RequestContext) -> Response:
    name = params["AliasName"]
    check_alias_name(name)
    alias = region.aliases.get(name)
    if alias is None:
        raise not_found(f"Alias {region.alias_arn(name)} is not found.")
    key = _target(region, params)
    check_state(OpClass.METADATA, key.state, key.arn)
    old = region.keys.get(alias.key_id)
    if old is not None and _key_class(old) != _key_class(key):
        raise validation(f"{key.arn} has a key type or key usage different from the alias's current key "
                         f"{old.arn}; an alias can only move to a key of the same type and usage.")
    if len(region.aliases_of(key.key_id)) >= MAX_ALIASES_PER_KEY and alias.key_id != key.key_id:
        raise KmsError("LimitExceededException", f"A key can have at most {MAX_ALIASES_PER_KEY} aliases.")
    region.commit(aliases=[AliasRecord(name, key.key_id, alias.created, region.now())])
    return {}


def delete_alias(region: Region, params: Params, ctx: RequestContext) -> Response:
    name = params["AliasName"]
    check_alias_name(name)
    if name not in region.aliases:
        raise not_found(f"Alias {region.alias_arn(name)} is not found.")
    region.commit(delete_aliases=[name])
    return {}


def list_aliases(region: Region, params: Params, ctx: RequestContext) -> Response:
    check_limit(params.get("Limit"), 100)
    aliases: list[AliasRecord | str]
    if params.get("KeyId") is not None:
        key = key_for(region, params, OpClass.ANY, allow_alias=False)
        aliases = list(region.aliases_of(key.key_id))
    else:
        # The predefined alias/aws/<service> names are listed, without a target, until their managed key exists.
        unbound = [name for name in SERVICES if name not in region.aliases]
        aliases = sorted([*region.aliases.values(), *unbound], key=_alias_name)
    if ctx.principal.account != region.account:
        aliases = []  # aliases belong to an account: another account's principal sees only its own (none here)
    page, marker = paginate(aliases, _alias_name, params.get("Limit"), params.get("Marker"), default=50)
    entries: list[object] = [
        {"AliasName": a, "AliasArn": region.alias_arn(a)} if isinstance(a, str) else
        {"AliasName": a.name, "AliasArn": region.alias_arn(a.name), "TargetKeyId": a.key_id,
         "CreationDate": a.created, "LastUpdatedDate": a.updated}
        for a in page
    ]
    return page_response("Aliases", entries, marker)


def _alias_name(alias: AliasRecord | str) -> str:
    return alias if isinstance(alias, str) else alias.name


def register(registry: Registry) -> None:
    registry.add(Operation(name="CreateAlias", handler=create_alias,
                           keys=(KeyAction("TargetKeyId", "CreateAlias"),)))
    registry.add(Operation(name="UpdateAlias", handler=update_alias, keys=(KeyAction("TargetKeyId", "UpdateAlias"),),
                           alias_target=True))
    registry.add(Operation(name="DeleteAlias", handler=delete_alias, alias_target=True, consumes_key_name=True))
    registry.add(Operation(name="ListAliases", handler=list_aliases, read_only=True))
