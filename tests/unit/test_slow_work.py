"""Slow work off the event loop (node/app.py settled, node/endpoint.py): an operation that needs an RSA key
generated answers NotReady, the adapter waits for it without blocking the loop (other requests are answered
meanwhile), then runs the request again; it is audited and answered once."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from typing import Any

from tests.unit.test_endpoint import _client, decoder, make_endpoint, request
from trent.node.endpoint import KmsEndpoint
from trent.node.model.errors import NotReady
from trent.node.ops.registry import Operation, Params, RequestContext, Response
from trent.node.service import Region
from trent.node.wire.protocol import CONTENT_TYPE
from trent.node.wire.validation import RequestDecoder

__all__ = ["decoder"]  # the module-scoped fixture, shared


class SlowOnce:
    """A handler whose first run needs half a second of work done in a thread."""

    def __init__(self) -> None:
        self.runs = 0
        self.ready: Future[Any] | None = None

    def __call__(self, region: Region, params: Params, ctx: RequestContext) -> Response:
        self.runs += 1
        if self.ready is None:
            self.ready = Future()
            done = self.ready
            threading.Thread(target=lambda: (time.sleep(0.5), done.set_result(None)), daemon=True).start()
        if not self.ready.done():
            raise NotReady(self.ready)
        return {"KeyId": "ready"}


def slow_endpoint(decoder: RequestDecoder) -> tuple[KmsEndpoint, SlowOnce]:
    endpoint, _, _ = make_endpoint(decoder)
    slow = SlowOnce()
    endpoint.registry.add(Operation(name="GetParametersForImport", handler=slow, read_only=True))
    return endpoint, slow


async def test_other_requests_are_answered_while_one_waits_for_slow_work(decoder: RequestDecoder) -> None:
    endpoint, slow = slow_endpoint(decoder)
    client = await _client(lambda _r: endpoint)
    headers = {"Content-Type": CONTENT_TYPE}
    try:
        started = time.monotonic()
        waiting = asyncio.ensure_future(client.post(
            "/", data=b'{"KeyId": "k", "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_4096"}',
            headers={**headers, "X-Amz-Target": "TrentService.GetParametersForImport"}))
        await asyncio.sleep(0.05)
        quick = await client.post("/", data=b'{"KeyId": "k", "Plaintext": "aGk="}',
                                  headers={**headers, "X-Amz-Target": "TrentService.Encrypt"})
        assert quick.status == 200 and not waiting.done()
        assert time.monotonic() - started < 0.45  # answered while the slow work was still going on
        slow_answer = await waiting
        assert slow_answer.status == 200
        assert await slow_answer.json(content_type=None) == {"KeyId": "ready"}
        assert slow.runs == 2 and time.monotonic() - started >= 0.5
    finally:
        await client.close()


def test_not_ready_is_never_an_answer_by_itself(decoder: RequestDecoder) -> None:
    endpoint, _ = slow_endpoint(decoder)
    response = endpoint.handle(request("GetParametersForImport", b'{"KeyId": "k", "WrappingAlgorithm": '
                                       b'"RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}'))
    assert response.pending is not None and response.body == b""
    response.pending.close()  # (the adapter would await it: the request run again)


async def test_a_request_that_gives_up_on_a_wrapping_key_leaves_it_coming_for_the_others() -> None:
    """Every request that needs the first wrapping key of a spec waits on one future; asyncio cancels the future a
    cancelled task waited on, and that must not cancel it for the others (nor fail the thread that makes it)."""
    from trent.node.crypto.wrapping_keys import WrappingKeys

    release = threading.Event()
    made = object()

    def generate(_spec: str) -> Any:
        assert release.wait(10)
        return made

    keys = WrappingKeys(lambda _spec: None, generate, lambda _spec: None)
    waits: list[Future[Any]] = []
    for _ in range(2):
        try:
            keys.take("RSA_2048")
        except NotReady as exc:
            waits.append(exc.ready)
    assert len(waits) == 2 and waits[0] is waits[1]
    leaving = asyncio.ensure_future(asyncio.wrap_future(waits[0]))
    staying = asyncio.ensure_future(asyncio.wrap_future(waits[1]))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    release.set()
    assert await asyncio.wait_for(staying, 10) is made
    assert keys.take("RSA_2048") is made
