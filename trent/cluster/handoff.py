"""How soon a server process's helper threads get the interpreter back from its event loop."""

from __future__ import annotations

import sys

# CPython's default is 5 ms.
SWITCH_INTERVAL_SECONDS = 0.0005


def prompt_thread_handoff(interval: float = SWITCH_INTERVAL_SECONDS) -> None:
    """Call first thing in a process that serves regions. Each region's commits are made durable by a thread of its
    store (node/store/groupsync.py), and every answer and every replication pull that rests on a commit waits for
    that thread. It needs the GIL only for a moment, to wake and to hand back its result; while the event loop
    keeps the GIL busy, CPython makes it wait up to its switch interval for it, each time. In the namespace drill,
    with the loop serving, those waits reached 2 ms at p90 and 5 ms at p99, and a multi-Region rotation waits for
    three such syncs in turn before its replica serves the new material (its primary's, the replica's confirming
    it holds it, the primary's making it current). A shorter interval bounds each wait; threads rarely compete for
    the GIL here, so the extra switches cost next to nothing."""
    sys.setswitchinterval(interval)
