"""Handles for secret key material.

Secrets live inside :class:`SecretBytes` so that they cannot leak through repr/str, logging,
exception messages or pickling (e.g. into a multiprocessing queue or a cache). The only way to get
the raw bytes back is :meth:`SecretBytes.reveal`, which keeps every use grep-able.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, NoReturn, Self

MATERIAL_LEN = 32  # symmetric (SYMMETRIC_DEFAULT) material
MATERIAL_ID_LEN = 32
# Other specs hold other secrets: an HMAC key (28-64 bytes) or a PKCS#8 private key (48 bytes for Ed25519, about
# 2.4 KiB for RSA_4096). The bounds reject truncated or absurd secrets without knowing the spec.
MIN_SECRET_LEN = 28
MAX_SECRET_LEN = 8192
_MATERIAL_ID_DOMAIN = b"trent/v1/material-id"


def _refuse_pickle(obj: object) -> NoReturn:
    # Pickles end up on disk, in queues and in caches; secrets must never be serialised implicitly.
    raise TypeError(f"{type(obj).__name__} holds secret key material and cannot be pickled")


class _Sealed:
    """Immutable holders of secrets: copies are the object itself (which keeps copy/deepcopy off the pickle path),
    and pickling is refused."""

    def __copy__(self) -> Self:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Self:
        return self

    def __reduce__(self) -> NoReturn:
        _refuse_pickle(self)

    def __reduce_ex__(self, protocol: Any) -> NoReturn:
        _refuse_pickle(self)

    def __getstate__(self) -> NoReturn:
        _refuse_pickle(self)


class SecretBytes(_Sealed):
    """Holds key material; repr/str show only a label and the length.

    Not picklable, not hashable (a hash would be a stable fingerprint of the secret), compared in
    constant time. ``reveal()`` is the only way out.
    """

    __slots__ = ("_label", "_value")

    _label: str
    _value: bytes

    def __init__(self, value: bytes | bytearray | memoryview, label: str = "secret") -> None:
        # Copy into an immutable bytes object so callers cannot mutate the secret behind our back.
        object.__setattr__(self, "_value", bytes(value))
        object.__setattr__(self, "_label", label)

    def reveal(self) -> bytes:
        """Return the raw secret. Every call site is a place where the secret leaves the handle."""
        return self._value

    @property
    def label(self) -> str:
        return self._label

    def __len__(self) -> int:
        return len(self._value)

    def __repr__(self) -> str:
        return f"SecretBytes(label={self._label!r}, len={len(self._value)})"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        # f"{secret:x}" and friends must not bypass the redacted repr.
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretBytes):
            return NotImplemented
        return hmac.compare_digest(self._value, other._value)

    __hash__ = None  # type: ignore[assignment]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("SecretBytes is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("SecretBytes is immutable")



@dataclass(frozen=True)
class Material(_Sealed):
    """One version of a key's secret: 32 AES bytes (symmetric), an HMAC key, or a PKCS#8 DER private key."""

    material_id: bytes  # 32 bytes; public identifier carried in ciphertext headers
    secret: SecretBytes  # MIN_SECRET_LEN..MAX_SECRET_LEN bytes; exactly MATERIAL_LEN for symmetric keys

    def __post_init__(self) -> None:
        if len(self.material_id) != MATERIAL_ID_LEN:
            raise ValueError(f"material id must be {MATERIAL_ID_LEN} bytes")
        if not MIN_SECRET_LEN <= len(self.secret) <= MAX_SECRET_LEN:
            raise ValueError(f"key material must be {MIN_SECRET_LEN} to {MAX_SECRET_LEN} bytes")



def material_id_for(secret: bytes, key_id: str) -> bytes:
    """Identifier of a material version.

    Deterministic (HMAC of the key id under the material itself) so every replica, and a re-import of
    the same bytes, derives the same id without coordinating; it reveals nothing about the secret.
    """
    return hmac.digest(secret, _MATERIAL_ID_DOMAIN + key_id.encode("utf-8"), hashlib.sha256)


def material_from_secret(raw: bytes, key_id: str) -> Material:
    """Material version of ``key_id`` holding ``raw`` (random bytes or a serialised private key)."""
    return Material(material_id=material_id_for(raw, key_id), secret=SecretBytes(raw, label="material"))


def new_material(key_id: str, length: int = MATERIAL_LEN) -> Material:
    """Fresh random material for ``key_id`` (CSPRNG): symmetric by default, or an HMAC key of ``length`` bytes."""
    return material_from_secret(secrets.token_bytes(length), key_id)
