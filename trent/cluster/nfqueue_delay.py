"""A one-way network delay per peer where the kernel has no sch_netem: an iptables rule hands the packets of
another region to an NFQUEUE, and this process holds each one for that peer's delay before it accepts it (the
packet then goes on through the kernel as if never stopped). Every packet of one peer waits the same time, so their
order is kept; TCP handshakes, data and acknowledgements are all delayed alike.

    ip netns exec NS python -m trent.cluster.nfqueue_delay --queue 0 --delay 198.18.0.3=40.5 --delay ...

The peer is the packet's source address by default (``--match source``: the rule sits on the receiving side's
PREROUTING) or its destination (``--match destination``, for a rule on OUTPUT). Receiving is what the harness uses:
a packet held on its sender's OUTPUT still belongs to the sending socket, and TCP's small-queue limit then lets only
about a millisecond's worth of data be held at a time, so a bulk transfer would crawl; on arrival the packet is no
longer charged to the sender.

It prints ``ready`` once the queue is bound (install the iptables rule only then), and on SIGTERM or SIGINT stops
delaying: what is held is let go when due, and a packet arriving meanwhile goes right after the ones of its peer
held before it (never past them: that would reorder the stream, and TCP would take it for a loss); once nothing is
held the queue is made fail-open (the kernel accepts new packets itself), what is still on the socket is accepted,
and the queue is unbound (with ``--queue-bypass`` on the rule, packets then pass unqueued). Counts go to stdout as
JSON."""

from __future__ import annotations

import argparse
import contextlib
import heapq
import itertools
import json
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trent.cluster.nfqueue import NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_GSO, NfQueue, ipv4_address


@dataclass
class DelaySchedule:
    """When each held packet is due: arrival + its peer's delay (seconds), never before an earlier packet of the same
    peer. A packet of a peer without a delay is due at once. ``draining``: no more delay, but a packet still waits
    for the ones of its peer held before it (letting it pass would reorder the stream)."""

    delays: dict[str, float]
    draining: bool = False
    _heap: list[tuple[float, int, int]] = field(default_factory=list)  # due, arrival order, packet id
    _order: itertools.count[int] = field(default_factory=itertools.count)
    _last_due: dict[str, float] = field(default_factory=dict)
    held_total: int = 0
    max_held: int = 0

    def hold(self, packet_id: int, peer: str | None, now: float) -> bool:
        """Whether the packet is held (False: accept it now)."""
        key = peer or ""
        delay = 0.0 if self.draining else self.delays.get(key, 0.0)
        due = max(now + delay, self._last_due.get(key, now))
        if due <= now:
            return False
        heapq.heappush(self._heap, (due, next(self._order), packet_id))
        self._last_due[key] = due
        self.held_total += 1
        self.max_held = max(self.max_held, len(self._heap))
        return True

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[int]:
        """The packets due by ``now``, in the order they are due (ties: in the order they came)."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            out.append(heapq.heappop(self._heap)[2])
        return out

    def drain(self) -> list[int]:
        """Every packet still held, in due order (for a stop: none may stay without a verdict)."""
        return self.due(float("inf"))

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)


class Delayer:
    """The loop: read what the queue hands over, hold it, accept what is due; ``stop`` from a signal handler."""

    def __init__(self, queue: NfQueue, schedule: DelaySchedule, by_source: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue, self.schedule, self.by_source, self.clock = queue, schedule, by_source, clock
        self.accepted = 0
        self.held_at_stop = 0  # packets held when told to stop (let go when due)
        self.refused = 0  # verdicts the kernel refused before the stop (an unknown packet id: a bug here)
        self.highest_id = -1
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stopping = False

    def stop(self) -> None:
        if not self._stopping:
            self.held_at_stop = len(self.schedule)
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def wakeup_fd(self) -> int:
        """For signal.set_wakeup_fd: a signal wakes the loop's select."""
        return self._wake_w.fileno()

    def _take(self) -> None:
        self.schedule.draining = self._stopping
        now, at_once = self.clock(), []
        for packet in self.queue.packets():
            self.highest_id = max(self.highest_id, packet.packet_id)
            if not self.schedule.hold(packet.packet_id, ipv4_address(packet.payload, self.by_source), now):
                at_once.append(packet.packet_id)
        self._accept(at_once)

    def _accept(self, packet_ids: list[int]) -> None:
        if packet_ids:
            self.queue.accept(packet_ids)
            self.accepted += len(packet_ids)

    def run(self) -> None:
        # select(2), not epoll: epoll's timeout is whole milliseconds, rounded up, so every release could come up
        # to a millisecond late (three late hops in a rotation's round trips); select's is in microseconds.
        with selectors.SelectSelector() as selector:
            selector.register(self.queue, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping or self.schedule:
                due = self.schedule.next_due()
                selector.select(None if due is None else max(0.0, due - self.clock()))
                self._take()
                self._accept(self.schedule.due(self.clock()))
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(64)
        self.finish()

    def finish(self) -> None:
        """No packet left without a verdict: new ones fail open (the kernel accepts them itself), then everything
        still held (none after a drain) or waiting on the socket is accepted, then (in case one slipped by) every id
        up to the highest seen, and only then the queue is unbound (which would drop what it still holds)."""
        # What came since the last read goes first (nothing is held: at once), to keep the window small in which a
        # packet passing the failed-open queue could overtake one still waiting for its verdict.
        self._take()
        self._accept(self.schedule.drain())
        try:
            self.queue.request(maxlen=0, flags=NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO)
        finally:
            self._accept(self.schedule.drain())
            for packet in self.queue.packets():
                self.highest_id = max(self.highest_id, packet.packet_id)
                self._accept([packet.packet_id])
            self.refused = len(self.queue.errors)
            if self.highest_id >= 0:
                self.queue.accept_up_to(self.highest_id)  # refused when nothing is left: that is the normal case
            self.queue.close()
            self._wake_r.close()
            self._wake_w.close()

    def counts(self) -> dict[str, Any]:
        return {"held": self.schedule.held_total, "accepted": self.accepted, "max_held": self.schedule.max_held,
                "held_at_stop": self.held_at_stop,
                "refused_verdicts": self.refused}


def parse_delay(text: str) -> tuple[str, float]:
    """ADDRESS=MILLISECONDS → (address, seconds)."""
    address, _, ms = text.partition("=")
    socket.inet_aton(address)  # raises OSError on a bad address
    seconds = float(ms) / 1000
    if not 0 <= seconds <= 10:
        raise ValueError(f"delay {ms} ms out of range")
    return address, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nfqueue-delay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--queue", type=int, default=0, help="the NFQUEUE number (of this network namespace)")
    parser.add_argument("--delay", action="append", default=[], type=parse_delay, metavar="ADDRESS=MS",
                        help="hold packets of the peer ADDRESS for MS milliseconds (one way); repeatable")
    parser.add_argument("--match", choices=("source", "destination"), default="source",
                        help="the peer is the packet's source (a PREROUTING rule) or destination (OUTPUT)")
    parser.add_argument("--maxlen", type=int, default=20000, help="packets the kernel may queue before dropping")
    parser.add_argument("--probe", action="store_true", help="bind the queue, unbind it, exit: 0 if this works")
    args = parser.parse_args(argv)
    try:
        queue = NfQueue(args.queue, maxlen=args.maxlen)
    except OSError as exc:
        print(f"nfqueue {args.queue} unavailable: {exc}", file=sys.stderr)
        return 2
    delayer = Delayer(queue, DelaySchedule(dict(args.delay)), by_source=args.match == "source")
    if args.probe:
        delayer.finish()
        return 0
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: delayer.stop())
    signal.set_wakeup_fd(delayer.wakeup_fd(), warn_on_full_buffer=False)
    print("ready", flush=True)
    delayer.run()
    print(json.dumps(delayer.counts()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
