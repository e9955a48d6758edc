"""A lookup that misses in a region other nodes serve too (node/catch_up.py): the request waits off the event loop for a
catch-up begun after it arrived, other requests are answered meanwhile, and it is decided again on the caught-up
view; every request asking while a catch-up runs shares the next one; work outside a request catches up in place."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import Future

import pytest

from tests.unit.test_endpoint import _client, decoder, make_endpoint
from trent.node.catch_up import CatchUps
from trent.node.model.key import KeyRecord, KeyState
from trent.node.service import Region
from trent.node.wire.protocol import CONTENT_TYPE

__all__ = ["decoder"]  # the module-scoped fixture, shared

MISSING = "1234abcd-12ab-34cd-56ef-1234567890ab"


class Gated:
    """A catch-up that blocks until released, counting its runs (and how many ran at once)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.runs = 0
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def __call__(self) -> bool:
        with self._lock:
            self.runs += 1
            self.running += 1
            self.most = max(self.most, self.running)
        self.started.set()
        try:
            return self.release.wait(10)
        finally:
            with self._lock:
                self.running -= 1


def record(key_id: str) -> KeyRecord:
    return KeyRecord(key_id=key_id, region="eu-west-1", account="111122223333", created=1.0, state=KeyState.ENABLED)


def test_requests_asking_while_one_runs_share_the_next_and_at_most_one_runs() -> None:
    gated = Gated()
    catch_ups = CatchUps(gated, "eu-west-1")
    first = catch_ups.next()
    assert gated.started.wait(5)
    # Asked after the first began: it may not have seen their commits, so they share the next one.
    later = [catch_ups.next() for _ in range(20)]
    assert all(f is later[0] for f in later) and later[0] is not first
    gated.release.set()
    assert first.result(5) is True and later[0].result(5) is True
    assert gated.runs == 2 and gated.most == 1


def test_covers_only_after_a_catch_up_that_began_later_has_finished() -> None:
    now = [100.0]
    done = threading.Event()
    catch_ups = CatchUps(lambda: done.set() or True, "eu-west-1", clock=lambda: now[0])
    assert not catch_ups.covers(99.0)
    assert catch_ups.now() and done.is_set()
    assert catch_ups.covers(100.0) and catch_ups.covers(99.0)
    assert not catch_ups.covers(100.5)  # arrived after that catch-up began
    now[0] = 101.0
    assert catch_ups.next().result(5) is True
    assert catch_ups.covers(100.5)


async def test_a_waiter_that_gives_up_leaves_the_catch_up_for_the_others() -> None:
    gated = Gated()
    catch_ups = CatchUps(gated, "eu-west-1")
    shared = catch_ups.next()
    leaving = asyncio.ensure_future(asyncio.wrap_future(shared))
    staying = asyncio.ensure_future(asyncio.wrap_future(shared))
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.gather(leaving, return_exceptions=True)
    gated.release.set()
    assert await asyncio.wait_for(staying, 10) is True


def test_a_failing_catch_up_is_logged_and_counts_as_done(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> bool:
        raise RuntimeError("bug")

    catch_ups = CatchUps(broken, "eu-west-1")
    with caplog.at_level(logging.ERROR, logger="trent.catch_up"):
        assert catch_ups.next().result(5) is False
    assert "catch-up failed" in caplog.text
    assert catch_ups.covers(time.perf_counter() - 60)  # the request it was for is answered, not made to wait again


def test_outside_a_request_a_miss_catches_up_in_place(decoder: object) -> None:
    endpoint, _, _ = make_endpoint(decoder)  # type: ignore[arg-type]
    region: Region = endpoint.region
    made: list[str] = []

    def catch_up() -> bool:  # what another node made arrives with it
        made.append(MISSING)
        region.keys[MISSING] = record(MISSING)
        return True

    region.catch_ups = CatchUps(catch_up, "eu-west-1")
    assert region.requested_at is None
    assert region.resolve(MISSING, allow_alias=False).key_id == MISSING and made == [MISSING]


async def test_a_miss_waits_off_the_loop_while_others_are_answered_then_is_decided_again(decoder: object) -> None:
    endpoint, _, _ = make_endpoint(decoder)  # type: ignore[arg-type]
    region: Region = endpoint.region
    gated = Gated()
    region.catch_ups = CatchUps(gated, "eu-west-1")
    client = await _client(lambda _r: endpoint)
    headers = {"Content-Type": CONTENT_TYPE}

    def describe(key_id: str) -> asyncio.Future[object]:
        return asyncio.ensure_future(client.post("/", data=json.dumps({"KeyId": key_id}).encode(),
                                                 headers={**headers, "X-Amz-Target": "TrentService.DescribeKey"}))

    try:
        made_elsewhere = describe(MISSING)  # made through another node a moment ago
        absent = describe("00000000-0000-0000-0000-000000000000")
        assert await asyncio.to_thread(gated.started.wait, 5)
        # Both wait off the loop: another request is answered meanwhile.
        quick = await client.post("/", data=b'{"KeyId": "k", "Plaintext": "aGk="}',
                                  headers={**headers, "X-Amz-Target": "TrentService.Encrypt"})
        assert quick.status == 200 and not made_elsewhere.done() and not absent.done()
        region.keys[MISSING] = record(MISSING)  # the watch brings the other node's commit
        gated.release.set()
        found = await asyncio.wait_for(made_elsewhere, 10)
        assert found.status == 200  # type: ignore[attr-defined]
        missing = await asyncio.wait_for(absent, 10)
        assert missing.status == 400  # type: ignore[attr-defined]
        doc = await missing.json(content_type=None)  # type: ignore[attr-defined]
        assert doc["__type"] == "NotFoundException"
        assert doc["message"] == ("Key 'arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000000' "
                                  "does not exist")
        # Each was decided twice, and no run asked for a catch-up more than once (one or two ran for both).
        assert gated.runs <= 2
        assert region.requested_at is None
    finally:
        gated.release.set()
        await client.close()


def test_a_request_run_again_keeps_its_arrival(decoder: object) -> None:
    """The run after the wait is covered by the catch-up it waited for, so it never waits a second time."""
    from tests.unit.test_endpoint import request

    endpoint, _, _ = make_endpoint(decoder)  # type: ignore[arg-type]
    region: Region = endpoint.region
    gated = Gated()
    gated.release.set()
    region.catch_ups = CatchUps(gated, "eu-west-1")
    response = endpoint.handle(request("DescribeKey", json.dumps({"KeyId": MISSING}).encode()))
    assert response.pending is not None and response.status == 503
    answer = asyncio.run(asyncio.wait_for(response.pending, 10))
    assert answer.pending is None and answer.status == 400
    assert json.loads(answer.body)["__type"] == "NotFoundException"
    assert gated.runs == 1


def test_the_future_given_to_waiters_cannot_be_cancelled() -> None:
    gated = Gated()
    catch_ups = CatchUps(gated, "eu-west-1")
    shared: Future[bool] = catch_ups.next()
    assert not shared.cancel()
    gated.release.set()
    assert shared.result(5) is True
