"""Custom key stores of the EXTERNAL_KEY_STORE type: CreateCustomKeyStore and UpdateCustomKeyStore with an XKS
proxy's settings, each checked as AWS checks them and then by the proxy's health check before anything is stored
(node/xks/stores). Describe, Connect, Disconnect and Delete are the CloudHSM store's operations, which serve both."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from trent.node.crypto.handles import SecretBytes
from trent.node.deferred import Deferred
from trent.node.keystores.records import CONNECTED, DISCONNECTED, KeyStoreRecord, new_store_id
from trent.node.keystores.service import KeyStoreService
from trent.node.model.errors import KmsError, unsupported, validation
from trent.node.ops.registry import Params, Response
from trent.node.service import Region
from trent.node.xks import stores as xks_stores
from trent.node.xks.stores import XksStores

CLOUDHSM_MEMBERS = ("CloudHsmClusterId", "TrustAnchorCertificate", "KeyStorePassword")


def xks_of(stores: KeyStoreService) -> XksStores:
    xks = stores.xks
    if xks is None:
        raise unsupported("External key stores are not available in this cluster.")
    return xks


def create(region: Region, stores: KeyStoreService, params: Params, check_name: Any, max_stores: int) -> Deferred:
    xks = xks_of(stores)
    settings, secret = xks_stores.settings(params, xks.client.allow_http)
    name = params["CustomKeyStoreName"]
    check_name(stores, name)
    if len(stores.stores) >= max_stores:
        raise KmsError("LimitExceededException",
                       f"You have reached the limit of {max_stores} custom key stores in this account and Region.")
    xks_stores.check_unique_uri(stores.stores, settings.uri_endpoint, settings.uri_path, None)
    record = KeyStoreRecord(new_store_id(), name, "", "", SecretBytes(secret.encode(), label="XKS secret access key"),
                            region.now(), xks=settings)

    def finish(_: None) -> Response:
        def commit() -> None:
            # Checked again on the state the health check's wait may have let change.
            check_name(stores, name)
            xks_stores.check_unique_uri(stores.stores, settings.uri_endpoint, settings.uri_path, None)
            stores.commit(stores=[record])
        region.run_fresh(commit)
        return {"CustomKeyStoreId": record.store_id}
    return xks_stores.checked_then(xks, record, "CreateCustomKeyStore", finish)


def update(region: Region, stores: KeyStoreService, record: KeyStoreRecord, params: Params,
           check_name: Any) -> Response | Deferred:
    xks = xks_of(stores)
    assert record.xks is not None
    extra = [m for m in CLOUDHSM_MEMBERS if m in params]
    if extra:
        raise validation(f"{', '.join(extra)} is not valid for a custom key store of type EXTERNAL_KEY_STORE.")
    if record.state not in (CONNECTED, DISCONNECTED):
        raise KmsError("CustomKeyStoreInvalidStateException",
                       f"Custom key store {record.store_id} is {record.state}: it can be changed only while it is "
                       "CONNECTED or DISCONNECTED.")
    changes: dict[str, Any] = {}
    new_name = params.get("NewCustomKeyStoreName")
    if new_name is not None:
        check_name(stores, new_name, exclude=record.store_id)
        changes["name"] = new_name
    # Connectivity and endpoint change only while disconnected; the path and the credential also while connected.
    endpoint, path = params.get("XksProxyUriEndpoint"), params.get("XksProxyUriPath")
    connectivity = xks_stores.check_connectivity(params, required=False)
    if (endpoint is not None or connectivity is not None) and record.state != DISCONNECTED:
        raise KmsError("CustomKeyStoreInvalidStateException",
                       f"Custom key store {record.store_id} is {record.state}: disconnect it before changing its "
                       "XksProxyUriEndpoint or XksProxyConnectivity.")
    settings = record.xks
    if endpoint is not None:
        settings = replace(settings, uri_endpoint=xks_stores.check_endpoint(endpoint, xks.client.allow_http))
    if path is not None:
        settings = replace(settings, uri_path=xks_stores.check_path(path))
    cred = xks_stores.credential(params)
    if cred is not None:
        settings = replace(settings, access_key_id=cred[0])
        changes["password"] = SecretBytes(cred[1].encode(), label="XKS secret access key")
    proxy_changed = settings != record.xks or cred is not None
    if settings != record.xks:
        xks_stores.check_unique_uri(stores.stores, settings.uri_endpoint, settings.uri_path, record.store_id)
        changes["xks"] = settings
    if not changes:
        return {}
    updated = record.with_changes(**changes)
    if not proxy_changed:
        stores.commit(stores=[updated])
        return {}

    def finish(_: None) -> Response:
        def commit() -> None:
            current = stores.stores.get(record.store_id)
            if current is not None:
                stores.commit(stores=[current.with_changes(**changes)])
        region.run_fresh(commit)
        return {}
    return xks_stores.checked_then(xks, updated, "UpdateCustomKeyStore", finish)
