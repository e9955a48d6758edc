"""Custom key stores (CloudHSM, external): this cluster has none, and says so the way KMS does."""

from __future__ import annotations

from node.model.errors import KmsError, unsupported
from node.model.operations import Operation
from node.ops.registry import Params, Registry, RequestContext, Response
from node.service import Region


def _not_found(params: Params) -> KmsError:
    ident = params.get("CustomKeyStoreId") or params.get("CustomKeyStoreName") or ""
    return KmsError("CustomKeyStoreNotFoundException", f"Custom key store {ident} does not exist.".replace("  ", " "))


def describe_custom_key_stores(region: Region, params: Params, ctx: RequestContext) -> Response:
    if params.get("CustomKeyStoreId") or params.get("CustomKeyStoreName"):
        raise _not_found(params)
    return {"CustomKeyStores": [], "Truncated": False}


def create_custom_key_store(region: Region, params: Params, ctx: RequestContext) -> Response:
    raise unsupported("Custom key stores (AWS CloudHSM or external key stores) are not supported by this cluster.")


def missing_store(region: Region, params: Params, ctx: RequestContext) -> Response:
    raise _not_found(params)


def register(registry: Registry) -> None:
    registry.add(Operation(name="DescribeCustomKeyStores", handler=describe_custom_key_stores, read_only=True))
    registry.add(Operation(name="CreateCustomKeyStore", handler=create_custom_key_store))
    for name in ("UpdateCustomKeyStore", "DeleteCustomKeyStore", "ConnectCustomKeyStore",
                 "DisconnectCustomKeyStore"):
        registry.add(Operation(name=name, handler=missing_store))
