"""Each request handled in its connection's task, instead of a task of its own.

aiohttp's request loop (``RequestHandler.start``) runs every request's ``_handle_request`` in a new task (on Python
3.12 and later an eagerly started one; before, a plain one): a Task object, its scheduling and an event-loop turn
before the handler runs and one after it returns, about a fourteenth of what a small KMS call costs this server.
The loop makes that task with ``loop.create_task``, which goes through the loop's task factory: this factory hands
back, for that one coroutine only, an awaitable that drives the coroutine inside the awaiting task, which is the
connection's (aiohttp awaits the task at once and keeps no other hold on it). Each step runs in a copy of the
connection's context, as a task of its own would. Cancellation is unchanged: on a lost connection (with handler
cancellation on) and at shutdown aiohttp cancels the connection's task, and the cancellation reaches the request's
coroutine where it waits, as before through the request's task. Every other coroutine gets a plain Task.

Installed only where no other task factory is set. With an aiohttp that no longer names its coroutine
``_handle_request``, or on Python 3.12 and later (where aiohttp does not call ``create_task`` for it), this changes
nothing."""

from __future__ import annotations

import asyncio
import contextvars
import types
from collections.abc import Coroutine, Generator
from typing import Any

from aiohttp.web_protocol import RequestHandler


class _InConnection:
    """``await``-ed once, by the connection's task: runs the request's coroutine to its end inside it."""

    __slots__ = ("_context", "_coro")

    def __init__(self, coro: Coroutine[Any, Any, Any], context: contextvars.Context) -> None:
        self._coro = coro
        self._context = context

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, run = self._coro, self._context.run
        send: Any = None
        thrown: BaseException | None = None
        while True:
            try:
                if thrown is None:
                    yielded = run(coro.send, send)
                else:
                    yielded, thrown = run(coro.throw, thrown), None
            except StopIteration as done:
                return done.value
            try:
                # What the coroutine waits on (a future, or None for a bare yield) goes to the task as is; the task
                # sends back the value, or throws in the exception (a cancellation), for the coroutine.
                send = yield yielded
            except GeneratorExit:  # dropped unfinished (the loop closing): the coroutine is closed with it
                coro.close()
                raise
            except BaseException as exc:  # every other one goes to the coroutine, as a task's would
                thrown = exc


class InlineRequests:
    """The loop's task factory (``loop.set_task_factory``)."""

    def __init__(self) -> None:
        handle = getattr(RequestHandler, "_handle_request", None)
        self._code: types.CodeType | None = getattr(handle, "__code__", None)

    def __call__(self, loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], *,
                 context: contextvars.Context | None = None) -> Any:
        if self._code is not None and getattr(coro, "cr_code", None) is self._code:
            return _InConnection(coro, context if context is not None else contextvars.copy_context())
        return asyncio.Task(coro, loop=loop, context=context)


def install(loop: asyncio.AbstractEventLoop) -> bool:
    """True when this loop now handles requests in their connections' tasks (False: it has a factory already)."""
    if isinstance(loop.get_task_factory(), InlineRequests):
        return True
    if loop.get_task_factory() is not None:
        return False
    loop.set_task_factory(InlineRequests())  # type: ignore[arg-type]
    return True
