"""KMS keys in a custom key store: created in the store's token, used only there. Each operation checks what it
would for any key, then hands the token's part to the store's session pool (a Deferred: the endpoint awaits it
off the event loop) and answers with the result. Only symmetric encryption keys of one Region live in a store."""

from __future__ import annotations

from typing import Any

from trent.node.deferred import Deferred
from trent.node.keystores import token_crypto
from trent.node.keystores.records import CLOUDHSM, CLUSTER_ID, CONNECTED, EXTERNAL, RESUME, STORE_ID
from trent.node.keystores.service import KeyStoreService, store_of
from trent.node.model.errors import KmsError, invalid_state, unsupported
from trent.node.model.key import KeyRecord
from trent.node.model.states import KeyState
from trent.node.ops import external_keys
from trent.node.ops.common import key_metadata
from trent.node.ops.custom_key_stores import check_key_shape, find, not_found, service
from trent.node.ops.registry import Params
from trent.node.service import Region

HSM_OBJECT = "hsm_object"  # KeyRecord.extra: the token object's id (CKA_ID, hex), also the key's material id


def is_store_key(key: KeyRecord) -> bool:
    return STORE_ID in key.extra


def key_unavailable(key: KeyRecord) -> KmsError:
    return KmsError("KeyUnavailableException",
                    f"{key.arn} is unavailable: the AWS CloudHSM cluster of its custom key store cannot be reached. "
                    "You can retry the request.", 500)


def _object_id(key: KeyRecord) -> bytes:
    return bytes.fromhex(str(key.extra[HSM_OBJECT]))


def _connected(region: Region, key: KeyRecord) -> tuple[KeyStoreService, Any]:
    stores = service(region)
    record = stores.stores.get(store_of(key) or "")
    if record is not None and record.xks is not None and record.state != CONNECTED:
        raise KmsError("KMSInvalidStateException", external_keys.NOT_CONNECTED)
    if record is None or record.state != CONNECTED:
        raise invalid_state(f"{key.arn} is unavailable.")
    return stores, record


def check_create(region: Region, params: Params, spec: str, usage: str) -> str | None:
    """The custom key store CreateKey names, once the request is one a store's key may be (None: none named)."""
    store_id = params.get("CustomKeyStoreId")
    if store_id is not None and params.get("XksKeyId") is None:
        find(_store_service(region, store_id), store_id)  # an unknown store first: CustomKeyStoreNotFoundException
    origin = params.get("Origin") or "AWS_KMS"
    if params.get("XksKeyId") is not None or origin == EXTERNAL:
        return external_keys.check_create(params, spec, usage)
    if store_id is None:
        if origin == CLOUDHSM:
            raise KmsError("ValidationException", "CustomKeyStoreId is required when Origin is AWS_CLOUDHSM.")
        return None
    if origin != CLOUDHSM:
        raise unsupported(f"Origin {origin} is not valid for a KMS key in an AWS CloudHSM key store: use "
                          f"{CLOUDHSM}.")
    check_key_shape(params, spec, usage)
    return str(store_id)


def _store_service(region: Region, store_id: str) -> KeyStoreService:
    stores = region.key_stores
    if stores is None:
        raise not_found(store_id)
    return stores


def create_in_store(region: Region, store_id: str, key: KeyRecord, params: Params | None = None) -> Deferred:
    """Generate the key's AES-256 material in the store's token, then commit ``key`` naming it."""
    stores = _store_service(region, store_id)
    record = find(stores, store_id)
    if record.xks is not None or key.origin == EXTERNAL:
        return external_keys.create_in_store(region, stores, record, key, params or {})
    if record.state != CONNECTED:
        raise KmsError("CustomKeyStoreInvalidStateException",
                       f"Custom key store {store_id} is {record.state}: KMS keys can be created only in a "
                       "CONNECTED custom key store.")
    cluster = stores.clusters.get(record.cluster_id)
    if cluster is None or cluster.spec.hsms < 2:
        raise KmsError("CloudHsmClusterInvalidConfigurationException",
                       f"AWS CloudHSM cluster {record.cluster_id} must contain at least two active HSMs.")
    object_id = token_crypto.new_object_id()
    key = key.with_changes(origin=CLOUDHSM, materials=(), current_material_id=object_id, extra={
        **key.extra, STORE_ID: store_id, CLUSTER_ID: record.cluster_id, HSM_OBJECT: object_id.hex()})

    def finish(_: None) -> dict[str, Any]:
        region.run_fresh(lambda: region.commit(keys=[key]))
        return {"KeyMetadata": key_metadata(region, key)}

    def unavailable() -> KmsError:
        return KmsError("CloudHsmClusterInvalidConfigurationException",
                        f"AWS CloudHSM cluster {record.cluster_id} has no active HSMs that KMS can reach.")

    return stores.deferred(record, lambda s: token_crypto.generate_key(s, object_id, key.key_id), finish,
                           unavailable)


def encrypt(region: Region, key: KeyRecord, plaintext: bytes, context: Any, finish: Any) -> Deferred:
    stores, record = _connected(region, key)
    if record.xks is not None:
        return external_keys.encrypt(stores, record, key, plaintext, context, finish)
    object_id, handles = _object_id(key), stores.handles_of(record.store_id)
    return stores.deferred(record, lambda s: token_crypto.seal(s, key.key_id, object_id, plaintext, context, handles),
                           finish, lambda: key_unavailable(key))


def decrypt(region: Region, key: KeyRecord, blob: bytes, context: Any, finish: Any) -> Deferred:
    stores, record = _connected(region, key)
    if record.xks is not None:
        return external_keys.decrypt(stores, record, key, blob, context, finish)
    object_id, handles = _object_id(key), stores.handles_of(record.store_id)
    return stores.deferred(record, lambda s: token_crypto.unseal(s, blob, object_id, context, handles), finish,
                           lambda: key_unavailable(key))


def data_key(region: Region, key: KeyRecord, length: int, context: Any, finish: Any) -> Deferred:
    """A data key drawn from the token's generator and sealed there, in one trip to the token."""
    stores, record = _connected(region, key)
    if record.xks is not None:
        return external_keys.data_key(stores, record, key, length, context, finish)
    object_id, handles = _object_id(key), stores.handles_of(record.store_id)

    def work(session: Any) -> tuple[bytes, bytes]:
        plaintext = token_crypto.random_bytes(session, length)
        return plaintext, token_crypto.seal(session, key.key_id, object_id, plaintext, context, handles)
    return stores.deferred(record, work, finish, lambda: key_unavailable(key))


def random_from_store(region: Region, store_id: str, count: int) -> Deferred:
    stores = _store_service(region, store_id)
    record = find(stores, store_id)
    if record.xks is not None:
        raise unsupported("GenerateRandom is not supported for an external key store (CustomKeyStoreType "
                          "EXTERNAL_KEY_STORE): its proxy has no random number generator in its API.")
    if record.state != CONNECTED:
        raise KmsError("CustomKeyStoreInvalidStateException",
                       f"Custom key store {store_id} is {record.state}: GenerateRandom needs a CONNECTED store.")
    return stores.deferred(record, lambda s: token_crypto.random_bytes(s, count), lambda r: {"Plaintext": r},
                           lambda: KmsError("KMSInternalException", f"AWS CloudHSM cluster {record.cluster_id} "
                                            "cannot be reached.", 500))




def pending_availability(region: Region, key: KeyRecord, state: KeyState) -> KeyRecord | None:
    """A key of a store that is not connected stays Unavailable: ``state`` (what EnableKey, DisableKey or
    CancelKeyDeletion would make it) is what it returns to once its store is connected again. None: the store is
    connected (or the key is not a store's), so ``state`` applies at once."""
    if not is_store_key(key):
        return None
    stores = region.key_stores
    record = stores.stores.get(store_of(key) or "") if stores is not None else None
    if record is not None and record.state == CONNECTED:
        return None
    return key.with_changes(state=KeyState.UNAVAILABLE, extra={**key.extra, RESUME: state.value})
