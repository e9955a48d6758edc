"""KMS keys in an external key store (Origin EXTERNAL_KEY_STORE): CreateKey binds one to an external key its proxy
vouches for (GetKeyMetadata), and their cryptography is node/xks/stores' double encryption. Only symmetric
encryption keys of one Region, as in AWS."""

from __future__ import annotations

from typing import Any

from trent.node.crypto.asymmetric import new_key_material
from trent.node.deferred import Deferred
from trent.node.keystores.records import EXTERNAL, STORE_ID, KeyStoreRecord
from trent.node.keystores.service import KeyStoreService
from trent.node.model.errors import KmsError, validation
from trent.node.model.key import SYMMETRIC_DEFAULT, KeyRecord, MaterialVersion
from trent.node.ops.common import key_metadata
from trent.node.ops.custom_key_stores import check_key_shape
from trent.node.ops.external_key_stores import xks_of
from trent.node.ops.registry import Params
from trent.node.service import Region
from trent.node.xks import errors
from trent.node.xks import stores as xks_stores
from trent.node.xks.stores import XKS_KEY_ID

NOT_CONNECTED = errors.NOT_CONNECTED


def check_create(params: Params, spec: str, usage: str) -> str:
    """The external key store CreateKey names (Origin EXTERNAL_KEY_STORE with CustomKeyStoreId and XksKeyId)."""
    if (params.get("Origin") or "AWS_KMS") != EXTERNAL:
        raise validation("XksKeyId is valid only when Origin is EXTERNAL_KEY_STORE.")
    missing = [m for m in ("CustomKeyStoreId", "XksKeyId") if params.get(m) is None]
    if missing:
        raise validation(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required when Origin is "
                         f"{EXTERNAL}.")
    check_key_shape(params, spec, usage)
    return str(params["CustomKeyStoreId"])


def create_in_store(region: Region, stores: KeyStoreService, record: KeyStoreRecord, key: KeyRecord,
                    params: Params) -> Deferred:
    if record.xks is None or key.origin != EXTERNAL:
        raise KmsError("UnsupportedOperationException" if record.xks is None else "ValidationException",
                       f"Origin {key.origin} does not match custom key store {record.store_id} of type "
                       f"{record.store_type}: use Origin {record.store_type}.")
    xks = xks_of(stores)
    external_id = str(params["XksKeyId"])
    # Trent's own material: the inner layer of the double encryption, never leaving the cluster unwrapped.
    material = MaterialVersion(new_key_material(SYMMETRIC_DEFAULT, key.key_id, region.key_pairs), key.created)
    made = key.with_changes(materials=(material,), current_material_id=material.material_id,
                            extra={**key.extra, STORE_ID: record.store_id, XKS_KEY_ID: external_id})

    def finish(_: None) -> dict[str, Any]:
        def commit() -> None:
            for other in stores.keys_in(record.store_id):  # a race with another CreateKey for this external key
                if other.extra.get(XKS_KEY_ID) == external_id:
                    raise KmsError("XksKeyAlreadyInUseException",
                                   f"The external key {external_id} is already associated with KMS key {other.arn}.")
            region.commit(keys=[made])
        region.run_fresh(commit)
        return {"KeyMetadata": key_metadata(region, made)}
    return xks_stores.create_key(xks, record, external_id, stores.keys_in(record.store_id), finish)


def encrypt(stores: KeyStoreService, record: KeyStoreRecord, key: KeyRecord, plaintext: bytes, context: Any,
            finish: Any) -> Deferred:
    return xks_stores.encrypt(xks_of(stores), record, key, plaintext, context, finish)


def decrypt(stores: KeyStoreService, record: KeyStoreRecord, key: KeyRecord, blob: bytes, context: Any,
            finish: Any) -> Deferred:
    return xks_stores.decrypt(xks_of(stores), record, key, blob, context, finish)


def data_key(stores: KeyStoreService, record: KeyStoreRecord, key: KeyRecord, length: int, context: Any,
             finish: Any) -> Deferred:
    return xks_stores.data_key(xks_of(stores), record, key, length, context, finish)
