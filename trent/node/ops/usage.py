"""GetKeyLastUsage: when a key was last used for cryptography in this region, read from the audit trail."""

from __future__ import annotations

from typing import Any

from trent.node.model.operations import KeyAction, Operation
from trent.node.model.states import OpClass
from trent.node.ops.common import key_for
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region


def get_key_last_usage(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = key_for(region, params, OpClass.ANY, allow_alias=False)
    usage: dict[str, Any] = {}
    trail = region.audit
    out: dict[str, Any] = {"KeyId": key.arn, "KeyCreationDate": key.created}
    if trail is not None:
        last = trail.usage_of(key.key_id)
        if last is not None:
            usage = {"Operation": last.operation, "Timestamp": last.at, "CloudTrailEventId": last.event_id,
                     "KmsRequestId": last.request_id}
        out["TrackingStartDate"] = max(trail.tracking_start, key.created)
    out["KeyLastUsage"] = usage
    return out


def register(registry: Registry) -> None:
    registry.add(Operation(name="GetKeyLastUsage", handler=get_key_last_usage, read_only=True,
                           keys=(KeyAction("KeyId", "GetKeyLastUsage"),)))
