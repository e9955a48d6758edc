"""A hostile probe of a live cluster's HTTP edge, bounded in count and time: slow and abandoned connections are
closed by the configured deadlines while the cluster keeps answering, error answers and a compressed bomb do not
grow the server's memory, and none of it leaves an ERROR or a traceback in the cluster's log."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import select
import socket
import time
from collections.abc import Iterator

import pytest

from tests.e2e.harness import REGIONS, RunningCluster, poll, private_cluster

HEADER, BODY, IDLE = 1.0, 2.0, 3.0
SLOW = 200


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    config = tmp_path_factory.mktemp("edge-config") / "trent.toml"
    config.write_text(f"header_timeout = {HEADER}\nbody_timeout = {BODY}\nidle_timeout = {IDLE}\n"
                      "max_connections = 1000\n")
    yield from private_cluster(tmp_path_factory, "edge", "--config", str(config), "--replica-delay", "0")


def pid_of(cluster: RunningCluster) -> int:
    assert cluster.proc is not None
    return cluster.proc.pid


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def log_is_quiet(cluster: RunningCluster) -> None:
    text = cluster.log_path.read_text(errors="replace")
    assert "Traceback" not in text
    assert [line for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line] == []


def slow_socket(port: int, kind: int) -> socket.socket:
    """One of four kinds of bad client: silent, a head cut short, a body cut short, idle after one request."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall([b"",
               b"POST / HTTP/1.1\r\nHost: kms\r\nX-Amz-Target: TrentServ",
               b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Length: 1000000000000\r\n\r\n{}",
               b"GET /_trent/health HTTP/1.1\r\nHost: kms\r\n\r\n"][kind])
    return s


def closed_by_server(sockets: list[socket.socket], within: float) -> list[socket.socket]:
    """The sockets still open after ``within`` seconds (reading and dropping whatever the server sends)."""
    open_ = set(sockets)
    deadline = time.monotonic() + within
    while open_ and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_), [], [], 0.2)
        for s in ready:
            try:
                if s.recv(65536) == b"":
                    open_.discard(s)
            except ConnectionResetError:
                open_.discard(s)
    return list(open_)


def test_slow_and_abandoned_connections_are_closed_while_the_cluster_answers(edge: RunningCluster) -> None:
    pid = pid_of(edge)
    # Retries as an SDK's default: a kept-alive connection the server closes at its idle deadline just as the client
    # reuses it is a race every keep-alive server has, and SDKs retry it.
    kms = edge.client(REGIONS[0], retries=2)
    kms.list_keys()
    baseline = open_fds(pid)
    ports = [edge.port, edge.region_port(REGIONS[0])]
    started = time.monotonic()
    held = [slow_socket(ports[i % 2], i % 4) for i in range(SLOW)]
    for _ in range(20):  # clients that leave in the middle of a body
        s = socket.create_connection(("127.0.0.1", edge.port), timeout=5)
        s.sendall(b"POST / HTTP/1.1\r\nHost: kms\r\nContent-Length: 100\r\n\r\n{")
        s.close()
    # The server holds them now (it accepts them as it gets to them: on a loaded machine, not all at once).
    poll(lambda: open_fds(pid) >= baseline + SLOW // 4, timeout=IDLE)
    # Meanwhile, the cluster answers as usual.
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"still here")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"still here"
    still_open = closed_by_server(held, within=IDLE + 5)
    elapsed = time.monotonic() - started
    for s in held:
        s.close()
    assert still_open == [], f"{len(still_open)} of {SLOW} connections outlived every deadline"
    assert elapsed < IDLE + 5
    poll(lambda: open_fds(pid) <= baseline + 5, timeout=5)
    kms.list_keys()
    log_is_quiet(edge)


def error_requests(port: int, count: int) -> list[int]:
    """``count`` requests that each get an error (bad JSON, an unknown operation, a bad signature, a body that does
    not decode), over a few kept-alive connections; the statuses answered."""
    bad_signature = ("AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, "
                     "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)
    kinds = [({"X-Amz-Target": "TrentService.ListKeys"}, b"{not json"),
             ({"X-Amz-Target": "TrentService.NoSuchThing"}, b"{}"),
             ({"X-Amz-Target": "TrentService.ListKeys", "Authorization": bad_signature,
               "X-Amz-Date": "20260101T000000Z"}, b"{}"),
             ({"X-Amz-Target": "TrentService.ListKeys", "Content-Encoding": "gzip"}, b"{}")]
    statuses: list[int] = []
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for i in range(count):
        headers, body = kinds[i % len(kinds)]
        connection.request("POST", "/", body=body, headers={"Content-Type": "application/x-amz-json-1.1", **headers})
        answer = connection.getresponse()
        doc = json.loads(answer.read())
        assert set(doc) == {"__type", "message"} and answer.getheader("x-amzn-RequestId")
        statuses.append(answer.status)
        if answer.will_close:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.close()
    return statuses


def post_once(port: int, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """An unsigned ListKeys with ``body`` on a connection of its own: the status and error type answered."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/", body=body, headers={"X-Amz-Target": "TrentService.ListKeys",
                                                            "Content-Type": "application/x-amz-json-1.1",
                                                            **(headers or {})})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())["__type"]
    finally:
        connection.close()


def test_error_answers_and_a_compressed_bomb_do_not_grow_memory(edge: RunningCluster) -> None:
    pid = pid_of(edge)
    error_requests(edge.port, 100)  # caches and pools warm
    before = rss_bytes(pid)
    statuses = error_requests(edge.port, 1000)
    assert set(statuses) <= {400, 403} and 500 not in statuses
    assert rss_bytes(pid) - before < 8 * 1024 * 1024
    bomb = gzip.compress(b"\0" * 50_000_000, compresslevel=9)  # 50 MB in about 50 KB
    assert post_once(edge.port, bomb, {"Content-Encoding": "gzip"}) == (413, "ValidationException")
    assert rss_bytes(pid) - before < 16 * 1024 * 1024
    log_is_quiet(edge)


def test_refused_megabyte_bodies_are_not_held_until_the_body_deadline(edge: RunningCluster) -> None:
    # A body that arrives in pieces gets a deadline; its timer once held the request, and so the whole body, until
    # the deadline passed even though the answer had long gone: 100 unsigned 1 MB requests kept ~100 MB for 30 s.
    pid = pid_of(edge)
    body = b"{" + b" " * 1_000_000 + b"}"
    before = rss_bytes(pid)
    for _ in range(100):
        assert post_once(edge.port, body) == (403, "MissingAuthenticationTokenException")
    assert rss_bytes(pid) - before < 24 * 1024 * 1024
