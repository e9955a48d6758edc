"""Custom key stores of the AWS_CLOUDHSM type: create, describe, update, connect, disconnect, delete, with the
exceptions AWS defines for each (the store's records and connections: node/keystores). External key stores are a
EXTERNAL_KEY_STORE type's create and update are node/ops/external_key_stores.py's."""

from __future__ import annotations

from typing import Any

from trent.node.crypto.handles import SecretBytes
from trent.node.deferred import Deferred
from trent.node.keystores.clusters import certificate_fingerprint
from trent.node.keystores.records import (
    CLOUDHSM,
    CONNECTED,
    CONNECTING,
    DISCONNECTED,
    DISCONNECTING,
    FAILED,
    KeyStoreRecord,
    new_store_id,
)
from trent.node.keystores.service import KeyStoreService
from trent.node.model.errors import KmsError, unsupported, validation
from trent.node.model.key import ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT
from trent.node.model.operations import Operation
from trent.node.ops import external_key_stores
from trent.node.ops.paging import page_response, paginate
from trent.node.ops.registry import Handler, Params, Registry, RequestContext, Response
from trent.node.service import Region
from trent.node.xks.stores import entry as xks_entry

MAX_STORES = 10  # AWS's quota of custom key stores per account and Region
XKS_MEMBERS = ("XksProxyUriEndpoint", "XksProxyUriPath", "XksProxyVpcEndpointServiceName",
               "XksProxyVpcEndpointServiceOwner", "XksProxyAuthenticationCredential", "XksProxyConnectivity")


def service(region: Region) -> KeyStoreService:
    stores = region.key_stores
    if stores is None:
        raise unsupported("Custom key stores are not available in this cluster (it has no HSM cluster: install "
                          "SoftHSM2 or configure [[hsm_clusters]]).")
    return stores


def not_found(ident: str) -> KmsError:
    return KmsError("CustomKeyStoreNotFoundException", f"Custom key store {ident} does not exist.")


def invalid_state(message: str) -> KmsError:
    return KmsError("CustomKeyStoreInvalidStateException", message)


def find(stores: KeyStoreService, store_id: str) -> KeyStoreRecord:
    record = stores.stores.get(store_id)
    if record is None:
        raise not_found(store_id)
    return record


def _refuse_external(params: Params) -> None:
    """XKS settings belong to an EXTERNAL_KEY_STORE only."""
    given = [m for m in XKS_MEMBERS if m in params]
    if given:
        raise validation(f"{', '.join(given)} is valid only for a custom key store of type EXTERNAL_KEY_STORE.")


def _checked_cluster(stores: KeyStoreService, cluster_id: str, *, exclude: str | None = None) -> str:
    """The cluster a store may use: configured here, not in use by another store of its lineage, with two HSMs."""
    cluster = stores.clusters.get(cluster_id)
    if cluster is None:
        raise KmsError("CloudHsmClusterNotFoundException", f"AWS CloudHSM cluster {cluster_id} not found.")
    for other in stores.stores.values():
        if other.store_id != exclude and (other.cluster_id == cluster_id
                                          or stores.clusters.related(other.cluster_id, cluster_id)):
            raise KmsError("CloudHsmClusterInUseException",
                           f"AWS CloudHSM cluster {cluster_id} is already associated with custom key store "
                           f"{other.store_id}, or shares a backup history with its cluster.")
    if stores.faults.is_down(cluster_id):
        raise KmsError("CloudHsmClusterNotActiveException", f"AWS CloudHSM cluster {cluster_id} is not active.")
    if cluster.spec.hsms < 2:
        raise KmsError("CloudHsmClusterInvalidConfigurationException",
                       f"AWS CloudHSM cluster {cluster_id} must contain at least two active HSMs, each in a "
                       f"different Availability Zone; it has {cluster.spec.hsms}.")
    return cluster.trust_anchor_pem()


def _check_name(stores: KeyStoreService, name: str, exclude: str | None = None) -> None:
    other = stores.by_name(name)
    if other is not None and other.store_id != exclude:
        raise KmsError("CustomKeyStoreNameInUseException",
                       f"Custom key store name {name} is already in use in this account and Region.")


def create_custom_key_store(region: Region, params: Params, ctx: RequestContext) -> Response | Deferred:
    if params.get("CustomKeyStoreType") == "EXTERNAL_KEY_STORE":
        return external_key_stores.create(region, service(region), params, _check_name, MAX_STORES)
    _refuse_external(params)
    stores = service(region)
    missing = [m for m in ("CloudHsmClusterId", "TrustAnchorCertificate", "KeyStorePassword") if not params.get(m)]
    if missing:
        raise validation(f"{', '.join(missing)} must be specified for a custom key store of type {CLOUDHSM}.")
    name = params["CustomKeyStoreName"]
    _check_name(stores, name)
    if len(stores.stores) >= MAX_STORES:
        raise KmsError("LimitExceededException",
                       f"You have reached the limit of {MAX_STORES} custom key stores in this account and Region.")
    cluster_id = params["CloudHsmClusterId"]
    anchor = _checked_cluster(stores, cluster_id)
    if certificate_fingerprint(params["TrustAnchorCertificate"]) != certificate_fingerprint(anchor):
        raise KmsError("IncorrectTrustAnchorException",
                       f"The trust anchor certificate is not the trust anchor certificate of AWS CloudHSM cluster "
                       f"{cluster_id}.")
    record = KeyStoreRecord(new_store_id(), name, cluster_id, anchor,
                            SecretBytes(params["KeyStorePassword"].encode(), label="key store password"),
                            region.now())
    stores.commit(stores=[record])
    return {"CustomKeyStoreId": record.store_id}


def entry(record: KeyStoreRecord) -> dict[str, Any]:
    if record.xks is not None:
        return xks_entry(record)
    out: dict[str, Any] = {
        "CustomKeyStoreId": record.store_id, "CustomKeyStoreName": record.name,
        "CloudHsmClusterId": record.cluster_id, "TrustAnchorCertificate": record.trust_anchor,
        "ConnectionState": record.state, "CreationDate": record.created, "CustomKeyStoreType": CLOUDHSM}
    if record.state == FAILED and record.error_code:
        out["ConnectionErrorCode"] = record.error_code
    return out


def describe_custom_key_stores(region: Region, params: Params, ctx: RequestContext) -> Response:
    store_id, name = params.get("CustomKeyStoreId"), params.get("CustomKeyStoreName")
    if store_id is not None and name is not None:
        raise validation("Specify either CustomKeyStoreId or CustomKeyStoreName, not both.")
    stores = region.key_stores
    records = sorted(stores.stores.values(), key=lambda r: r.store_id) if stores is not None else []
    if store_id is not None:
        records = [r for r in records if r.store_id == store_id]
        if not records:
            raise not_found(store_id)
    elif name is not None:
        records = [r for r in records if r.name == name]
        if not records:
            raise not_found(name)
    page, marker = paginate(records, lambda r: r.store_id, params.get("Limit"), params.get("Marker"), default=100)
    return page_response("CustomKeyStores", [entry(r) for r in page], marker)


def update_custom_key_store(region: Region, params: Params, ctx: RequestContext) -> Response | Deferred:
    stores = service(region)
    record = find(stores, params["CustomKeyStoreId"])
    if record.xks is not None:
        return external_key_stores.update(region, stores, record, params, _check_name)
    _refuse_external(params)
    changes: dict[str, Any] = {}
    new_name = params.get("NewCustomKeyStoreName")
    if new_name is not None:
        if record.state not in (CONNECTED, DISCONNECTED):
            raise invalid_state(f"Custom key store {record.store_id} is {record.state}: its name can be changed "
                                "only while it is CONNECTED or DISCONNECTED.")
        _check_name(stores, new_name, exclude=record.store_id)
        changes["name"] = new_name
    password, cluster_id = params.get("KeyStorePassword"), params.get("CloudHsmClusterId")
    if (password is not None or cluster_id is not None) and record.state != DISCONNECTED:
        raise invalid_state(f"Custom key store {record.store_id} is {record.state}: disconnect it before changing "
                            "its KeyStorePassword or CloudHsmClusterId.")
    if cluster_id is not None and cluster_id != record.cluster_id:
        if stores.clusters.get(cluster_id) is not None and not stores.clusters.related(cluster_id, record.cluster_id):
            raise KmsError("CloudHsmClusterNotRelatedException",
                           f"AWS CloudHSM cluster {cluster_id} does not share a backup history with AWS CloudHSM "
                           f"cluster {record.cluster_id}, the original cluster of custom key store "
                           f"{record.store_id}.")
        _checked_cluster(stores, cluster_id, exclude=record.store_id)
        changes["cluster_id"] = cluster_id
    if password is not None:
        changes["password"] = SecretBytes(password.encode(), label="key store password")
    if changes:
        stores.commit(stores=[record.with_changes(**changes)])
    return {}


def connect_custom_key_store(region: Region, params: Params, ctx: RequestContext) -> Response:
    stores = service(region)
    record = find(stores, params["CustomKeyStoreId"])
    if record.state in (FAILED, DISCONNECTING):
        raise invalid_state(f"Custom key store {record.store_id} is {record.state}. To connect it again, "
                            "disconnect it first (DisconnectCustomKeyStore).")
    if record.state == DISCONNECTED:
        stores.commit(stores=[record.with_changes(state=CONNECTING, error_code=None)])
        stores.begin_connect(record.store_id)
    return {}


def disconnect_custom_key_store(region: Region, params: Params, ctx: RequestContext) -> Response:
    stores = service(region)
    record = find(stores, params["CustomKeyStoreId"])
    if record.state in (DISCONNECTED, DISCONNECTING):
        raise invalid_state(f"Custom key store {record.store_id} is {record.state} already.")
    stores.set_state(record, DISCONNECTED)
    return {}


def delete_custom_key_store(region: Region, params: Params, ctx: RequestContext) -> Response:
    stores = service(region)
    record = find(stores, params["CustomKeyStoreId"])
    if record.state != DISCONNECTED:
        raise invalid_state(f"Custom key store {record.store_id} is {record.state}: disconnect it before deleting "
                            "it.")
    keys = stores.keys_in(record.store_id)
    if keys:
        raise KmsError("CustomKeyStoreHasCMKsException",
                       f"Custom key store {record.store_id} contains {len(keys)} KMS key(s). Schedule their deletion "
                       "and delete the store once they are deleted.")
    stores.commit(delete=[record.store_id])
    return {}


def _authorized(handler: Handler) -> Handler:
    """The key store operations name no key: AWS authorizes them by the caller's IAM policy alone."""
    def authorized(region: Region, params: Params, ctx: RequestContext) -> Response | Deferred:
        if ctx.authorizer is not None:
            ctx.authorizer.require_identity(region, ctx.principal, ctx.operation)
        return handler(region, params, ctx)
    return authorized


def register(registry: Registry) -> None:
    registry.add(Operation(name="DescribeCustomKeyStores", handler=_authorized(describe_custom_key_stores),
                           read_only=True))
    registry.add(Operation(name="CreateCustomKeyStore", handler=_authorized(create_custom_key_store),
                           logged_response=("CustomKeyStoreId",)))
    for name, handler in (("UpdateCustomKeyStore", update_custom_key_store),
                          ("DeleteCustomKeyStore", delete_custom_key_store),
                          ("ConnectCustomKeyStore", connect_custom_key_store),
                          ("DisconnectCustomKeyStore", disconnect_custom_key_store)):
        registry.add(Operation(name=name, handler=_authorized(handler)))


def check_key_shape(params: Params, spec: str, usage: str) -> None:
    """What a key in any custom key store (CloudHSM or external) must be: symmetric encryption, one Region."""
    if spec != SYMMETRIC_DEFAULT or usage != ENCRYPT_DECRYPT:
        raise unsupported(f"KeySpec {spec} is not supported in a custom key store. Only symmetric encryption keys "
                          "(SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT) can be created in a custom key store.")
    if params.get("MultiRegion"):
        raise unsupported("Multi-Region keys cannot be created in a custom key store.")
