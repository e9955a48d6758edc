"""SoftHSM2 tokens in a directory of their own: the configuration file SoftHSM2 reads (SOFTHSM2_CONF), its token
directory, and a private copy of the library, so that each directory's tokens are served by an instance of SoftHSM2
of their own even when several live in one process (a library loaded twice from one path is one instance, reading
one configuration)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pkcs11

from trent.node.hsm.pool import Library

LIBRARY_PATHS = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                 "/usr/local/lib/softhsm/libsofthsm2.so", "/usr/lib64/pkcs11/libsofthsm2.so")
CONF_ENV = "SOFTHSM2_CONF"


def find_library() -> Path | None:
    """The SoftHSM2 PKCS#11 library of this machine, if SoftHSM2 (and its softhsm2-util) is installed."""
    if shutil.which("softhsm2-util") is None:
        return None
    for candidate in LIBRARY_PATHS:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


class TokenSetupError(RuntimeError):
    """A token could not be created or its PIN set (the message names the token, never a PIN)."""


class SoftHsmDirectory:
    """``root``/softhsm2.conf, ``root``/tokens/ and ``root``/libsofthsm2.so: created on first use, kept after."""

    # The environment is the process's: SOFTHSM2_CONF is set only while one library instance reads it.
    _env_lock = threading.Lock()

    def __init__(self, root: Path, library: Path) -> None:
        self.root = root
        self.library_path = library
        self.conf = root / "softhsm2.conf"
        self.tokens = root / "tokens"
        self._copy = root / "libsofthsm2.so"
        self._library: Library | None = None
        self._lock = threading.Lock()

    def prepare(self) -> None:
        self.tokens.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        text = (f"directories.tokendir = {self.tokens.resolve()}\nobjectstore.backend = file\n"
                "log.level = ERROR\nslots.removable = false\nslots.mechanisms = ALL\nlibrary.reset_on_fork = true\n")
        if not self.conf.exists() or self.conf.read_text() != text:
            self.conf.write_text(text)
        if not self._copy.exists() or self._copy.stat().st_size != self.library_path.stat().st_size:
            tmp = self._copy.with_suffix(".tmp")
            shutil.copyfile(self.library_path, tmp)
            os.replace(tmp, self._copy)

    def _marker(self, label: str) -> Path:
        return self.tokens / f".{label}.initialized"

    def has_token(self, label: str) -> bool:
        return self._marker(label).exists()

    def create_token(self, label: str, so_pin: str, user_pin: str) -> None:
        """A new token ``label`` whose security officer and user log in with these PINs (softhsm2-util, the tool
        SoftHSM2 ships for it: PKCS#11 has no portable call that makes a token)."""
        env = dict(os.environ, **{CONF_ENV: str(self.conf.resolve())})
        done = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", so_pin,
                               "--pin", user_pin], env=env, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise TokenSetupError(f"softhsm2-util could not create token {label}: {done.stderr.strip()[:200]}")
        self._marker(label).write_text("")

    def library(self) -> Library:
        """This directory's own instance of SoftHSM2, loaded once (blocking: at start, or off the event loop)."""
        with self._lock:
            if self._library is None:
                self._library = Library(self._load())
            return self._library

    def _load(self) -> Any:
        # C_Initialize reads the configuration named by the environment: set only while it does.
        with self._env_lock:
            before = os.environ.get(CONF_ENV)
            os.environ[CONF_ENV] = str(self.conf.resolve())
            try:
                return pkcs11.lib(str(self._copy.resolve()))
            finally:
                if before is None:
                    os.environ.pop(CONF_ENV, None)
                else:
                    os.environ[CONF_ENV] = before


def set_user_pin(lib: Any, label: str, so_pin: str, user_pin: str) -> None:
    """Make ``user_pin`` the token's user PIN (the security officer resets it: the configuration is the truth)."""
    try:
        token = lib.get_token(token_label=label)
        with token.open(rw=True, so_pin=so_pin) as session:
            session.init_pin(user_pin)
    except pkcs11.PKCS11Error as exc:
        raise TokenSetupError(f"cannot set the user PIN of token {label}: {type(exc).__name__}") from None


def stored_pin(path: Path) -> str:
    """A token PIN kept in ``path``: random, made once, readable by the owner only."""
    if path.exists():
        return path.read_text().strip()
    pin = secrets.token_hex(16)
    path.touch(mode=0o600)
    path.write_text(pin)
    return pin
