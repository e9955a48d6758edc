"""Tags: TagResource, UntagResource, ListResourceTags (per region, even for multi-Region keys)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from trent.node.model.errors import KmsError
from trent.node.model.operations import KeyAction, Operation
from trent.node.model.states import OpClass
from trent.node.ops.common import key_for
from trent.node.ops.paging import check_limit, page_response, paginate
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region

MAX_TAGS = 50
# The AWS-wide tag character set: letters, digits, white space and _ . : / = + - @ (Unicode letters allowed).
TAG_CHARS_RE = re.compile(r"[\w\s.:/=+\-@]*")


def _check_tag(key: str, value: str) -> None:
    if key.lower().startswith("aws:"):
        raise KmsError("TagException", f"Tag key '{key}' uses the reserved prefix 'aws:'.")
    if not TAG_CHARS_RE.fullmatch(key) or not TAG_CHARS_RE.fullmatch(value):
        raise KmsError("TagException", f"Tag '{key}' contains characters that are not allowed in tags.")


def validate_new_tags(
    tags: Iterable[dict[str, str]], existing: Iterable[tuple[str, str]]
) -> tuple[tuple[str, str], ...]:
    """Merge ``tags`` over ``existing`` (a new value replaces the old), enforcing AWS's tag rules."""
    merged = dict(existing)
    for tag in tags:
        _check_tag(tag["TagKey"], tag["TagValue"])
        merged[tag["TagKey"]] = tag["TagValue"]
    if len(merged) > MAX_TAGS:
        raise KmsError("TagException", f"A key can have at most {MAX_TAGS} tags.")
    return tuple(sorted(merged.items()))


def tag_resource(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.METADATA, allow_alias=False)
    tags = validate_new_tags(params["Tags"], key.tags)
    region.commit(keys=[key.with_changes(tags=tags)])
    return {}


def untag_resource(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.METADATA, allow_alias=False)
    drop = set(params["TagKeys"])
    tags = tuple((k, v) for k, v in key.tags if k not in drop)
    if tags != key.tags:  # removing a tag the key does not have is a silent no-op
        region.commit(keys=[key.with_changes(tags=tags)])
    return {}


def list_resource_tags(region: Region, params: Params, ctx: RequestContext) -> Response:
    check_limit(params.get("Limit"), 50)
    key = key_for(region, params, OpClass.ANY, allow_alias=False)
    page, marker = paginate(key.tags, lambda t: t[0], params.get("Limit"), params.get("Marker"), default=50)
    return page_response("Tags", [{"TagKey": k, "TagValue": v} for k, v in page], marker)


def register(registry: Registry) -> None:
    registry.add(Operation(name="TagResource", handler=tag_resource, keys=(KeyAction("KeyId", "TagResource"),)))
    registry.add(Operation(name="UntagResource", handler=untag_resource, keys=(KeyAction("KeyId", "UntagResource"),)))
    registry.add(Operation(name="ListResourceTags", handler=list_resource_tags, read_only=True,
                           keys=(KeyAction("KeyId", "ListResourceTags"),)))
