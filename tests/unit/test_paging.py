"""Limit/Marker pagination (KMS-REFERENCE.md §11): pages, stable markers, Truncated/NextMarker, bad markers."""

from __future__ import annotations

import base64

import pytest

from trent.node.model.errors import KmsError
from trent.node.ops.paging import check_limit, encode_marker, page_response, paginate

ITEMS = [f"item-{i:03d}" for i in range(10)]


def identity(item: str) -> str:
    return item


def walk(items: list[str], limit: int | None, default: int = 100) -> list[list[str]]:
    pages: list[list[str]] = []
    marker: str | None = None
    while True:
        page, marker = paginate(items, identity, limit, marker, default=default)
        pages.append(page)
        if marker is None:
            return pages
        assert len(pages) <= len(items) + 1, "pagination does not terminate"


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 9, 10, 11, 1000])
def test_marker_chain_returns_every_item_once_in_order(limit: int) -> None:
    pages = walk(ITEMS, limit)
    assert [x for page in pages for x in page] == ITEMS
    assert all(len(page) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1]) <= limit
    assert len(pages) == -(-len(ITEMS) // limit)


def test_default_page_size_applies_without_limit() -> None:
    page, marker = paginate(ITEMS, identity, None, None, default=4)
    assert page == ITEMS[:4] and marker is not None
    assert [x for p in walk(ITEMS, None, default=4) for x in p] == ITEMS


def test_exactly_full_page_is_not_truncated() -> None:
    page, marker = paginate(ITEMS, identity, 10, None, default=100)
    assert page == ITEMS and marker is None


def test_empty_listing() -> None:
    assert paginate([], identity, 5, None, default=100) == ([], None)


def test_marker_is_a_position_not_an_offset() -> None:
    """Items created or deleted before the marker neither repeat nor get skipped after it."""
    page, marker = paginate(ITEMS, identity, 3, None, default=100)
    assert page == ITEMS[:3] and marker is not None
    # An item sorting before the marker appears and one already returned disappears between the two calls.
    changed = sorted([*ITEMS[1:], "item-000a"])
    page2, _ = paginate(changed, identity, 3, marker, default=100)
    assert page2 == ITEMS[3:6]
    # The last item returned is itself deleted: the next page still starts right after it.
    without = [x for x in ITEMS if x != ITEMS[2]]
    page3, _ = paginate(without, identity, 3, marker, default=100)
    assert page3 == ITEMS[3:6]


def test_marker_after_the_last_item_gives_an_empty_final_page() -> None:
    _, marker = paginate(ITEMS, identity, 9, None, default=100)
    assert marker is not None
    assert paginate(ITEMS[:9], identity, 5, marker, default=100) == ([], None)


def test_markers_fit_the_model_constraints() -> None:
    # MarkerType: 1-1024 chars of U+0020-U+00FF. Positions as long as an alias name (256) must fit.
    for position in ("a", "alias/" + "x" * 250, "ü" * 128):
        marker = encode_marker(position)
        assert 1 <= len(marker) <= 1024
        assert all(0x20 <= ord(ch) <= 0xFF for ch in marker)


def test_non_ascii_positions_round_trip() -> None:
    items = sorted(["ä", "b", "日本", "z"])
    assert [x for p in walk(items, 1) for x in p] == items


@pytest.mark.parametrize("marker", [
    "", "!!!", "zzzz", "not a marker", "Zm9v", base64.b64encode(b"item-003").decode(),
    base64.urlsafe_b64encode(b"\xff\xfe\xfd").decode(), "====", "a", "abc",
])
def test_markers_we_did_not_issue_are_invalid(marker: str) -> None:
    with pytest.raises(KmsError) as info:
        paginate(ITEMS, identity, 2, marker, default=100)
    assert (info.value.code, info.value.status) == ("InvalidMarkerException", 400)


def test_tampered_marker_is_invalid() -> None:
    _, marker = paginate(ITEMS, identity, 2, None, default=100)
    assert marker is not None
    for bad in (marker + "=", marker[:-1], marker.rstrip("=") + "A", " " + marker, marker + "\n"):
        with pytest.raises(KmsError) as info:
            paginate(ITEMS, identity, 2, bad, default=100)
        assert info.value.code == "InvalidMarkerException", bad


def test_page_response_always_has_truncated_and_next_marker_only_when_truncated() -> None:
    assert page_response("Keys", [1, 2], None) == {"Keys": [1, 2], "Truncated": False}
    assert page_response("Keys", [], None) == {"Keys": [], "Truncated": False}
    assert page_response("Tags", [1], "m") == {"Tags": [1], "Truncated": True, "NextMarker": "m"}


def test_check_limit() -> None:
    check_limit(None, 50)
    check_limit(50, 50)
    check_limit(1, 50)
    with pytest.raises(KmsError) as info:
        check_limit(51, 50)
    assert info.value.code == "ValidationException"
    assert info.value.message == ("1 validation error detected: Value '51' at 'limit' failed to satisfy constraint: "
                                  "Member must have value less than or equal to 50")
