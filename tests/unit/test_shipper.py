"""Records between regions over real HTTP on loopback: a region serves its outbox (long-poll, signed pulls), another
pulls it through a Puller into its applier; faults cut the link and healing lets it catch up."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.unit.test_applier import A, B, Node, ctx, new_mrk, replicate
from tests.unit.test_store import declared
from trent.cluster.faults import Faults
from trent.cluster.links import SIGNATURE_HEADER, sign
from trent.cluster.replication.shipper import LOG_PATH, Puller, outbox_route
from trent.node.store.base import Batch, StoreError
from trent.node.store.sqlite import SqliteStore

TOKEN = "s3cret-replication-token"


@dataclass
class Link:
    a: Node
    b: Node
    faults: Faults
    server: TestServer
    session: aiohttp.ClientSession
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    pullers: list[Puller] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def start_puller(self, token: str = TOKEN) -> Puller:
        puller = Puller(B, A, self.url, self.b.applier, token, self.faults, self.session)
        self.pullers.append(puller)
        self.tasks.append(asyncio.create_task(puller.run()))
        return puller

    async def get(self, after: int = 0, wait: float = 0, token: str = TOKEN, **extra: str) -> aiohttp.ClientResponse:
        params = {"after": str(after), "wait": str(wait), "region": A, **extra}
        headers = sign(token, "GET", LOG_PATH, params) if token else {}
        return await self.session.get(self.url + LOG_PATH, params=params, headers=headers,
                                      timeout=aiohttp.ClientTimeout(total=8))


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    a, b = Node(A), Node(B)
    faults = Faults(monotonic=time.monotonic)
    app = web.Application()
    app.router.add_routes([outbox_route(A, a.outbox, TOKEN, faults)])
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    session = aiohttp.ClientSession()
    state = Link(a, b, faults, server, session)
    try:
        yield state
    finally:
        for task in state.tasks:
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)
        a.outbox.close()  # releases the server's long-polls, as the region host does on stop
        await session.close()
        await server.close()


async def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def stays(check: Callable[[], bool], seconds: float = 0.3) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check()
        await asyncio.sleep(0.01)


async def body(response: Awaitable[aiohttp.ClientResponse]) -> dict[str, object]:
    async with await response as r:
        assert r.status == 200, await r.text()
        doc = msgpack.unpackb(await r.read(), raw=False)
    assert isinstance(doc, dict)
    return doc


# -- serving the outbox ----------------------------------------------------------------------------------


async def test_outbox_is_served_in_pages(link: Link) -> None:
    key_id = new_mrk(link.a)
    replicate(link.a, key_id, B)
    replicate(link.a, key_id, "ap-northeast-2")
    doc = await body(link.get(after=0, limit="1"))
    assert doc["region"] == A and doc["head"] == 2
    assert doc["records"] == [list(link.a.records()[0])]
    doc = await body(link.get(after=1))
    assert [seq for seq, _ in doc["records"]] == [2]  # type: ignore[attr-defined]
    assert (await body(link.get(after=2)))["records"] == []


async def test_wrong_or_missing_token_is_refused(link: Link) -> None:
    new_mrk_id = new_mrk(link.a)
    replicate(link.a, new_mrk_id, B)
    for token in ("wrong", ""):
        async with await link.get(token=token) as r:
            assert r.status == 403
            assert b"records" not in await r.read()


async def test_a_replayed_or_stale_or_altered_signature_is_refused(link: Link) -> None:
    key_id = new_mrk(link.a)
    replicate(link.a, key_id, B)
    params = {"after": "0", "wait": "0", "region": A}
    headers = sign(TOKEN, "GET", LOG_PATH, params)
    async with await link.session.get(link.url + LOG_PATH, params=params, headers=headers) as r:
        assert r.status == 200
    async with await link.session.get(link.url + LOG_PATH, params=params, headers=headers) as r:
        assert r.status == 403  # the same signature twice: a replay
    old = sign(TOKEN, "GET", LOG_PATH, params, now=lambda: time.time() - 600)
    async with await link.session.get(link.url + LOG_PATH, params=params, headers=old) as r:
        assert r.status == 403
    # Signed for one cursor, sent for another: the query is covered.
    moved = sign(TOKEN, "GET", LOG_PATH, params)
    async with await link.session.get(link.url + LOG_PATH, params={"after": "1", "wait": "0", "region": A},
                                      headers=moved) as r:
        assert r.status == 403
    # Signed for another region's outbox: not good for this one.
    elsewhere = {**params, "region": B}
    async with await link.session.get(link.url + LOG_PATH, params=elsewhere,
                                      headers=sign(TOKEN, "GET", LOG_PATH, elsewhere)) as r:
        assert r.status == 403
    async with await link.session.get(link.url + LOG_PATH, params=params,
                                      headers={SIGNATURE_HEADER: "t=nan,n=x,s=y"}) as r:
        assert r.status == 403


async def test_bad_query_is_refused(link: Link) -> None:
    for bad in ({"after": "x"}, {"wait": "soon"}, {"limit": "many"}):
        params = {**bad, "region": A}
        async with await link.session.get(link.url + LOG_PATH, params=params,
                                          headers=sign(TOKEN, "GET", LOG_PATH, params)) as r:
            assert r.status == 400


async def test_long_poll_returns_as_soon_as_a_record_commits(link: Link) -> None:
    key_id = new_mrk(link.a)
    started = time.monotonic()
    poll = asyncio.create_task(body(link.get(after=0, wait=5)))
    await asyncio.sleep(0.1)
    assert not poll.done()
    replicate(link.a, key_id, B)
    doc = await asyncio.wait_for(poll, 3.0)
    assert time.monotonic() - started < 1.0
    assert doc["head"] == 1 and len(doc["records"]) == 1  # type: ignore[arg-type]


async def test_long_poll_without_news_ends_after_wait(link: Link) -> None:
    started = time.monotonic()
    doc = await body(link.get(after=0, wait=0.2))
    assert 0.15 <= time.monotonic() - started < 2.0
    assert doc["records"] == [] and doc["head"] == 0


async def test_down_region_cuts_the_connection(link: Link) -> None:
    key_id = new_mrk(link.a)
    replicate(link.a, key_id, B)
    link.faults.set("down", [A])
    with pytest.raises(aiohttp.ClientError):
        async with await link.get() as r:
            await r.read()
            raise AssertionError(f"a down region answered {r.status}")
    link.faults.set("up", [A])
    assert len((await body(link.get()))["records"]) == 1  # type: ignore[arg-type]


async def test_region_going_down_during_a_long_poll_does_not_answer(link: Link) -> None:
    key_id = new_mrk(link.a)
    poll = asyncio.create_task(link.get(after=0, wait=5))
    await asyncio.sleep(0.1)
    link.faults.set("down", [A])
    replicate(link.a, key_id, B)  # wakes the poll while the region is down
    with pytest.raises(aiohttp.ClientError):
        async with await asyncio.wait_for(poll, 3.0) as r:
            await r.read()
            raise AssertionError(f"a down region answered {r.status}")


# -- pulling ---------------------------------------------------------------------------------------------


async def test_puller_applies_records_as_they_commit(link: Link) -> None:
    puller = link.start_puller()
    key_id = new_mrk(link.a)
    replicate(link.a, key_id, B)
    await eventually(lambda: key_id in link.b.region.keys)
    replica = link.b.key(key_id)
    assert [m.material.secret for m in replica.materials] == [m.material.secret for m in link.a.key(key_id).materials]
    assert link.b.cursors.get(A) == 1 and link.b.applier.applied == 1
    await eventually(lambda: puller.connected and puller.peer_head == 1)
    # A later change arrives through the long-poll in well under its wait.
    started = time.monotonic()
    from trent.node.ops.rotation import enable_key_rotation

    enable_key_rotation(link.a.region, {"KeyId": key_id}, ctx())
    await eventually(lambda: link.b.cursors.get(A) == 2, 1.0)
    assert time.monotonic() - started < 1.0
    assert link.b.key(key_id).rotation.enabled and link.b.applier.applied == 2


async def test_puller_with_wrong_token_applies_nothing(link: Link) -> None:
    key_id = new_mrk(link.a)
    replicate(link.a, key_id, B)
    puller = link.start_puller(token="not-the-token")
    await stays(lambda: link.b.applier.applied == 0 and not puller.connected, 0.3)
    assert key_id not in link.b.region.keys and link.b.cursors.get(A) == 0


async def test_partition_stops_replication_and_healing_catches_up(link: Link) -> None:
    puller = link.start_puller()
    await eventually(lambda: puller.connected)  # the puller is now waiting in a long-poll
    link.faults.set("partition", [A, B])
    key_id = new_mrk(link.a)
    replicate(link.a, key_id, B)  # wakes the poll that was already in flight
    await stays(lambda: link.b.applier.applied == 0, 0.3)
    assert key_id not in link.b.region.keys and not puller.connected
    link.faults.set("heal", [A, B])
    await eventually(lambda: key_id in link.b.region.keys)
    assert link.b.applier.applied == 1 and link.b.cursors.get(A) == 1


async def test_puller_survives_a_failed_apply(link: Link) -> None:
    link.b.store.fail_commits = 1  # type: ignore[attr-defined]
    link.start_puller()
    key_id = new_mrk(link.a)
    replicate(link.a, key_id, B)
    await eventually(lambda: key_id in link.b.region.keys)
    assert link.b.store.fail_commits == 0  # type: ignore[attr-defined]
    assert link.b.applier.applied == 1 and link.b.cursors.get(A) == 1


@pytest.mark.parametrize("sync_fails", [False, True])
async def test_a_pull_says_how_far_it_applied_only_once_that_is_durable(link: Link, sync_fails: bool) -> None:
    """The producer trims its outbox by what pulls say was applied: a cursor the consumer could still lose in a
    crash is not said, and after a failed sync nothing more is."""
    from concurrent.futures import Future

    store = link.b.store
    syncing: list[Future[None]] = []
    commit = store.commit

    def commit_then_sync(batch: Batch) -> None:
        commit(batch)
        syncing.append(Future())

    store.commit = commit_then_sync  # type: ignore[method-assign]
    store.durable = lambda: next((f for f in syncing if not f.done()), syncing[-1] if syncing else None)  # type: ignore[method-assign]
    key_id = new_mrk(link.a)
    replicate(link.a, key_id, B)
    from trent.node.ops.rotation import enable_key_rotation

    enable_key_rotation(link.a.region, {"KeyId": key_id}, ctx())
    puller = link.start_puller()
    await eventually(lambda: link.b.cursors.get(A) == 2)
    await stays(lambda: link.a.outbox.pulled.get(B, 0) == 0, 0.3)  # applied, not yet durable: not said
    for future in syncing:
        if sync_fails:
            future.set_exception(StoreError("sync failed: EIO"))
        else:
            future.set_result(None)
    if sync_fails:
        await eventually(lambda: not puller.connected)  # the puller backs off, saying nothing
        await stays(lambda: link.a.outbox.pulled.get(B, 0) == 0, 0.5)
    else:
        await eventually(lambda: link.a.outbox.pulled.get(B) == 2)


async def test_puller_survives_the_peer_being_down(link: Link) -> None:
    link.faults.set("down", [A])
    puller = link.start_puller()
    key_id = new_mrk(link.a)
    replicate(link.a, key_id, B)
    await stays(lambda: link.b.applier.applied == 0 and not puller.connected, 0.2)
    link.faults.set("up", [A])
    await eventually(lambda: key_id in link.b.region.keys)


async def test_puller_stops_when_cancelled(link: Link) -> None:
    link.start_puller()
    await asyncio.sleep(0.05)
    task = link.tasks.pop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 2.0)
    assert task.cancelled()


async def test_a_signature_header_that_is_not_utf8_is_refused_not_a_server_error(link: Link) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", link.server.port)
    signature = f"t={time.time()},n=".encode() + b"\xff,s=\xfe"  # well formed, in the window, not text
    writer.write(f"GET {LOG_PATH}?after=0&region={A} HTTP/1.1\r\nHost: x\r\n".encode() + SIGNATURE_HEADER.encode()
                 + b": " + signature + b"\r\nConnection: close\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 8)
    writer.close()
    assert status.split()[1] == b"403"


async def test_pulls_tell_the_producer_what_it_may_trim_when_the_peer_lives_elsewhere(link: Link) -> None:
    """A region alone in its process trims its outbox by what each peer's pulls said it has applied; a peer not
    heard from yet keeps every record."""
    from typing import cast

    from trent.cluster.jobs import OutboxTrimming
    from trent.cluster.replication.wiring import RegionReplication

    @dataclass
    class Alone:  # the producer's side only: its outbox, its own cursors, and who it pulls from (everyone else)
        outbox: object
        cursors: object
        pullers: dict[str, object]

    key_id = new_mrk(link.a)
    for region in (B, "ap-northeast-2"):
        replicate(link.a, key_id, region)
    alone = cast(RegionReplication, Alone(link.a.outbox, link.a.cursors, {B: object()}))
    trimming = OutboxTrimming({A: alone}, [])
    assert trimming.trim() == 0 and link.a.outbox.pulled == {}  # B never pulled: it may need everything
    async with await link.get(after=0, wait=0, **{"from": B}) as r:  # a pull is no promise beyond its cursor
        assert r.status == 200
    assert link.a.outbox.pulled == {B: 0} and trimming.trim() == 0
    link.start_puller()
    await eventually(lambda: link.b.cursors.get(A) == 2 and link.a.outbox.pulled.get(B) == 2)
    assert trimming.trim() == 1  # record 1; the newest always stays
    assert [seq for seq, _ in link.a.records()] == [2]
    alone.pullers["ap-northeast-2"] = object()  # a third region that has not pulled yet holds trimming back
    from tests.unit.test_applier import ctx
    from trent.node.ops.rotation import enable_key_rotation

    enable_key_rotation(link.a.region, {"KeyId": key_id}, ctx())
    await eventually(lambda: link.a.outbox.pulled.get(B) == 3)
    assert trimming.trim() == 0 and [seq for seq, _ in link.a.records()] == [2, 3]


# -- a multi-Region rotation across delayed links -------------------------------------------------------------


ONE_WAY = 0.03  # seconds each way on both links: a 60 ms round trip


@pytest.fixture
async def delayed_pair(tmp_path: Path) -> AsyncIterator[tuple[Node, Node, list[Puller]]]:
    """Two regions on durable stores (commits made durable by the store's sync thread, as in a node), each serving
    its outbox and pulling the other's across a link that delays every pull and every answer by ONE_WAY."""
    a = Node(A, declared(SqliteStore(tmp_path / "a.db", group_sync=True)))
    b = Node(B, declared(SqliteStore(tmp_path / "b.db", group_sync=True)))
    faults = Faults(monotonic=time.monotonic)
    servers: list[TestServer] = []
    for node in (a, b):
        app = web.Application()
        app.router.add_routes([outbox_route(node.name, node.outbox, TOKEN, faults)])
        servers.append(TestServer(app, host="127.0.0.1"))
        await servers[-1].start_server()
    session = aiohttp.ClientSession()
    pullers = [Puller(B, A, f"http://127.0.0.1:{servers[0].port}", b.applier, TOKEN, faults, session, ONE_WAY),
               Puller(A, B, f"http://127.0.0.1:{servers[1].port}", a.applier, TOKEN, faults, session, ONE_WAY)]
    tasks = [asyncio.create_task(p.run()) for p in pullers]
    try:
        yield a, b, pullers
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for node in (a, b):
            node.outbox.close()
        await session.close()
        for server in servers:
            await server.close()
        for node in (a, b):
            node.store.close()


async def test_an_on_demand_rotation_is_current_in_the_replica_after_three_one_way_trips(
        delayed_pair: tuple[Node, Node, list[Puller]]) -> None:
    """The new material reaches the replica, its confirmation the primary, and the switch to current the replica:
    three one-way trips, and no more than the 1.5 × RTT + 20 ms target, from the rotation's acknowledgement. A delay
    applied twice per trip, a pull held for a timer or a batch, or a record waiting for anything but its own commit
    to be durable would each miss it."""
    from trent.node.ops.rotation import rotate_key_on_demand

    a, b, _ = delayed_pair
    key_id = new_mrk(a)
    replicate(a, key_id, B)
    await eventually(lambda: key_id in b.region.keys, 5.0)
    rtt, samples = 2 * ONE_WAY, []
    for _ in range(5):
        # Idle links: both peers' long-polls are parked, as they are between a real cluster's rotations.
        await eventually(lambda: a.outbox.parked == 1 and b.outbox.parked == 1, 5.0)
        before = b.key(key_id).current_material_id
        rotate_key_on_demand(a.region, {"KeyId": key_id}, ctx("RotateKeyOnDemand"))
        acknowledged = time.monotonic()  # the handler's commit is written; its answer would wait for the fsync
        deadline = acknowledged + 5.0
        while b.key(key_id).current_material_id == before:
            assert time.monotonic() < deadline, "the rotation never became current in the replica"
            await asyncio.sleep(0.001)
        samples.append(time.monotonic() - acknowledged)
        assert a.key(key_id).current_material_id == b.key(key_id).current_material_id
    assert min(samples) >= 3 * ONE_WAY * 0.95, samples  # the delays are applied, once per trip
    # Within the figure's bound (1.5 x RTT + 20 ms), with room for a busy test machine's fsyncs; a delay applied twice
    # on every trip would take 3 x RTT.
    assert sorted(samples)[len(samples) // 2] <= 1.5 * rtt + 0.040, samples
