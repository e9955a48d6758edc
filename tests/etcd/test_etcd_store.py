"""The etcd store over a real 3-member etcd: conditional commits that never lose an update, a view kept current by
the watch, outbox numbers no two nodes share, and no acknowledged write lost when an etcd member is SIGKILLed."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.unit.test_replication_log import ACCOUNT, CODEC, ROOT, A, B, mrk
from trent.cluster.etcd_local import LocalEtcd
from trent.cluster.replication.log import OUTBOX, Outbox
from trent.node.clock import FixedClock
from trent.node.model.mrk_rules import snapshot_of
from trent.node.service import KEYS, Region, RegionIdentity
from trent.node.store.base import Batch, StaleState, StoreError
from trent.node.store.etcd import EtcdStore
from trent.node.store.etcd_client import EtcdClient, EtcdError, EtcdSettings, unb64

_names = itertools.count()


@pytest.fixture
def open_store(etcd: LocalEtcd) -> Iterator[Callable[[str], EtcdStore]]:
    """Stores of one region (a fresh prefix per test), as separate nodes open them; closed at the end."""
    prefix = f"/t{next(_names)}-{time.monotonic_ns()}"
    made: list[EtcdStore] = []

    def make(region: str = A) -> EtcdStore:
        store = EtcdStore(EtcdClient(EtcdSettings(endpoints=etcd.endpoints, prefix=prefix)), region)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def wait_for(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the bound"
        time.sleep(0.01)


def test_a_commit_over_a_stale_view_is_refused_and_writes_nothing(open_store: Callable[[str], EtcdStore]) -> None:
    a, b = open_store(A), open_store(A)
    for store in (a, b):
        store.declare(KEYS, feed=True)
    start = a.change_head()
    head = a.commit_if(Batch().put(KEYS, "k", b"from a"), start)
    with pytest.raises(StaleState):
        b.commit_if(Batch().put(KEYS, "k", b"from b"), start)
    wait_for(lambda: b.change_head() == head)
    assert b.get(KEYS, "k") == b"from a"
    oldest, changes = b.changes_after(start)
    assert changes == [(head, KEYS, "k")] and oldest == 0
    b.commit_if(Batch().put(KEYS, "k", b"from b"), head)
    wait_for(lambda: a.get(KEYS, "k") == b"from b")


def test_two_nodes_incrementing_one_key_concurrently_lose_no_update(open_store: Callable[[str], EtcdStore]) -> None:
    stores = [open_store(A), open_store(A)]
    for store in stores:
        store.declare(KEYS, feed=True)
    per_node, stale = 25, [0, 0]

    def node(n: int) -> None:
        store = stores[n]
        seen = store.change_head()
        for _ in range(per_node):
            while True:  # what run_fresh does: on a lost race, catch up and decide again
                current = int(store.get(KEYS, "counter") or b"0")
                try:
                    seen = store.commit_if(Batch().put(KEYS, "counter", str(current + 1).encode()), seen)
                    break
                except StaleState:
                    stale[n] += 1
                    seen = store.change_head()
                    time.sleep(0.001)

    threads = [threading.Thread(target=node, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wait_for(lambda: all(s.get(KEYS, "counter") == str(2 * per_node).encode() for s in stores))
    assert sum(stale) > 0  # they did race (else the test proves nothing)


def test_regions_on_two_nodes_follow_each_other_through_the_watch(open_store: Callable[[str], EtcdStore]) -> None:
    clock = FixedClock()
    first = Region(RegionIdentity(A, ACCOUNT), open_store(A), ROOT, clock, cluster_regions=(A, B))
    second = Region(RegionIdentity(A, ACCOUNT), open_store(A), ROOT, clock, cluster_regions=(A, B))
    key = mrk(1)
    first.commit(keys=[key])
    # No polling of etcd: the second node's store heard of it through its watch; sync() reads memory only.
    wait_for(lambda: second.sync() or key.key_id in second.keys)
    assert second.keys[key.key_id].materials[0].material.secret.reveal() == key.materials[0].material.secret.reveal()
    # Its stale attempt to write is refused, and after catching up it succeeds.
    second.commit(keys=[second.keys[key.key_id].with_changes(description="from the second node")])
    wait_for(lambda: first.sync() or first.keys[key.key_id].description == "from the second node")


def test_only_wrapped_material_reaches_etcd(open_store: Callable[[str], EtcdStore], etcd: LocalEtcd) -> None:
    store = open_store(A)
    region = Region(RegionIdentity(A, ACCOUNT), store, ROOT, FixedClock(), cluster_regions=(A, B))
    key = mrk(7)
    region.commit(keys=[key])
    everything = b"".join(unb64(kv.get("value")) for _, kv in store.client.range_prefix(store.base) if kv)
    secret = key.materials[0].material.secret.reveal()
    assert key.key_id.encode() in everything
    assert secret not in everything and secret.hex().encode() not in everything


def test_outbox_numbers_are_never_shared_by_two_nodes(open_store: Callable[[str], EtcdStore]) -> None:
    clock = FixedClock()
    nodes = []
    for _ in range(2):
        store = open_store(A)
        outbox = Outbox(A, store, CODEC, clock)
        region = Region(RegionIdentity(A, ACCOUNT), store, ROOT, clock, change_log=outbox, cluster_regions=(A, B))
        outbox.follow(region.follower)
        nodes.append((region, outbox))
    per_node = 10

    def work(n: int) -> None:
        region, _ = nodes[n]
        for i in range(per_node):
            key = mrk(100 * (n + 1) + i)
            region.run_fresh(lambda key=key: region.commit(keys=[key], commands=[snapshot_of(key)]), attempts=50)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    store = nodes[0][0].store
    wait_for(lambda: len(list(store.scan(OUTBOX))) == 2 * per_node)
    # Every append kept its record (a lost race skips a number; none is ever written twice).
    named = {CODEC.decode(doc)[0].key_id for _, doc in store.scan(OUTBOX)}
    assert named == {mrk(100 * (n + 1) + i).key_id for n in range(2) for i in range(per_node)}


def test_sigkill_of_an_etcd_member_during_a_write_burst_loses_no_acknowledged_write(
        open_store: Callable[[str], EtcdStore], etcd: LocalEtcd) -> None:
    writer = open_store(A)
    writer.declare(KEYS, feed=True)
    acknowledged: list[str] = []
    failed = [0]
    stop = threading.Event()

    def burst() -> None:
        seen = writer.change_head()
        n = 0
        while not stop.is_set():
            ident = f"w{n:05d}"
            try:
                seen = writer.commit_if(Batch().put(KEYS, ident, ident.encode()), seen)
                acknowledged.append(ident)
                n += 1
            except StaleState:
                seen = writer.change_head()
            except StoreError:
                failed[0] += 1  # not acknowledged: a client would be told to retry
                time.sleep(0.02)

    thread = threading.Thread(target=burst)
    thread.start()
    wait_for(lambda: len(acknowledged) >= 30, 20)
    victim = etcd.leader()
    assert victim is not None
    etcd.kill(victim)
    before = len(acknowledged)
    wait_for(lambda: len(acknowledged) >= before + 30, 30)  # the burst goes on over the two left
    stop.set()
    thread.join(30)
    try:
        # A node that starts now reads everything acknowledged, from the members that are left.
        reader = open_store(A)
        reader.declare(KEYS, feed=True)
        stored = {i for i, _ in reader.scan(KEYS)}
        assert set(acknowledged) <= stored
    finally:
        etcd.restart(victim)
    # And the member that came back has them too (it caught up from the others).
    only = EtcdStore(EtcdClient(EtcdSettings(endpoints=(etcd.endpoints[victim],),
                                             prefix=writer.client.settings.prefix)), A)
    try:
        only.declare(KEYS)
        assert set(acknowledged) <= {i for i, _ in only.scan(KEYS)}
    finally:
        only.close()


def test_a_watch_idle_past_its_timeout_and_one_cut_behind_a_compaction_both_catch_up(
        open_store: Callable[[str], EtcdStore], etcd: LocalEtcd) -> None:
    a, b = open_store(A), open_store(A)
    for store in (a, b):
        store.declare(KEYS, feed=True)
    a._watch_idle = 0.3  # its stream times out when nothing happens for that long, and is made again
    a._stop_watch_conn()
    time.sleep(1.0)
    b.commit_if(Batch().put(KEYS, "after-idle", b"1"), b.change_head())
    wait_for(lambda: a.get(KEYS, "after-idle") == b"1")
    # Cut a's watch and hold it back while b commits and etcd compacts its history: the watch made again finds
    # its start compacted away, a reads the region afresh, and its feed's readers are told to load everything.
    seen = a.change_head()
    held = threading.Event()
    watch = a.client.watch

    def held_back(*args, **kwargs):  # type: ignore[no-untyped-def]
        held.wait(10)
        return watch(*args, **kwargs)

    a.client.watch = held_back  # type: ignore[method-assign]
    a._stop_watch_conn()
    head = b.commit_if(Batch().put(KEYS, "while-cut", b"2").delete(KEYS, "after-idle"), b.change_head())
    b.client.call("kv/compaction", {"revision": head, "physical": True})
    held.set()
    wait_for(lambda: a.get(KEYS, "while-cut") == b"2" and a.get(KEYS, "after-idle") is None)
    oldest, _ = a.changes_after(seen)
    assert oldest > seen + 1  # a follower behind the reload loads everything again
    assert a.change_head() >= head


def test_a_node_whose_watch_is_lost_stops_answering_from_memory_then_recovers(
        open_store: Callable[[str], EtcdStore]) -> None:
    store = EtcdStore(EtcdClient(EtcdSettings(endpoints=open_store(A).client.settings.endpoints,
                                              prefix=open_store(A).client.settings.prefix)), A, stale_after=0.5)
    try:
        store.declare(KEYS, feed=True)
        assert store.data_version() == store.change_head()
        watch = store.client.watch
        allowed = threading.Event()

        def unreachable(*args, **kwargs):  # type: ignore[no-untyped-def]
            if not allowed.is_set():
                time.sleep(0.05)
                raise EtcdError("no etcd endpoint took the watch")
            return watch(*args, **kwargs)

        store.client.watch = unreachable  # type: ignore[method-assign]
        store._stop_watch_conn()
        time.sleep(0.2)
        store.data_version()  # a short break (a member failing over) is no reason to refuse anything
        wait_for(lambda: store._stop_watch_conn() or _refuses(store), 5)  # (cut again: the first may have raced)
        allowed.set()
        wait_for(lambda: not _refuses(store), 5)
    finally:
        store.close()


def _refuses(store: EtcdStore) -> bool:
    try:
        store.data_version()
        return False
    except StoreError as exc:
        assert "no watch on etcd" in str(exc)
        return True


def test_an_unconditional_commit_larger_than_one_transaction_goes_in_chunks_without_waiting(
        open_store: Callable[[str], EtcdStore]) -> None:
    a, b = open_store(A), open_store(A)
    for store in (a, b):
        store.declare(OUTBOX, feed=True)
    started = time.monotonic()
    batch = Batch()
    for n in range(300):  # (outbox trimming deletes up to a thousand records at once)
        batch.put(OUTBOX, f"{n:016d}", b"record")
    a.commit(batch)
    assert time.monotonic() - started < 3  # each chunk comes back through the watch at once
    assert len(list(a.scan(OUTBOX))) == 300
    wait_for(lambda: len(list(b.scan(OUTBOX))) == 300)
    doomed = Batch()
    for n in range(250):
        doomed.delete(OUTBOX, f"{n:016d}")
    a.commit(doomed)
    assert [i for i, _ in a.scan(OUTBOX)] == [f"{n:016d}" for n in range(250, 300)]
    wait_for(lambda: len(list(b.scan(OUTBOX))) == 50)
    # What the deletions left to remember is forgotten once the watch is past them (no growth for the node's life).
    for store in (a, b):
        wait_for(lambda store=store: sum(1 for t, _ in store._revs if t == OUTBOX) == 50)


async def test_an_outbox_hears_of_another_node_s_records_at_once_through_the_watch(
        open_store: Callable[[str], EtcdStore]) -> None:
    import asyncio

    from trent.cluster.etcd_node import SyncOnWatch

    clock = FixedClock()
    nodes = []
    for _ in range(2):
        store = open_store(A)
        outbox = Outbox(A, store, CODEC, clock)
        region = Region(RegionIdentity(A, ACCOUNT), store, ROOT, clock, change_log=outbox, cluster_regions=(A, B))
        outbox.follow(region.follower)
        nodes.append((region, outbox, store))
    (serving, outbox, store), (writer, _, _) = nodes
    store.on_change(SyncOnWatch(asyncio.get_running_loop(), serving.sync).poke)
    head = outbox.head
    waiting = asyncio.create_task(outbox.wait_beyond(head, 10.0))  # a peer's long-poll, on the serving node
    await asyncio.sleep(0.1)
    started = time.monotonic()
    key = mrk(900)
    await asyncio.to_thread(lambda: writer.commit(keys=[key], commands=[snapshot_of(key)]))
    await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 2  # woken by the watch, not by the long-poll's end
    assert outbox.head > head and key.key_id in serving.keys  # caught up without a request
