"""Human durations for the clock: '8d', '12h', '90m', '30s', '1d12h', or plain seconds."""

from __future__ import annotations

import re

UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
PART_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|d|h|m|s)")


def parse_duration(text: str) -> float:
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    parts = PART_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (use e.g. 8d, 12h, 90m, 30s, 1d12h)")
    return sum(float(n) * UNITS[u] for n, u in parts)
