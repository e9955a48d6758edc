"""Garbage-collector settings for a long-running server process."""

from __future__ import annotations

import gc


def tune_collector() -> None:
    """Call first thing in the process. Loading a region and serving a request leave few reference cycles behind,
    so the youngest generation is collected every 50,000 allocations rather than 700: with the default, a tenth of
    the CPU under load, and much of a large region's start-up, went to collections that found next to nothing."""
    gc.set_threshold(50_000, 20, 100)


def freeze_start_up() -> None:
    """Call once start-up is done. What it built (the service model, the key records, the code) lives as long as
    the process: frozen out of the collector, full collections no longer rescan it. No collection first: that
    would pause a large region's first requests, for the few cycles start-up may have left behind."""
    gc.freeze()
