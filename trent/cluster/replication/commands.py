"""Commands ↔ log records: msgpack with a format version; key material travels wrapped under the cluster's
transport key, never in clear."""

from __future__ import annotations

from typing import Any

import msgpack

from trent.node.crypto.handles import Material
from trent.node.crypto.rootkey import RootKey, material_aad
from trent.node.model.mrk import (
    Command,
    HoldsMaterial,
    KeySnapshot,
    MultiRegionState,
    ReplicaGone,
    ReplicaInit,
    SharedImport,
    SharedMaterial,
)

RECORD_VERSION = 1


class CommandCodec:
    def __init__(self, transport_key: RootKey) -> None:
        self._key = transport_key

    def encode(self, command: Command, origin: str, at: float) -> bytes:
        body: dict[str, Any]
        if isinstance(command, KeySnapshot):
            body = {"t": "sync", **self._snapshot(command)}
        elif isinstance(command, HoldsMaterial):
            body = {"t": "holds", "key": command.key_id, "region": command.region, "mid": command.material_id,
                    "epoch": command.epoch}
        elif isinstance(command, ReplicaGone):
            body = {"t": "gone", "key": command.key_id, "region": command.region}
        else:
            raise TypeError(f"not a replication command: {type(command).__name__}")
        return bytes(msgpack.packb({"v": RECORD_VERSION, "from": origin, "at": at, "c": body}, use_bin_type=True))

    def decode(self, raw: bytes) -> tuple[Command, str, float]:
        """The command, origin region and time of a record; anything malformed (a record of another format
        version, of another cluster's transport key, truncated or tampered with) is one ValueError."""
        try:
            doc = msgpack.unpackb(raw, raw=False)
            version = doc.get("v") if isinstance(doc, dict) else None
            if type(version) is not int or version != RECORD_VERSION:
                raise ValueError(f"unsupported replication record version {version!r}")
            return self._command(doc["c"]), _typed(doc["from"], str), float(_typed(doc["at"], (int, float)))
        except (KeyError, TypeError, AttributeError, IndexError, msgpack.UnpackException) as exc:
            raise ValueError(f"malformed replication record: {type(exc).__name__}") from None

    def _command(self, body: dict[str, Any]) -> Command:
        kind = body["t"]
        if kind == "sync":
            return self._unsnapshot(body)
        if kind == "holds":
            return HoldsMaterial(_typed(body["key"], str), _typed(body["region"], str), _typed(body["mid"], bytes),
                                 _typed(body["epoch"], int))
        if kind == "gone":
            return ReplicaGone(_typed(body["key"], str), _typed(body["region"], str))
        raise ValueError(f"unknown replication command {kind!r}")

    def _snapshot(self, s: KeySnapshot) -> dict[str, Any]:
        st = s.state
        return {
            "key": s.key_id, "origin_region": s.origin_region, "spec": s.key_spec, "usage": s.key_usage,
            "origin": s.origin, "current": s.current_material_id,
            "materials": [[m.material.material_id,
                           self._key.wrap(m.material.secret, material_aad(s.key_id, m.material.material_id)),
                           m.created, m.rotation_type] for m in s.materials],
            "rotation": [s.rotation_enabled, s.rotation_period_days, s.next_rotation],
            "state": [st.primary_region, list(st.replica_regions), st.epoch, st.version, st.pending_material_id,
                      st.pending_since, st.pending_type, list(st.holders)],
            "init": {r: [i.description, i.policy, [list(t) for t in i.tags], i.created]
                     for r, i in s.replica_init.items()},
            "imp": [[m.material_id, m.created, m.pending, m.rotated_at] for m in s.imported],
        }

    def _unsnapshot(self, b: dict[str, Any]) -> KeySnapshot:
        key_id = b["key"]
        materials = tuple(
            SharedMaterial(Material(mid, self._key.unwrap(wrapped, material_aad(key_id, mid))), created, rtype)
            for mid, wrapped, created, rtype in b["materials"]
        )
        primary, replicas, epoch, version, pending, since, ptype, holders = b["state"]
        enabled, period, next_rotation = b["rotation"]
        return KeySnapshot(
            key_id=key_id, origin_region=b["origin_region"], key_spec=b["spec"], key_usage=b["usage"],
            origin=b["origin"], materials=materials, current_material_id=b["current"],
            rotation_enabled=enabled, rotation_period_days=period, next_rotation=next_rotation,
            state=MultiRegionState(primary, tuple(replicas), epoch, version, pending, since, ptype, tuple(holders)),
            replica_init={r: ReplicaInit(d, p, tuple((k, v) for k, v in t), c)
                          for r, (d, p, t, c) in b["init"].items()},
            imported=tuple(SharedImport(_typed(mid, bytes), created, bool(pending), rotated)
                           for mid, created, pending, rotated in b.get("imp") or ()),
        )


def _typed(value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"unexpected {type(value).__name__}")
    return value
