"""An operation's answer that waits on work running off the event loop (a PKCS#11 call in a session pool's thread).

A handler returns a Deferred instead of its response; the endpoint awaits the work (no longer than ``timeout``)
and then ``finish`` makes the response on the event loop (it may commit, or raise a KmsError like any handler, or
hand on to a further Deferred: ReEncrypt from one key store's key to another's).
A failure of the work, or its timeout, becomes the KmsError ``failed`` says."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from trent.node.model.errors import KmsError


@dataclass(frozen=True, slots=True)
class Deferred:
    future: Future[Any]
    finish: Callable[[Any], dict[str, Any] | Deferred]
    failed: Callable[[BaseException], KmsError]
    timeout: float
