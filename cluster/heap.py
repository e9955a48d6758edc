"""Garbage-collector settings for a long-running server process."""

from __future__ import annotations

import gc


def settle_after_start() -> None:
    """Call once start-up is done. What start-up built (the service model, the key records, the code) lives as long
    as the process: frozen out of the collector, full collections stop rescanning it. Serving a request leaves few
    reference cycles behind, so the youngest generation is collected every 50,000 allocations rather than 700:
    under load the default threshold spent a tenth of the CPU in collections that found next to nothing."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
