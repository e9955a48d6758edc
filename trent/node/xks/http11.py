"""A small HTTP/1.1 client for KMS's calls to XKS proxies: POST on kept-alive connections (TLS or plain), answers
read by Content-Length or chunked, bounded in size. It exists for cost: each XKS call is one of these on the hot
path of Encrypt and Decrypt, and a general client spends several times the CPU of the request itself."""

from __future__ import annotations

import asyncio
import ssl
from collections import defaultdict
from collections.abc import Callable

MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024
IDLE_PER_ORIGIN = 64


class ConnectFailed(Exception):
    """No connection: ``tls`` says whether TCP worked and TLS did not."""

    def __init__(self, tls: bool, detail: str) -> None:
        super().__init__(detail)
        self.tls = tls


class BadResponse(Exception):
    """An answer that is not HTTP/1.x as this client reads it (or one far too large)."""


class Dropped(Exception):
    """The connection ended before a whole answer arrived."""


Origin = tuple[str, str, int]  # scheme, host, port


class Http11:
    def __init__(self, ssl_context: Callable[[], ssl.SSLContext]) -> None:
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = defaultdict(list)

    async def _open(self, origin: Origin) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        scheme, host, port = origin
        try:
            if scheme == "https":
                return await asyncio.open_connection(host, port, ssl=self._ssl_context(), server_hostname=host,
                                                     limit=MAX_HEAD * 4)
            return await asyncio.open_connection(host, port, limit=MAX_HEAD * 4)
        except ssl.SSLError as exc:
            raise ConnectFailed(True, type(exc).__name__) from None
        except (OSError, ValueError) as exc:
            raise ConnectFailed(False, type(exc).__name__) from None

    async def post(self, origin: Origin, request: bytes) -> tuple[int, bytes]:
        """(status, body) of a request (its bytes, head and body) sent on a kept-alive connection when one is idle;
        a reused connection the server had closed meanwhile is replaced once (every XKS call may be repeated)."""
        idle = self._idle[origin]
        while idle:
            reader, writer = idle.pop()
            if writer.is_closing() or reader.at_eof():
                writer.close()
                continue
            try:
                return await self._exchange(origin, reader, writer, request)
            except Dropped:
                break  # closed by the server while idle: once more on a new connection
        reader, writer = await self._open(origin)
        return await self._exchange(origin, reader, writer, request)

    async def _exchange(self, origin: Origin, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        request: bytes) -> tuple[int, bytes]:
        keep = False
        try:
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                raise Dropped() from None
            except asyncio.LimitOverrunError:
                raise BadResponse("response head too large") from None
            except (ConnectionError, ssl.SSLError):
                raise Dropped() from None
            status, headers = _parse_head(head)
            body = await _read_body(reader, headers)
            keep = headers.get("connection", "").lower() != "close" and not head.startswith(b"HTTP/1.0")
            return status, body
        finally:
            if keep and len(self._idle[origin]) < IDLE_PER_ORIGIN:
                self._idle[origin].append((reader, writer))
            else:
                writer.close()

    async def close(self) -> None:
        for connections in self._idle.values():
            for _, writer in connections:
                writer.close()
        self._idle.clear()


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise BadResponse("not an HTTP/1.x status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise BadResponse("malformed header line")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
    try:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = await reader.readuntil(b"\r\n")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise BadResponse("malformed chunk size") from None
                total += size
                if total > MAX_BODY:
                    raise BadResponse("response body too large")
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > MAX_BODY:
                raise BadResponse("bad Content-Length")
            return await reader.readexactly(int(length))
        headers["connection"] = "close"  # the body ends with the connection
        body = await reader.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise BadResponse("response body too large")
        return body
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        raise Dropped() from None
    except asyncio.LimitOverrunError:
        raise BadResponse("chunk line too long") from None
