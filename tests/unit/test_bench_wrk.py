"""The wrk load generator of the suite (bench/wrk.py): the request it replays is the signed one, byte for byte; its
percentiles and its own CPU are read back; and the Python generator reports its own CPU too."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web

from trent.bench import wrk
from trent.bench.loadgen import Call, Target, percentile, run_load
from trent.cluster.ports import free_port_block
from trent.node.auth.principals import Principal, PrincipalDirectory
from trent.node.clock import AdjustableClock
from trent.node.wire.sigv4 import SigV4Verifier


def test_lua_strings_carry_any_bytes() -> None:
    assert wrk._lua_string(b'a"b\\c\n\xff') == '"a\\034b\\092c\\010\\255"'


def test_wrk_percentiles_read_back_as_the_suite_reads_them() -> None:
    found = {50.0: 0.001, 90.0: 0.002, 99.0: 0.005, 99.9: 0.009}
    samples = wrk._as_samples(found)
    assert [percentile(samples, p) for p in (50, 90, 99, 99.9)] == [0.001, 0.002, 0.005, 0.009]


class Recorder:
    """A server that answers 200 and keeps what it was sent."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, str], bytes]] = []
        self.port = free_port_block(1)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        if len(self.seen) < 5:
            self.seen.append((dict(request.headers), await request.read()))
        return web.Response(body=b"{}", content_type="application/x-amz-json-1.1")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/", self._handle)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> Recorder:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture()
def recorder() -> Iterator[Recorder]:
    with Recorder() as server:
        yield server


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (deploy/debian-packages.txt)")
def test_wrk_replays_the_signed_request_and_reports_its_own_cpu(recorder: Recorder) -> None:
    target = Target("127.0.0.1", recorder.port, "us-east-1")
    call = Call("Encrypt", b'{"KeyId": "k", "Plaintext": "eA=="}')
    result = wrk.run_wrk(target, call, connections=4, seconds=1)
    assert result.requests > 0 and result.errors == 0
    assert result.client_cpu_seconds is not None and result.client_cpu_seconds > 0
    summary = result.summary()
    assert summary["generator"] == "wrk" and summary["client_cores"] > 0 and summary["p99_ms"] >= summary["p50_ms"]
    # What wrk sent verifies as the signed request it replays (the generator's default credential).
    verifier = SigV4Verifier(PrincipalDirectory([Principal("test", "test", "arn:aws:iam::000000000000:root",
                                                           "000000000000")]), AdjustableClock())
    for headers, body in recorder.seen:
        assert body == call.body and headers["X-Amz-Target"] == "TrentService.Encrypt"
        assert verifier.verify("POST", "/", "", headers, body, expected_region="us-east-1").access_key == "test"


def test_the_python_generator_reports_its_own_cpu(recorder: Recorder) -> None:
    result = run_load(Target("127.0.0.1", recorder.port, "us-east-1"), [Call("Encrypt", b"{}")], connections=2,
                      seconds=0.5, processes=1)
    assert result.requests > 0 and result.client_cpu_seconds is not None and result.client_cpu_seconds > 0
    assert result.summary()["client_cpu_ms_per_request"] > 0
