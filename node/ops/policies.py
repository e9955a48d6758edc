"""Key policies as stored: GetKeyPolicy, ListKeyPolicies. (Writing and enforcing policies comes with access control.)"""

from __future__ import annotations

from node.model.errors import not_found
from node.model.states import OpClass
from node.ops.common import key_for
from node.ops.paging import page_response, paginate
from node.ops.registry import Params, Registry, RequestContext, Response
from node.service import Region

POLICY_NAME = "default"


def get_key_policy(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.ANY, allow_alias=False)
    name = params.get("PolicyName") or POLICY_NAME
    if name != POLICY_NAME:
        raise not_found(f"Policy {name} does not exist on {key.arn}.")
    return {"Policy": key.policy, "PolicyName": POLICY_NAME}


def list_key_policies(region: Region, params: Params, ctx: RequestContext) -> Response:
    key_for(region, params, OpClass.ANY, allow_alias=False)
    # One policy per key, but Limit/Marker still behave as on every other list: a foreign marker is refused.
    page, marker = paginate([POLICY_NAME], str, params.get("Limit"), params.get("Marker"), default=100)
    return page_response("PolicyNames", list(page), marker)


def register(registry: Registry) -> None:
    registry.add("GetKeyPolicy", get_key_policy, read_only=True)
    registry.add("ListKeyPolicies", list_key_policies, read_only=True)
