"""aiohttp's per-connection request loop with each request run in the connection's own task.

aiohttp (``RequestHandler.start``) makes a new task for every request it takes off a connection: a Task object, its
scheduling and one more turn of the event loop before the handler runs and one after it returns, about a twelfth of
what a small KMS call costs this server. Here the loop awaits the request's handling itself. What differs is only
that: a request's context variables are those of its connection (Trent sets the one it uses, the XKS request scope,
at the start of every call) and ``asyncio.current_task()`` inside a handler is the connection's task. Cancellation is
unchanged: on a lost connection (with handler cancellation on) and at shutdown aiohttp cancels the connection's task,
which was awaiting the request's task and now awaits its handling directly.

The loop is aiohttp 3.14.5's ``RequestHandler.start`` (Apache-2.0, https://github.com/aio-libs/aiohttp) with the
task creation taken out (and its branches for Python versions before 3.11 folded): nothing else changed. It stands in
for aiohttp's only for that version: with any other, aiohttp's own loop runs (tests/unit/test_request_loop.py fails
then, so that the copy is looked at again).
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.helpers import ceil_timeout
from aiohttp.http import StreamWriter
from aiohttp.web_protocol import _PAYLOAD_ACCESS_ERROR, ERROR, RequestHandler, _ErrInfo

COPIED_FROM = "3.14.5"  # the aiohttp whose RequestHandler.start this is
SAME_AIOHTTP = aiohttp.__version__ == COPIED_FROM


class InlineRequests(RequestHandler):
    __slots__ = ()

    async def start(self) -> None:
        if not SAME_AIOHTTP:
            await super().start()
            return
        loop = self._loop
        manager = self._manager
        assert manager is not None
        keepalive_timeout = self._keepalive_timeout
        resp = None
        assert self._request_factory is not None
        assert self._request_handler is not None

        while not self._force_close:
            if not self._messages:
                try:
                    # wait for next request
                    self._waiter = loop.create_future()
                    await self._waiter
                finally:
                    self._waiter = None

            message, payload = self._messages.popleft()

            # Free a parser slot; resume reading once drained to low water so pipelining keeps flowing while this
            # request is handled.
            if self._parser is not None:
                self._parser.message_consumed()
            if self._buffer_paused and len(self._messages) <= self._msg_queue_resume_size:
                self._resume_reading_if_drained()

            # time is only fetched if logging is enabled as otherwise its thrown away and never used.
            start = loop.time() if self._logging_enabled else None

            manager.requests_count += 1
            writer = StreamWriter(self, loop)
            if isinstance(message, _ErrInfo):
                # make request_factory work
                request_handler = self._make_error_handler(message)
                message = ERROR
            else:
                request_handler = self._request_handler

            # Important don't hold a reference to the current task as on traceback it will prevent the task from
            # being collected and will cause a memory leak.
            request = self._request_factory(
                message,
                payload,
                self,
                writer,
                self._task_handler or asyncio.current_task(loop),  # type: ignore[arg-type]
            )
            try:
                # Trent: awaited here, in the connection's task, where aiohttp makes a task per request.
                try:
                    resp, reset = await self._handle_request(request, start, request_handler)
                except ConnectionError:
                    self.log_debug("Ignored premature client disconnection")
                    break

                if reset:
                    self.log_debug("Ignored premature client disconnection 2")
                    break

                # notify server about keep-alive
                self._keepalive = bool(resp.keep_alive)

                # check payload
                if not payload.is_eof():
                    lingering_time = self._lingering_time
                    if not self._force_close and lingering_time:
                        self.log_debug("Start lingering close timer for %s sec.", lingering_time)

                        now = loop.time()
                        end_t = now + lingering_time

                        try:
                            while not payload.is_eof() and now < end_t:
                                async with ceil_timeout(end_t - now):
                                    # read and ignore
                                    await payload.readany()
                                now = loop.time()
                        except (TimeoutError, asyncio.CancelledError):
                            if (t := asyncio.current_task()) and t.cancelling():
                                raise

                    # if payload still uncompleted
                    if not payload.is_eof() and not self._force_close:
                        self.log_debug("Uncompleted request.")
                        self.close()

                payload.set_exception(_PAYLOAD_ACCESS_ERROR)

            except asyncio.CancelledError:
                self.log_debug("Ignored premature client disconnection")
                self.force_close()
                raise
            except Exception as exc:
                self.log_exception("Unhandled exception", exc_info=exc)
                self.force_close()
            except BaseException:
                self.force_close()
                raise
            finally:
                request._task = None  # type: ignore[assignment] # Break reference cycle in case of exception
                if self.transport is None and resp is not None:
                    self.log_debug("Ignored premature client disconnection.")

            if self._keepalive and not self._close and not self._force_close:
                # start keep-alive timer
                close_time = loop.time() + keepalive_timeout
                self._next_keepalive_close_time = close_time
                if self._keepalive_handle is None:
                    self._keepalive_handle = loop.call_at(close_time, self._process_keepalive)
            else:
                break

        # remove handler, close transport if no handlers left
        if not self._force_close:
            self._task_handler = None
            if self.transport is not None:
                self.transport.close()
