"""SecretBytes / Material handles: no leaks via repr/str/format/pickle; deterministic material ids."""

from __future__ import annotations

import copy
import hashlib
import hmac
import pickle

import pytest

from trent.node.crypto.handles import Material, SecretBytes, material_id_for, new_material

KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY_ID = "0987dcba-09fe-87dc-65ba-ab0987654321"
RAW = bytes(range(0xA0, 0xC0))  # recognisable 32 bytes


def _leaks(text: str, raw: bytes) -> bool:
    return raw.hex() in text.lower() or repr(raw) in text or raw.decode("latin-1") in text


def test_repr_and_str_hide_bytes() -> None:
    s = SecretBytes(RAW, label="material")
    for text in (repr(s), str(s), f"{s}", f"{s!r}", format(s, "x")):
        assert not _leaks(text, RAW), text
        assert "material" in text
        assert "32" in text


def test_repr_of_material_and_containers_hides_bytes() -> None:
    m = Material(material_id=material_id_for(RAW, KEY_ID), secret=SecretBytes(RAW, label="material"))
    for text in (repr(m), str(m), repr([m]), repr({"m": m})):
        assert not _leaks(text, RAW)


def test_exception_message_with_secret_does_not_leak() -> None:
    s = SecretBytes(RAW)
    err = ValueError(f"bad secret {s}")
    assert not _leaks(str(err), RAW)


def test_reveal_is_the_way_out() -> None:
    s = SecretBytes(bytearray(RAW))
    assert s.reveal() == RAW
    assert isinstance(s.reveal(), bytes)
    assert len(s) == 32


def test_input_buffer_is_copied() -> None:
    buf = bytearray(RAW)
    s = SecretBytes(buf)
    buf[0] ^= 0xFF
    assert s.reveal() == RAW


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_pickle_refused(protocol: int) -> None:
    s = SecretBytes(RAW)
    with pytest.raises(TypeError) as info:
        pickle.dumps(s, protocol=protocol)
    assert not _leaks(str(info.value), RAW)
    m = new_material(KEY_ID)
    with pytest.raises(TypeError):
        pickle.dumps(m, protocol=protocol)
    with pytest.raises(TypeError):
        pickle.dumps([m], protocol=protocol)


def test_getstate_refused() -> None:
    with pytest.raises(TypeError):
        SecretBytes(RAW).__getstate__()


def test_copy_returns_same_immutable_object() -> None:
    s = SecretBytes(RAW)
    assert copy.copy(s) is s
    assert copy.deepcopy(s) is s
    m = new_material(KEY_ID)
    assert copy.deepcopy(m) is m


def test_immutable() -> None:
    s = SecretBytes(RAW)
    with pytest.raises(AttributeError):
        s._value = b"x"


def test_equality_and_unhashable() -> None:
    assert SecretBytes(RAW) == SecretBytes(RAW, label="other")
    assert SecretBytes(RAW) != SecretBytes(RAW[:-1] + b"\x00")
    assert SecretBytes(RAW) != RAW  # no implicit equality with raw bytes
    with pytest.raises(TypeError):
        hash(SecretBytes(RAW))


def test_material_id_deterministic_and_per_key() -> None:
    a = material_id_for(RAW, KEY_ID)
    assert a == material_id_for(RAW, KEY_ID)
    assert len(a) == 32
    assert a != material_id_for(RAW, OTHER_KEY_ID)
    assert a != material_id_for(bytes(32), KEY_ID)
    expected = hmac.new(RAW, b"trent/v1/material-id" + KEY_ID.encode(), hashlib.sha256).digest()
    assert a == expected


def test_new_material() -> None:
    m1 = new_material(KEY_ID)
    m2 = new_material(KEY_ID)
    assert len(m1.secret) == 32
    assert m1.material_id == material_id_for(m1.secret.reveal(), KEY_ID)
    assert m1.secret != m2.secret
    assert m1.material_id != m2.material_id


def test_material_validates_lengths() -> None:
    with pytest.raises(ValueError):
        Material(material_id=b"short", secret=SecretBytes(RAW))
    with pytest.raises(ValueError) as info:
        Material(material_id=bytes(32), secret=SecretBytes(RAW[:16]))
    assert not _leaks(str(info.value), RAW[:16])
