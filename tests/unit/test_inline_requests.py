"""Requests handled in their connection's task (node/inline_requests.py): only aiohttp's request coroutine is run
inline; its result, exceptions, waits and cancellation reach the connection's task as through a task of its own,
and context variables it sets stay its own."""

from __future__ import annotations

import asyncio
import contextvars
import sys
from typing import Any

import pytest
from aiohttp.web_protocol import RequestHandler

from trent.node import inline_requests
from trent.node.inline_requests import InlineRequests

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("VAR", default="connection")


class Fake:
    """Stands in for aiohttp's handler: ``_handle_request`` as aiohttp names it, so the factory recognises it."""

    def __init__(self, tasks: list[asyncio.Task[Any] | None]) -> None:
        self.tasks = tasks

    async def _handle_request(self, gate: asyncio.Future[str] | None, fail: bool = False) -> tuple[str, Any]:
        VAR.set("request")
        self.tasks.append(asyncio.current_task())
        got = await gate if gate is not None else "at once"
        await asyncio.sleep(0)
        if fail:
            raise ConnectionResetError("gone")
        return got, VAR.get()


@pytest.fixture
def factory(monkeypatch: pytest.MonkeyPatch) -> InlineRequests:
    monkeypatch.setattr(RequestHandler, "_handle_request", Fake._handle_request, raising=False)
    return InlineRequests()


async def test_the_request_runs_in_the_awaiting_task_with_its_own_context(factory: InlineRequests) -> None:
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[Any] | None] = []
    gate: asyncio.Future[str] = loop.create_future()
    awaitable = factory(loop, Fake(tasks)._handle_request(gate))
    assert not isinstance(awaitable, asyncio.Task)
    loop.call_soon(gate.set_result, "opened")
    assert await awaitable == ("opened", "request")
    assert tasks == [asyncio.current_task()]
    assert VAR.get() == "connection"  # what the request set stayed in its copy of the context


async def test_exceptions_and_cancellation_reach_the_request(factory: InlineRequests) -> None:
    loop = asyncio.get_running_loop()
    with pytest.raises(ConnectionResetError):
        await factory(loop, Fake([])._handle_request(None, fail=True))
    gate: asyncio.Future[str] = loop.create_future()

    async def connection() -> Any:
        return await factory(loop, Fake([])._handle_request(gate))

    task = asyncio.create_task(connection())
    await asyncio.sleep(0.01)
    task.cancel()  # as aiohttp cancels a lost connection's task
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gate.cancelled()  # the request's wait was cancelled, where it stood


async def test_every_other_coroutine_gets_a_task(factory: InlineRequests) -> None:
    loop = asyncio.get_running_loop()

    async def other() -> int:
        return 7

    task = factory(loop, other())
    assert isinstance(task, asyncio.Task) and await task == 7


async def test_installed_only_where_no_factory_is_set() -> None:
    loop = asyncio.get_running_loop()
    before = loop.get_task_factory()
    try:
        loop.set_task_factory(None)
        assert inline_requests.install(loop) and isinstance(loop.get_task_factory(), InlineRequests)
        assert inline_requests.install(loop)  # twice is once
        mine = InlineRequests()
        loop.set_task_factory(lambda lp, coro, **kw: asyncio.Task(coro, loop=lp, **kw))  # someone else's
        assert not inline_requests.install(loop) and loop.get_task_factory() is not mine
    finally:
        loop.set_task_factory(before)


async def test_pipelined_requests_are_answered_in_order_in_the_connection_s_task() -> None:
    from aiohttp import web

    from tests.unit.test_answer import ANSWERS, LIMITS
    from trent.node.app import kms_first, kms_handler, make_app
    from trent.node.edge import ConnectionGuard
    from trent.node.endpoint import WireResponse

    tasks: list[asyncio.Task[Any] | None] = []
    seen: list[str] = []

    def endpoint_for(request: web.BaseRequest) -> WireResponse:
        tasks.append(asyncio.current_task())
        seen.append(request.headers["X-N"])
        return ANSWERS["ok"]

    loop = asyncio.get_running_loop()
    before = loop.get_task_factory()
    loop.set_task_factory(None)
    guard = ConnectionGuard(LIMITS)
    runner = web.AppRunner(make_app(kms_handler(endpoint_for), []), access_log=None, **guard.server_kwargs())
    await runner.setup()
    assert runner.server is not None
    kms_first(runner.server, endpoint_for, None, guard)
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        # Pipelined: answered in order, one after the other. aiohttp's (the fast path takes no value ending in a space).
        writer.write(b"".join(b"POST / HTTP/1.1\r\nHost: kms\r\nX-N: %d \r\nContent-Length: 2\r\n\r\n{}" % n
                              for n in range(3)))
        async with asyncio.timeout(5):
            data = b""
            while data.count(b"HTTP/1.1 200 OK") < 3:
                chunk = await reader.read(65536)
                assert chunk, data
                data += chunk
        writer.close()
    finally:
        await runner.cleanup()
        loop.set_task_factory(before)
    assert seen == ["0", "1", "2"]
    if sys.version_info < (3, 12):  # from 3.12 aiohttp starts an eager task of its own, and the factory is idle
        assert len(tasks) == 3 and tasks[0] is not None and tasks[0] is tasks[1] is tasks[2]
