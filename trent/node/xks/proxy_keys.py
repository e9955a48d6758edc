"""The proxy's keys inside a PKCS#11 token: AES-256, sensitive and never extractable, found by label (the external
key id); AES-GCM done by the token, through node/hsm's session pool (off the event loop). A health-check key of
the proxy's own serves the deep health check, so that no customer key shows activity KMS did not ask for."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pkcs11
from pkcs11 import Attribute, GCMParams, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from trent.node.hsm.pool import Library, SessionPool
from trent.node.hsm.softhsm import SoftHsmDirectory, TokenSetupError, find_library, set_user_pin, stored_pin
from trent.node.xks.proxy_config import Pkcs11Token

HEALTH_KEY = "trent-xks-proxy-health-check"
DEFAULT_TOKEN = "trent-xks-proxy"
_TAG_BITS = 128
_IV_LEN = 12


class BadCiphertext(Exception):
    """Authentication of a ciphertext failed (wrong AAD, IV, tag or ciphertext)."""


def _find(session: pkcs11.Session, key_id: str) -> Any:  # a pkcs11.SecretKey (its stubs lack encrypt/decrypt)
    return session.get_key(object_class=ObjectClass.SECRET_KEY, label=key_id)


class KeyHandles:
    """Key objects found once per session of the pool (a search is three PKCS#11 calls; the pool's sessions live as
    long as the proxy). Each session is used by one thread at a time, so each entry is too."""

    def __init__(self) -> None:
        self._handles: dict[tuple[int, str], Any] = {}

    def get(self, session: pkcs11.Session, key_id: str) -> Any:
        handle = self._handles.get((id(session), key_id))
        if handle is None:
            handle = self._handles[(id(session), key_id)] = _find(session, key_id)
        return handle

    def forget(self, session: pkcs11.Session, key_id: str) -> None:
        self._handles.pop((id(session), key_id), None)


def ensure_keys(session: pkcs11.Session, key_ids: Iterable[str]) -> list[str]:
    """Generate, in the token, every key of ``key_ids`` it lacks; the ids generated."""
    made: list[str] = []
    for key_id in key_ids:
        try:
            _find(session, key_id)
            continue
        except p11.NoSuchKey:
            pass
        session.generate_key(KeyType.AES, 256, label=key_id, id=key_id.encode(), store=True, template={
            Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.ENCRYPT: True,
            Attribute.DECRYPT: True, Attribute.WRAP: False, Attribute.UNWRAP: False, Attribute.PRIVATE: True})
        made.append(key_id)
    return made


def present(session: pkcs11.Session, key_id: str) -> bool:
    try:
        _find(session, key_id)
    except p11.NoSuchKey:
        return False
    return True


def _key(session: pkcs11.Session, key_id: str, handles: KeyHandles | None) -> Any:
    return handles.get(session, key_id) if handles is not None else _find(session, key_id)


def encrypt(session: pkcs11.Session, key_id: str, plaintext: bytes, aad: bytes,
            handles: KeyHandles | None = None) -> tuple[bytes, bytes, bytes]:
    """(initialization vector, ciphertext, tag): a fresh random 96-bit IV (the OS's CSPRNG: one call fewer into a
    token that serves one call at a time)."""
    iv = os.urandom(_IV_LEN)
    try:
        sealed = bytes(_key(session, key_id, handles).encrypt(plaintext, mechanism=Mechanism.AES_GCM,
                                                              mechanism_param=GCMParams(iv, aad, _TAG_BITS)))
    except p11.PKCS11Error:
        if handles is not None:
            handles.forget(session, key_id)
        raise
    return iv, sealed[:-16], sealed[-16:]


def decrypt(session: pkcs11.Session, key_id: str, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes,
            handles: KeyHandles | None = None) -> bytes:
    try:
        return bytes(_key(session, key_id, handles).decrypt(ciphertext + tag, mechanism=Mechanism.AES_GCM,
                                                            mechanism_param=GCMParams(iv, aad, _TAG_BITS)))
    except (p11.GeneralError, p11.EncryptedDataInvalid, p11.EncryptedDataLenRange, p11.FunctionFailed,
            p11.MechanismParamInvalid):
        raise BadCiphertext() from None
    except p11.PKCS11Error:
        if handles is not None:
            handles.forget(session, key_id)
        raise


def health_round_trip(session: pkcs11.Session) -> bool:
    """A deep check: the health key encrypts and decrypts in the token (found afresh: a check of the token)."""
    probe = os.urandom(16)
    iv, ct, tag = encrypt(session, HEALTH_KEY, probe, b"health")
    return decrypt(session, HEALTH_KEY, iv, ct, tag, b"health") == probe


def token_info(session: pkcs11.Session) -> tuple[str, str]:
    """(manufacturer, model) of the token, for the health report."""
    token = session.token
    return (str(getattr(token, "manufacturer_id", "") or "PKCS#11").strip(),
            str(getattr(token, "model", "") or "token").strip())


def open_token(data_dir: Path, configured: Pkcs11Token | None, pool_size: int,
               before_call: Any = None) -> tuple[SessionPool, str]:
    """The session pool of the proxy's token and its label: the configured module's token, or a SoftHSM2 token
    under ``data_dir``/softhsm (made at first start; its PINs random, in files only the owner reads)."""
    if configured is not None:
        module = str(configured.module)

        def load() -> Library:
            return Library(pkcs11.lib(module))
        return SessionPool(load, configured.token_label, configured.user_pin, pool_size, "xks-proxy",
                           before_call), configured.token_label
    library = find_library()
    if library is None:
        raise TokenSetupError("SoftHSM2 is not installed (apt-get install softhsm2), and no [pkcs11] module is "
                              "configured")
    root = data_dir / "softhsm"
    tokens = SoftHsmDirectory(root, library)
    tokens.prepare()
    so_pin, user_pin = stored_pin(root / "so.pin"), stored_pin(root / "user.pin")
    if not tokens.has_token(DEFAULT_TOKEN):
        tokens.create_token(DEFAULT_TOKEN, so_pin, user_pin)
    else:
        lib = tokens.library()
        with lib.lock:
            set_user_pin(lib.lib, DEFAULT_TOKEN, so_pin, user_pin)
    return SessionPool(tokens.library, DEFAULT_TOKEN, user_pin, pool_size, "xks-proxy", before_call), DEFAULT_TOKEN
