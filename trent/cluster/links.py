"""Signed requests between the nodes of a cluster (replication pulls, the gateway's admin calls to the nodes): an
HMAC-SHA256 over the method, the path, the sorted query, a timestamp, a nonce and the body's digest, keyed with a
secret of the cluster that never crosses the wire. A request is accepted once, within ``WINDOW`` seconds of its
timestamp; a captured one cannot be replayed, and a peer without the secret (another cluster's, or none) reads
nothing."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping

SIGNATURE_HEADER = "X-Trent-Signature"
WINDOW = 60.0  # seconds either side of the verifier's clock
_MAX_SEEN = 200_000


def _canonical(method: str, path: str, query: Iterable[tuple[str, str]], stamp: str, nonce: str,
               body: bytes) -> bytes:
    pairs = "&".join(f"{k}={v}" for k, v in sorted(query))
    return "\n".join((method.upper(), path, pairs, stamp, nonce, hashlib.sha256(body).hexdigest())).encode()


def _mac(key: str, message: bytes) -> str:
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def sign(key: str, method: str, path: str, query: Mapping[str, str] | None = None, body: bytes = b"",
         now: Callable[[], float] = time.time) -> dict[str, str]:
    """The header that authenticates one request made with ``key``."""
    stamp, nonce = f"{now():.3f}", secrets.token_hex(12)
    mac = _mac(key, _canonical(method, path, (query or {}).items(), stamp, nonce, body))
    return {SIGNATURE_HEADER: f"t={stamp},n={nonce},s={mac}"}


class LinkVerifier:
    """Accepts a request signed with ``key``, fresh, and not seen before."""

    def __init__(self, key: str, now: Callable[[], float] = time.time, window: float = WINDOW) -> None:
        self._key = key
        self._now = now
        self._window = window
        self._seen: dict[str, float] = {}

    def verify(self, method: str, path: str, query: Iterable[tuple[str, str]], header: str | None,
               body: bytes = b"") -> bool:
        if not header:
            return False
        try:
            fields = dict(part.split("=", 1) for part in header.split(","))
            stamp, nonce, mac = fields["t"], fields["n"], fields["s"]
            at = float(stamp)
        except (ValueError, KeyError):
            return False
        now = self._now()
        if not abs(now - at) <= self._window:  # (also a NaN stamp)
            return False
        try:
            expected = _mac(self._key, _canonical(method, path, query, stamp, nonce, body))
            if not hmac.compare_digest(mac.encode(), expected.encode()):
                return False
        except UnicodeError:  # a header that is not text (sent as raw bytes): a wrong signature, not a 500
            return False
        if nonce in self._seen:
            return False  # a replay
        self._forget(now)
        self._seen[nonce] = at
        return True

    def _forget(self, now: float) -> None:
        if len(self._seen) < 4096:
            return
        # A nonce older than twice the window cannot come back: its timestamp is refused first.
        horizon = now - 2 * self._window
        self._seen = {n: t for n, t in self._seen.items() if t >= horizon}
        if len(self._seen) > _MAX_SEEN:  # a flood of valid requests: the oldest go first
            newest = sorted(self._seen.items(), key=lambda item: item[1])[-_MAX_SEEN // 2:]
            self._seen = dict(newest)
