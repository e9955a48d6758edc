"""Limit/Marker pagination. Markers encode a stable sort position (not an offset), so concurrent creates
neither skip nor repeat items."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from trent.node.model.errors import KmsError, validation

T = TypeVar("T")


def check_limit(limit: int | None, maximum: int, field: str = "limit") -> None:
    # The model allows 1–1000 everywhere; some operations accept less.
    if limit is not None and limit > maximum:
        raise validation(
            f"1 validation error detected: Value '{limit}' at '{field}' failed to satisfy constraint: "
            f"Member must have value less than or equal to {maximum}"
        )


# A marker is base64url of a tag plus the sort position of the last item returned. The tag and the strict,
# canonical decoding make a marker we did not issue (a typo, another service's token) InvalidMarkerException
# instead of silently restarting or skipping the listing.
_MARKER_TAG = "trent1:"
_MARKER_RE = re.compile(r"[A-Za-z0-9_-]+={0,2}")


def _invalid_marker() -> KmsError:
    return KmsError("InvalidMarkerException", "Invalid marker.")


def _decode_marker(marker: str) -> str:
    if len(marker) % 4 or not _MARKER_RE.fullmatch(marker):
        raise _invalid_marker()
    try:
        raw = base64.urlsafe_b64decode(marker.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise _invalid_marker() from exc
    if not raw.startswith(_MARKER_TAG):
        raise _invalid_marker()
    position = raw[len(_MARKER_TAG):]
    if encode_marker(position) != marker:  # non-canonical padding bits: not one of ours
        raise _invalid_marker()
    return position


def encode_marker(position: str) -> str:
    return base64.urlsafe_b64encode((_MARKER_TAG + position).encode("utf-8")).decode("ascii")


def paginate(
    items: Sequence[T], position: Callable[[T], str], limit: int | None, marker: str | None, default: int
) -> tuple[list[T], str | None]:
    """Return the page after ``marker`` (items must be sorted by ``position``) and the next marker, if any."""
    size = limit or default
    start = 0
    if marker is not None:
        after = _decode_marker(marker)
        start = next((i for i, item in enumerate(items) if position(item) > after), len(items))
    page = list(items[start:start + size])
    truncated = start + size < len(items)
    return page, (encode_marker(position(page[-1])) if truncated and page else None)


def page_response(name: str, entries: list[object], next_marker: str | None) -> dict[str, object]:
    out: dict[str, object] = {name: entries, "Truncated": next_marker is not None}
    if next_marker is not None:
        out["NextMarker"] = next_marker
    return out
