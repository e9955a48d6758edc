"""AWS JSON 1.1: request bodies in, responses out, and the one place a KmsError becomes {"__type", "message"}."""

from __future__ import annotations

import binascii
import zlib
from typing import Any

import orjson

from trent.node.model.errors import KmsError, serialization

CONTENT_TYPE = "application/x-amz-json-1.1"
TARGET_PREFIX = "TrentService."
MAX_BODY_BYTES = 1024 * 1024


def too_large() -> KmsError:
    return KmsError("ValidationException", f"Request body exceeds {MAX_BODY_BYTES} bytes.", 413)


def undecodable_body() -> KmsError:
    # The body's Content-Encoding (gzip, deflate) does not undo, or is one this server cannot undo (decode_content).
    return serialization("The request body could not be decoded with its Content-Encoding.")


# Content codings undone here (as zlib window bits: gzip's header and trailer; zlib's, else raw deflate), and those
# that compress in a way this server cannot undo. A Content-Encoding of anything else is taken as none, as aiohttp
# takes it (KMS has no request compression of its own: no SDK compresses its requests).
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_UNDECODABLE = frozenset({"br", "zstd"})


def decode_content(encoding: str, body: bytes) -> bytes:
    """``body`` with its Content-Encoding undone, never inflated past MAX_BODY_BYTES: a small bomb is refused for its
    size, as a large body is."""
    coding = encoding.strip().lower()
    if coding == "gzip":
        wbits = _GZIP_WBITS
    elif coding == "deflate":
        # RFC 9110 says zlib-wrapped; some clients send raw deflate, which aiohttp also takes.
        wrapped = len(body) >= 2 and body[0] & 0x0F == 8 and (body[0] << 8 | body[1]) % 31 == 0
        wbits = zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS
    elif coding in _UNDECODABLE:
        raise undecodable_body()
    else:
        return body
    inflater = zlib.decompressobj(wbits)
    try:
        plain = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error:
        raise undecodable_body() from None
    if len(plain) > MAX_BODY_BYTES:
        raise too_large()
    if not inflater.eof or inflater.unused_data:
        raise undecodable_body()  # cut short, or bytes after its end
    return plain


def malformed_request() -> KmsError:
    # Not HTTP/1.1 as RFC 9112 has it: the request line, a header, the Content-Length or the chunked framing.
    return KmsError("ValidationException", "The request is not well-formed HTTP.")


def parse_target(target: str | None) -> str:
    if not target or not target.startswith(TARGET_PREFIX):
        raise KmsError("UnknownOperationException")
    return target[len(TARGET_PREFIX):]


def parse_body(body: bytes) -> Any:
    if not body or body.isspace():  # nothing but whitespace (without stripping a copy of the body)
        return {}
    try:
        return orjson.loads(body)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8 and bad JSON; RecursionError a body of ten thousand nested brackets.
        raise serialization("Start of structure or map found where not expected.") from exc


def _b64(value: bytes) -> str:
    return binascii.b2a_base64(value, newline=False).decode("ascii")


def _jsonable(value: Any) -> Any:
    if type(value) is str:  # most values: no further checks for them
        return value
    if isinstance(value, bytes):
        return _b64(value)
    if isinstance(value, dict):
        # Strings and blobs, most members of most answers, are handled in place rather than by a call each.
        return {k: v if type(v) is str else _b64(v) if type(v) is bytes else _jsonable(v)
                for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def encode_response(payload: dict[str, Any]) -> bytes:
    # Absent optional members are omitted, never sent as null. An answer is a dict: its members taken at once.
    # A blob's base64 written out (a call fewer for the ciphertext or plaintext most answers carry).
    return orjson.dumps({k: v if type(v) is str else binascii.b2a_base64(v, newline=False).decode("ascii")
                         if type(v) is bytes else _jsonable(v) for k, v in payload.items() if v is not None})


def valid_text(text: str) -> str:
    """``text`` as valid Unicode, for JSON. aiohttp keeps header bytes that are not UTF-8 as lone surrogates
    (surrogateescape), which orjson refuses: each such byte becomes U+FFFD, as a UTF-8 decoder would show it."""
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that stands for no byte
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def encode_error(error: KmsError) -> bytes:
    doc: dict[str, str] = {"__type": error.code}
    if error.message is not None:
        doc["message"] = error.message
    try:
        return orjson.dumps(doc)
    except TypeError:
        # The message quotes a header that was not UTF-8 (a credential scope's region, a date).
        return orjson.dumps({k: valid_text(v) for k, v in doc.items()})
