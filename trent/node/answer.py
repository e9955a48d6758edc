"""A KMS call's answer written to its connection in one piece: the bytes aiohttp would send for a ``web.Response`` of
the same status, headers and body (its status line, the headers in order, Content-Length, Date, Server, and
Connection as the request's keep-alive asks), without building that response, its header multidict and its
preparation steps, a large share of what a small call costs the server.

aiohttp's request handler asks the object its handler returns for three things: ``prepare`` (which sends here),
``write_eof`` and, afterwards, ``keep_alive``. Only a POST's answer is sent so (no HEAD, no 1xx, 204 or 304 with their
empty-body rules), and only headers aiohttp would pass as they are."""

from __future__ import annotations

from http import HTTPStatus

from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE

from trent.node.endpoint import WireResponse
from trent.node.wire.protocol import CONTENT_TYPE

_REASONS = {status.value: f" {status.value} {status.phrase}\r\n" for status in HTTPStatus}
_TAIL = f"\r\nServer: {SERVER_SOFTWARE}\r\n"
_ENDPOINTS = frozenset(("x-amzn-RequestId", "Content-Type"))  # the headers of every answer of the KMS endpoint
# Statuses sent as they are: no 1xx, and not 204 or 304, whose bodies and Content-Length aiohttp treats apart.
_SENDABLE = frozenset(status for status in _REASONS if status >= 200 and status not in (204, 304))
# Headers aiohttp computes itself, or that change how the body is framed: an answer naming one is a web.Response.
_OWN = frozenset(("content-length", "date", "server", "connection", "transfer-encoding", "content-encoding"))


def can_send(response: WireResponse) -> bool:
    """Whether ``response`` may go as a KmsAnswer (else as a web.Response, node/edge.py's ``to_http``)."""
    headers = response.headers
    if headers.keys() == _ENDPOINTS and response.status in _SENDABLE and headers["Content-Type"] == CONTENT_TYPE:
        # The endpoint's own answer (nearly every one): only its request id, of the endpoint's making, to look at.
        request_id = headers["x-amzn-RequestId"]
        return "\r" not in request_id and "\n" not in request_id
    if response.status not in _SENDABLE:
        return False
    typed = False
    for name, value in response.headers.items():
        lower = name.lower()
        if lower in _OWN or _unsafe(name) or _unsafe(value):
            return False
        typed = typed or lower == "content-type"
    return typed or not response.body  # aiohttp would name a body without a type application/octet-stream


def _unsafe(text: str) -> bool:
    # Anything but printable text (a line break would inject a header: aiohttp refuses it) goes as a web.Response,
    # to be sent or refused as aiohttp does.
    return not text.isprintable()


def answer_bytes(response: WireResponse, major: int = 1, minor: int = 1, keep_alive: bool = True) -> bytes:
    """What aiohttp would send for ``response`` (one that ``can_send``) to a request of this HTTP version."""
    if keep_alive:
        connection = "Connection: keep-alive\r\n" if major == 1 and minor == 0 else ""
    else:
        connection = "Connection: close\r\n" if major == 1 and minor == 1 else ""
    headers = "".join([f"{name}: {value}\r\n" for name, value in response.headers.items()])
    body = response.body
    head = (f"HTTP/{major}.{minor}{_REASONS[response.status]}{headers}Content-Length: {len(body)}\r\n"
            f"Date: {rfc822_formatted_time()}{_TAIL}{connection}\r\n")
    return head.encode() + body


class KmsAnswer:
    __slots__ = ("_response", "keep_alive")
    __http_exception__ = False  # aiohttp looks for it on every answer (a deprecated way to return an HTTP error)

    def __init__(self, response: WireResponse) -> None:
        self._response = response
        self.keep_alive: bool | None = None  # decided by the request, as aiohttp does (read once it has been sent)

    async def prepare(self, request: web.BaseRequest) -> None:
        keep_alive = self.keep_alive = request.keep_alive
        major, minor = request.version
        await request.writer.write_eof(answer_bytes(self._response, major, minor, keep_alive))

    async def write_eof(self) -> None:
        """Sent whole by ``prepare``."""
