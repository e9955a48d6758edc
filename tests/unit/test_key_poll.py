"""The rotation-visibility poller: one kept-alive connection, a request signed once, a fresh connection when the
server closed the kept one, and a refusal raised rather than read as an answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trent.bench.key_poll import KeyPoller
from trent.bench.loadgen import Target


class _Region(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    connections: set[tuple[str, int]] = set()
    targets: list[str] = []
    material = "m1"
    status = 200
    close_next = False

    def do_POST(self) -> None:
        cls = type(self)
        cls.connections.add(self.client_address)
        cls.targets.append(self.headers["X-Amz-Target"])
        assert self.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=test/")
        key_id = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["KeyId"]
        body = json.dumps({"KeyMetadata": {"KeyId": key_id, "CurrentKeyMaterialId": cls.material}}).encode()
        self.send_response(cls.status)
        self.send_header("Content-Length", str(len(body)))
        if cls.close_next:
            cls.close_next = False
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def region() -> Iterator[tuple[str, int]]:
    _Region.connections, _Region.targets, _Region.material, _Region.status = set(), [], "m1", 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Region)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield "127.0.0.1", server.server_address[1]
    server.shutdown()
    server.server_close()


def test_polls_over_one_connection_and_sees_the_change(region: tuple[str, int]) -> None:
    with KeyPoller(Target(region[0], region[1], "eu-west-1"), "k-1") as poller:
        assert [poller.describe()["CurrentKeyMaterialId"] for _ in range(3)] == ["m1"] * 3
        _Region.material = "m2"
        assert poller.describe() == {"KeyId": "k-1", "CurrentKeyMaterialId": "m2"}
    assert len(_Region.connections) == 1 and _Region.targets == ["TrentService.DescribeKey"] * 4


def test_a_closed_connection_is_made_again(region: tuple[str, int]) -> None:
    with KeyPoller(Target(region[0], region[1], "eu-west-1"), "k-1") as poller:
        _Region.close_next = True
        poller.describe()
        assert poller.describe()["CurrentKeyMaterialId"] == "m1"
    assert len(_Region.connections) == 2


def test_a_refusal_is_raised_not_read(region: tuple[str, int]) -> None:
    _Region.status = 400
    with KeyPoller(Target(region[0], region[1], "eu-west-1"), "k-1") as poller, \
            pytest.raises(RuntimeError, match="answered 400"):
        poller.describe()
