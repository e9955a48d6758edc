"""KMS's side of the XKS proxy API: calls to any spec-conformant proxy, signed with SigV4 (kms-xks-proxy) as AWS
KMS signs them, over HTTPS that trusts the CA the cluster names (``xks_trusted_ca``; plain HTTP only where
``xks_allow_http`` says so), on kept-alive connections (node/xks/http11), each bounded by the timeout AWS applies
(250 ms). Every failure is an XksCallFailure of one kind, which node/xks/errors turns into the KMS exception AWS
documents."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from trent.node.xks.http11 import BadResponse, ConnectFailed, Dropped, Http11
from trent.node.xks.signing import SigningKeys, sign
from trent.node.xks.wire import STATUS

DEFAULT_TIMEOUT = 0.25  # AWS KMS gives a proxy 250 ms for each call


@dataclass(frozen=True)
class XksTarget:
    """One external key store's proxy, as KMS calls it."""

    uri_endpoint: str
    uri_path: str
    access_key_id: str
    secret: str = field(repr=False)
    region: str


class XksCallFailure(Exception):
    """``kind``: "proxy" (the proxy answered with the spec's ``error_name``), "unreachable" (no TCP connection),
    "tls" (no TLS connection), "timeout", or "malformed" (an answer that is not the spec's)."""

    def __init__(self, kind: str, error_name: str | None = None, detail: str = "") -> None:
        super().__init__(f"{kind}{f' {error_name}' if error_name else ''}{f': {detail}' if detail else ''}")
        self.kind = kind
        self.error_name = error_name


class XksClient:
    def __init__(self, trusted_ca: Path | None = None, allow_http: bool = False, timeout: float = DEFAULT_TIMEOUT,
                 now: Callable[[], float] = time.time) -> None:
        self.trusted_ca = trusted_ca
        self.allow_http = allow_http
        self.timeout = timeout
        # Signatures carry real time: the proxy checks them against its own clock, which `trent clock` never moves.
        self._now = now
        self._http = Http11(self.ssl_context)
        self._origins: dict[str, tuple[str, str, int]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._keys = SigningKeys()

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            context = ssl.create_default_context(cafile=str(self.trusted_ca) if self.trusted_ca else None)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._ssl = context
        return self._ssl

    async def call(self, target: XksTarget, call: str, key_id: str | None, body: dict[str, Any],
                   timeout: float | None = None) -> dict[str, Any]:
        """The proxy's JSON answer to ``call`` ("health", or "metadata"/"encrypt"/"decrypt" of ``key_id``)."""
        path = target.uri_path + ("/health" if call == "health" else f"/keys/{key_id}/{call}")
        payload = json.dumps(body, separators=(",", ":")).encode()
        origin = self._origin(target.uri_endpoint)
        host = urlsplit(target.uri_endpoint).netloc
        headers = sign("POST", path, host, payload, target.access_key_id, target.secret, target.region, self._now(),
                       self._keys)
        request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nX-Amz-Date: {headers['X-Amz-Date']}\r\n"
                   f"Authorization: {headers['Authorization']}\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(payload)}\r\nUser-Agent: trent-kms-xks\r\n\r\n").encode() + payload
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                status, raw = await self._http.post(origin, request)
        except TimeoutError:
            raise XksCallFailure("timeout") from None
        except ConnectFailed as exc:
            raise XksCallFailure("tls" if exc.tls else "unreachable", detail=str(exc)) from None
        except Dropped:
            raise XksCallFailure("unreachable", detail="connection closed") from None
        except BadResponse as exc:
            raise XksCallFailure("malformed", detail=str(exc)) from None
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            raise XksCallFailure("malformed", detail=f"HTTP {status}, not a JSON object")
        if status == 200:
            return doc
        name = doc.get("errorName")
        if isinstance(name, str) and name in STATUS:
            raise XksCallFailure("proxy", name, f"HTTP {status}")
        raise XksCallFailure("malformed", detail=f"HTTP {status} without a known errorName")

    def _origin(self, endpoint: str) -> tuple[str, str, int]:
        origin = self._origins.get(endpoint)
        if origin is None:
            parts = urlsplit(endpoint)
            scheme = parts.scheme
            origin = self._origins[endpoint] = (scheme, parts.hostname or "", parts.port or (
                443 if scheme == "https" else 80))
        return origin

    async def close(self) -> None:
        await self._http.close()
