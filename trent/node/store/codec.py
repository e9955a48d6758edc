"""Key and alias records ↔ stored documents (msgpack). Material is stored only wrapped under the root key."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import msgpack

from trent.node.crypto.handles import Material
from trent.node.crypto.rootkey import RootKey, material_aad
from trent.node.model.key import AliasRecord, KeyRecord, MaterialVersion, RotationSettings
from trent.node.model.mrk import MultiRegionState
from trent.node.model.states import KeyState

FORMAT_VERSION = 1
_MRK_FIELDS = frozenset(f.name for f in fields(MultiRegionState))


def _encode_mrk(state: MultiRegionState | None) -> dict[str, Any] | None:
    # Field by field, so a field added to MultiRegionState is persisted without touching this codec.
    if state is None:
        return None
    return {f.name: getattr(state, f.name) for f in fields(state)}


def _decode_mrk(doc: dict[str, Any] | None) -> MultiRegionState | None:
    if doc is None:
        return None
    # msgpack gives lists back for tuples; unknown names (written by a newer release) are ignored.
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items() if k in _MRK_FIELDS}
    return MultiRegionState(**values)


class RecordCodec:
    def __init__(self, root_key: RootKey) -> None:
        self._root = root_key

    def encode_key(self, key: KeyRecord) -> bytes:
        doc: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "id": key.key_id,
            "region": key.region,
            "account": key.account,
            "created": key.created,
            "state": key.state.value,
            "description": key.description,
            "usage": key.key_usage,
            "spec": key.key_spec,
            "origin": key.origin,
            "policy": key.policy,
            "tags": [list(t) for t in key.tags],
            "materials": [self._encode_material(key.key_id, m) for m in key.materials],
            "current": key.current_material_id,
            "deletion_date": key.deletion_date,
            "pending_window": key.pending_window_days,
            "rotation": [key.rotation.enabled, key.rotation.period_days, key.rotation.next_rotation,
                         key.rotation.on_demand_count],
            "mrk": key.multi_region,
            "mrs": _encode_mrk(key.mrk),
            "resume": None if key.resume_state is None else key.resume_state.value,
            "ready": key.ready_at,
            "extra": key.extra,
        }
        return bytes(msgpack.packb(doc, use_bin_type=True))

    def decode_key(self, raw: bytes) -> KeyRecord:
        doc = msgpack.unpackb(raw, raw=False)
        if doc.get("v") != FORMAT_VERSION:
            raise ValueError(f"unsupported key record version {doc.get('v')!r}")
        key_id = doc["id"]
        enabled, period, next_rotation, on_demand = doc["rotation"]
        return KeyRecord(
            key_id=key_id,
            region=doc["region"],
            account=doc["account"],
            created=doc["created"],
            state=KeyState(doc["state"]),
            description=doc["description"],
            key_usage=doc["usage"],
            key_spec=doc["spec"],
            origin=doc["origin"],
            policy=doc["policy"],
            tags=tuple((k, v) for k, v in doc["tags"]),
            materials=tuple(self._decode_material(key_id, m) for m in doc["materials"]),
            current_material_id=doc["current"],
            deletion_date=doc["deletion_date"],
            pending_window_days=doc["pending_window"],
            rotation=RotationSettings(enabled, period, next_rotation, on_demand),
            multi_region=doc["mrk"],
            mrk=_decode_mrk(doc.get("mrs")),
            resume_state=None if doc.get("resume") is None else KeyState(doc["resume"]),
            ready_at=doc.get("ready"),
            extra=doc.get("extra") or {},
        )

    def _encode_material(self, key_id: str, version: MaterialVersion) -> list[Any]:
        mid = version.material_id
        wrapped = self._root.wrap(version.material.secret, material_aad(key_id, mid))
        return [mid, wrapped, version.created, version.rotation_type]

    def _decode_material(self, key_id: str, item: list[Any]) -> MaterialVersion:
        mid, wrapped, created, rotation_type = item
        secret = self._root.unwrap(wrapped, material_aad(key_id, mid))
        return MaterialVersion(Material(mid, secret), created, rotation_type)

    @staticmethod
    def encode_alias(alias: AliasRecord) -> bytes:
        doc = {"v": FORMAT_VERSION, "name": alias.name, "key": alias.key_id,
               "created": alias.created, "updated": alias.updated}
        return bytes(msgpack.packb(doc, use_bin_type=True))

    @staticmethod
    def decode_alias(raw: bytes) -> AliasRecord:
        doc = msgpack.unpackb(raw, raw=False)
        if doc.get("v") != FORMAT_VERSION:
            raise ValueError(f"unsupported alias record version {doc.get('v')!r}")
        return AliasRecord(doc["name"], doc["key"], doc["created"], doc["updated"])
