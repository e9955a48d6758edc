"""Instructions per Encrypt of the whole server process, under callgrind: the steadiest measure on a shared host.

A one-process cluster (`trent up`, three regions) runs under valgrind's callgrind with instrumentation off; after a
warm-up, ``--requests`` signed Encrypts (64-byte plaintext, one keep-alive connection to the gateway, one at a time)
are counted between switching instrumentation on and dumping; the total is divided by the count. Background work
that runs meanwhile (the scheduler's ticks) is counted too: compare runs of the same load, alternating.

    python -m trent.bench.callgrind [--requests 2000] [--warmup 300] [--runs 1]    # needs valgrind

``--handler`` counts the KMS handler alone (``KmsEndpoint.handle``: SigV4, validation, authorization, the
operation, the audit line, metrics), with no HTTP, event loop or background work: a region composed in one process
runs the same signed Encrypt in a loop, under callgrind from the start, once ``--requests`` times and once three
times as often; the difference of the two totals, divided by the difference of the counts, is what a request costs
(start-up cancels out). Steadier still than the whole-process count, which the scheduler's ticks disturb on a busy
host.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trent.bench.loadgen import Call, Target, signed_request
from trent.bench.procs import kms_client
from trent.bench.wrk import run_wrk
from trent.cluster.ports import free_port_block
from trent.cluster.running import ROOT, poll

REGIONS = "us-east-1,eu-west-1,ap-southeast-2"
_LENGTH_RE = re.compile(rb"(?i)content-length:\s*(\d+)")


def _up(port: int, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"the server under callgrind exited with {proc.returncode}")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_trent/health", timeout=5) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _exchange(conn: socket.socket, raw: bytes) -> None:
    conn.sendall(raw)
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    if head[9:12] != b"200":
        raise RuntimeError(f"Encrypt failed: {head[:200]!r}")
    length = _LENGTH_RE.search(head)
    while length is not None and len(body) < int(length[1]):
        body += conn.recv(65536)


def measure(requests: int, warmup: int, connections: int = 1, seconds: float = 30.0,
            keep: Path | None = None) -> float:
    """Instructions per Encrypt in one run. With ``connections`` > 1, wrk keeps that many connections busy for
    ``seconds`` instead (the load the server meets at high concurrency), and its count of answers divides. With
    ``keep``, the dump is copied there (for callgrind_annotate)."""
    work = Path(tempfile.mkdtemp(prefix="trent-callgrind-"))
    out = work / "callgrind.out"
    port = free_port_block(4)
    with open(work / "server.log", "wb") as log:
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable,
             "-m", "trent.cluster.cli", "up", "--data-dir", str(work / "data"), "--port", str(port), "--regions",
             REGIONS, "--replica-delay", "0"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        poll(lambda: _up(port, proc), timeout=600, interval=1.0)
        key = kms_client(f"http://127.0.0.1:{port}", "us-east-1").create_key()["KeyMetadata"]["KeyId"]
        body = json.dumps({"KeyId": key, "Plaintext": base64.b64encode(b"x" * 64).decode()}).encode()
        raw = signed_request(Target("127.0.0.1", port, "us-east-1"), Call("Encrypt", body))
        with socket.create_connection(("127.0.0.1", port)) as conn:
            for _ in range(warmup):
                _exchange(conn, raw)
            subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
            if connections > 1:
                result = run_wrk(Target("127.0.0.1", port, "us-east-1"), Call("Encrypt", body),
                                 connections=connections, seconds=seconds)
                if result.errors:
                    raise RuntimeError(f"wrk: {result.errors} errors ({result.first_error})")
                requests = result.requests
            else:
                for _ in range(requests):
                    _exchange(conn, raw)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        totals = re.search(r"^totals: (\d+)", (work / "callgrind.out.1").read_text(), re.MULTILINE)
        if totals is None:
            raise RuntimeError("no totals in the callgrind dump")
        if keep is not None:
            shutil.copyfile(work / "callgrind.out.1", keep)
        return int(totals[1]) / requests
    finally:
        proc.terminate()
        proc.wait(120)
        shutil.rmtree(work, ignore_errors=True)


# The handler's stages, and the fast path's reading of a request and writing of its answer (outside the handler).
STAGES = ("handle", "sigv4", "decode", "authorize", "operation", "encode", "audit", "metrics",
          "http_read", "http_write")


def _handler_loop(requests: int, warmup: int, stage: str = "handle") -> None:
    """The loop ``--handler`` runs under callgrind (in a process of its own): the whole handler, or one stage of it
    on the same request (``--stage``; what is left of the handler is the dispatch between the stages)."""
    from multidict import CIMultiDict, CIMultiDictProxy

    from trent.cluster.compose import compose
    from trent.cluster.heap import freeze_start_up, tune_collector
    from trent.node.audit.sink import CURRENT
    from trent.node.config import load_config
    from trent.node.endpoint import WireRequest

    tune_collector()  # the collector as the server sets it (cluster/cli.py)
    work = Path(tempfile.mkdtemp(prefix="trent-callgrind-"))
    try:
        parts = compose(load_config(None, {"data_dir": str(work / "data"), "port": 4599, "regions": "us-east-1"}),
                        CURRENT)
        freeze_start_up()
        endpoint = parts.regions["us-east-1"].endpoint

        def request(operation: str, body: bytes) -> WireRequest:
            head = signed_request(Target("127.0.0.1", 4599, "us-east-1"), Call(operation, body)).partition(
                b"\r\n\r\n")[0].decode()
            headers: CIMultiDict[str] = CIMultiDict()
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(": ")
                headers.add(name, value)
            return WireRequest("POST", "/", "", CIMultiDictProxy(headers), body, "127.0.0.1")

        answer = endpoint.handle(request("CreateKey", b"{}"))
        if answer.durable is not None:
            answer.durable.result()
        key = json.loads(answer.body)["KeyMetadata"]["KeyId"]
        encrypt = request("Encrypt", json.dumps({"KeyId": key, "Plaintext": base64.b64encode(b"x" * 64).decode()})
                          .encode())
        step = _stage(endpoint, encrypt, stage)
        for n in range(warmup + requests):
            answer = step()
            if answer is not None and answer.durable is not None and n % 64 == 0:
                answer.durable.result()
        parts.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _stage(endpoint: Any, encrypt: Any, stage: str) -> Callable[[], Any]:
    """One call of ``stage`` on the Encrypt request, its inputs prepared once (as the handler would make them)."""
    from trent.node.answer import answer_bytes
    from trent.node.endpoint import _Call
    from trent.node.fast_path import read_simple
    from trent.node.metrics import SUCCESS
    from trent.node.ops.registry import RequestContext
    from trent.node.wire.protocol import encode_response, parse_body

    region, body = endpoint.region, encrypt.body
    operation = endpoint.registry.get("Encrypt")
    principal = endpoint.verifier.verify("POST", "/", "", encrypt.headers, body, expected_region=region.name).principal
    params = endpoint.decoder.decode("Encrypt", parse_body(body))
    context = RequestContext("r", "Encrypt", principal, encrypt.remote, "ua", endpoint.authorizer)
    response = operation.handler(region, params, context)
    call = _Call("r", 0.0, principal, operation, params, None, None, response)
    # The request as it comes on the wire (the fast path reads it from these bytes), and an answer to write.
    fields = "".join(f"{name}: {value}\r\n" for name, value in encrypt.headers.items())
    raw = f"POST / HTTP/1.1\r\n{fields}\r\n".encode() + body
    answered = endpoint.handle(encrypt)

    def handle() -> Any:
        answer = endpoint.handle(encrypt)
        if answer.status != 200:
            raise RuntimeError(f"Encrypt failed: {answer.body[:200]!r}")
        return answer

    steps: dict[str, Callable[[], Any]] = {
        "handle": handle,
        "sigv4": lambda: endpoint.verifier.verify("POST", "/", "", encrypt.headers, body,
                                                  expected_region=region.name) and None,
        "decode": lambda: endpoint.decoder.decode("Encrypt", parse_body(body)) and None,
        "authorize": lambda: endpoint.authorizer.check_request(region, principal, operation, params),
        "operation": lambda: operation.handler(region, params, context) and None,
        "encode": lambda: encode_response(response) and None,
        "audit": lambda: endpoint._audit(encrypt, call, None),
        "metrics": lambda: endpoint.metrics.observe("Encrypt", SUCCESS, 0.0004),
        "http_read": lambda: read_simple(raw, 0) and None,
        "http_write": lambda: answer_bytes(answered) and None,
    }
    return steps[stage]


def _handler_total(requests: int, warmup: int, stage: str = "handle") -> int:
    work = Path(tempfile.mkdtemp(prefix="trent-callgrind-"))
    out = work / "callgrind.out"
    try:
        # One hash seed for every run: with random ones, dictionaries probe differently from process to process and
        # the two totals differ by a little more than the requests between them.
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
                        "trent.bench.callgrind", "--loop", str(requests), "--warmup", str(warmup), "--stage", stage],
                       cwd=ROOT, check=True, capture_output=True, env={**os.environ, "PYTHONHASHSEED": "0"})
        totals = re.search(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
        if totals is None:
            raise RuntimeError("no totals in the callgrind dump")
        return int(totals[1])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_handler(requests: int, warmup: int, stage: str = "handle") -> float:
    """Instructions per Encrypt of ``KmsEndpoint.handle`` alone, or of one stage of it (module docstring)."""
    return (_handler_total(3 * requests, warmup, stage) - _handler_total(requests, warmup, stage)) / (2 * requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trent.bench.callgrind",
                                     description="Instructions per Encrypt of the whole server, under callgrind.")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--connections", type=int, default=1,
                        help="more than one: wrk keeps that many connections busy for --seconds (needs wrk)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--keep", type=Path, help="copy the whole server's dump to this file (callgrind_annotate)")
    parser.add_argument("--handler", action="store_true", help="count the KMS handler alone, in one process")
    parser.add_argument("--stage", choices=STAGES, default="handle",
                        help="with --handler: one stage of the handler alone (default: all of it)")
    parser.add_argument("--loop", type=int, help=argparse.SUPPRESS)  # the process --handler runs under callgrind
    args = parser.parse_args(argv)
    if args.loop is not None:
        _handler_loop(args.loop, args.warmup, args.stage)
        return 0
    for _ in range(args.runs):
        if args.handler:
            print(f"{measure_handler(args.requests, args.warmup, args.stage):,.0f} instructions per Encrypt "
                  f"({'the whole handler' if args.stage == 'handle' else args.stage})")
        else:
            count = measure(args.requests, args.warmup, args.connections, args.seconds, args.keep)
            print(f"{count:,.0f} instructions per "
                  f"Encrypt ({args.connections} connection{'s' if args.connections > 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
