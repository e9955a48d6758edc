"""Operations of the KMS model that a later release of the cluster brings: until then each answers
UnsupportedOperationException saying what is missing, never a 500 or a silent success."""

from __future__ import annotations

from collections.abc import Iterable

from trent.node.model.errors import unsupported
from trent.node.model.operations import Operation
from trent.node.ops.registry import Handler, Params, Registry, RequestContext, Response
from trent.node.service import Region


def _refuse(family: str, operation: str) -> Handler:
    def handler(region: Region, params: Params, ctx: RequestContext) -> Response:
        raise unsupported(f"{operation} ({family}) is not supported by this cluster yet.")
    return handler


def register(registry: Registry) -> None:
    """The operations planned for a later release (none today), declared with what is known of them already."""


def register_rest(registry: Registry, model_operations: Iterable[str]) -> None:
    """Whatever else the model has (a KMS release newer than this cluster) answers with a proper KMS error."""
    for name in model_operations:
        if registry.get(name) is None:
            registry.add(Operation(name=name, handler=_refuse("a newer KMS feature", name)))
