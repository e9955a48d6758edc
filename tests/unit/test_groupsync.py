"""Group commit (node/store/groupsync.py): commits are written at once and made durable by one thread, one fsync for
all written before it; a response is sent only once what it rests on is durable, and a failed sync is a 500."""

from __future__ import annotations

import asyncio
import threading
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
