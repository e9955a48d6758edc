"""A bounded pool of logged-in PKCS#11 sessions on one token, and the threads that use them.

Every call runs in one of the pool's threads, never on the event loop; a caller gets a Future and decides how long
to wait for it. A hung token holds only its own pool's threads: other tokens' pools, and the event loop, go on.
The library is entered by one thread at a time (SoftHSM2 initialized without locking arguments promises no more).
"""

from __future__ import annotations

import gc
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pkcs11
from pkcs11 import exceptions as p11

T = TypeVar("T")


class HsmError(Exception):
    """A call the token could not serve (the message is for logs: it names no secret)."""


class HsmUnavailable(HsmError):
    """The token cannot be reached: removed, not present, or its cluster down."""


class HsmFailed(HsmError):
    """The token answered a call with an error."""


class HsmLoginFailed(HsmError):
    """Logging in failed; ``code`` says why in the words of KMS's ConnectionErrorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


_LOGIN_CODES: tuple[tuple[type[Exception], str], ...] = (
    (p11.PinIncorrect, "INVALID_CREDENTIALS"), (p11.PinInvalid, "INVALID_CREDENTIALS"),
    (p11.PinLenRange, "INVALID_CREDENTIALS"), (p11.PinExpired, "INVALID_CREDENTIALS"),
    (p11.PinLocked, "USER_LOCKED_OUT"), (p11.UserPinNotInitialized, "USER_NOT_FOUND"),
    (p11.AnotherUserAlreadyLoggedIn, "USER_LOGGED_IN"), (p11.NoSuchToken, "CLUSTER_NOT_FOUND"),
    (p11.TokenNotPresent, "NETWORK_ERRORS"), (p11.DeviceRemoved, "NETWORK_ERRORS"),
)
_UNREACHABLE = (p11.DeviceRemoved, p11.TokenNotPresent, p11.SessionClosed, p11.SessionHandleInvalid)


class Library:
    """One loaded PKCS#11 library and the lock every call into it takes."""

    # python-pkcs11 keeps one instance per library path for the whole process, so the lock is the process's too.
    _locks: dict[int, threading.Lock] = {}
    _registry_lock = threading.Lock()

    def __init__(self, lib: Any) -> None:  # a pkcs11.lib (a function's name in the package's stubs)
        self.lib = lib
        with self._registry_lock:
            self.lock = self._locks.setdefault(id(lib), threading.Lock())


class SessionPool:
    def __init__(self, library: Callable[[], Library], token_label: str, pin: str, size: int = 8, name: str = "hsm",
                 before_call: Callable[[], None] | None = None) -> None:
        if size < 1:
            raise ValueError("a session pool needs at least one session")
        self._get_library = library  # loaded (the first time: slowly) when the pool opens, in its caller's thread
        self._library: Library | None = None
        self._label = token_label
        self._pin = pin
        self.size = size
        self._name = name
        self._before_call = before_call
        self._sessions: queue.SimpleQueue[pkcs11.Session] = queue.SimpleQueue()
        self._all: list[pkcs11.Session] = []
        # Calls made and seconds spent inside the library (what `trent status` and the benchmark report).
        self.calls = 0
        self.busy_seconds = 0.0
        self._opened = False
        self._open_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(size, thread_name_prefix=name)

    def open(self) -> None:
        """Log in and open the sessions, unless done already (blocking: run it off the event loop; the first call
        does it otherwise). HsmLoginFailed says why not."""
        with self._open_lock:
            if not self._opened:
                self._open()
                self._opened = True

    def _open(self) -> None:
        if self._before_call is not None:
            try:
                self._before_call()
            except HsmError as exc:
                raise HsmLoginFailed("NETWORK_ERRORS", str(exc)) from None
        library = self._library = self._get_library()
        with library.lock:
            try:
                token = library.lib.get_token(token_label=self._label)
                first = token.open(rw=True, user_pin=self._pin)
            except p11.UserAlreadyLoggedIn:
                first = token.open(rw=True)  # this process is logged in already (login state is the process's)
            except p11.PKCS11Error as exc:
                code = next((c for kind, c in _LOGIN_CODES if isinstance(exc, kind)), "INTERNAL_ERROR")
                raise HsmLoginFailed(code, f"login to token {self._label} failed: {type(exc).__name__}") from None
            self._all = [first] + [token.open(rw=True) for _ in range(self.size - 1)]
        for session in self._all:
            self._sessions.put(session)

    @property
    def is_open(self) -> bool:
        return self._opened and self._executor is not None

    def submit(self, work: Callable[[pkcs11.Session], T]) -> Future[T]:
        """Run ``work`` with a session of the pool in one of its threads. Its Future fails with HsmUnavailable or
        HsmFailed when the token does; any other exception of ``work`` is passed on as it is."""
        executor = self._executor
        if executor is None:
            raise HsmUnavailable(f"session pool of {self._label} is closed")
        return executor.submit(self._run, work)

    def call(self, work: Callable[[pkcs11.Session], T], timeout: float) -> T:
        """``submit`` and wait (for callers that are not on the event loop)."""
        return self.submit(work).result(timeout)

    def _run(self, work: Callable[[pkcs11.Session], T]) -> T:
        if not self._opened:
            try:
                self.open()  # which consults the faults first
            except HsmLoginFailed as exc:
                raise HsmUnavailable(str(exc)) from None
        elif self._before_call is not None:
            self._before_call()
        session = self._sessions.get()
        library = self._library
        assert library is not None  # opened above
        try:
            with library.lock:
                started = time.perf_counter()
                try:
                    return work(session)
                finally:
                    self.calls += 1  # under the library's lock: one thread at a time
                    self.busy_seconds += time.perf_counter() - started
        except _UNREACHABLE as exc:
            raise HsmUnavailable(f"token {self._label}: {type(exc).__name__}") from None
        except p11.PKCS11Error as exc:
            raise HsmFailed(f"token {self._label}: {type(exc).__name__}") from None
        finally:
            self._sessions.put(session)

    def close(self) -> None:
        """Stop taking calls, close every session (which logs out); calls still queued are cancelled."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        with self._open_lock:
            sessions, self._all = self._all, []
            self._opened = False
        library = self._library
        if library is None:
            return
        gc.collect()  # a search the library left to a finalizer must end before its session does
        for session in sessions:
            try:
                with library.lock:
                    session.close()
            except p11.PKCS11Error:
                continue
