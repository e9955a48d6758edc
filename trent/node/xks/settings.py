"""The cluster's XKS settings (config keys xks_trusted_ca, xks_allow_http, xks_timeout_ms), checked."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def xks_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "xks_trusted_ca" in raw:
        value = raw["xks_trusted_ca"]
        if not isinstance(value, str) or not value:
            raise ValueError("xks_trusted_ca must be the file name of a PEM CA certificate")
        out["xks_trusted_ca"] = Path(value)
    if "xks_allow_http" in raw:
        if not isinstance(raw["xks_allow_http"], bool):
            raise ValueError("xks_allow_http must be true or false")
        out["xks_allow_http"] = raw["xks_allow_http"]
    if "xks_timeout_ms" in raw:
        value = raw["xks_timeout_ms"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                or not 10 <= value <= 60_000:
            raise ValueError("xks_timeout_ms must be a number of milliseconds from 10 to 60000")
        out["xks_timeout_ms"] = float(value)
    return out
