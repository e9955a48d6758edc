"""The replication record codec: every command round-trips, the format is versioned, material travels wrapped
under the transport key only, and anything malformed is one ValueError."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from trent.cluster.replication.commands import RECORD_VERSION, CommandCodec
from trent.node.crypto.handles import new_material
from trent.node.crypto.rootkey import RootKey
from trent.node.model.mrk import (
    Command,
    HoldsMaterial,
    KeySnapshot,
    MultiRegionState,
    ReplicaGone,
    ReplicaInit,
    SharedMaterial,
)

KEY_ID = "mrk-" + "cd" * 16
A, B, C = "us-east-1", "eu-west-1", "ap-northeast-2"


def codec(byte: int = 7) -> CommandCodec:
    return CommandCodec(RootKey.from_bytes(bytes([byte]) * 32))


def snapshot(*, pending: bool = True) -> KeySnapshot:
    first, second = new_material(KEY_ID), new_material(KEY_ID)
    materials = (SharedMaterial(first, 1.0, None), SharedMaterial(second, 2.5, "ON_DEMAND"))
    state = MultiRegionState(
        A, (B, C), epoch=3, version=17,
        pending_material_id=second.material_id if pending else None,
        pending_since=2.5 if pending else None, pending_type="ON_DEMAND" if pending else None,
        holders=(B,) if pending else (),
    )
    return KeySnapshot(
        key_id=KEY_ID, origin_region=A, key_spec="SYMMETRIC_DEFAULT", key_usage="ENCRYPT_DECRYPT",
        origin="AWS_KMS", materials=materials, current_material_id=first.material_id, rotation_enabled=pending,
        rotation_period_days=90, next_rotation=1234.5 if pending else None, state=state,
        replica_init={B: ReplicaInit("replica b", '{"Version":"2012-10-17"}', (("team", "b"), ("env", "x")), 9.0),
                      C: ReplicaInit("", "{}", (), 10.0)} if pending else {},
    )


COMMANDS: list[Command] = [
    snapshot(),
    snapshot(pending=False),
    HoldsMaterial(KEY_ID, B, b"m" * 32, 3),
    ReplicaGone(KEY_ID, C),
]


@pytest.mark.parametrize("command", COMMANDS, ids=["sync-pending", "sync-plain", "holds", "gone"])
def test_every_command_round_trips(command: Command) -> None:
    c = codec()
    raw = c.encode(command, B, 42.25)
    assert isinstance(raw, bytes)
    decoded, origin, at = c.decode(raw)
    assert decoded == command
    assert type(decoded) is type(command)
    assert (origin, at) == (B, 42.25)


def test_snapshot_round_trip_keeps_tuples_and_material() -> None:
    snap = snapshot()
    decoded, _, _ = codec().decode(codec().encode(snap, A, 1.0))
    assert isinstance(decoded, KeySnapshot)
    assert isinstance(decoded.state.replica_regions, tuple) and isinstance(decoded.state.holders, tuple)
    assert decoded.replica_init[B].tags == (("team", "b"), ("env", "x"))
    for mine, theirs in zip(snap.materials, decoded.materials, strict=True):
        assert mine.material.material_id == theirs.material.material_id
        assert mine.material.secret.reveal() == theirs.material.secret.reveal()


def _doc(raw: bytes) -> dict[str, Any]:
    doc = msgpack.unpackb(raw, raw=False)
    assert isinstance(doc, dict)
    return doc


def _pack(doc: object) -> bytes:
    return bytes(msgpack.packb(doc, use_bin_type=True))


def test_record_carries_its_format_version() -> None:
    raw = codec().encode(ReplicaGone(KEY_ID, B), B, 1.0)
    assert _doc(raw)["v"] == RECORD_VERSION


@pytest.mark.parametrize("version", [RECORD_VERSION + 1, 0, None, "1"])
def test_unknown_record_version_is_refused(version: object) -> None:
    doc = _doc(codec().encode(ReplicaGone(KEY_ID, B), B, 1.0))
    doc["v"] = version
    with pytest.raises(ValueError, match="version"):
        codec().decode(_pack(doc))


def test_missing_version_is_refused() -> None:
    doc = _doc(codec().encode(ReplicaGone(KEY_ID, B), B, 1.0))
    del doc["v"]
    with pytest.raises(ValueError):
        codec().decode(_pack(doc))


@pytest.mark.parametrize("command", COMMANDS[:2], ids=["sync-pending", "sync-plain"])
def test_material_never_appears_in_clear(command: Command) -> None:
    assert isinstance(command, KeySnapshot)
    raw = codec().encode(command, A, 1.0)
    for shared in command.materials:
        secret = shared.material.secret.reveal()
        assert secret not in raw
        assert secret.hex().encode() not in raw
    # The material ids are public identifiers and do travel.
    assert command.materials[0].material.material_id in raw


def test_encoding_twice_wraps_with_fresh_nonces() -> None:
    snap = snapshot()
    assert codec().encode(snap, A, 1.0) != codec().encode(snap, A, 1.0)


def test_record_wrapped_under_another_transport_key_fails() -> None:
    raw = codec(7).encode(snapshot(), A, 1.0)
    with pytest.raises(ValueError):
        codec(8).decode(raw)


def test_wrapped_material_is_bound_to_its_key() -> None:
    doc = _doc(codec().encode(snapshot(), A, 1.0))
    doc["c"]["key"] = "mrk-" + "ef" * 16  # the wrapped material of another key cannot be passed off as this one's
    with pytest.raises(ValueError):
        codec().decode(_pack(doc))


def test_tampered_wrapped_material_fails() -> None:
    doc = _doc(codec().encode(snapshot(), A, 1.0))
    wrapped = bytearray(doc["c"]["materials"][0][1])
    wrapped[-1] ^= 1
    doc["c"]["materials"][0][1] = bytes(wrapped)
    with pytest.raises(ValueError):
        codec().decode(_pack(doc))


def _good_doc() -> dict[str, Any]:
    return _doc(codec().encode(HoldsMaterial(KEY_ID, B, b"m" * 32, 3), B, 1.0))


def _without(key: str) -> bytes:
    doc = _good_doc()
    del doc[key]
    return _pack(doc)


def _without_body_field(key: str) -> bytes:
    doc = _good_doc()
    del doc["c"][key]
    return _pack(doc)


def _body_type(t: object) -> bytes:
    doc = _good_doc()
    doc["c"]["t"] = t
    return _pack(doc)


MALFORMED = {
    "empty": b"",
    "not-msgpack": b"\xc1",
    "trailing-bytes": codec().encode(ReplicaGone(KEY_ID, B), B, 1.0) + b"\x00",
    "not-a-map": _pack([1, 2, 3]),
    "an-int": _pack(5),
    "no-body": _without("c"),
    "no-origin": _without("from"),
    "no-time": _without("at"),
    "body-not-a-map": _pack({"v": RECORD_VERSION, "from": B, "at": 1.0, "c": "x"}),
    "no-type": _without_body_field("t"),
    "unknown-type": _body_type("launch"),
    "no-key": _without_body_field("key"),
    "no-epoch": _without_body_field("epoch"),
    "sync-missing-fields": _pack({"v": RECORD_VERSION, "from": A, "at": 1.0, "c": {"t": "sync", "key": KEY_ID}}),
    "sync-bad-state": _pack({"v": RECORD_VERSION, "from": A, "at": 1.0,
                             "c": {**_doc(codec().encode(snapshot(), A, 1.0))["c"], "state": [A]}}),
}


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_record_is_one_value_error(raw: bytes) -> None:
    # The puller treats ValueError as "cannot apply this now"; any other exception would end its task.
    with pytest.raises(ValueError):
        codec().decode(raw)


def test_encoding_something_else_is_refused() -> None:
    with pytest.raises(TypeError):
        codec().encode("gone", A, 1.0)  # type: ignore[arg-type]
