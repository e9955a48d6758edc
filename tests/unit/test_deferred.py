"""An operation whose answer waits on work off the event loop (node/deferred.py), through KmsEndpoint: the answer
once the work is done, a timeout as DependencyTimeoutException without waiting for the work, the work's failure as
the error the operation chose, a chain of two Deferreds, and one audit record for each."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.session
import pytest

from tests.unit.test_endpoint import USAGE_TRACKED, FakeVerifier, make_endpoint, request
from trent.node.audit.sink import AuditSink, read_events
from trent.node.audit.trail import AuditTrail
from trent.node.deferred import Deferred
from trent.node.endpoint import KmsEndpoint, WireResponse
from trent.node.model.errors import KmsError
from trent.node.ops.registry import Operation, Params, Registry, RequestContext
from trent.node.service import Region
from trent.node.wire.validation import RequestDecoder


def timeout_error(exc: BaseException) -> KmsError:
    if isinstance(exc, TimeoutError):
        return KmsError("DependencyTimeoutException", "timed out", 503)
    return KmsError("KeyUnavailableException", f"the work failed: {type(exc).__name__}", 500)


@pytest.fixture(scope="module")
def decoder() -> RequestDecoder:
    return RequestDecoder(botocore.session.get_session().get_service_model("kms"))


@pytest.fixture
def pool() -> Any:
    with ThreadPoolExecutor(2) as executor:
        yield executor


def endpoint_with(decoder: RequestDecoder, handler: Any, tmp_path: Path) -> tuple[KmsEndpoint, AuditTrail]:
    trail = AuditTrail("eu-west-1", "111122223333", AuditSink(tmp_path / "audit"), started=0.0,
                       usage_tracked=USAGE_TRACKED)
    endpoint, _, _ = make_endpoint(decoder, FakeVerifier(), audit=trail)
    registry = Registry()
    registry.add(Operation(name="GenerateRandom", handler=handler, read_only=True))
    endpoint.registry = registry
    return endpoint, trail


def answer(endpoint: KmsEndpoint, body: dict[str, Any]) -> WireResponse:
    first = endpoint.handle(request("GenerateRandom", json.dumps(body).encode()))
    assert first.pending is not None and first.body == b""  # nothing answered before the work is done
    return asyncio.run(first.pending)  # type: ignore[arg-type]


def test_the_answer_comes_when_the_work_is_done(decoder: RequestDecoder, pool: Any, tmp_path: Path) -> None:
    def handler(region: Region, params: Params, ctx: RequestContext) -> Deferred:
        work = pool.submit(lambda: b"\x07" * params["NumberOfBytes"])
        return Deferred(work, lambda made: {"Plaintext": made}, timeout_error, 5.0)

    endpoint, trail = endpoint_with(decoder, handler, tmp_path)
    response = answer(endpoint, {"NumberOfBytes": 4})
    assert response.status == 200 and json.loads(response.body) == {"Plaintext": "BwcHBw=="}
    trail.sink.flush()
    (event,) = read_events(tmp_path / "audit")
    assert event["eventName"] == "GenerateRandom" and "errorCode" not in event


def test_a_slow_work_times_out_without_being_waited_for(decoder: RequestDecoder, pool: Any, tmp_path: Path) -> None:
    release = threading.Event()

    def handler(region: Region, params: Params, ctx: RequestContext) -> Deferred:
        return Deferred(pool.submit(release.wait, 10), lambda _: {"Plaintext": b""}, timeout_error, 0.2)

    endpoint, trail = endpoint_with(decoder, handler, tmp_path)
    started = time.monotonic()
    response = answer(endpoint, {"NumberOfBytes": 4})
    release.set()
    assert time.monotonic() - started < 2.0
    assert response.status == 503 and json.loads(response.body)["__type"] == "DependencyTimeoutException"
    trail.sink.flush()
    (event,) = read_events(tmp_path / "audit")
    assert event["errorCode"] == "DependencyTimeoutException"


def test_failures_and_chains(decoder: RequestDecoder, pool: Any, tmp_path: Path) -> None:
    failed: Future[bytes] = Future()
    failed.set_exception(OSError("token gone"))

    def broken(region: Region, params: Params, ctx: RequestContext) -> Deferred:
        return Deferred(failed, lambda _: {"Plaintext": b""}, timeout_error, 5.0)

    endpoint, _ = endpoint_with(decoder, broken, tmp_path / "a")
    response = answer(endpoint, {"NumberOfBytes": 4})
    assert response.status == 500 and json.loads(response.body) == {
        "__type": "KeyUnavailableException", "message": "the work failed: OSError"}

    def chained(region: Region, params: Params, ctx: RequestContext) -> Deferred:
        def second(first: bytes) -> Deferred:
            return Deferred(pool.submit(lambda: first + b"!"), lambda made: {"Plaintext": made}, timeout_error, 5.0)
        return Deferred(pool.submit(lambda: b"ab"), second, timeout_error, 5.0)

    endpoint, _ = endpoint_with(decoder, chained, tmp_path / "b")
    assert json.loads(answer(endpoint, {"NumberOfBytes": 4}).body) == {"Plaintext": "YWIh"}

    def refusing(region: Region, params: Params, ctx: RequestContext) -> Deferred:
        def finish(_: bytes) -> dict[str, Any]:
            raise KmsError("InvalidCiphertextException")
        return Deferred(pool.submit(lambda: b""), finish, timeout_error, 5.0)

    endpoint, _ = endpoint_with(decoder, refusing, tmp_path / "c")
    response = answer(endpoint, {"NumberOfBytes": 4})
    assert response.status == 400 and json.loads(response.body)["__type"] == "InvalidCiphertextException"
