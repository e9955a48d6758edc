"""Typed KMS errors. Raised anywhere in the domain, rendered to the wire once (node/wire/protocol.py)."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any


class KmsError(Exception):
    """An error with the AWS error code (``__type``), HTTP status and message clients see."""

    def __init__(self, code: str, message: str | None = None, status: int = 400) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.status = status


class NotReady(Exception):
    """An operation whose answer needs slow work (an RSA key generated) that must not run on the event loop: the
    adapter waits for ``ready`` off the loop, then runs the request again. Never an answer by itself. ``give_up``:
    the answer once the request has waited as often as it may for this (a write losing every commit race)."""

    def __init__(self, ready: Future[Any], give_up: KmsError | None = None) -> None:
        super().__init__("not ready")
        self.ready = ready
        self.give_up = give_up


def validation(message: str) -> KmsError:
    return KmsError("ValidationException", message)


def not_found(message: str) -> KmsError:
    return KmsError("NotFoundException", message)


def invalid_state(message: str) -> KmsError:
    return KmsError("KMSInvalidStateException", message)


def unsupported(message: str) -> KmsError:
    return KmsError("UnsupportedOperationException", message)


def invalid_ciphertext() -> KmsError:
    # Decrypt failures stay opaque: no message, as AWS answers.
    return KmsError("InvalidCiphertextException")


def serialization(message: str) -> KmsError:
    return KmsError("SerializationException", message)


def internal(message: str = "An internal error occurred.") -> KmsError:
    return KmsError("KMSInternalException", message, status=500)
