"""Pre-generated RSA key pairs. Generating one takes up to a second; cryptography releases the GIL meanwhile, so a
background thread can do it while the event loop keeps serving, and CreateKey / GenerateDataKeyPair take a
ready pair instead of stalling every region of the process."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from trent.node.crypto.handles import SecretBytes

KeyPair = tuple[SecretBytes, bytes]  # (PKCS#8 DER private key, DER SubjectPublicKeyInfo)
SLOW_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")


class KeyPairPool:
    def __init__(self, generate: Callable[[str], KeyPair], specs: tuple[str, ...] = SLOW_SPECS,
                 depth: int = 2) -> None:
        self._generate = generate
        self._queues: dict[str, queue.Queue[KeyPair]] = {s: queue.Queue(maxsize=depth) for s in specs}
        self._wanted: set[str] = set()  # only specs someone asked for are kept ready: idle clusters pay nothing
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def take(self, spec: str) -> KeyPair:
        """A fresh key pair of ``spec``: a pre-generated one when there is one, else generated now."""
        pool = self._queues.get(spec)
        if pool is None:
            return self._generate(spec)
        self._want(spec)
        try:
            return pool.get_nowait()
        except queue.Empty:
            return self._generate(spec)
        finally:
            self._wake.set()

    def take_ready(self, spec: str) -> KeyPair | None:
        """A pre-generated key pair of ``spec`` if one is ready, never generating on the caller's thread (None: not
        yet; the pool starts keeping ``spec`` ready)."""
        pool = self._queues.get(spec)
        if pool is None:
            return None
        self.want(spec)
        try:
            return pool.get_nowait()
        except queue.Empty:
            return None

    def want(self, spec: str) -> None:
        """Start keeping ``spec`` ready (before anyone takes one: a caller that knows it will need them soon)."""
        if spec in self._queues:
            self._want(spec)
            self._wake.set()

    def _want(self, spec: str) -> None:
        with self._lock:
            self._wanted.add(spec)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._fill, name="trent-keypool", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _fill(self) -> None:
        while not self._stop.is_set():
            for spec in list(self._wanted):
                pool = self._queues[spec]
                while not pool.full() and not self._stop.is_set():
                    pool.put(self._generate(spec))
            self._wake.wait()
            self._wake.clear()
