"""The lease election of an etcd-backed region, in one process over a real etcd: one leader at a time; a leader
that cannot renew its lease for a whole TTL stops the work itself (by then another may hold it), and another node
takes it once the lease is gone; a leader that stops cleanly hands the work over at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from trent.cluster.etcd_election import LeaseElection
from trent.cluster.etcd_local import LocalEtcd
from trent.node.store.etcd import EtcdStore
from trent.node.store.etcd_client import EtcdClient, EtcdError, EtcdSettings

TTL = 1


@pytest.fixture
def stores(etcd: LocalEtcd) -> Iterator[Callable[[], EtcdStore]]:
    prefix = f"/election-{time.monotonic_ns()}"
    made: list[EtcdStore] = []

    def make() -> EtcdStore:
        made.append(EtcdStore(EtcdClient(EtcdSettings(endpoints=etcd.endpoints, prefix=prefix, lease_ttl=TTL)),
                              "us-east-1"))
        return made[-1]

    yield make
    for store in made:
        store.close()


class Work:
    def __init__(self) -> None:
        self.running = False
        self.events: list[str] = []

    async def lead(self) -> None:
        self.running = True
        self.events.append("lead")

    async def follow(self) -> None:
        self.running = False
        self.events.append("follow")


async def until(check: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "not within the bound"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_one_leader_a_cut_off_leader_steps_down_and_another_takes_over(
        stores: Callable[[], EtcdStore]) -> None:
    works = [Work(), Work()]
    elections = [LeaseElection(stores(), f"node{i}", lambda: {"url": "http://x"}, w.lead, w.follow)
                 for i, w in enumerate(works)]
    for election in elections:
        await election.start()
    try:
        await until(lambda: works[0].running, 5)
        await asyncio.sleep(TTL * 1.5)
        assert works[0].running and not works[1].running  # renewed: it keeps it, and nobody else runs it
        # Node 0 can no longer reach etcd to renew its lease: within about a TTL it stops the work itself...
        def cut_off(_lease: int) -> int:
            raise EtcdError("no etcd endpoint answered")
        elections[0].store.client.lease_keepalive = cut_off  # type: ignore[method-assign]
        await until(lambda: not works[0].running, TTL * 3)
        # ... and node 1 takes it once the lease expired in etcd.
        await until(lambda: works[1].running, TTL * 4)
        # (the report reads the node's watched view of etcd, which hears of the new holder a moment later)
        await until(lambda: elections[1].report()["lease_holder"] == "node1", TTL * 2)
    finally:
        for election in elections:
            await election.stop()
    assert works[0].events[:2] == ["lead", "follow"]


async def test_a_clean_stop_hands_the_work_over_at_once(stores: Callable[[], EtcdStore]) -> None:
    works = [Work(), Work()]
    elections = [LeaseElection(stores(), f"node{i}", lambda: {}, w.lead, w.follow) for i, w in enumerate(works)]
    for election in elections:
        await election.start()
    try:
        await until(lambda: works[0].running, 5)
        await elections[0].stop()  # revokes its lease: .leader goes now, and node 1 hears of it through its watch
        moved = await until(lambda: works[1].running, TTL * 3)
        assert moved < TTL
        assert not works[0].running
    finally:
        await elections[1].stop()
