"""A small client of etcd's v3 API through its JSON gateway (``/v3/...``, served by every etcd on its client port).

Why this and not a library (PyPI, December 2026): ``etcd3`` (python-etcd3, gRPC, synchronous) has had no release
since 0.12.0 in 2020 (a company fork carries it on); ``etcd3-py`` (itself a JSON-gateway client) none since 0.1.6 in
2019; ``aetcd`` is maintained (1.0.0; asyncio over gRPC; txn, watch and leases). But the store Protocol
(node/store/base.py) is synchronous: a region decides and commits inside one handler call, as with SQLite, and an
operation that lost a race is decided again at once (node/consistency.py). An asyncio client cannot be awaited
there without making every operation a coroutine, and it would bring grpcio and protobuf. The JSON gateway is part
of etcd itself (3.4 and later, Debian's etcd-server included), needs nothing beyond the standard library, and has
every call used here: range, txn (compare on revisions), watch, lease grant/keep-alive/revoke, status. The watch
runs in a thread of its own.

Every call goes to the first endpoint that answers; an endpoint that refuses the connection is skipped (a dead
member). A request that was sent but got no answer may have been carried out: ``Ambiguous`` says so, and the caller
decides (a conditional commit checks whether it landed).
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

Json = dict[str, Any]


class EtcdError(Exception):
    """No endpoint answered the request (nothing was done), or etcd refused it."""


class Ambiguous(EtcdError):
    """The request was sent, but the connection broke before the answer: it may or may not have taken effect."""


@dataclass(frozen=True)
class EtcdSettings:
    """Where a region's etcd is and how to reach it (config keys ``etcd_*``)."""

    endpoints: tuple[str, ...] = ("http://127.0.0.1:2379",)
    prefix: str = "/trent"  # every key of the cluster lives under it (several clusters may share one etcd)
    ca_file: str | None = None  # TLS: the CA etcd's certificates are checked against
    cert_file: str | None = None  # TLS client certificate (etcd --client-cert-auth)
    key_file: str | None = None
    user: str | None = None  # etcd's own authentication (etcdctl user add)
    password: str | None = field(default=None, repr=False)
    timeout: float = 5.0  # one request, connecting included
    lease_ttl: int = 5  # seconds: how long a dead node keeps the background work before another takes it


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_end(prefix: bytes) -> bytes:
    """The range end covering every key that starts with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


class EtcdClient:
    """Blocking calls, safe from several threads (a connection per thread)."""

    def __init__(self, settings: EtcdSettings) -> None:
        if not settings.endpoints:
            raise ValueError("etcd_endpoints is empty")
        self.settings = settings
        self._endpoints = [urlsplit(e) for e in settings.endpoints]
        for url in self._endpoints:
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError(f"etcd endpoint {url.geturl()!r} is not an http(s) URL")
        self._tls = self._context() if any(u.scheme == "https" for u in self._endpoints) else None
        self._local = threading.local()
        self._preferred = 0  # the endpoint that answered last: tried first
        self._token: str | None = None
        self._token_lock = threading.Lock()

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.settings.ca_file)
        if self.settings.cert_file:
            context.load_cert_chain(self.settings.cert_file, self.settings.key_file)
        return context

    def connect(self, index: int, timeout: float | None = None) -> http.client.HTTPConnection:
        url = self._endpoints[index]
        port = url.port or (443 if url.scheme == "https" else 2379)
        wait = self.settings.timeout if timeout is None else timeout
        if url.scheme == "https":
            return http.client.HTTPSConnection(url.hostname or "", port, timeout=wait, context=self._tls)
        return http.client.HTTPConnection(url.hostname or "", port, timeout=wait)

    def order(self) -> list[int]:
        n = len(self._endpoints)
        return [(self._preferred + i) % n for i in range(n)]

    # -- requests ---------------------------------------------------------------------------------------------

    def call(self, path: str, body: Json, _again: bool = True) -> Json:
        """POST ``body`` to ``/v3/<path>`` on the first endpoint that takes it."""
        payload = json.dumps(body).encode()
        errors: list[str] = []
        for index in self.order():
            conns: dict[int, http.client.HTTPConnection] = self._local.__dict__.setdefault("conns", {})
            conn = conns.get(index)
            fresh = conn is None
            if conn is None:
                conn = conns[index] = self.connect(index)
            try:
                conn.request("POST", "/v3/" + path, payload, self._headers())
            except OSError as exc:  # not sent: safe to try elsewhere (or again on a new connection)
                conn.close()
                conns.pop(index, None)
                if not fresh:
                    conn = conns[index] = self.connect(index)
                    try:
                        conn.request("POST", "/v3/" + path, payload, self._headers())
                    except OSError as again:
                        conn.close()
                        conns.pop(index, None)
                        self._skip(index)
                        errors.append(f"{self.settings.endpoints[index]}: {again}")
                        continue
                else:
                    self._skip(index)
                    errors.append(f"{self.settings.endpoints[index]}: {exc}")
                    continue
            try:
                answer = conn.getresponse()
                raw = answer.read()
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                conns.pop(index, None)
                self._skip(index)
                raise Ambiguous(f"{self.settings.endpoints[index]}: no answer to {path}: {exc}") from exc
            doc: Json = json.loads(raw or b"{}")
            if answer.status == 401 and self.settings.user and _again and "token" in str(doc.get("error", "")).lower():
                self._token = None  # expired: authenticate again, once
                return self.call(path, body, _again=False)
            if answer.status != 200:
                if "timed out" in str(doc.get("error") or doc.get("message") or ""):
                    # etcd gave up waiting for the proposal, which may still commit.
                    self._skip(index)
                    raise Ambiguous(f"{self.settings.endpoints[index]}: {path}: {doc.get('error')}")
                if _unavailable(answer.status, doc):
                    self._skip(index)
                    errors.append(f"{self.settings.endpoints[index]}: {doc.get('error') or answer.status}")
                    continue
                raise EtcdError(f"etcd refused {path}: {doc.get('error') or doc.get('message') or answer.status}")
            self._preferred = index
            return doc
        raise EtcdError("no etcd endpoint answered: " + "; ".join(errors))

    def _skip(self, index: int) -> None:
        """The endpoint at ``index`` failed: the next call starts with the one after it (a member cut off from the
        others answers nothing useful until it rejoins)."""
        if self._preferred == index:
            self._preferred = (index + 1) % len(self._endpoints)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.settings.user:
            headers["Authorization"] = self._auth_token()
        return headers

    def _auth_token(self) -> str:
        with self._token_lock:
            if self._token is None:
                self._token = str(self._authenticate()["token"])
            return self._token

    def _authenticate(self) -> Json:
        body = json.dumps({"name": self.settings.user, "password": self.settings.password or ""}).encode()
        for index in self.order():
            conn = self.connect(index)
            try:
                conn.request("POST", "/v3/auth/authenticate", body, {"Content-Type": "application/json"})
                answer = conn.getresponse()
                doc: Json = json.loads(answer.read() or b"{}")
            except (OSError, http.client.HTTPException):
                continue
            finally:
                conn.close()
            if answer.status == 200:
                return doc
            raise EtcdError("etcd refused the configured user (check etcd_user / etcd_password)")
        raise EtcdError("no etcd endpoint answered the authentication")

    # -- the calls the store uses ----------------------------------------------------------------------------

    def range_prefix(self, prefix: bytes, revision: int = 0, limit: int = 5000) -> Iterator[tuple[int, Json]]:
        """(the revision read at, each key-value) of every key under ``prefix``, in pages, all at one revision."""
        start, end = prefix, prefix_end(prefix)
        while True:
            body: Json = {"key": b64(start), "range_end": b64(end), "limit": limit}
            if revision:
                body["revision"] = revision
            doc = self.call("kv/range", body)
            revision = int(doc["header"]["revision"])
            kvs = doc.get("kvs", [])
            for kv in kvs:
                yield revision, kv
            if not doc.get("more") or not kvs:
                if not kvs:
                    yield revision, {}
                return
            start = unb64(kvs[-1]["key"]) + b"\0"

    def get(self, key: bytes) -> tuple[int, Json | None]:
        """(the current revision, the key-value or None)."""
        doc = self.call("kv/range", {"key": b64(key)})
        kvs = doc.get("kvs") or [None]
        return int(doc["header"]["revision"]), kvs[0]

    def txn(self, compare: Sequence[Json], success: Sequence[Json], failure: Sequence[Json] = ()) -> Json:
        return self.call("kv/txn", {"compare": list(compare), "success": list(success), "failure": list(failure)})

    def lease_grant(self, ttl: int) -> int:
        return int(self.call("lease/grant", {"TTL": ttl})["ID"])

    def lease_keepalive(self, lease: int) -> int:
        """The lease's remaining TTL after the refresh; 0 or less when it is gone."""
        doc = self.call("lease/keepalive", {"ID": lease})
        return int(doc.get("result", {}).get("TTL", 0))

    def lease_revoke(self, lease: int) -> None:
        try:
            self.call("lease/revoke", {"ID": lease})
        except EtcdError as exc:
            if "not found" not in str(exc):
                raise

    def status_of(self, index: int) -> Json:
        """The maintenance status of one endpoint (its leader, raft term, db size, errors)."""
        conn = self.connect(index, timeout=1.0)
        try:
            conn.request("POST", "/v3/maintenance/status", b"{}", self._headers())
            answer = conn.getresponse()
            doc: Json = json.loads(answer.read() or b"{}")
        finally:
            conn.close()
        if answer.status != 200:
            raise EtcdError(str(doc.get("error") or answer.status))
        return doc

    def health(self) -> list[Json]:
        """Each endpoint: reachable or not, its member id, whether it sees a leader."""
        out: list[Json] = []
        for index, url in enumerate(self.settings.endpoints):
            try:
                doc = self.status_of(index)
                out.append({"endpoint": url, "healthy": doc.get("leader", "0") != "0",
                            "member": doc.get("header", {}).get("member_id"), "leader": doc.get("leader"),
                            "raft_term": doc.get("raftTerm"), "version": doc.get("version"),
                            "errors": doc.get("errors", [])})
            except (OSError, http.client.HTTPException, EtcdError, ValueError) as exc:
                out.append({"endpoint": url, "healthy": False, "error": str(exc) or type(exc).__name__})
        return out

    # -- watch ----------------------------------------------------------------------------------------------------

    def watch(self, prefix: bytes, start_revision: int, on_events: Callable[[int, list[Json]], None],
              stopping: threading.Event, idle: float = 30.0,
              opened: Callable[[http.client.HTTPConnection | None], None] = lambda _: None,
              connected: Callable[[], None] = lambda: None) -> Json:
        """Stream the changes under ``prefix`` from ``start_revision`` on, calling ``on_events(revision, events)``
        for each message, until ``stopping`` is set (returns {}), the stream ends or breaks (raises EtcdError), or
        etcd cancels the watch (returns its message: ``compact_revision`` when the start was compacted away)."""
        request = {"create_request": {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                      "start_revision": start_revision, "progress_notify": True}}
        errors: list[str] = []
        for index in self.order():
            conn = self.connect(index, timeout=idle)
            try:
                conn.connect()
                opened(conn)  # so that a stop can cut the stream short
                # hasleader: the member ends the stream when it loses its leader (cut off from the quorum), rather
                # than keep a silent, stale watch open (what etcd's own client asks with WithRequireLeader).
                conn.request("POST", "/v3/watch", json.dumps(request).encode(),
                             {**self._headers(), "Grpc-Metadata-hasleader": "true"})
                answer = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                opened(None)
                conn.close()
                self._skip(index)
                errors.append(f"{self.settings.endpoints[index]}: {exc}")
                if stopping.is_set():
                    return {}
                continue
            try:
                if answer.status != 200:
                    self._skip(index)
                    raise EtcdError(f"watch refused: {answer.status}")
                connected()
                return self._stream(answer, on_events, stopping)
            except TimeoutError:
                return {"idle": True}  # nothing for ``idle`` seconds: the caller watches again from where it is
            except EtcdError:
                self._skip(index)  # (the member lost its leader, say): the next watch is made elsewhere
                raise
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self._skip(index)
                raise EtcdError(f"watch on {self.settings.endpoints[index]} broke: {exc}") from exc
            finally:
                opened(None)
                conn.close()
        raise EtcdError("no etcd endpoint took the watch: " + "; ".join(errors))

    @staticmethod
    def _stream(answer: http.client.HTTPResponse, on_events: Callable[[int, list[Json]], None],
                stopping: threading.Event) -> Json:
        while not stopping.is_set():
            line = answer.readline()
            if not line:
                raise EtcdError("the watch stream ended")
            if not line.strip():
                continue
            doc = json.loads(line)
            if "error" in doc:
                raise EtcdError(f"watch error: {doc['error']}")
            result = doc.get("result", {})
            if result.get("canceled") or result.get("compact_revision"):
                return dict(result)
            if result.get("created"):
                continue  # (its revision is etcd's now, not how far the events sent so far reach)
            on_events(int(result.get("header", {}).get("revision", 0)), result.get("events", []))
        return {}

    def close(self) -> None:
        conns: dict[int, http.client.HTTPConnection] = self._local.__dict__.get("conns", {})
        for conn in conns.values():
            conn.close()
        conns.clear()


def _unavailable(status: int, doc: Json) -> bool:
    """etcd's answers that mean "this member cannot serve it now" (no leader, stopping): try another member."""
    text = str(doc.get("error") or doc.get("message") or "").lower()
    return status in (502, 503, 504) or any(s in text for s in ("no leader", "stopped", "unavailable",
                                                                 "not capable"))
