"""A process role (the region host, a gateway worker) from its start to the signal that stops it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from typing import Protocol, TypeVar


class Component(Protocol):
    """What a process starts and stops: a role, and each of a role's background jobs (cluster/jobs.py)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


R = TypeVar("R", bound=Component)


async def cancelled(task: asyncio.Task[None] | None) -> None:
    """``task`` (if any) cancelled and awaited to its end: what a background loop's stop does."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def stop_signal() -> asyncio.Event:
    """Set by SIGINT or SIGTERM. Asked for first thing: a signal that arrives while the role is still starting stops
    it cleanly once it is up, instead of killing it half-way."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def start_role(make: Callable[[], R], name: str) -> R | None:
    """``make()`` a role and start it. A start that fails for a reason the operator can act on (a port in use, an
    unreadable data directory, a root key of the wrong size or that unwraps nothing) is one line on stderr, not a
    traceback: what did start is stopped, and None comes back."""
    role: R | None = None
    try:
        role = make()
        await role.start()
        return role
    except (OSError, ValueError) as exc:
        print(f"{name}: cannot start: {exc}", file=sys.stderr)
        if role is not None:
            with contextlib.suppress(Exception):
                await role.stop()
        return None
