"""The region's root of trust: a 32-byte AES-256-GCM key that wraps all key material at rest.

Wrapped format: ``0x01 (version) || nonce (12) || ciphertext || tag (16)``. The AAD passed by callers
(see :func:`material_aad`) binds a wrapped secret to its key id and material id.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import struct
from pathlib import Path
from typing import Any, NoReturn

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from trent.node.crypto.handles import SecretBytes

ROOT_KEY_LEN = 32
WRAP_VERSION = 0x01
_NONCE_LEN = 12
_TAG_LEN = 16
_MIN_WRAPPED_LEN = 1 + _NONCE_LEN + _TAG_LEN
_MATERIAL_AAD_DOMAIN = b"trent/v1/material-wrap\x00"
# Filesystems without hard links (some FUSE/network mounts) report these from os.link.
_NO_LINK_ERRNOS = frozenset({errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK})


def material_aad(key_id: str, material_id: bytes) -> bytes:
    """AAD for wrapping one material version, so a wrapped blob cannot be swapped between keys/versions.

    Domain-separated and length-prefixed so distinct (key id, material id) pairs never collide.
    """
    kid = key_id.encode("utf-8")
    return b"".join((_MATERIAL_AAD_DOMAIN, struct.pack(">H", len(kid)), kid, material_id))


class RootKey:
    """Holds the root key; never exposes it, never pickles, repr shows no bytes."""

    __slots__ = ("_aead", "_secret")

    def __init__(self, secret: SecretBytes) -> None:
        if len(secret) != ROOT_KEY_LEN:
            raise ValueError(f"root key must be exactly {ROOT_KEY_LEN} bytes, got {len(secret)}")
        self._secret = secret
        # Built once: the AESGCM key schedule is reused for every wrap/unwrap.
        self._aead = AESGCM(secret.reveal())

    @classmethod
    def from_bytes(cls, raw: bytes) -> RootKey:
        """For keys provided via config/environment."""
        return cls(SecretBytes(raw, label="root-key"))

    @classmethod
    def load_or_create(cls, path: Path) -> RootKey:
        """Load the root key at ``path``, or atomically create a fresh one (mode 0600) if absent.

        Creation writes a temp file in the same directory, fsyncs it and hard-links it into place;
        ``link`` fails if the name exists, so concurrent creators agree on whichever key landed first
        and a reader never sees a partially written file.
        """
        path = Path(path)
        try:
            return cls._load(path)
        except FileNotFoundError:
            pass
        raw = secrets.token_bytes(ROOT_KEY_LEN)
        try:
            created = _create_exclusive(path, raw)
        except FileExistsError:
            created = False
        if not created:
            # Somebody else won the race; their key is the region's key.
            return cls._load(path)
        return cls.from_bytes(raw)

    @classmethod
    def _load(cls, path: Path) -> RootKey:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size != ROOT_KEY_LEN:
                raise _wrong_size(path, size)
            raw = _read_exact(fd, ROOT_KEY_LEN + 1)  # one extra byte detects growth after fstat
        finally:
            os.close(fd)
        if len(raw) != ROOT_KEY_LEN:
            raise _wrong_size(path, len(raw))
        return cls.from_bytes(raw)

    def wrap(self, secret: SecretBytes, aad: bytes) -> bytes:
        """Encrypt ``secret`` for storage; a fresh random nonce per call."""
        nonce = os.urandom(_NONCE_LEN)
        return b"".join((bytes((WRAP_VERSION,)), nonce, self._aead.encrypt(nonce, secret.reveal(), aad)))

    def unwrap(self, wrapped: bytes, aad: bytes) -> SecretBytes:
        """Inverse of :meth:`wrap`; any failure (tamper, wrong AAD, wrong root key) is one ValueError."""
        if len(wrapped) < _MIN_WRAPPED_LEN or wrapped[0] != WRAP_VERSION:
            raise ValueError("cannot unwrap key material")
        view = memoryview(wrapped)
        try:
            raw = self._aead.decrypt(view[1 : 1 + _NONCE_LEN], view[1 + _NONCE_LEN :], aad)
        except InvalidTag:
            raise ValueError("cannot unwrap key material") from None
        return SecretBytes(raw, label="material")

    def __repr__(self) -> str:
        return "RootKey(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("RootKey holds secret key material and cannot be pickled")

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        raise TypeError("RootKey holds secret key material and cannot be pickled")

    def __getstate__(self) -> NoReturn:
        raise TypeError("RootKey holds secret key material and cannot be pickled")


def _wrong_size(path: Path, size: int) -> ValueError:
    # Names the file and sizes only; the content is never echoed.
    return ValueError(
        f"root key file {path} must be exactly {ROOT_KEY_LEN} bytes, found {size}; refusing to use it"
    )


def _read_exact(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while total < limit:
        chunk = os.read(fd, limit - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: Path) -> None:
    # Makes the new directory entry durable; best effort where directories cannot be opened/fsynced.
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _create_exclusive(path: Path, raw: bytes) -> bool:
    """Create ``path`` containing ``raw`` (mode 0600) unless it exists. Returns False if it already did."""
    directory = path.parent
    tmp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    try:
        try:
            _write_all(fd, raw)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_LINK_ERRNOS:
                raise
            # No hard links here: fall back to O_EXCL on the final name (still never overwrites).
            _create_direct(path, raw)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(directory)
    return True


def _create_direct(path: Path, raw: bytes) -> None:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    try:
        _write_all(fd, raw)
        os.fsync(fd)
    finally:
        os.close(fd)
