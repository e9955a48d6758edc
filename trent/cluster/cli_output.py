"""How `trent` prints: aligned tables, UTC dates instead of epoch seconds, colour only on a terminal (never when
piped, or with NO_COLOR set), and a reader that goes away (`trent audit | head`) ends the command quietly."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO, TypeVar

T = TypeVar("T")
_CODES = {"bold": "1", "red": "31", "green": "32", "yellow": "33", "dim": "2"}


class Style:
    def __init__(self, stream: TextIO | None = None) -> None:
        stream = stream or sys.stdout
        self.enabled = (stream.isatty() and not os.environ.get("NO_COLOR")
                        and os.environ.get("TERM", "") != "dumb")

    def __call__(self, text: str, style: str) -> str:
        if not self.enabled or style not in _CODES:
            return text
        return f"\033[{_CODES[style]}m{text}\033[0m"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], style: Style,
          colour: Callable[[int, str], str | None] | None = None) -> str:
    """Columns padded to their widest cell (colour codes added after padding, so they do not skew it); ``colour``
    picks a style for a cell (column index, text) or None."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str], head: bool) -> str:
        out = []
        for i, cell in enumerate(cells):
            padded = cell.ljust(widths[i]) if i < len(cells) - 1 else cell
            chosen = "bold" if head else (colour(i, cell) if colour is not None else None)
            out.append(style(padded, chosen) if chosen else padded)
        return "  ".join(out).rstrip()

    return "\n".join([line(headers, True), *(line(r, False) for r in rows)])


def utc(epoch: float) -> str:
    """2026-12-05 09:30:00 UTC."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(seconds: float) -> str:
    """8d 2h 5m 3s (whole seconds; 0s for none)."""
    rest = round(abs(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return ("-" if seconds < 0 else "") + (" ".join(parts) or "0s")


def quiet_broken_pipe(run: Callable[[], T], on_broken: T) -> T:
    """``run()``; if the reader of stdout went away meanwhile, no traceback: stdout is pointed at /dev/null (so the
    interpreter's final flush does not fail again) and ``on_broken`` comes back."""
    try:
        return run()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return on_broken
