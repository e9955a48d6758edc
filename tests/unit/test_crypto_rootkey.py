"""Root key: file handling, wrap/unwrap binding, no leaks."""

from __future__ import annotations

import os
import pickle
import stat
import threading
from pathlib import Path

import pytest

from trent.node.crypto.handles import SecretBytes, new_material
from trent.node.crypto.rootkey import RootKey, material_aad

KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY_ID = "0987dcba-09fe-87dc-65ba-ab0987654321"
UNWRAP_FAILED = r"^cannot unwrap key material$"


def _probe(rk: RootKey) -> bytes:
    return rk.wrap(SecretBytes(b"p" * 32), b"probe")


def _same_key(a: RootKey, b: RootKey) -> bool:
    return b.unwrap(_probe(a), b"probe") == SecretBytes(b"p" * 32)


def test_create_mode_and_reload(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    rk = RootKey.load_or_create(path)
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == 32
    rk2 = RootKey.load_or_create(path)
    assert _same_key(rk, rk2)
    assert _same_key(rk, RootKey.from_bytes(path.read_bytes()))
    # No temp files left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root.key"]


def test_mode_0600_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        RootKey.load_or_create(tmp_path / "root.key")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "root.key").stat().st_mode) == 0o600


def test_existing_file_is_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    raw = os.urandom(32)
    path.write_bytes(raw)
    rk = RootKey.load_or_create(path)
    assert path.read_bytes() == raw
    assert _same_key(rk, RootKey.from_bytes(raw))


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_wrong_size_file_rejected(tmp_path: Path, size: int) -> None:
    path = tmp_path / "root.key"
    content = bytes(range(0x41, 0x41 + size)) if size <= 64 else b""
    path.write_bytes(content)
    with pytest.raises(ValueError) as exc:
        RootKey.load_or_create(path)
    msg = str(exc.value)
    assert "32 bytes" in msg
    assert str(size) in msg
    if content:
        assert content.hex() not in msg
        assert content.decode("latin-1") not in msg
    assert path.read_bytes() == content  # left untouched


def test_concurrent_creation_agrees(tmp_path: Path) -> None:
    path = tmp_path / "root.key"
    results: list[RootKey] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            results.append(RootKey.load_or_create(path))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 8
    disk = RootKey.from_bytes(path.read_bytes())
    assert all(_same_key(disk, rk) for rk in results)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root.key"]


def test_race_lost_at_link_loads_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process creates the file between our existence check and our link."""
    path = tmp_path / "root.key"
    winner = os.urandom(32)
    real_link = os.link

    def racing_link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        Path(dst).write_bytes(winner)
        real_link(src, dst)

    monkeypatch.setattr(os, "link", racing_link)
    rk = RootKey.load_or_create(path)
    assert path.read_bytes() == winner
    assert _same_key(rk, RootKey.from_bytes(winner))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root.key"]


def test_no_hardlink_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    path = tmp_path / "root.key"
    rk = RootKey.load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _same_key(rk, RootKey.from_bytes(path.read_bytes()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root.key"]


def test_from_bytes_validates_length() -> None:
    for n in (0, 16, 31, 33):
        with pytest.raises(ValueError):
            RootKey.from_bytes(b"k" * n)


def test_wrap_unwrap_round_trip() -> None:
    rk = RootKey.from_bytes(os.urandom(32))
    m = new_material(KEY_ID)
    aad = material_aad(KEY_ID, m.material_id)
    wrapped = rk.wrap(m.secret, aad)
    assert wrapped[0] == 0x01
    assert len(wrapped) == 1 + 12 + 32 + 16
    assert m.secret.reveal() not in wrapped
    assert rk.unwrap(wrapped, aad) == m.secret
    assert rk.wrap(m.secret, aad) != wrapped  # random nonce


def test_unwrap_wrong_aad_fails() -> None:
    rk = RootKey.from_bytes(os.urandom(32))
    m = new_material(KEY_ID)
    m2 = new_material(KEY_ID)
    wrapped = rk.wrap(m.secret, material_aad(KEY_ID, m.material_id))
    for aad in (
        material_aad(OTHER_KEY_ID, m.material_id),  # swapped to another key
        material_aad(KEY_ID, m2.material_id),  # swapped to another version
        b"",
    ):
        with pytest.raises(ValueError, match=UNWRAP_FAILED):
            rk.unwrap(wrapped, aad)


def test_unwrap_wrong_root_key_or_tamper_fails() -> None:
    rk = RootKey.from_bytes(os.urandom(32))
    other = RootKey.from_bytes(os.urandom(32))
    aad = b"aad"
    wrapped = rk.wrap(SecretBytes(os.urandom(32)), aad)
    with pytest.raises(ValueError, match=UNWRAP_FAILED):
        other.unwrap(wrapped, aad)
    for pos in range(len(wrapped)):
        tampered = bytearray(wrapped)
        tampered[pos] ^= 0x01
        with pytest.raises(ValueError, match=UNWRAP_FAILED):
            rk.unwrap(bytes(tampered), aad)
    for cut in range(len(wrapped)):
        with pytest.raises(ValueError, match=UNWRAP_FAILED):
            rk.unwrap(wrapped[:cut], aad)


def test_material_aad_unambiguous() -> None:
    mid = bytes(32)
    assert material_aad(KEY_ID, mid) != material_aad(OTHER_KEY_ID, mid)
    assert material_aad(KEY_ID, mid) != material_aad(KEY_ID, b"\x01" * 32)
    assert material_aad("ab", b"c" * 32) != material_aad("abc", b"c" * 31)


def test_repr_and_pickle(tmp_path: Path) -> None:
    raw = bytes(range(0x61, 0x61 + 32))
    rk = RootKey.from_bytes(raw)
    for text in (repr(rk), str(rk), f"{rk}"):
        assert raw.hex() not in text
        assert raw.decode("latin-1") not in text
        assert repr(raw) not in text
    with pytest.raises(TypeError):
        pickle.dumps(rk)
    unwrapped = rk.unwrap(rk.wrap(SecretBytes(raw), b""), b"")
    assert raw.hex() not in repr(unwrapped)
    with pytest.raises(TypeError):
        pickle.dumps(unwrapped)
