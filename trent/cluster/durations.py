"""Human durations for the clock: '8d', '12h', '90m', '30s', '1d12h', or plain seconds."""

from __future__ import annotations

import math
import re

UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")
# One move of the clock is bounded: beyond a century, timestamps stop being representable by clients
# (datetime tops out at year 9999) long before the arithmetic itself breaks.
MAX_SECONDS = 100 * 365 * 86400.0
_HELP = "use e.g. 8d, 12h, 90m, 30s, 1d12h"


def parse_duration(text: str) -> float:
    """Seconds in ``text``: finite, not negative, at most MAX_SECONDS; ValueError otherwise."""
    text = text.strip().lower()
    try:
        seconds = float(text)
    except ValueError:
        parts = PART_RE.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"not a duration: {text!r} ({_HELP})") from None
        seconds = sum(float(n) * UNITS[u] for n, u in parts)
    # float() also accepts 'inf', 'nan', '1e999' and negative numbers: none of them moves a clock sensibly.
    if not math.isfinite(seconds):
        raise ValueError(f"not a duration: {text!r} is not finite ({_HELP})")
    if seconds < 0:
        raise ValueError(f"not a duration: {text!r} is negative; the clock only moves forward")
    if seconds > MAX_SECONDS:
        raise ValueError(f"not a duration: {text!r} is more than 100 years")
    return seconds
