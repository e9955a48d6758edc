"""KMS calls read straight from a connection's bytes, when they are in the plainest form there is.

Nearly every KMS call is ``POST / HTTP/1.1``, a few printable headers, a Content-Length and a small JSON body. For
those, building aiohttp's request, payload stream, writer and response objects costs about as much as the KMS work
itself. ``read_simple`` reads such a request from the bytes as they came (whole, or its head and body in reads of
their own, as urllib3 sends them); anything else (chunked or compressed bodies, ``Expect``, ``Upgrade``,
``Connection`` other than keep-alive, HTTP/1.0, any byte outside printable ASCII in the head, a head or body beyond
the limits) is left to aiohttp, so the fast path is a strict subset of what aiohttp parses, and where the two would
differ aiohttp decides.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Protocol

from multidict import CIMultiDict, CIMultiDictProxy

from trent.node.endpoint import WireResponse
from trent.node.wire.protocol import MAX_BODY_BYTES

REQUEST_LINE = b"POST / HTTP/1.1\r\n"
# aiohttp's own limits are 8,190 bytes a line and 128 headers: a head within these never meets them.
MAX_HEAD_BYTES = 8190
MAX_FIELDS = 100
# One header line, from the newline before it to the CR that ends it: a token, a colon, printable ASCII or tabs, and
# no whitespace at the end (parsers strip it: such a request is left to aiohttp's, rather than stripped here). Every
# line of a head has to match (they are counted), so no malformed line is skipped over. Possessive: no backtracking.
_FIELD = re.compile(r"\n([!#$%&'*+.^_`|~0-9A-Za-z-]++):[\t ]*+([\t\x20-\x7e]*+)(?<![\t ])\r(?=\n)")
# Headers that change how a request is framed or answered: their presence sends the request to aiohttp.
_FRAMING = ("transfer-encoding", "expect", "upgrade", "content-encoding")
# Headers aiohttp's parser refuses to see twice (its SINGLETON_HEADERS, but Content-Length and Transfer-Encoding,
# checked apart): a request repeating one is left to aiohttp, to be refused there.
_SINGLETONS = ("content-type", "host", "user-agent", "content-location", "content-range", "etag", "max-forwards",
               "server")


class KmsRequest(Protocol):
    """What a router and a gate may read of a KMS call's request: aiohttp's request has it, and so does the fast
    path's."""

    @property
    def headers(self) -> CIMultiDictProxy[str]: ...

    @property
    def transport(self) -> asyncio.Transport | None: ...


class FastRequest:
    """What the gate and the router see of a request on the fast path (the part of aiohttp's request they use)."""

    __slots__ = ("headers", "remote", "transport")

    def __init__(self, headers: CIMultiDictProxy[str], transport: asyncio.Transport | None, remote: str) -> None:
        self.headers = headers
        self.transport = transport
        self.remote = remote


# The fast path's handling of a request: its answer now, or an awaitable of it.
Respond = Callable[[FastRequest, bytes], WireResponse | Awaitable[WireResponse]]


# ``read_simple``'s answer for a request that may still turn out plain: its head is not all in yet.
MORE = -1


def read_simple(data: bytes, start: int) -> tuple[CIMultiDictProxy[str], int, int] | int | None:
    """The request at ``data[start:]`` if its head is in and it is plain: its headers, where its body begins and
    where it ends (which may be past the data: the body is still coming). MORE if the head is not all in and may
    yet be plain; None if it is aiohttp's (a form the fast path does not take)."""
    if not data.startswith(REQUEST_LINE, start):
        return MORE if len(data) - start < len(REQUEST_LINE) and REQUEST_LINE.startswith(data[start:]) else None
    head_end = data.find(b"\r\n\r\n", start, start + MAX_HEAD_BYTES)
    if head_end < 0:
        return MORE if len(data) - start < MAX_HEAD_BYTES else None
    # From the request line's own newline to the last header's: each line begins with the newline before it.
    block = data[start + len(REQUEST_LINE) - 1:head_end + 2].decode("latin-1")
    fields = _FIELD.findall(block)
    if len(fields) != block.count("\n") - 1 or len(fields) > MAX_FIELDS:
        return None
    headers = CIMultiDict(fields)
    lengths = headers.getall("content-length", ())
    if len(lengths) != 1:
        return None
    if not lengths[0].isdigit() or len(lengths[0]) > 7 or (length := int(lengths[0])) > MAX_BODY_BYTES:
        return None
    for name in _FRAMING:
        if name in headers:
            return None
    for name in _SINGLETONS:
        if len(headers.getall(name, ())) > 1:
            return None
    if "host" not in headers:
        return None  # HTTP/1.1 requires one: aiohttp refuses a request without it
    connection = headers.getall("connection", ())
    if connection and (len(connection) > 1 or connection[0].lower() != "keep-alive"):
        return None
    return CIMultiDictProxy(headers), head_end + 4, head_end + 4 + length
