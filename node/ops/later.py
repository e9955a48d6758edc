"""Operations of the KMS model that a later release of the cluster brings: until then each answers
UnsupportedOperationException saying what is missing, never a 500 or a silent success."""

from __future__ import annotations

from collections.abc import Iterable

from node.model.errors import unsupported
from node.ops.registry import Handler, Params, Registry, RequestContext, Response
from node.service import Region

FAMILIES: dict[str, str] = {
    "imported key material": "GetParametersForImport ImportKeyMaterial DeleteImportedKeyMaterial",
}


def _refuse(family: str, operation: str) -> Handler:
    def handler(region: Region, params: Params, ctx: RequestContext) -> Response:
        raise unsupported(f"{operation} ({family}) is not supported by this cluster yet.")
    return handler


def register(registry: Registry, model_operations: Iterable[str]) -> None:
    planned = {op: family for family, ops in FAMILIES.items() for op in ops.split()}
    for name in model_operations:
        if registry.get(name) is None:
            registry.add(name, _refuse(planned.get(name, "a newer KMS feature"), name))
