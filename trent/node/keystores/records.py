"""The record of one custom key store (region state, in the region's store) and its stored form: the kmsuser
password only wrapped under the region's root key."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from typing import Any

import msgpack

from trent.node.crypto.handles import SecretBytes
from trent.node.crypto.rootkey import RootKey

FORMAT_VERSION = 1
TABLE = "custom_key_stores"
CLOUDHSM = "AWS_CLOUDHSM"
EXTERNAL = "EXTERNAL_KEY_STORE"
CONNECTED, CONNECTING, DISCONNECTED, DISCONNECTING, FAILED = (
    "CONNECTED", "CONNECTING", "DISCONNECTED", "DISCONNECTING", "FAILED")
# What a key of a store remembers while its store is not connected (its state then is Unavailable).
RESUME = "key_store_resume"
STORE_ID, CLUSTER_ID = "custom_key_store_id", "cloud_hsm_cluster_id"


def new_store_id() -> str:
    return "cks-" + secrets.token_hex(9)[:17]


@dataclass(frozen=True)
class XksProxySettings:
    """An external key store's proxy (its secret access key is the record's ``password``)."""

    uri_endpoint: str
    uri_path: str
    connectivity: str
    access_key_id: str


@dataclass(frozen=True)
class KeyStoreRecord:
    store_id: str
    name: str
    cluster_id: str
    trust_anchor: str
    password: SecretBytes
    created: float
    state: str = DISCONNECTED
    error_code: str | None = None
    xks: XksProxySettings | None = None  # an EXTERNAL_KEY_STORE (cluster_id and trust_anchor are then "")

    @property
    def store_type(self) -> str:
        return EXTERNAL if self.xks is not None else CLOUDHSM

    def with_changes(self, **changes: Any) -> KeyStoreRecord:
        return replace(self, **changes)


def _aad(store_id: str) -> bytes:
    return b"trent/v1/key-store-password\x00" + store_id.encode()


class KeyStoreCodec:
    def __init__(self, root: RootKey) -> None:
        self._root = root

    def encode(self, record: KeyStoreRecord) -> bytes:
        doc = {"v": FORMAT_VERSION, "id": record.store_id, "name": record.name, "cluster": record.cluster_id,
               "anchor": record.trust_anchor, "password": self._root.wrap(record.password, _aad(record.store_id)),
               "created": record.created, "state": record.state, "error": record.error_code}
        if record.xks is not None:
            x = record.xks
            doc["xks"] = [x.uri_endpoint, x.uri_path, x.connectivity, x.access_key_id]
        return bytes(msgpack.packb(doc, use_bin_type=True))

    def decode(self, raw: bytes) -> KeyStoreRecord:
        doc = msgpack.unpackb(raw, raw=False)
        if doc.get("v") != FORMAT_VERSION:
            raise ValueError(f"unsupported key store record version {doc.get('v')!r}")
        xks = doc.get("xks")
        return KeyStoreRecord(doc["id"], doc["name"], doc["cluster"], doc["anchor"],
                              self._root.unwrap(doc["password"], _aad(doc["id"])), doc["created"], doc["state"],
                              doc.get("error"), XksProxySettings(*xks) if xks else None)
