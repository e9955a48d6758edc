"""Group commit (node/store/groupsync.py): commits are written at once and made durable by one thread, one fsync for
all written before it; a response is sent only once what it rests on is durable, and a failed sync is a 500."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.unit.test_endpoint import decoder, make_endpoint  # noqa: F401  (decoder: a fixture)
from tests.unit.test_store import declared
from trent.node.app import kms_handler, make_app
from trent.node.store.base import Batch, StoreError
from trent.node.store.groupsync import GroupSync
from trent.node.store.memory import MemoryStore
from trent.node.store.sqlite import SqliteStore
from trent.node.wire.protocol import CONTENT_TYPE
from trent.node.wire.validation import RequestDecoder


class Disk:
    """A sync function the test releases by hand; counts its calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.release = threading.Event()
        self.fail = fail

    def __call__(self) -> None:
        self.calls += 1
        assert self.release.wait(10)
        if self.fail:
            raise OSError("EIO")


def test_one_sync_covers_every_commit_written_before_it() -> None:
    disk = Disk()
    group = GroupSync(disk, "test")
    try:
        assert group.durable() is None  # nothing written: nothing to wait for
        group.wrote()
        first = group.durable()
        assert first is not None and not first.done()
        group.wrote()
        group.wrote()
        later = group.durable()
        assert later is not None and later is not first and group.durable() is later
        disk.release.set()
        first.result(timeout=10)
        later.result(timeout=10)
        assert group.durable() is None
        assert disk.calls <= 2  # the first sync, and one for the two written while it ran
    finally:
        disk.release.set()
        group.close()


def test_a_failed_sync_fails_its_waiters_with_a_store_error() -> None:
    disk = Disk(fail=True)
    group = GroupSync(disk, "test")
    group.wrote()
    waiting = group.durable()
    assert waiting is not None
    disk.release.set()
    with pytest.raises(StoreError, match="EIO"):
        waiting.result(timeout=10)
    group.close()


def test_a_failed_sync_is_final_even_once_the_disk_works_again(caplog: pytest.LogCaptureFixture) -> None:
    """After a failed fsync the kernel may have dropped what it could not write: no later sync vouches for it, so
    every wait fails from then on, also for commits written after it, and the store says so once."""
    disk = Disk(fail=True)
    group = GroupSync(disk, "eu-west-1/kms.db")
    try:
        group.wrote()
        first = group.durable()
        assert first is not None
        disk.release.set()
        with caplog.at_level("ERROR", logger="trent.store"), pytest.raises(StoreError, match="EIO"):
            first.result(timeout=10)
        disk.fail = False  # the disk answers again
        group.wrote()
        for _ in range(3):  # nothing written since, or more written: the same answer
            later = group.durable()
            assert later is not None and later.done()
            with pytest.raises(StoreError, match="EIO"):
                later.result(timeout=0)
        one, other = group.durable(), group.durable()
        # Each refused answer its own error: one error raised in all of them would keep all their frames.
        assert one is not None and other is not None and one.exception() is not other.exception()
        assert disk.calls == 1  # no sync after the failed one
        failures = [r for r in caplog.records if r.name == "trent.store"]
        assert len(failures) == 1 and "eu-west-1/kms.db" in failures[0].getMessage()
    finally:
        group.close()


def test_a_disk_drill_fails_the_next_sync_as_the_disk_would() -> None:
    """`trent fault disk`: nothing fails until the next commit; that commit's sync fails without touching the disk,
    and from then on the store is failed as after any failed sync."""
    disk = Disk()
    disk.release.set()
    group = GroupSync(disk, "test")
    try:
        group.fail_next()
        assert group.durable() is None  # nothing written: nothing fails yet
        group.wrote()
        pending = group.durable()
        assert pending is not None
        with pytest.raises(StoreError, match="Input/output error"):
            pending.result(timeout=10)
        assert disk.calls == 0
        group.wrote()
        later = group.durable()
        assert later is not None and later.done() and later.exception() is not None
    finally:
        group.close()


def test_a_store_that_failed_a_sync_writes_nothing_more(tmp_path: Path) -> None:
    """A refused call that the client retries must not write again, unanswered, each time."""
    store = declared(SqliteStore(tmp_path / "kms.db", group_sync=True))
    try:
        assert store.fail_next_sync()
        store.commit(Batch().put("keys", "first", b"v"))  # written; its sync fails
        pending = store.durable()
        assert pending is not None
        with pytest.raises(StoreError):
            pending.result(timeout=10)
        with pytest.raises(StoreError, match="not written"):
            store.commit(Batch().put("keys", "second", b"v"))
        assert [i for i, _ in store.scan("keys")] == ["first"]  # what the failed sync covered is still unknown
    finally:
        store.close()
    synced_at_commit = SqliteStore(tmp_path / "other.db")
    assert not synced_at_commit.fail_next_sync()  # a store synced as it commits has no drill
    synced_at_commit.close()


async def test_a_waiter_that_gives_up_does_not_cancel_the_wait_of_the_others() -> None:
    """asyncio cancels the future a cancelled task waited on: the shared one must survive it, for the other
    waiters and for the sync thread, which completes it later."""
    disk = Disk()
    group = GroupSync(disk, "test")
    try:
        group.wrote()
        shared = group.durable()
        assert shared is not None
        leaving = asyncio.ensure_future(asyncio.wrap_future(shared))
        staying = asyncio.ensure_future(asyncio.wrap_future(shared))
        await asyncio.sleep(0)
        leaving.cancel()
        await asyncio.gather(leaving, return_exceptions=True)
        assert not shared.cancelled()
        disk.release.set()
        await asyncio.wait_for(staying, 10)
        group.wrote()  # the sync thread is still there for the next commits
        again = group.durable()
        if again is not None:
            await asyncio.wait_for(asyncio.wrap_future(again), 10)
        assert disk.calls == 2
    finally:
        disk.release.set()
        group.close()


def test_a_group_synced_store_is_durable_once_its_future_is_done_and_on_close(tmp_path: Path) -> None:
    store = declared(SqliteStore(tmp_path / "kms.db", group_sync=True))
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: the thread syncs
    store.commit(Batch().put("keys", "k", b"v"))
    durable = store.durable()
    if durable is not None:
        durable.result(timeout=10)
    assert store.durable() is None
    store.commit(Batch().put("keys", "k2", b"v"))
    store.close()  # syncs what is pending before it stops
    reopened = declared(SqliteStore(tmp_path / "kms.db"))
    assert [i for i, _ in reopened.scan("keys")] == ["k", "k2"]
    reopened.close()


class Pending(MemoryStore):
    """A store whose commits become durable when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.future: Future[None] | None = None

    def durable(self) -> Future[None] | None:
        return self.future


async def _post(endpoint: Any) -> tuple[TestClient[web.Request, web.Application], Any]:
    client = TestClient(TestServer(make_app(kms_handler(lambda _r: endpoint), [])))
    await client.start_server()
    task = asyncio.ensure_future(client.post("/", data=b'{"KeyId": "k", "Plaintext": "aGk="}', headers={
        "X-Amz-Target": "TrentService.Encrypt", "Content-Type": CONTENT_TYPE}))
    return client, task


@pytest.mark.parametrize("fails", [False, True])
async def test_no_answer_leaves_before_what_it_rests_on_is_durable(decoder: RequestDecoder, fails: bool) -> None:  # noqa: F811
    endpoint, handlers, _ = make_endpoint(decoder)
    store = Pending()
    store.future = Future()
    endpoint.region.store = store
    client, answer = await _post(endpoint)
    try:
        for _ in range(100):  # the handler ran; the answer waits
            if handlers.seen:
                break
            await asyncio.sleep(0.01)
        assert handlers.seen and not answer.done()
        if fails:
            store.future.set_exception(StoreError("sync failed"))
        else:
            store.future.set_result(None)
        response = await asyncio.wait_for(answer, 10)
        if fails:
            assert response.status == 500
            assert (await response.json(content_type=None))["__type"] == "KMSInternalException"
        else:
            assert response.status == 200
    finally:
        await client.close()


async def test_after_a_failed_sync_reads_are_refused_too(decoder: RequestDecoder) -> None:  # noqa: F811
    """A read after the failure could show a change the disk lost: it is a 500 like the write was, and stays one."""
    disk = Disk(fail=True)
    group = GroupSync(disk, "test")
    endpoint, handlers, _ = make_endpoint(decoder)
    store = Pending()
    endpoint.region.store = store
    try:
        group.wrote()
        store.future = group.durable()
        disk.release.set()
        for _ in range(3):
            client, answer = await _post(endpoint)
            try:
                response = await asyncio.wait_for(answer, 10)
                assert response.status == 500
                assert (await response.json(content_type=None))["__type"] == "KMSInternalException"
            finally:
                await client.close()
            store.future = group.durable()  # what a store over the group hands each later answer
        assert handlers.seen
    finally:
        group.close()


def _pending_fails(store: SqliteStore) -> bool:
    pending = store.durable()
    if pending is None:
        return False
    try:
        pending.result(timeout=10)
    except StoreError:
        return True
    return False


def test_a_sync_failed_in_one_process_fails_every_process_writing_the_database(tmp_path: Path) -> None:
    """`--workers`: the processes' commits share one write-ahead log, so one failed sync leaves none of them durable.
    Two stores on one database stand for two processes (each has its own connection, descriptor and lock)."""
    path = tmp_path / "kms.db"
    failing = declared(SqliteStore(path, feed=True, group_sync=True))
    other = declared(SqliteStore(path, feed=True, group_sync=True))
    try:
        other.commit(Batch().put("keys", "before", b"v"))
        assert not _pending_fails(other)  # its sync works
        assert failing.fail_next_sync()  # the drill: the next sync of whichever process fails
        failing.commit(Batch().put("keys", "lost", b"v"))
        assert _pending_fails(failing)
        # The other process's disk "works", yet it answers nothing more and writes nothing more.
        assert _pending_fails(other)
        with pytest.raises(StoreError, match="not written: sync failed: another process"):
            other.commit(Batch().put("keys", "after", b"v"))
        assert [i for i, _ in other.scan("keys")] == ["before", "lost"]
    finally:
        failing.close()
        other.close()
    # Every process started again: the database serves what it holds, and syncs again.
    again = declared(SqliteStore(path, feed=True, group_sync=True))
    try:
        again.commit(Batch().put("keys", "restarted", b"v"))
        assert not _pending_fails(again)
    finally:
        again.close()


def test_the_drill_fails_the_sync_of_whichever_process_makes_it_next(tmp_path: Path) -> None:
    """`trent fault disk` reaches the host process; the next sync may be a worker's."""
    path = tmp_path / "kms.db"
    host = declared(SqliteStore(path, feed=True, group_sync=True))
    worker = declared(SqliteStore(path, feed=True, group_sync=True))
    try:
        assert host.fail_next_sync()
        worker.commit(Batch().put("keys", "k", b"v"))
        assert _pending_fails(worker)
        assert _pending_fails(host)  # told through the shared mark, before it wrote anything itself
    finally:
        host.close()
        worker.close()


def test_a_process_started_while_the_others_run_keeps_their_failure(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A process started while the others run must not clear the mark: only a start of every process does."""
    from trent.node.store import signal

    monkeypatch.setattr(signal, "ALONE_WAIT_SECONDS", 0.2)
    path = tmp_path / "kms.db"
    failing = declared(SqliteStore(path, feed=True, group_sync=True))
    try:
        failing.fail_next_sync()
        failing.commit(Batch().put("keys", "k", b"v"))
        assert _pending_fails(failing)
        late = declared(SqliteStore(path, feed=True, group_sync=True))
        try:
            assert _pending_fails(late)
            with pytest.raises(StoreError, match="not written"):
                late.commit(Batch().put("keys", "k2", b"v"))
        finally:
            late.close()
    finally:
        failing.close()


def test_the_sync_keeps_its_descriptor_and_opens_a_replaced_file_again(tmp_path: Path) -> None:
    """The kernel reports a failed write back to every descriptor opened before it, to only one opened after: the
    descriptor is kept from the first sync on, and changed only when the file itself was replaced."""
    from trent.node.store.groupsync import FileSync

    wal, db = tmp_path / "kms.db-wal", tmp_path / "kms.db"
    db.write_bytes(b"db")
    sync = FileSync(str(wal), str(db))
    try:
        sync()  # no log yet: the database file
        assert sync._inode == (db.stat().st_dev, db.stat().st_ino)
        wal.write_bytes(b"log")
        sync()
        first = sync._fd
        assert sync._inode == (wal.stat().st_dev, wal.stat().st_ino)
        sync()
        assert sync._fd == first  # kept
        wal.unlink()
        wal.write_bytes(b"a new log")
        sync()
        assert sync._inode == (wal.stat().st_dev, wal.stat().st_ino)
    finally:
        sync.close()


def test_a_start_waits_a_moment_for_the_processes_of_the_failed_run_to_stop(tmp_path: Path) -> None:
    """After a failed sync, Trent restarted at once: the old workers are still stopping when the new host opens the
    database. It waits for them, then clears the mark."""
    path = tmp_path / "kms.db"
    old = declared(SqliteStore(path, feed=True, group_sync=True))
    old.fail_next_sync()
    old.commit(Batch().put("keys", "k", b"v"))
    assert _pending_fails(old)
    stopping = threading.Timer(0.3, old.close)
    stopping.start()
    started = time.monotonic()
    new = declared(SqliteStore(path, feed=True, group_sync=True))
    try:
        assert time.monotonic() - started >= 0.25  # it waited for the old one to let go
        new.commit(Batch().put("keys", "after", b"v"))
        assert not _pending_fails(new)
    finally:
        stopping.join()
        new.close()
