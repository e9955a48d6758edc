"""The explicit operation registry: operation name → handler. No lookup by attribute name anywhere."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from node.auth.principals import Principal
from node.service import Region

if TYPE_CHECKING:
    from node.auth.authorizer import Authorizer

Params = dict[str, Any]
Response = dict[str, Any]


class RequestContext(NamedTuple):  # a tuple: one is made per request
    request_id: str
    operation: str
    principal: Principal
    source_ip: str
    user_agent: str
    # Present when access control is on: operations that authorize more than their key (RetireGrant,
    # PutKeyPolicy's lockout check) consult it.
    authorizer: Authorizer | None = None


Handler = Callable[[Region, Params, RequestContext], Response]


@dataclass(frozen=True)
class Operation:
    name: str
    handler: Handler
    read_only: bool


class Registry:
    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}

    def add(self, name: str, handler: Handler, *, read_only: bool = False) -> None:
        if name in self._ops:
            raise ValueError(f"operation {name} registered twice")
        self._ops[name] = Operation(name, handler, read_only)

    def get(self, name: str) -> Operation | None:
        return self._ops.get(name)

    def names(self) -> list[str]:
        return sorted(self._ops)
