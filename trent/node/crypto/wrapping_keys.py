"""RSA wrapping keys for GetParametersForImport, taken from the background key-pair pool so a request for an
RSA_4096 wrapping key does not generate one on the event loop.

When the pool has none ready, the pair this process handed out last for that spec is handed out again (each token
still differs, and binds its own key, region and expiry). The very first request of a spec in a process that finds
the pool empty does not wait on the loop either: a thread generates the pair and the request is answered once it
is there (NotReady: the adapter waits off the loop, then runs the request again)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

from trent.node.crypto.keypool import KeyPair
from trent.node.model.errors import NotReady

WRAPPING_KEY_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")


class WrappingKeys:
    def __init__(self, ready: Callable[[str], KeyPair | None], generate: Callable[[str], KeyPair],
                 want: Callable[[str], None]) -> None:
        self._ready = ready
        self._generate = generate
        self._want = want
        self._last: dict[str, KeyPair] = {}
        self._making: dict[str, Future[KeyPair]] = {}  # first pairs being generated off the loop, by spec
        self._lock = threading.Lock()  # regions of one process share it; the generating threads too

    def prepare(self) -> None:
        """Someone is about to import key material: have the pool make wrapping keys of every spec now."""
        for spec in WRAPPING_KEY_SPECS:
            self._want(spec)

    def take(self, spec: str) -> KeyPair:
        """A wrapping key pair of ``spec`` now, or NotReady while the first one of this process is generated."""
        pair = self._ready(spec)
        with self._lock:
            if pair is None:
                pair = self._last.get(spec)
            if pair is not None:
                self._last[spec] = pair
                return pair
            making = self._making.get(spec)
            if making is None:
                making = self._making[spec] = Future()
                # Shared by every request waiting for it: one that gives up must not cancel it for the others.
                making.set_running_or_notify_cancel()
                threading.Thread(target=self._make, args=(spec, making), name="trent-wrapping-key",
                                 daemon=True).start()
        raise NotReady(making)

    def _make(self, spec: str, done: Future[KeyPair]) -> None:
        try:
            pair = self._generate(spec)
        except BaseException as exc:  # the waiting request runs again, and is refused after a few such failures
            with self._lock:
                self._making.pop(spec, None)
            done.set_exception(exc)
            return
        with self._lock:
            self._last.setdefault(spec, pair)
            self._making.pop(spec, None)
        done.set_result(pair)
