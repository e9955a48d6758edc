"""Hostile KMS requests as hypothesis strategies, built from botocore's KMS service model (tests/e2e/test_fuzz.py).

Three layers, each mostly well-formed so the next one is reached: a JSON document per operation (valid values mixed
with violations of every kind: wrong JSON types, lengths and ranges, huge lists, hostile unicode, nulls, nested junk,
unknown members), then the body's bytes (truncated, bad UTF-8, deeply nested, empty, not an object, oversize), then
the HTTP request around it (Content-Type, X-Amz-Target, Content-Encoding, duplicate headers, methods and paths, and
how it is signed). The test signs and sends what these describe.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import gzip
import json
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.model import ListShape, MapShape, ServiceModel, Shape, StructureShape
from hypothesis import strategies as st

from trent.node.wire.java_regex import translate_java_regex
from trent.node.wire.protocol import CONTENT_TYPE, MAX_BODY_BYTES, TARGET_PREFIX

Strategy = st.SearchStrategy[Any]

# How the request is authenticated. SIGNED is a valid SigV4 signature (for ``sign_region``) over exactly what is
# sent; every other mode must be refused before the operation runs.
SIGNED = "signed"
AUTH_MODES = (SIGNED, SIGNED, SIGNED, SIGNED, "unsigned", "wrong-secret", "unknown-access-key", "tampered-body",
              "garbage-authorization", "empty-authorization")
GARBAGE_AUTHORIZATION = (
    "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=test", "Bearer abc", "AWS test:c2lnbmF0dXJl",
    "AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=00",
    "AWS4-HMAC-SHA256 Credential=test/2020/us-east-1/kms/aws4_request, SignedHeaders=;;, Signature=" + "0" * 64,
    "AWS4-HMAC-SHA256 Credential=test/20200101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=" + "a" * 64,
    "AWS4-HMAC-SHA256 Credential=/20200101//kms/aws4_request, SignedHeaders=host, Signature=" + "a" * 64,
    "AWS4-HMAC-SHA256 Credential=tést/20200101/ü/kms/aws4_request, SignedHeaders=host, Signature=" + "a" * 64,
    "AWS4-HMAC-SHA256 " + "Credential=x," * 400,
)

# Strings that break naive handling: NUL, right-to-left override, BOM, lone surrogates, astral plane, combining.
NASTY_STRINGS = ("\x00", "\u202e", "\ufeff", "\ud800", "\udfff", "𝕂𝕄𝕊", "e\u0301" * 3, "\u0000alias/x",
                 "alias/\u202eyek", "arn:aws:kms:us-east-1:111122223333:key/\x00", "\r\n", "%00", "../../",
                 "alias/aws/", "alias/", "arn:", "mrk-", "null", "' OR 1=1 --", "{}", "\\", "\t")
NASTY_NUMBERS = (2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 10**30, -(10**30), 1.5, -0.0, 1e308, -1e308,
                 float("nan"), float("inf"), float("-inf"), 5e-324)
ODD_KEYS = ("", "__type", "__proto__", "constructor", "keyId", "KEYID", "KeyId ", "\x00", "\u202e", "a" * 300)


# Strategies are values: the shared ones are built once (building them, not drawing from them, was most of the cost).
@functools.cache
def hostile_text(max_size: int = 40) -> Strategy:
    """Unicode anywhere, surrogates and control characters included."""
    chars = st.characters(codec=None, exclude_categories=())
    return st.one_of(st.text(chars, max_size=max_size), st.sampled_from(NASTY_STRINGS))


@functools.cache
def scalars() -> Strategy:
    return st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from(NASTY_NUMBERS),
                     st.floats(allow_nan=True, allow_infinity=True), hostile_text())


@functools.cache
def junk() -> Strategy:
    """Any JSON value: nested lists and objects of hostile scalars."""
    return st.recursive(scalars(), lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.one_of(st.sampled_from(ODD_KEYS), hostile_text(12)), inner, max_size=4),
                        max_leaves=12)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encoded_size(value: Any) -> int:
    return len(encode_json(value))


def huge_list(item: Any, target_bytes: int) -> list[Any]:
    """``item`` repeated until the list's JSON is about ``target_bytes`` long (no generation cost per element)."""
    return [item] * max(1, target_bytes // (encoded_size(item) + 1))


def huge_map(value: Any, target_bytes: int) -> dict[str, Any]:
    count = max(1, target_bytes // (encoded_size(value) + 10))
    return {f"k{i}": value for i in range(count)}


# Sizes a huge container aims at: well inside the limit, just inside it, just over it.
HUGE_SIZES = (64 * 1024, 512 * 1024, MAX_BODY_BYTES - 4096, MAX_BODY_BYTES + 4096)


def encode_json(value: Any, ascii_only: bool = True) -> bytes:
    """JSON text as a careless client would write it: NaN and Infinity as bare tokens, lone surrogates escaped
    (``ascii_only``) or written as their (invalid) UTF-8 bytes."""
    if ascii_only:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


class ShapeStrategies:
    """Strategies for the values of botocore shapes: ``valid`` respects the model's constraints (where easy),
    ``hostile`` breaks them, ``value`` mixes the two. ``seeds`` names real values by member name (key ids,
    ciphertexts, alias names), so valid requests reach the operation and not only NotFoundException."""

    def __init__(self, model: ServiceModel, seeds: Mapping[str, Sequence[Any]] | None = None) -> None:
        self.model = model
        self.seeds = dict(seeds or {})
        self._cache: dict[tuple[str, str], Strategy] = {}

    def _cached(self, kind: str, shape: Shape, build: Callable[[], Strategy]) -> Strategy:
        key = (kind, shape.name)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = build()
        return found

    def value(self, shape: Shape, member: str | None = None) -> Strategy:
        """Mostly valid, sometimes a violation."""
        valid = self._seeded(self.valid(shape), member)
        return st.one_of(valid, valid, valid, self.hostile(shape))

    def document(self, shape: StructureShape) -> Strategy:
        """A request document: wholly valid (so the operation runs), valid but for some members, or broken."""
        return st.one_of(self.valid(shape), self.valid(shape), self.structure(shape, self.value), self.hostile(shape))

    def _seeded(self, strategy: Strategy, member: str | None) -> Strategy:
        seeded = self.seeds.get(member or "")
        return st.one_of(st.sampled_from(list(seeded)), strategy) if seeded else strategy

    # -- valid values --------------------------------------------------------------------------------------------

    def valid(self, shape: Shape) -> Strategy:
        return self._cached("valid", shape, lambda: self._valid(shape))

    def _valid(self, shape: Shape) -> Strategy:
        lo = shape.metadata.get("min", 0)
        hi = shape.metadata.get("max", 64)
        if isinstance(shape, StructureShape):
            return self.structure(shape, lambda m, name: self._seeded(self.valid(m), name))
        if isinstance(shape, ListShape):
            return st.lists(self.valid(shape.member), min_size=lo, max_size=max(lo, min(hi, 4)))
        if isinstance(shape, MapShape):
            return st.dictionaries(self.valid(shape.key), self.valid(shape.value), max_size=min(hi, 4))
        kind = shape.type_name
        if kind == "string":
            if shape.enum:
                return st.sampled_from(list(shape.enum))
            pattern = shape.metadata.get("pattern")
            compiled = translate_java_regex(pattern) if pattern else None
            if compiled is not None:
                # Cut to the maximum: usually still a match, and a near-miss is as useful here.
                return st.from_regex(compiled, fullmatch=True).map(lambda s: s[:hi])
            return st.text(min_size=lo, max_size=max(lo, min(hi, 64)))
        if kind == "blob":
            return st.binary(min_size=lo, max_size=max(lo, min(hi, 64))).map(b64)
        if kind in ("integer", "long"):
            return st.integers(shape.metadata.get("min", 0), shape.metadata.get("max", 2**31 - 1))
        if kind == "boolean":
            return st.booleans()
        if kind == "timestamp":
            return st.integers(0, 4_000_000_000)
        return junk()

    @staticmethod
    def structure(shape: StructureShape, member_value: Callable[[Shape, str], Strategy]) -> Strategy:
        required = set(shape.required_members)
        return st.fixed_dictionaries(
            {name: member_value(m, name) for name, m in shape.members.items() if name in required},
            optional={name: member_value(m, name) for name, m in shape.members.items() if name not in required},
        )

    # -- violations ----------------------------------------------------------------------------------------------

    def hostile(self, shape: Shape) -> Strategy:
        return self._cached("hostile", shape, lambda: st.one_of(self._hostile(shape), junk()))

    def _hostile(self, shape: Shape) -> Strategy:
        lo = shape.metadata.get("min", 0)
        hi = shape.metadata.get("max")
        if isinstance(shape, StructureShape):
            return self._hostile_structure(shape)
        if isinstance(shape, ListShape):
            element = self.value(shape.member)
            choices: list[Strategy] = [st.lists(st.one_of(element, st.none(), junk()), max_size=6),
                       st.builds(huge_list, element, st.sampled_from(HUGE_SIZES))]
            if hi is not None:
                choices.append(st.builds(lambda e, n: [e] * n, element, st.integers(hi + 1, hi + 3)))
            if lo:
                choices.append(st.just([]))
            return st.one_of(choices)
        if isinstance(shape, MapShape):
            return st.one_of(st.dictionaries(hostile_text(), st.one_of(self.value(shape.value), junk()), max_size=6),
                             st.builds(huge_map, self.value(shape.value), st.sampled_from(HUGE_SIZES)))
        kind = shape.type_name
        if kind == "string":
            return self._hostile_string(lo, hi)
        if kind == "blob":
            too_long = [st.integers(hi + 1, hi + 64).map(lambda n: b64(b"\x01" * n))] if hi else []
            return st.one_of(st.sampled_from(["", "!", "Zm9v==", "Zm9", "Zm9v\n", "ÿÿÿÿ", "====", "Zm 9v",
                                              "data:;base64,Zm9v", "Zm9v" * 2 + "="]),
                             st.sampled_from(HUGE_SIZES).map(lambda n: "QUFB" * (n // 4)), *too_long)
        if kind in ("integer", "long"):
            edges = [-1, *([lo - 1] if "min" in shape.metadata else []), *([hi + 1] if hi is not None else [])]
            return st.one_of(st.sampled_from(NASTY_NUMBERS), st.sampled_from(edges),
                             st.sampled_from(["1", "0x10", "", "1e3"]), st.booleans())
        if kind == "boolean":
            return st.sampled_from(["true", "false", 0, 1, "", [], {}])
        if kind == "timestamp":
            return st.sampled_from([*NASTY_NUMBERS, "2020-01-01T00:00:00Z", "", -1, 2**70, "now"])
        return junk()

    def _hostile_string(self, lo: int, hi: int | None) -> Strategy:
        choices = [hostile_text(), st.sampled_from(HUGE_SIZES).map(lambda n: "A" * n)]
        if hi is not None:
            choices.append(st.integers(hi + 1, hi + 16).map(lambda n: "x" * n))
        if lo:
            choices.append(st.just("x" * (lo - 1)))
        return st.one_of(choices)

    def _hostile_structure(self, shape: StructureShape) -> Strategy:
        """A document of the structure with something wrong: a required member gone or null, members of the
        wrong type, unknown members, or plain junk."""
        members = list(shape.members)

        def broken(base: dict[str, Any], drop: list[str], extra: dict[str, Any]) -> dict[str, Any]:
            return {**{k: v for k, v in base.items() if k not in drop}, **extra}

        wrong_members = st.dictionaries(st.sampled_from(members), junk(), max_size=3) if members else st.just({})
        unknown = st.dictionaries(st.one_of(st.sampled_from(ODD_KEYS), hostile_text(16)), junk(), max_size=3)
        nulls = st.lists(st.sampled_from(members), max_size=3).map(lambda ms: dict.fromkeys(ms)) \
            if members else st.just({})
        drops = st.lists(st.sampled_from(members or [""]), max_size=2)
        return st.builds(broken, self.structure(shape, self.value), drops, st.one_of(wrong_members, unknown, nulls))


# -- the body's bytes -------------------------------------------------------------------------------------------


def _truncated(body: bytes, at: int) -> bytes:
    return body[: at % max(len(body), 1)]


def _inserted(body: bytes, at: int, piece: bytes) -> bytes:
    at %= len(body) + 1
    return body[:at] + piece + body[at:]


def _duplicate_member(body: bytes, document: Any, value: Any) -> bytes:
    if not isinstance(document, dict) or not document or not body.endswith(b"}"):
        return body
    name = next(iter(document))
    return body[:-1] + b"," + encode_json(name) + b":" + encode_json(value) + b"}"


def _oversize(body: bytes) -> bytes:
    return body + b" " * max(0, MAX_BODY_BYTES + 1 - len(body))


DEPTHS = (100, 1_000, 50_000, 400_000)
NOT_OBJECTS = (b"[]", b'"x"', b"0", b"null", b"true", b"-", b"1e999", b"[{}]", b"{", b"}", b'{"a"}', b"{,}",
               b"\x00", b"NaN", b'{"KeyId":}', b"{'KeyId': 'x'}")
BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xc0\xaf", b"\x00")


# Kinds of body, "document" (the document as it is) weighted up so most requests are well-formed JSON.
BODY_KINDS = ("document",) * 6 + ("utf8-document", "truncated", "bad-utf8", "empty-or-bom", "not-an-object",
                                  "trailing", "deep-array", "deep-object", "deep-member", "duplicate-member", "utf16",
                                  "oversize")


@st.composite
def body_mutations(draw: st.DrawFn, document: Any) -> tuple[str, bytes]:
    """(kind, body) for one document: mostly the document itself, else its bytes broken (only the one encoding a
    kind needs is made: documents may be a megabyte)."""
    kind = draw(st.sampled_from(BODY_KINDS))
    if kind == "utf8-document":
        return kind, encode_json(document, ascii_only=False)
    if kind == "utf16":
        return kind, json.dumps(document).encode("utf-16")
    if kind == "empty-or-bom":
        return kind, draw(st.sampled_from([b"", b" \n\t ", b"\xef\xbb\xbf" + encode_json(document)]))
    if kind == "not-an-object":
        return kind, draw(st.sampled_from(NOT_OBJECTS))
    if kind in ("deep-array", "deep-object", "deep-member"):
        n = draw(st.sampled_from(DEPTHS))
        return kind, {"deep-array": b"[" * n + b"]" * n, "deep-object": b'{"a":' * n + b"1" + b"}" * n,
                      "deep-member": b'{"KeyId":' + b"[" * n + b"]" * n + b"}"}[kind]
    plain = encode_json(document)
    if kind == "truncated":
        return kind, _truncated(plain, draw(st.integers(0, 2**20)))
    if kind == "bad-utf8":
        return kind, _inserted(plain, draw(st.integers(0, 2**20)), draw(st.sampled_from(BAD_UTF8)))
    if kind == "trailing":
        return kind, plain + draw(st.sampled_from([b"x", b"{}", b"\x00", b" ]", b"," + plain]))
    if kind == "duplicate-member":
        return kind, _duplicate_member(plain, document, draw(junk()))
    if kind == "oversize":
        return kind, _oversize(plain)
    return kind, plain


# -- the HTTP request -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class FuzzRequest:
    """One hostile request, before signing. ``headers`` are signed (when signing); ``extra_headers`` are added
    after signing, as sent (duplicates stay duplicates; bytes values go out as raw bytes)."""

    operation: str
    document: Any
    mutation: str  # how the body was made from the document
    body: bytes
    method: str
    path: str
    via: str  # "gateway" or "region"
    auth: str  # one of AUTH_MODES
    sign_region: str
    # Sent instead of the signature's Authorization header (garbage-authorization, empty-authorization).
    authorization: str | None
    headers: tuple[tuple[str, str], ...]
    extra_headers: tuple[tuple[str, str | bytes], ...]
    # Content-Encoding as sent, whether the body really is in that encoding, and its length before encoding.
    encoding: str | None = None
    encoded: bool = False
    plain_size: int = 0
    # Whether the signature's region is one the endpoint serves (any of the cluster's at the gateway, its own at a
    # region port).
    scope_ok: bool = True

    def __repr__(self) -> str:
        # Short: hypothesis prints a failing request, and a body may be a megabyte.
        return (f"<{self.method} {self.path} via {self.via}: {self.operation}, auth {self.auth} ({self.sign_region}), "
                f"body {self.mutation} {len(self.body)} bytes {self.body[:300]!r}, headers {self.headers}, "
                f"extra {self.extra_headers}, authorization {self.authorization!r}>")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # how hypothesis prints a failing example
        printer.text(repr(self))

    @property
    def may_succeed(self) -> bool:
        """Only a correctly signed request may be served; the rest must be refused."""
        return self.auth == SIGNED and self.scope_ok

    @property
    def decoded_as(self) -> str | None:
        """The Content-Encoding the server inflates the body with: the last one sent, if it is one it knows."""
        sent = [str(v) for n, v in (*self.headers, *self.extra_headers) if n.lower() == "content-encoding"]
        last = sent[-1].lower() if sent else ""
        return last if last in ("gzip", "deflate", "br", "zstd") else None

    @property
    def oversize(self) -> bool:
        """Over the body limit as the server reads it (inflated, when really compressed)."""
        inflated = self.encoded and self.decoded_as == self.encoding
        return (self.plain_size if inflated else len(self.body)) > MAX_BODY_BYTES

    @property
    def mislabelled(self) -> bool:
        """Declared in an encoding the server inflates, but not encoded so: refused as a body that does not decode."""
        return self.decoded_as is not None and not (self.encoded and self.decoded_as == self.encoding)

    @property
    def http_layer(self) -> bool:
        """Refused by aiohttp's HTTP parser before any handler runs: a header that may appear once sent twice. (Bodies
        reach the handler as sent: it refuses an encoding it cannot undo, Brotli or Zstandard, itself.)"""
        names = Counter(n.lower() for n, _ in (*self.headers, *self.extra_headers))
        names["host"] += 1  # the client's own
        return any(names[n] > 1 for n in SINGLETON_HEADERS)


# What aiohttp's parser accepts at most once (its SINGLETON_HEADERS, those a request may carry).
SINGLETON_HEADERS = ("content-length", "content-location", "content-range", "content-type", "host",
                     "max-forwards", "transfer-encoding", "user-agent")
ODD_CONTENT_TYPES = (None, "application/json", "text/plain", "application/x-amz-json-1.0", "",
                     "application/x-amz-json-1.1; charset=utf-16", "multipart/form-data; boundary=x", "*/*",
                     "application/x-www-form-urlencoded", "x" * 4000)
# Encodings and whether the body is really compressed with it: an unencoded body under gzip/deflate is the known
# case (a) of tests/e2e/test_fuzz.py.
ENCODINGS: tuple[tuple[str, bool], ...] = (("gzip", True), ("gzip", False), ("deflate", True), ("deflate", False),
                                           ("br", False), ("identity", False), ("junk", False), ("gzip, br", False),
                                           ("", False), ("x-gzip", True), ("compress", False))
ODD_EXTRA_HEADERS: tuple[tuple[str, str | bytes], ...] = (
    ("X-Amz-Target", TARGET_PREFIX + "ListKeys"), ("X-Amz-Target", "junk"), ("Content-Type", "text/plain"),
    ("Content-Type", CONTENT_TYPE), ("authorization", "junk"), ("X-Amz-Date", "yesterday"),
    ("X-Amz-Date", "19700101T000000Z"), ("X-Amz-Security-Token", "bm90IGEgdG9rZW4="), ("Expect", "100-continue"),
    ("X-Amz-Target", b"TrentService.\xff\xfe"), ("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"),
    ("X-Amz-Content-Sha256", "0" * 64), ("Content-Encoding", "gzip, junk"), ("X-Fuzz", "\u202e".encode()),
    ("User-Agent", b"fuzz/\xff\xfe"), ("User-Agent", "fuzz/\u202e"), ("Host", "127.0.0.1:1"),
    ("Transfer-Encoding-Ish", "chunked"), ("X-Big", "z" * 6000),
)
METHODS_AND_PATHS = (("POST", "/"),) * 12 + (("GET", "/"), ("PUT", "/"), ("DELETE", "/"), ("POST", "/?Action=x"),
                                             ("POST", "/kms"), ("POST", "//"), ("POST", "/%ZZ"), ("PATCH", "/x"))


def _encode_body(body: bytes, encoding: str, really: bool) -> bytes:
    if not really:
        return body
    return zlib.compress(body) if encoding == "deflate" else gzip.compress(body)


@functools.cache
def gzip_bomb(size: int = 64 * 1024 * 1024) -> bytes:
    """A small gzip body that inflates to ``size`` bytes of JSON whitespace: the limit must hold on what the body
    inflates to, without inflating all of it."""
    out = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: the gzip container
    chunk = b" " * (1024 * 1024)
    return b"".join([*(out.compress(chunk) for _ in range(size // len(chunk))), out.flush()])


def _targets(operation: str, operations: Sequence[str]) -> Strategy:
    right = TARGET_PREFIX + operation
    odd = [None, "", TARGET_PREFIX, TARGET_PREFIX + operation.lower(), "AWSKMS." + operation, operation,
           right + " ", right + "\u202e", TARGET_PREFIX + "_trent/status", TARGET_PREFIX + "NoSuchOperation"]
    return st.one_of(*[st.just(right)] * 8, st.sampled_from(odd),
                     st.sampled_from(list(operations)).map(lambda o: TARGET_PREFIX + o))


@st.composite
def fuzz_requests(draw: st.DrawFn, shapes: ShapeStrategies, operation: str, regions: Sequence[str]) -> FuzzRequest:
    """One hostile request for ``operation``, sent to the gateway or a region port."""
    model = shapes.model
    input_shape = model.operation_model(operation).input_shape
    document = draw(shapes.document(input_shape) if input_shape is not None else junk())
    mutation, body = draw(body_mutations(document))
    headers: list[tuple[str, str]] = []
    target = draw(_targets(operation, model.operation_names))
    if target is not None:
        headers.append(("X-Amz-Target", target))
    content_type = draw(st.one_of(*[st.just(CONTENT_TYPE)] * 6, st.sampled_from(ODD_CONTENT_TYPES)))
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    encoding: tuple[str, bool] | None = draw(st.one_of(*[st.none()] * 6, st.sampled_from(ENCODINGS)))
    plain_size = len(body)
    if encoding is not None:
        headers.append(("Content-Encoding", encoding[0]))
        body = _encode_body(body, *encoding)
        if encoding == ("gzip", True) and draw(st.integers(0, 9)) == 0:
            bomb = gzip_bomb()
            mutation, body, plain_size = "gzip-bomb", bomb, 64 * 1024 * 1024
    extra: Sequence[tuple[str, str | bytes]] = draw(
        st.one_of(*[st.just(())] * 4, st.lists(st.sampled_from(ODD_EXTRA_HEADERS), max_size=3)))
    method, path = draw(st.sampled_from(METHODS_AND_PATHS))
    via = draw(st.sampled_from(["gateway", "region"]))
    auth = draw(st.sampled_from(AUTH_MODES))
    # Mostly the first region; sometimes another (the gateway routes there; a region port refuses it), sometimes
    # one the cluster does not have.
    sign_region = draw(st.one_of(*[st.just(regions[0])] * 4, st.sampled_from([*regions, "xx-fake-1"])))
    authorization = {"garbage-authorization": draw(st.sampled_from(GARBAGE_AUTHORIZATION)),
                     "empty-authorization": draw(st.sampled_from(["", " "]))}.get(auth)
    return FuzzRequest(operation, document, mutation, body, method, path, via, auth, sign_region, authorization,
                       tuple(headers), tuple(extra), encoding[0] if encoding else None, bool(encoding and encoding[1]),
                       plain_size, sign_region in regions and (via == "gateway" or sign_region == regions[0]))


def plain_request(operation: str, document: Any, region: str, **changes: Any) -> FuzzRequest:
    """A well-formed, correctly signed request for ``operation`` through the gateway, then ``changes``."""
    request = FuzzRequest(operation, document, "document", encode_json(document), "POST", "/", "gateway", SIGNED,
                          region, None, (("X-Amz-Target", TARGET_PREFIX + operation), ("Content-Type", CONTENT_TYPE)),
                          ())
    request = dataclasses.replace(request, **changes)
    return dataclasses.replace(request, plain_size=len(request.body))
