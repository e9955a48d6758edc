"""A cheap question to a region, for timing how soon a change reaches it: DescribeKey over one kept-alive
connection, signed once. A botocore call costs the asking process milliseconds of CPU on a two-core machine that
also runs the nodes; polled every few milliseconds, that cost would stretch the very delay being measured and widen
the gap between a change becoming visible and a poll seeing it."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from typing import Any

from trent.bench.loadgen import Call, Target, signed_request
from trent.cluster.running import poll

# How often a rotation-visibility run asks the replica whether the new material is current: not a busy loop, which
# would take the CPU the regions need to move the rotation along and slow down what it measures.
POLL_SECONDS = 0.002


class KeyPoller:
    """``describe()`` answers what DescribeKey says of ``key_id`` in ``target.region`` (its KeyMetadata). The
    request is signed once (a SigV4 signature stays valid for five minutes: make a new poller per measurement)."""

    def __init__(self, target: Target, key_id: str, *, tls: ssl.SSLContext | None = None,
                 timeout: float = 10.0) -> None:
        self.target, self.tls, self.timeout = target, tls, timeout
        self._request = signed_request(target, Call("DescribeKey", json.dumps({"KeyId": key_id}).encode()))
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.target.host, self.target.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=self.target.host)
        return sock

    def describe(self) -> dict[str, Any]:
        for attempt in (1, 2):  # once more on a fresh connection if the kept one was closed meanwhile
            if self._sock is None:
                self._sock = self._connect()
            try:
                self._sock.sendall(self._request)
                answer = http.client.HTTPResponse(self._sock)
                answer.begin()
                body = answer.read()
            except (ConnectionError, http.client.RemoteDisconnected, http.client.IncompleteRead):
                self.close()
                if attempt == 2:
                    raise
                continue
            if answer.will_close:
                self.close()
            if answer.status != 200:
                raise RuntimeError(f"DescribeKey answered {answer.status}: {body[:200]!r}")
            metadata: dict[str, Any] = json.loads(body)["KeyMetadata"]
            return metadata
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> KeyPoller:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def rotation_visible_ms(primary: Any, key_id: str, replica: KeyPoller, timeout: float) -> float:
    """Rotate ``key_id`` on demand at ``primary`` (a KMS client); the milliseconds from the rotation's
    acknowledgement, as the figure is defined, until ``replica`` names the new material current (TimeoutError after
    ``timeout`` seconds)."""
    before = primary.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    replica.describe()  # connected and warm before the clock starts
    primary.rotate_key_on_demand(KeyId=key_id)
    started = time.monotonic()
    poll(lambda: replica.describe()["CurrentKeyMaterialId"] != before, timeout, POLL_SECONDS)
    return round((time.monotonic() - started) * 1000, 1)
