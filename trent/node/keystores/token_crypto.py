"""What a key store key does inside its token (each function runs in a session pool's thread, with a session):
AES-256 keys generated there as sensitive, non-extractable token objects; AES-GCM with the TRENT-V1 header and the
encryption context as additional data, so the ciphertext is Trent's format naming the key and the token object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pkcs11
from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from trent.node.crypto.blob import (
    FLAG_KEY_STORE,
    HEADER_LEN,
    IV_LEN,
    KEY_ID_LEN,
    MARKER,
    SALT_LEN,
    encode_encryption_context,
    parse_header,
)
from trent.node.model.errors import invalid_ciphertext

OBJECT_ID_LEN = 32
_GCM_TAG_BITS = 128


def new_object_id() -> bytes:
    return os.urandom(OBJECT_ID_LEN)


def generate_key(session: pkcs11.Session, object_id: bytes, label: str) -> None:
    session.generate_key(KeyType.AES, 256, id=object_id, label=label, store=True, template={
        Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.ENCRYPT: True, Attribute.DECRYPT: True,
        Attribute.WRAP: False, Attribute.UNWRAP: False, Attribute.PRIVATE: True})


def _key(session: pkcs11.Session, object_id: bytes, handles: Handles | None = None) -> Any:
    """The key object (a pkcs11.SecretKey: its stubs lack encrypt/decrypt), found once per session."""
    if handles is not None:
        return handles.key(session, object_id)
    return session.get_key(object_class=ObjectClass.SECRET_KEY, id=object_id)


class Handles:
    """Key objects already found, per session: a search of the token costs more than the cipher itself. Used only
    under the library's lock (one thread at a time); forgotten with the sessions (the pool closing)."""

    MAX = 65536

    def __init__(self) -> None:
        self._found: dict[tuple[int, bytes], Any] = {}

    def key(self, session: pkcs11.Session, object_id: bytes) -> Any:
        slot = (id(session), object_id)
        found = self._found.get(slot)
        if found is None:
            found = session.get_key(object_class=ObjectClass.SECRET_KEY, id=object_id)
            if len(self._found) >= self.MAX:
                self._found.clear()
            self._found[slot] = found
        return found

    def forget(self, object_id: bytes) -> None:
        for slot in [s for s in self._found if s[1] == object_id]:
            del self._found[slot]

    def clear(self) -> None:
        self._found.clear()


def seal(session: pkcs11.Session, key_id: str, object_id: bytes, plaintext: bytes,
         encryption_context: Mapping[str, str] | None, handles: Handles | None = None) -> bytes:
    ec_bytes = encode_encryption_context(encryption_context)
    salt_iv = os.urandom(SALT_LEN + IV_LEN)
    header = bytes((MARKER, FLAG_KEY_STORE, KEY_ID_LEN)) + key_id.encode("ascii") + object_id + salt_iv
    sealed = _key(session, object_id, handles).encrypt(
        plaintext, mechanism=Mechanism.AES_GCM,
        mechanism_param=GCMParams(salt_iv[SALT_LEN:], header + ec_bytes, _GCM_TAG_BITS))
    return header + bytes(sealed)


def unseal(session: pkcs11.Session, blob: bytes, object_id: bytes,
           encryption_context: Mapping[str, str] | None, handles: Handles | None = None) -> bytes:
    """The plaintext; InvalidCiphertextException for a blob that is not this object's or fails authentication."""
    header = parse_header(blob)
    if not header.key_store or header.material_id != object_id:
        raise invalid_ciphertext()
    ec_bytes = encode_encryption_context(encryption_context)
    head = blob[:HEADER_LEN]
    try:
        return bytes(_key(session, object_id, handles).decrypt(
            blob[HEADER_LEN:], mechanism=Mechanism.AES_GCM,
            mechanism_param=GCMParams(head[HEADER_LEN - IV_LEN:], head + ec_bytes, _GCM_TAG_BITS)))
    except (p11.GeneralError, p11.EncryptedDataInvalid, p11.EncryptedDataLenRange, p11.FunctionFailed):
        raise invalid_ciphertext() from None


def random_bytes(session: pkcs11.Session, count: int) -> bytes:
    return bytes(session.generate_random(count * 8)) if count else b""


def destroy(session: pkcs11.Session, object_id: bytes, handles: Handles | None = None) -> bool:
    """Delete the token object; False if it is gone already."""
    if handles is not None:
        handles.forget(object_id)
    try:
        _key(session, object_id).destroy()
    except p11.NoSuchKey:
        return False
    return True


def key_attributes(session: pkcs11.Session, object_id: bytes) -> dict[str, object]:
    """The token's own word on a key's protection (tests and `trent status` read it; never its value)."""
    key = _key(session, object_id)
    return {name: key[attr] for name, attr in (
        ("sensitive", Attribute.SENSITIVE), ("extractable", Attribute.EXTRACTABLE),
        ("never_extractable", Attribute.NEVER_EXTRACTABLE), ("always_sensitive", Attribute.ALWAYS_SENSITIVE),
        ("local", Attribute.LOCAL), ("token", Attribute.TOKEN), ("key_type", Attribute.KEY_TYPE),
        ("value_len", Attribute.VALUE_LEN))}
