"""A lookup that misses in a region other nodes serve too (node/catch_up.py): the request waits off the event loop for a
catch-up begun after it arrived, other requests are answered meanwhile, and it is decided again on the caught-up
view; every request asking while a catch-up runs shares the next one; work outside a request catches up in place."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest

from tests.unit.test_endpoint import FakeVerifier, _client, decoder, make_endpoint, request
from tests.unit.test_service import K1, K2
from trent.node.app import settled
from trent.node.catch_up import CatchUps
from trent.node.consistency import RegionConsistency
from trent.node.endpoint import KmsEndpoint
from trent.node.model.key import KeyRecord, KeyState
from trent.node.ops.registry import Operation, Params, Registry, RequestContext, Response
from trent.node.service import Region
from trent.node.wire.protocol import CONTENT_TYPE

__all__ = ["decoder"]  # the module-scoped fixture, shared

MISSING = "1234abcd-12ab-34cd-56ef-1234567890ab"


class Calls:
    """A store whose catch-up is ``read``; it records the heads waited for and the pauses."""

    def __init__(self, read: Callable[[], bool]) -> None:
        self.read = read
        self.heads: list[int] = []
        self.pauses = 0

    def catch_up(self, timeout: float = 2.0) -> bool:
        return self.read()

    def wait_for_head(self, head: int, timeout: float = 2.0) -> bool:
        self.heads.append(head)
        return True

    def pause_after_race(self) -> None:
        self.pauses += 1


class Gated(Calls):
    """A store whose catch-up blocks until released, counting its runs (and how many ran at once)."""

    def __init__(self) -> None:
        super().__init__(self._gated)
        self.release = threading.Event()
        self.started = threading.Event()
        self.runs = 0
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def _gated(self) -> bool:
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
    catch_ups = CatchUps(Calls(lambda: done.set() or True), "eu-west-1", clock=lambda: now[0])
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

    catch_ups = CatchUps(Calls(broken), "eu-west-1")
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

    region.catch_ups = CatchUps(Calls(catch_up), "eu-west-1")
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


def _lost_race_endpoint(tmp_path: Path, decoder: object, gated: Gated
                        ) -> tuple[KmsEndpoint, Region, Region, list[set[str]]]:
    """A region served by two "nodes" over one store with a change feed (as etcd's), each with its own view: the
    handler of this one commits a key, but the other commits one first during its first run."""
    from tests.unit.test_service import make_key, make_region
    from tests.unit.test_store import declared
    from trent.node.store.sqlite import SqliteStore

    here = make_region(declared(SqliteStore(tmp_path / "kms.db", feed=True)), name="eu-west-1")
    there = make_region(declared(SqliteStore(tmp_path / "kms.db", feed=True)), name="eu-west-1")
    here.catch_ups = CatchUps(gated, "eu-west-1")
    runs: list[set[str]] = []

    def add_key(region: Region, params: Params, ctx: RequestContext) -> Response:
        runs.append(set(region.keys))
        if len(runs) == 1:
            there.commit(keys=[make_key(there, K1)])  # another node's commit, made while this one decides
        region.commit(keys=[make_key(region, K2)])
        return {}

    registry = Registry()
    registry.add(Operation(name="TagResource", handler=add_key))
    endpoint = KmsEndpoint(here, registry, decoder, FakeVerifier(),  # type: ignore[arg-type]
                           consistency=RegionConsistency(here))
    return endpoint, here, there, runs


def test_a_write_that_lost_a_race_waits_off_the_loop_then_runs_again_whole(tmp_path: Path, decoder: object) -> None:
    gated = Gated()
    endpoint, here, there, runs = _lost_race_endpoint(tmp_path, decoder, gated)
    charged: list[str] = []
    endpoint.admission = lambda region, principal, name, params: charged.append(name)  # (--quotas aws)
    try:
        body = b'{"KeyId": "k", "Tags": [{"TagKey": "a", "TagValue": "b"}]}'
        response = endpoint.handle(request("TagResource", body))
        # Not decided again on the loop: the request waits for the catch-up (and its pause) in the catch-up thread.
        assert response.pending is not None and response.status == 503
        assert gated.started.wait(5) and runs == [set()]
        gated.release.set()
        answer = asyncio.run(asyncio.wait_for(settled(response), 10))
        assert answer.status == 200
        assert runs == [set(), {K1}]  # the second run decided on the caught-up view
        assert set(here.keys) == {K1, K2}
        assert gated.runs == 1
        assert charged == ["TagResource"]  # counted against its quota once, not once per run
    finally:
        gated.release.set()
        here.store.close()
        there.store.close()


def test_outside_a_request_a_lost_race_is_caught_up_in_place(tmp_path: Path, decoder: object) -> None:
    from tests.unit.test_service import make_key

    gated = Gated()
    gated.release.set()
    _, here, there, _ = _lost_race_endpoint(tmp_path, decoder, gated)
    tries: list[int] = []

    def decide() -> None:
        tries.append(1)
        if len(tries) == 1:
            there.commit(keys=[make_key(there, K1)])
        here.commit(keys=[make_key(here, K2)])

    try:
        here.run_fresh(decide)  # (the scheduler's way)
        assert len(tries) == 2 and gated.runs == 1 and set(here.keys) == {K1, K2}
    finally:
        here.store.close()
        there.store.close()


def test_a_write_that_loses_every_race_gets_the_conflict_error_after_its_last_try(tmp_path: Path,
                                                                                 decoder: object) -> None:
    from trent.node.consistency import STALE_ATTEMPTS
    from trent.node.store.base import StaleState

    gated = Gated()
    gated.release.set()
    endpoint, here, there, _ = _lost_race_endpoint(tmp_path, decoder, gated)
    tries: list[int] = []

    def always_beaten(region: Region, params: Params, ctx: RequestContext) -> Response:
        tries.append(1)
        raise StaleState("another node again")

    endpoint.registry = Registry()
    endpoint.registry.add(Operation(name="TagResource", handler=always_beaten))
    try:
        body = b'{"KeyId": "k", "Tags": [{"TagKey": "a", "TagValue": "b"}]}'
        answer = asyncio.run(asyncio.wait_for(settled(endpoint.handle(request("TagResource", body))), 10))
        assert answer.status == 500 and answer.pending is None
        assert json.loads(answer.body) == {"__type": "KMSInternalException",
                                           "message": "The request conflicted with concurrent changes; retry it."}
        # Waited before each of the tries after the first (the catch-up the last loss asked for goes unawaited).
        assert len(tries) == STALE_ATTEMPTS and gated.runs == STALE_ATTEMPTS
    finally:
        here.store.close()
        there.store.close()


def test_a_race_lost_to_a_known_head_waits_for_that_head_without_a_read() -> None:
    """etcd says which commit beat one: the wait is for the watch to bring it, with no read of etcd; such a round
    covers no miss (it read nothing), and one shared with a miss does both."""
    gated = Gated()
    gated.release.set()
    catch_ups = CatchUps(gated, "eu-west-1")
    since = time.perf_counter()
    assert catch_ups.next_after_race(7).result(5) is True
    assert gated.heads == [7] and gated.pauses == 1 and gated.runs == 0
    assert not catch_ups.covers(since)
    assert catch_ups.now_after_race(9) and gated.heads == [7, 9] and gated.runs == 0
    assert catch_ups.now_after_race(0) and gated.runs == 1  # a head not known: a read
    # A miss and a race in one round: the read, the newest head, the pause.
    gated.release.clear()
    gated.started.clear()
    first = catch_ups.next()
    assert gated.started.wait(5)  # under way: what is asked now goes into the next round
    shared = catch_ups.next_after_race(11)
    assert catch_ups.next_after_race(10) is shared and catch_ups.next() is shared
    gated.release.set()
    assert first.result(5) and shared.result(5)
    assert gated.heads[-1] == 11 and gated.runs == 3 and gated.pauses == 4


def test_while_a_write_waits_after_a_lost_race_the_node_s_other_writes_wait_with_it(tmp_path: Path,
                                                                                     decoder: object) -> None:
    """Else they would race the other node meanwhile, and the one that lost would likelier lose again."""
    gated = Gated()
    endpoint, here, there, runs = _lost_race_endpoint(tmp_path, decoder, gated)
    body = b'{"KeyId": "k", "Tags": [{"TagKey": "a", "TagValue": "b"}]}'
    try:
        lost = endpoint.handle(request("TagResource", body))
        assert lost.pending is not None and gated.started.wait(5)
        behind = endpoint.handle(request("TagResource", body))
        assert behind.pending is not None and runs == [set()]  # it did not run: it waits for the same round
        gated.release.set()

        async def both() -> list[int]:
            answers = await asyncio.gather(settled(lost), settled(behind))
            return [a.status for a in answers]

        assert asyncio.run(asyncio.wait_for(both(), 10)) == [200, 200]
        assert runs == [set(), {K1}, {K1, K2}] and gated.runs == 1
    finally:
        gated.release.set()
        here.store.close()
        there.store.close()
