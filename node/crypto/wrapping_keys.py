"""RSA wrapping keys for GetParametersForImport, taken from the background key-pair pool so a request for an
RSA_4096 wrapping key does not generate one on the event loop.

When the pool has none ready, the pair this process handed out last for that spec is handed out again (each token
still differs, and binds its own key, region and expiry); only the very first request of a spec in a process that
finds the pool empty generates one in place."""

from __future__ import annotations

import threading
from collections.abc import Callable

from node.crypto.keypool import KeyPair

WRAPPING_KEY_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")


class WrappingKeys:
    def __init__(self, ready: Callable[[str], KeyPair | None], generate: Callable[[str], KeyPair],
                 want: Callable[[str], None]) -> None:
        self._ready = ready
        self._generate = generate
        self._want = want
        self._last: dict[str, KeyPair] = {}
        self._lock = threading.Lock()  # regions of one process share it; worker threads may too

    def prepare(self) -> None:
        """Someone is about to import key material: have the pool make wrapping keys of every spec now."""
        for spec in WRAPPING_KEY_SPECS:
            self._want(spec)

    def take(self, spec: str) -> KeyPair:
        pair = self._ready(spec)
        with self._lock:
            if pair is None:
                pair = self._last.get(spec)
            if pair is None:
                pair = self._generate(spec)
            self._last[spec] = pair
        return pair
