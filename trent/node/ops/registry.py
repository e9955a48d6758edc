"""The explicit operation registry: operation name → its declaration (node/model/operations.py), handler and facts.
No lookup by attribute name anywhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from trent.node.auth.principals import Principal
from trent.node.model.operations import GrantScope, Operation
from trent.node.ops.tables import grant_operations
from trent.node.service import Region

if TYPE_CHECKING:
    from trent.node.auth.authorizer import Authorizer
    from trent.node.deferred import Deferred

Params = dict[str, Any]
Response = dict[str, Any]

__all__ = ["Handler", "Operation", "Params", "Registry", "RequestContext", "Response"]


class RequestContext(NamedTuple):  # a tuple: one is made per request
    request_id: str
    operation: str
    principal: Principal
    source_ip: str
    user_agent: str
    # Present when access control is on: operations that authorize more than their key (RetireGrant,
    # PutKeyPolicy's lockout check) consult it.
    authorizer: Authorizer | None = None


# An answer, or (a key store's operations) one that waits on work off the event loop.
Handler = Callable[[Region, Params, RequestContext], "Response | Deferred"]


class Registry:
    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}
        self._grant_scopes: dict[str, GrantScope] | None = None

    def add(self, operation: Operation) -> None:
        if operation.name in self._ops:
            raise ValueError(f"operation {operation.name} registered twice")
        self._ops[operation.name] = operation
        self._grant_scopes = None

    def get(self, name: str) -> Operation | None:
        return self._ops.get(name)

    def __getitem__(self, name: str) -> Operation:
        return self._ops[name]

    def names(self) -> list[str]:
        return sorted(self._ops)

    def __iter__(self) -> Iterator[Operation]:
        return iter(self._ops.values())

    def grant_scopes(self) -> dict[str, GrantScope]:
        """Every grant operation, with the keys a grant may allow it on (derived once from the declarations)."""
        if self._grant_scopes is None:
            self._grant_scopes = grant_operations(self._ops.values())
        return self._grant_scopes
