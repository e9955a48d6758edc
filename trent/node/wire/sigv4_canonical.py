"""The pieces of a SigV4 canonical request and signing key, byte for byte as botocore's signer builds them."""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote

from multidict import CIMultiDict, CIMultiDictProxy

TERMINATOR = "aws4_request"
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_RE = re.compile(r"(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z")
_EMPTY: tuple[str, ...] = ()



# Every value of a (lowercase) header name, case-insensitively: called as get(name, _EMPTY). A C-level method, the
# multidict's or a dict's, with the default passed by the caller: no Python frame per header looked up.
HeaderGetter = Callable[[str, Sequence[str]], Sequence[str]]


def _header_lookup(headers: Mapping[str, str]) -> HeaderGetter:
    """A getter of every value of a (lowercase) header name, case-insensitively (see HeaderGetter)."""
    if type(headers) is CIMultiDictProxy or isinstance(headers, CIMultiDictProxy | CIMultiDict):
        # aiohttp's request headers: already case-insensitive and multi-valued, no copy needed.
        return headers.getall
    lowered: dict[str, list[str]] = {}
    for key, value in headers.items():
        lowered.setdefault(key.lower(), []).append(value)
    return lowered.get


def _trim(value: str) -> str:
    # SigV4 "Trimall", exactly as botocore applies it.
    return " ".join(value.split())


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 5.2.4 plus collapsing of empty segments, as botocore does for non-S3 services.
    out: list[str] = []
    for seg in path.split("/"):
        if seg and seg != ".":
            if seg == "..":
                if out:
                    out.pop()
            else:
                out.append(seg)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last


def _canonical_uri(path: str) -> str:
    """``path`` is the raw request path as sent (still percent-encoded); non-S3 SigV4 encodes it again."""
    if not path or path == "/":
        return "/"
    return quote(_remove_dot_segments(path), safe="/~") or "/"


def _canonical_query(query: str) -> str:
    """``query`` is the raw query string without '?'."""
    if not query:
        return ""
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        # Decode then re-encode so any client percent-encoding normalises to SigV4's form.
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    pairs.sort()
    return "&".join([f"{k}={v}" for k, v in pairs])


def _parse_amz_date(value: str) -> float | None:
    m = _AMZ_DATE_RE.fullmatch(value)
    if m is None:
        return None
    try:
        # datetime() validates field ranges (month 13, Feb 30, ...).
        return datetime(
            int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]), tzinfo=UTC
        ).timestamp()
    except ValueError:
        return None


def _parse_http_date(value: str) -> datetime | None:
    try:
        dt = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _format_amz(epoch: float) -> str:
    return time.strftime(_AMZ_DATE_FORMAT, time.gmtime(epoch))


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _derive_signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    k = _hmac(f"AWS4{secret_key}".encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, TERMINATOR)


def _encode(value: str) -> bytes:
    # aiohttp decodes header bytes with surrogateescape; this restores the bytes the client signed.
    return value.encode("utf-8", "surrogateescape")
