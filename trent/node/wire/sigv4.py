"""AWS Signature Version 4 verification (Authorization-header form), as AWS KMS performs it.

The canonicalisation mirrors botocore's signer (``botocore.auth.SigV4Auth``) byte for byte, since
boto3 / the AWS CLI are the clients that must verify. Error codes, statuses and messages follow AWS.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from trent.node.auth.principals import Principal, PrincipalDirectory
from trent.node.clock import Clock
from trent.node.model.errors import KmsError
from trent.node.wire.sigv4_canonical import (  # imported by name: tests patch _derive_signing_key here
    _AMZ_DATE_FORMAT,
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
    _parse_http_date,
    _trim,
)

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "kms"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_PREFIX = ALGORITHM + " "
_PREFIX_LINE = ALGORITHM + "\n"

# Header-name token characters (RFC 9110), lowercase only: SigV4 signs lowercased names.
_NAME = r"[a-z0-9!#$%&'*+.^_`|~-]+"
_SIGNED_HEADERS_RE = re.compile(rf"(?:{_NAME};)*{_NAME}")
# Hot path: the exact shape botocore emits, parsed in one match; anything else goes to the slow
# parser, which exists to produce a precise error message.
_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 +Credential=([^/\s,]+)/(\d{8})/([^/\s,]+)/([^/\s,]+)/aws4_request"
    rf" *, *SignedHeaders=((?:{_NAME};)*{_NAME}) *, *Signature=([0-9a-f]{{64}}) *"
)
_SCOPE_RE = re.compile(r"Credential=([^/\s,]+)/(\d{8})/([^/\s,]+)/([^/\s,]+)/aws4_request(?=[\s,]|$)")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")
_HEX_DIGITS = b"0123456789abcdef"
_SIGNATURE_KEY = "Signature="
_DATE8_RE = re.compile(r"\d{8}")


_MSG_MISSING = "Missing Authentication Token"
_MSG_UNRECOGNIZED = "The security token included in the request is invalid."
_MSG_WRONG_SERVICE = f"Credential should be scoped to correct service: '{SERVICE}'."
_MSG_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)


@dataclass(frozen=True, slots=True)
class CredentialScope:
    access_key: str
    date: str  # yyyymmdd
    region: str
    service: str


class VerifiedCaller(NamedTuple):  # a tuple: one is made per request (a frozen dataclass costs a setattr a field)
    principal: Principal
    region: str
    access_key: str


def _incomplete(message: str) -> KmsError:
    return KmsError("IncompleteSignatureException", message, 400)


def _invalid(message: str) -> KmsError:
    return KmsError("InvalidSignatureException", message, 403)


def _unrecognized() -> KmsError:
    return KmsError("UnrecognizedClientException", _MSG_UNRECOGNIZED, 400)


def _missing() -> KmsError:
    return KmsError("MissingAuthenticationTokenException", _MSG_MISSING, 403)


def _must_sign(header: str) -> str:
    return f"'{header}' must be a 'SignedHeader' in the AWS Authorization."


def _check_amz_headers_signed(headers: Mapping[str, str], names: list[str]) -> None:
    """Every x-amz-* header sent must be signed (SigV4's rule; botocore and every AWS SDK sign them all): unsigned,
    X-Amz-Target could be changed on a captured request, replaying its body as another operation."""
    for name in headers:
        # Most headers do not begin with an x: they cost a comparison, not a lower-casing (this runs per request).
        if name[:1] in "xX" and (lowered := name.lower()).startswith("x-amz-") and lowered not in names:
            raise _invalid(_must_sign(lowered))


def _scope_match(authorization: str | None) -> re.Match[str] | None:
    if not authorization or not authorization.startswith(_PREFIX):
        return None
    return _SCOPE_RE.search(authorization, len(_PREFIX))


def parse_scope(authorization: str | None) -> CredentialScope | None:
    """Cheap parse of the Authorization header's Credential=... part.

    None if absent/unparsable. Nothing is verified here.
    """
    m = _scope_match(authorization)
    return None if m is None else CredentialScope(m[1], m[2], m[3], m[4])


def scope_region(authorization: str | None) -> str | None:
    """The region of ``parse_scope``'s scope, alone: all the gateway needs to route a request (once per request,
    so no scope object is built for it)."""
    m = _scope_match(authorization)
    return None if m is None else m[3]


class ScopeRegions:
    """``scope_region`` for a gateway, remembered per Authorization head (the header up to its signature, the same
    for every request a client signs under one scope): a dictionary lookup per request instead of a regular
    expression's search. A head is kept only when it ends in a separator (a comma or whitespace, which no part of a
    scope contains) and the scope was found before it: every attempt of the search then stays within the head, so
    any header beginning with it gives the same answer. Bounded: past ``size`` heads it starts over."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._regions: dict[str, str] = {}  # this gateway's own: a pure function of the text, nothing to invalidate

    def region(self, authorization: str | None) -> str | None:
        if authorization is None:
            return None
        head = authorization.rpartition(_SIGNATURE_KEY)[0]
        region = self._regions.get(head)
        if region is not None:
            return region
        m = _scope_match(authorization)
        if m is None:
            return None
        if m.end() < len(head) and (head[-1] == "," or head[-1].isspace()):
            if len(self._regions) >= self._size:
                self._regions.clear()
            self._regions[head] = m[3]
        return m[3]


def _authorization(get: HeaderGetter) -> str:
    """The Authorization header; absent or blank is no credential at all (as AWS treats it)."""
    values = get("authorization", _EMPTY)
    if not values or not values[0].strip():
        raise _missing()
    return values[0]


def scope_of(headers: Mapping[str, str]) -> CredentialScope:
    """The credential scope of a request, without checking its signature; raises what verification would for a
    missing or malformed Authorization header (``parse_scope`` is the lenient, cheaper look)."""
    return _parse_authorization(_authorization(_header_lookup(headers)))[0]


def _parse_authorization(authorization: str) -> tuple[CredentialScope, str, str]:
    """(scope, SignedHeaders string, signature), or IncompleteSignatureException."""
    m = _AUTH_RE.fullmatch(authorization)
    if m is not None:
        return CredentialScope(m[1], m[2], m[3], m[4]), m[5], m[6]
    return _parse_authorization_slow(authorization)


def _parse_authorization_slow(authorization: str) -> tuple[CredentialScope, str, str]:
    # Messages never echo the header: it carries the signature.
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"Unsupported authorization type; only {ALGORITHM} is accepted.")
    params: dict[str, str] = {}
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq:
            raise _incomplete("Authorization header parameters must be of the form name=value.")
        if name not in ("Credential", "SignedHeaders", "Signature"):
            raise _incomplete(f"Unexpected parameter '{name[:64]}' in the Authorization header.")
        if name in params:
            raise _incomplete(f"Duplicate parameter '{name}' in the Authorization header.")
        params[name] = value.strip()
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not params.get(name)
    ]
    if missing:
        raise _incomplete(" ".join(missing))
    credential, signed, signature = params["Credential"], params["SignedHeaders"], params["Signature"]
    elements = credential.split("/")
    if len(elements) != 5 or not all(elements):
        raise _incomplete(
            "Credential must have exactly 5 slash-delimited elements, "
            f"e.g. keyid/date/region/service/term, got '{credential}'"
        )
    access_key, date, region, service, terminator = elements
    if terminator != TERMINATOR:
        raise _incomplete(
            f"Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{terminator}'."
        )
    if _DATE8_RE.fullmatch(date) is None:
        raise _incomplete(f"Credential date must be in yyyyMMdd format, not '{date}'.")
    if _SIGNED_HEADERS_RE.fullmatch(signed) is None:
        raise _incomplete("SignedHeaders must be a ';'-separated list of lowercase header names.")
    if _SIGNATURE_RE.fullmatch(signature) is None:
        raise _incomplete("Signature must be 64 lowercase hexadecimal characters.")
    return CredentialScope(access_key, date, region, service), signed, signature


def _signed_names(scope: CredentialScope, signed_headers: str) -> list[str]:
    """The signed header names, once the scope is for this service and Host is among them."""
    if scope.service != SERVICE:
        raise _invalid(_MSG_WRONG_SERVICE)
    names = signed_headers.split(";")
    if "host" not in names:
        raise _invalid(_must_sign("Host' or ':authority"))  # AWS's wording today (HTTP/2 names the host so)
    return names


def _canonical_headers(get: HeaderGetter, names: list[str]) -> str:
    """The canonical headers, in SignedHeaders order; each line ends in '\\n'."""
    lines: list[str] = []
    for name in names:
        values = get(name, _EMPTY)
        if not values:
            raise _incomplete(f"Signed header '{name}' is not present in the request.")
        if len(values) == 1:  # nearly always: _trim written out, a call fewer per signed header
            lines.append(f"{name}:{' '.join(values[0].split())}\n")
        else:
            lines.append(f"{name}:{','.join([_trim(v) for v in values])}\n")
    return "".join(lines)


def _payload_hash(get: HeaderGetter, body: bytes) -> str:
    """The body's SHA-256, which a declared x-amz-content-sha256 must match (an unsigned payload is refused)."""
    payload_hash = hashlib.sha256(body).hexdigest()
    declared = get("x-amz-content-sha256", _EMPTY)
    if declared:
        if declared[0] == UNSIGNED_PAYLOAD:
            raise _invalid("UNSIGNED-PAYLOAD is not supported; the payload must be signed.")
        if declared[0] != payload_hash:
            raise _invalid("The provided 'x-amz-content-sha256' header does not match what was computed.")
    return payload_hash


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_SHA256_BLOCK = 64


class _ScopeSlot:
    """What a credential scope (access key, date, region) fixes for every request signed under it: the principal it
    was made for, its signing key (as HMAC-SHA256's two keyed states, ready to copy), and the scope line of the string
    to sign. Valid while the directory still gives that same principal for the access key (a changed or removed
    credential makes it stale)."""

    __slots__ = ("caller", "inner", "outer", "principal", "scope_line")

    def __init__(self, principal: Principal, key: bytes, date: str, region: str) -> None:
        self.principal = principal
        # HMAC (RFC 2104) with the key's two padded blocks hashed once: a request's signature then costs two copies of
        # a SHA-256 state, less than half of OpenSSL 3's one-shot HMAC (a MAC fetch per call). The key is 32 bytes.
        block = key.ljust(_SHA256_BLOCK, b"\0")
        self.inner = hashlib.sha256(block.translate(_IPAD))
        self.outer = hashlib.sha256(block.translate(_OPAD))
        self.scope_line = f"{date}/{region}/{SERVICE}/{TERMINATOR}\n"
        # What a verified request under this scope names (none is made per request). The directory gives a principal
        # by its own access key: the scope's, for every request this slot serves.
        self.caller = VerifiedCaller(principal, region, principal.access_key)

    def signature(self, string_to_sign: bytes) -> str:
        """HMAC-SHA256(signing key, string to sign), in hex."""
        inner = self.inner.copy()
        inner.update(string_to_sign)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()


class SigV4Verifier:
    """Verifies SigV4-signed KMS requests against a principal directory. Thread-safe."""

    def __init__(
        self,
        principals: PrincipalDirectory,
        clock: Clock,
        max_skew_seconds: float = 300.0,
        cache_size: int = 1024,
    ) -> None:
        if max_skew_seconds < 0:
            raise ValueError("max_skew_seconds must be >= 0")
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._principals = principals
        self._clock = clock
        self._max_skew = max_skew_seconds
        self._skew_label = f"{max_skew_seconds / 60:g} min."
        self._cache_size = cache_size
        # The one owner of what is cached per credential scope: (access_key, date, region) -> its slot. A slot is used
        # only while the directory gives the very principal it was made for: a rotated secret or a removed access key
        # never reuses a stale signing key.
        self._keys: dict[tuple[str, str, str], _ScopeSlot] = {}
        # SignedHeaders as sent -> its names: clients sign the same few headers on every request.
        self._names: dict[str, list[str]] = {}
        # An Authorization header up to its signature (the algorithm, Credential and SignedHeaders: the same for every
        # request a client signs under one scope) -> what parsing it found. Only the signature is parsed per request.
        self._heads: dict[str, tuple[CredentialScope, str]] = {}
        self._lock = threading.Lock()  # serialises inserts and evictions; reads need none
        # (SignedHeaders, the signed headers' values as sent) -> the canonical headers: a pure function of the text,
        # so nothing to invalidate; bounded like the others.
        self._blocks: dict[tuple[str, ...], str] = {}
        # (SignedHeaders as sent, the names of the headers sent, in order) found to sign every x-amz-* header: a
        # client sends the same headers, in the same order, on every request. A pure function of the names.
        self._all_signed: set[tuple[str, tuple[str, ...]]] = set()
        # The last X-Amz-Date parsed: every request within one second carries the same one.
        self._last_date: tuple[str, float | None] = ("", None)

    def scope_only(self, headers: Mapping[str, str]) -> CredentialScope:
        """For --auth=off: the credential scope (for routing), without checking the signature."""
        return scope_of(headers)

    def verify(
        self,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        expected_region: str | None = None,
    ) -> VerifiedCaller:
        """Check the request's SigV4 signature; raise KmsError (AWS code/status/message) on failure.

        ``path`` is the raw percent-encoded path, ``query`` the raw query string without '?'.
        ``headers`` may be a case-insensitive multidict (aiohttp) or a plain dict of any key case.
        The steps run in the order AWS checks in, which decides the error a request with several faults gets.
        """
        get = _header_lookup(headers)
        scope, signed_headers, signature = self._parse_authorization(_authorization(get))
        names = self._names.get(signed_headers)
        if names is None or scope.service != SERVICE:
            names = _signed_names(scope, signed_headers)
            if self._cache_size:
                if len(self._names) >= self._cache_size:
                    self._names.clear()  # odd clients' lists: start over rather than grow
                self._names[signed_headers] = names
        request_time, amz_date = self._request_time(get, names)
        self._check_amz_headers_signed(headers, signed_headers, names)
        canonical_headers = self._canonical_headers(get, signed_headers, names)
        principal = self._caller(scope, get, names, expected_region)
        self._check_time(scope, amz_date, request_time)
        payload_hash = _payload_hash(get, body)
        canonical_request = "\n".join(
            (method.upper(), "/" if path == "/" else _canonical_uri(path), _canonical_query(query) if query else "",
             canonical_headers, signed_headers, payload_hash)  # every KMS call is POST / without a query
        )
        return self._check_signature(principal, scope, amz_date, canonical_request, signature)

    def _check_amz_headers_signed(self, headers: Mapping[str, str], signed_headers: str, names: list[str]) -> None:
        """``_check_amz_headers_signed``, once per set of header names sent and SignedHeaders list."""
        cache_key = (signed_headers, tuple(headers))
        if cache_key in self._all_signed:
            return
        _check_amz_headers_signed(headers, names)  # raises for an unsigned one: only passing sets are kept
        if self._cache_size:
            if len(self._all_signed) >= self._cache_size:
                self._all_signed.clear()
            self._all_signed.add(cache_key)

    def _canonical_headers(self, get: HeaderGetter, signed_headers: str, names: list[str]) -> str:
        """``_canonical_headers``'s answer, made once per SignedHeaders list and values as sent (a client sends the
        same Host, Content-Type and X-Amz-Target on every request, a new X-Amz-Date once a second)."""
        sent: list[str] = [signed_headers]
        for name in names:
            values = get(name, _EMPTY)
            if len(values) != 1:  # absent (refused there) or repeated: the general way
                return _canonical_headers(get, names)
            sent.append(values[0])
        cache_key = tuple(sent)
        known = self._blocks.get(cache_key)
        if known is None:
            known = _canonical_headers(get, names)
            if self._cache_size:
                if len(self._blocks) >= self._cache_size:
                    self._blocks.clear()  # ever new values (a client's own header, say): start over rather than grow
                self._blocks[cache_key] = known
        return known

    def _parse_authorization(self, authorization: str) -> tuple[CredentialScope, str, str]:
        """``_parse_authorization``'s answer, the part before the signature parsed once per distinct head."""
        head, _, signature = authorization.rpartition(_SIGNATURE_KEY)
        known = self._heads.get(head)
        # 64 lowercase hex digits (deleting them leaves nothing), as _SIGNATURE_RE has it, without the regex engine:
        # bytes.translate's table lookup per character costs a third of str.strip's search of the digit string.
        if (known is not None and len(signature) == 64 and signature.isascii()
                and not signature.encode("ascii").translate(None, _HEX_DIGITS)):
            # The whole header is what the full pattern matched before with another signature: the same answer.
            return known[0], known[1], signature
        scope, signed_headers, signature = _parse_authorization(authorization)
        if self._cache_size and _AUTH_RE.fullmatch(authorization) is not None:
            if len(self._heads) >= self._cache_size:
                self._heads.clear()  # a client sending ever new credentials: start over rather than grow
            self._heads[head] = (scope, signed_headers)
        return scope, signed_headers, signature

    def _request_time(self, get: HeaderGetter, names: list[str]) -> tuple[float, str]:
        """(epoch seconds, X-Amz-Date form) of the request: X-Amz-Date, else the Date header; whichever is used must
        be signed."""
        amz_values = get("x-amz-date", _EMPTY)
        if amz_values:
            amz_date = amz_values[0].strip()
            if "x-amz-date" not in names:
                raise _invalid(_must_sign("X-Amz-Date"))
            last = self._last_date  # every request within one second carries the same one
            if last[0] == amz_date:
                request_time = last[1]
            else:
                request_time = _parse_amz_date(amz_date)
                self._last_date = (amz_date, request_time)
            if request_time is None:
                raise _incomplete("X-Amz-Date must be in ISO-8601 basic format (yyyyMMddTHHmmssZ).")
            return request_time, amz_date
        date_values = get("date", _EMPTY)
        if not date_values:
            raise _incomplete("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
        if "date" not in names:
            raise _invalid(_must_sign("Date"))
        http_date = _parse_http_date(date_values[0])
        if http_date is None:
            raise _incomplete("Date header must be an RFC 1123 date.")
        return http_date.timestamp(), http_date.strftime(_AMZ_DATE_FORMAT)

    def _caller(self, scope: CredentialScope, get: HeaderGetter, names: list[str],
                expected_region: str | None) -> Principal:
        """The principal the credential names, scoped to this region, with its session token if it has one."""
        if expected_region is not None and scope.region != expected_region:
            raise _invalid(f"Credential should be scoped to a valid region, not '{scope.region}'.")
        principal = self._principals.lookup(scope.access_key)
        if principal is None:
            raise _unrecognized()
        self._check_session_token(principal, get("x-amz-security-token", _EMPTY), names)
        return principal

    def _check_time(self, scope: CredentialScope, amz_date: str, request_time: float) -> None:
        """The scope's date is the request's, and the request time is within the allowed skew of now."""
        date = amz_date[:8]
        if scope.date != date:
            raise _invalid(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{scope.date}' != '{date}', from '{amz_date}'."
            )
        now = self._clock.now()
        if now - request_time > self._max_skew:
            raise _invalid(
                f"Signature expired: {amz_date} is now earlier than {_format_amz(now - self._max_skew)} "
                f"({_format_amz(now)} - {self._skew_label})"
            )
        if request_time - now > self._max_skew:
            raise _invalid(
                f"Signature not yet current: {amz_date} is still later than "
                f"{_format_amz(now + self._max_skew)} ({_format_amz(now)} + {self._skew_label})"
            )

    def _check_signature(self, principal: Principal, scope: CredentialScope, amz_date: str, canonical_request: str,
                         signature: str) -> VerifiedCaller:
        """The caller, once the signature is the one its scope's signing key makes."""
        slot = self._slot(principal, amz_date[:8], scope.region)
        # _encode written out (a call fewer each): the bytes the client signed, surrogate-escaped header bytes back.
        digest = hashlib.sha256(canonical_request.encode("utf-8", "surrogateescape")).hexdigest()
        string_to_sign = f"{_PREFIX_LINE}{amz_date}\n{slot.scope_line}{digest}"
        expected = slot.signature(string_to_sign.encode("utf-8", "surrogateescape"))
        if not hmac.compare_digest(expected, signature):
            raise _invalid(_MSG_MISMATCH)
        return slot.caller

    @staticmethod
    def _check_session_token(principal: Principal, sent: Sequence[str], names: list[str]) -> None:
        if principal.session_token is None:
            if sent:
                raise _unrecognized()
            return
        if (
            len(sent) != 1
            or "x-amz-security-token" not in names
            or not hmac.compare_digest(_encode(sent[0]), _encode(principal.session_token))
        ):
            raise _unrecognized()

    def _slot(self, principal: Principal, date: str, region: str) -> _ScopeSlot:
        cache_key = (principal.access_key, date, region)
        # A plain dict read is atomic: the hot path takes no lock. Eviction is oldest-inserted first (a scope is
        # made at most once a day per access key and region, so true LRU order buys nothing).
        slot = self._keys.get(cache_key)
        if slot is not None and slot.principal is principal:
            return slot
        # Derive outside the lock: four HMACs need not serialise other requests.
        slot = _ScopeSlot(principal, _derive_signing_key(principal.secret_key, date, region, SERVICE), date, region)
        if self._cache_size:
            with self._lock:
                self._keys[cache_key] = slot
                while len(self._keys) > self._cache_size:
                    del self._keys[next(iter(self._keys))]
        return slot

    def forget(self, access_key: str) -> None:
        """Drop what is cached for ``access_key`` (its credential changed or was removed). Not needed for
        correctness (a slot is used only for the principal it was made for), but frees the stale signing keys."""
        with self._lock:
            for cache_key in [k for k in self._keys if k[0] == access_key]:
                del self._keys[cache_key]
