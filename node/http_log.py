"""The log of aiohttp's connection handler, for a server that faces clients it cannot trust."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError


class ProtocolLog(logging.LoggerAdapter):  # type: ignore[type-arg]  # generic only in newer typeshed
    """What a client does wrong at the HTTP level is one line at info, not an error with a traceback that any client
    could fill the log with: a request aiohttp's parser refuses (a duplicated Content-Type, an encoding it cannot
    decode), which aiohttp answers 400 before any handler runs, or a client that goes away in the middle of sending
    its body. Everything else is logged as aiohttp logs it."""

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError) and 400 <= exc_info.code < 500:
            self.logger.info(f"{msg}: %s %s", *args, exc_info.code, exc_info.message)
        elif isinstance(exc_info, ConnectionError):
            self.logger.info(f"{msg}: %s", *args, exc_info)
        else:
            self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)


def protocol_log() -> ProtocolLog:
    return ProtocolLog(logging.getLogger("aiohttp.server"))
