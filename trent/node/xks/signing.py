"""SigV4 for the XKS proxy API (service ``kms-xks-proxy``): signing as AWS KMS signs its calls to a proxy
(SignedHeaders host;x-amz-date), and verifying any well-formed SigV4 request as a proxy must (curl's --aws-sigv4
signs more headers). The canonical pieces are node/wire's, shared with KMS's own verification."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping

from trent.node.model.errors import KmsError
from trent.node.wire.sigv4 import ALGORITHM, _canonical_headers, _parse_authorization
from trent.node.wire.sigv4_canonical import (
    _EMPTY,
    TERMINATOR,
    HeaderGetter,
    _canonical_query,
    _canonical_uri,
    _derive_signing_key,
    _encode,
    _format_amz,
    _header_lookup,
    _parse_amz_date,
)
from trent.node.xks.wire import SERVICE

MAX_SKEW = 300.0  # the spec: requests more than 5 minutes off fail authentication


class SigningKeys:
    """Derived signing keys (four HMACs each) kept per (secret, date, region): they change once a day."""

    def __init__(self, size: int = 64) -> None:
        self._keys: dict[tuple[str, str, str], bytes] = {}
        self._size = size

    def key(self, secret: str, date: str, region: str) -> bytes:
        found = self._keys.get((secret, date, region))
        if found is None:
            found = _derive_signing_key(secret, date, region, SERVICE)
            if len(self._keys) >= self._size:
                self._keys.clear()
            self._keys[(secret, date, region)] = found
        return found


class SignatureRejected(Exception):
    """Why a request failed authentication (for the proxy's log: it names no secret)."""


def _string_to_sign(amz_date: str, region: str, canonical_request: str) -> str:
    return (f"{ALGORITHM}\n{amz_date}\n{amz_date[:8]}/{region}/{SERVICE}/{TERMINATOR}\n"
            f"{hashlib.sha256(_encode(canonical_request)).hexdigest()}")


def sign(method: str, path: str, host: str, body: bytes, access_key: str, secret: str, region: str,
         now: float, keys: SigningKeys | None = None) -> dict[str, str]:
    """The headers that sign one request (Host, X-Amz-Date, Authorization)."""
    amz_date = _format_amz(now)
    canonical = "\n".join((method, _canonical_uri(path), "", f"host:{host}\nx-amz-date:{amz_date}\n",
                           "host;x-amz-date", hashlib.sha256(body).hexdigest()))
    key = keys.key(secret, amz_date[:8], region) if keys else _derive_signing_key(secret, amz_date[:8], region, SERVICE)
    signature = hmac.new(key, _encode(_string_to_sign(amz_date, region, canonical)), hashlib.sha256).hexdigest()
    return {"Host": host, "X-Amz-Date": amz_date, "Authorization": (
        f"{ALGORITHM} Credential={access_key}/{amz_date[:8]}/{region}/{SERVICE}/{TERMINATOR}, "
        f"SignedHeaders=host;x-amz-date, Signature={signature}")}


def verify(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
           secret_of: Callable[[str], str | None], now: float, max_skew: float = MAX_SKEW,
           keys: SigningKeys | None = None) -> str:
    """The access key id of a correctly signed, current request; SignatureRejected says why not."""
    get: HeaderGetter = _header_lookup(headers)
    values = get("authorization", _EMPTY)
    if not values:
        raise SignatureRejected("no Authorization header")
    try:
        scope, signed_headers, signature = _parse_authorization(values[0])
    except KmsError as exc:
        raise SignatureRejected(f"malformed Authorization header: {exc.message}") from None
    if scope.service != SERVICE:
        raise SignatureRejected(f"credential scoped to service {scope.service[:40]!r}, not {SERVICE}")
    names = signed_headers.split(";")
    if "host" not in names or "x-amz-date" not in names:
        raise SignatureRejected("Host and X-Amz-Date must be signed")
    amz_date = (get("x-amz-date", _EMPTY) or ("",))[0].strip()
    request_time = _parse_amz_date(amz_date)
    if request_time is None or scope.date != amz_date[:8]:
        raise SignatureRejected("X-Amz-Date is malformed or disagrees with the credential scope")
    if abs(now - request_time) > max_skew:
        raise SignatureRejected(f"request time {amz_date} is more than {max_skew:g} s from the proxy's clock")
    secret = secret_of(scope.access_key)
    if secret is None:
        raise SignatureRejected(f"unknown access key id {scope.access_key[:40]!r}")
    try:
        canonical_headers = _canonical_headers(get, names)
    except KmsError as exc:
        raise SignatureRejected(exc.message) from None
    canonical = "\n".join((method.upper(), _canonical_uri(path), _canonical_query(query), canonical_headers,
                           signed_headers, hashlib.sha256(body).hexdigest()))
    key = keys.key(secret, scope.date, scope.region) if keys else _derive_signing_key(secret, scope.date,
                                                                                      scope.region, SERVICE)
    expected = hmac.new(key, _encode(_string_to_sign(amz_date, scope.region, canonical)), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureRejected(f"signature mismatch for access key id {scope.access_key[:40]!r}")
    return scope.access_key
