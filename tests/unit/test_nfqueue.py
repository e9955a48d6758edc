"""nfnetlink_queue messages (cluster/nfqueue.py) against the layout of linux/netfilter/nfnetlink_queue.h, built
here by hand, and the delay process's schedule and stop (cluster/nfqueue_delay.py) with a fake queue and clock."""

from __future__ import annotations

import contextlib
import socket
import statistics
import struct
import threading
import time

import pytest

from trent.cluster import nfqueue
from trent.cluster.nfqueue import Ack, Packet, config, ipv4_address, parse, verdict
from trent.cluster.nfqueue_delay import Delayer, DelaySchedule, parse_delay
from trent.cluster.running import poll

QUEUE_SUBSYS = 3 << 8  # NFNL_SUBSYS_QUEUE in the high byte of the netlink message type


def _header(data: bytes) -> tuple[int, int, int, int]:
    length, kind, flags, seq, _port = struct.unpack_from("=IHHII", data)
    return length, kind, flags, seq


def _attributes(data: bytes) -> list[tuple[int, bytes]]:
    out, offset = [], 20  # netlink header (16) + nfgenmsg (4)
    while offset < len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        out.append((kind, data[offset + 4:offset + length]))
        offset += (length + 3) & ~3
    return out


def test_bind_is_a_config_request_asking_for_an_ack_with_the_queue_in_network_order() -> None:
    data = config(513, seq=7, command=1)
    length, kind, flags, seq = _header(data)
    assert (length, kind, flags, seq) == (len(data), QUEUE_SUBSYS | 2, 0x1 | 0x4, 7)
    assert data[16:20] == bytes([socket.AF_UNSPEC, 0, 2, 1])  # family, version 0, queue 513 big-endian
    assert _attributes(data) == [(1, bytes([1, 0, 0, socket.AF_INET]))]  # NFQA_CFG_CMD: BIND, pad, pf AF_INET


def test_copy_parameters_queue_length_and_flags_with_their_mask() -> None:
    data = config(0, seq=1, copy_range=20, maxlen=20000, flags=nfqueue.NFQA_CFG_F_GSO)
    assert len(data) % 4 == 0 and _header(data)[0] == len(data)
    attrs = dict(_attributes(data))
    # nfqnl_msg_config_params is packed: a big-endian copy range, then the mode (2: the packet), 5 bytes in all.
    assert attrs[2] == struct.pack(">I", 20) + bytes([2])
    assert attrs[3] == struct.pack(">I", 20000)
    assert attrs[5] == struct.pack(">I", 0x4)  # NFQA_CFG_FLAGS: GSO
    assert attrs[4] == struct.pack(">I", 0x1 | 0x4)  # NFQA_CFG_MASK: the flags this module owns


def test_a_verdict_names_the_packet_and_the_decision_and_asks_for_no_ack() -> None:
    data = verdict(3, 0x01020304)
    length, kind, flags, _seq = _header(data)
    assert (length, kind, flags) == (len(data), QUEUE_SUBSYS | 1, 0x1)
    assert data[18:20] == b"\x00\x03"
    assert _attributes(data) == [(2, struct.pack(">II", 1, 0x01020304))]  # NFQA_VERDICT_HDR: NF_ACCEPT, id
    assert _header(verdict(3, 9, batch=True))[1] == QUEUE_SUBSYS | 3  # NFQNL_MSG_VERDICT_BATCH


def _kernel_packet(queue: int, packet_id: int, payload: bytes) -> bytes:
    def attribute(kind: int, value: bytes) -> bytes:
        return struct.pack("=HH", 4 + len(value), kind) + value + b"\0" * (-len(value) % 4)

    body = (struct.pack("!BBH", socket.AF_INET, 0, queue)
            + attribute(1, struct.pack("!IHB", packet_id, 0x0800, 0))  # NFQA_PACKET_HDR: 7 bytes, padded
            + attribute(6 | 0x4000, struct.pack("!I", 2))  # NFQA_IFINDEX_OUTDEV, flagged network byte order
            + attribute(10, payload))  # NFQA_PAYLOAD
    return struct.pack("=IHHII", 16 + len(body), QUEUE_SUBSYS | 0, 0, 0, 4242) + body


def _ipv4(source: str, destination: str) -> bytes:
    return (bytes([0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0]) + socket.inet_aton(source)
            + socket.inet_aton(destination))


def test_packets_and_acks_are_read_from_one_datagram() -> None:
    header = _ipv4("198.18.0.3", "198.18.0.2")
    error = struct.pack("=IHHII", 36, 2, 0, 5, 0) + struct.pack("=i", -2) + b"\0" * 16  # NLMSG_ERROR, ENOENT
    ack = struct.pack("=IHHII", 36, 2, 0, 6, 0) + struct.pack("=i", 0) + b"\0" * 16
    items = parse(_kernel_packet(1, 77, header) + error + _kernel_packet(1, 78, header[:20]) + ack)
    assert items == [Packet(1, 77, header), Ack(5, 2), Packet(1, 78, header), Ack(6, 0)]
    assert ipv4_address(items[0].payload, source=True) == "198.18.0.3"  # type: ignore[union-attr]
    assert ipv4_address(items[0].payload, source=False) == "198.18.0.2"  # type: ignore[union-attr]


def test_truncated_or_foreign_input_is_skipped_not_misread() -> None:
    whole = _kernel_packet(0, 1, _ipv4("198.18.0.3", "198.18.0.2"))
    assert parse(whole[:-3]) == []  # a message longer than the datagram
    assert parse(b"\x01\x02") == []
    done = struct.pack("=IHHII", 20, 3, 0, 0, 0) + b"\0" * 4  # NLMSG_DONE: neither a packet nor an ack
    assert parse(done + whole) == [Packet(0, 1, _ipv4("198.18.0.3", "198.18.0.2"))]
    assert ipv4_address(b"\x60" + b"\0" * 39, source=True) is None  # IPv6
    assert ipv4_address(b"\x45\0\0", source=True) is None


def test_each_peer_waits_its_own_delay_and_keeps_its_order() -> None:
    schedule = DelaySchedule({"198.18.0.3": 0.040, "198.18.0.4": 0.010})
    assert schedule.hold(1, "198.18.0.3", now=0.000)
    assert schedule.hold(2, "198.18.0.4", now=0.001)
    assert schedule.hold(3, "198.18.0.3", now=0.002)
    assert not schedule.hold(4, "198.18.0.9", now=0.003)  # no delay for that peer: accepted at once
    assert not schedule.hold(5, None, now=0.003)  # not IPv4
    assert schedule.due(0.0109) == []
    assert schedule.due(0.011) == [2]
    assert schedule.next_due() == pytest.approx(0.040)
    assert schedule.due(0.045) == [1, 3]
    assert not schedule and schedule.held_total == 3 and schedule.max_held == 3


def test_while_draining_a_packet_waits_only_for_the_ones_of_its_peer_held_before_it() -> None:
    schedule = DelaySchedule({"198.18.0.3": 0.040, "198.18.0.4": 0.040})
    schedule.hold(1, "198.18.0.3", now=0.0)
    schedule.draining = True
    assert schedule.hold(2, "198.18.0.3", now=0.010)  # would overtake 1
    assert not schedule.hold(3, "198.18.0.4", now=0.010)  # nothing of that peer held
    assert schedule.due(0.039) == []
    assert schedule.due(0.040) == [1, 2]
    assert not schedule.hold(4, "198.18.0.3", now=0.050)


class _FakeQueue:
    """Stands in for NfQueue: hands out the packets given (``late`` ones once the queue is reconfigured, as if they
    were queued just before), records the calls in order."""

    def __init__(self, arrivals: list[list[Packet]], late: list[Packet]) -> None:
        self.arrivals, self.late, self.calls, self.errors = arrivals, late, [], []  # type: ignore[var-annotated]

    def packets(self) -> list[Packet]:
        return self.arrivals.pop(0) if self.arrivals else []

    def accept(self, ids: list[int]) -> None:
        self.calls.append(("accept", list(ids)))

    def accept_up_to(self, packet_id: int) -> None:
        self.calls.append(("accept_up_to", packet_id))

    def request(self, **fields: int) -> None:
        self.calls.append(("config", fields))
        self.arrivals.append(self.late)

    def close(self) -> None:
        self.calls.append(("unbind",))


def _packet(packet_id: int, source: str) -> Packet:
    return Packet(0, packet_id, _ipv4(source, "198.18.0.2"))


def test_on_stop_nothing_is_left_without_a_verdict_nor_let_past_what_its_peer_had_held() -> None:
    now = [0.0]
    queue = _FakeQueue([[_packet(1, "198.18.0.3"), _packet(2, "198.18.0.7")], [_packet(3, "198.18.0.3")]],
                       late=[_packet(4, "198.18.0.3")])
    delayer = Delayer(queue, DelaySchedule({"198.18.0.3": 0.05}), clock=lambda: now[0])  # type: ignore[arg-type]
    delayer._take()
    assert queue.calls == [("accept", [2])]  # no delay configured for .7
    now[0] = 0.01
    delayer.stop()
    delayer.finish()
    config = ("config", {"maxlen": 0, "flags": nfqueue.NFQA_CFG_F_FAIL_OPEN | nfqueue.NFQA_CFG_F_GSO})
    # 3 came after 1 from the same peer: it goes right after it, not before; then the queue fails open, what was
    # queued meanwhile is accepted, and only then the queue is unbound.
    assert queue.calls[1:] == [("accept", [1, 3]), config, ("accept", [4]), ("accept_up_to", 4), ("unbind",)]
    assert delayer.counts() == {"held": 2, "accepted": 4, "max_held": 2, "held_at_stop": 1, "refused_verdicts": 0}


def test_delay_arguments() -> None:
    assert parse_delay("198.18.0.3=40.5") == ("198.18.0.3", 0.0405)
    with pytest.raises(OSError):
        parse_delay("nowhere=10")
    with pytest.raises(ValueError):
        parse_delay("198.18.0.3=-1")


class _TimedQueue(_FakeQueue):
    """A fake queue the delayer can wait on: readable (one byte on a socket pair) whenever packets are handed to it;
    records when each verdict came."""

    def __init__(self) -> None:
        super().__init__([], [])
        self._read, self._write = socket.socketpair()
        self.accepted_at: list[float] = []

    def fileno(self) -> int:
        return self._read.fileno()

    def arrive(self, packet: Packet) -> None:
        self.arrivals.append([packet])
        self._write.send(b"p")

    def packets(self) -> list[Packet]:
        with contextlib.suppress(BlockingIOError):
            self._read.recv(64, socket.MSG_DONTWAIT)
        return super().packets()

    def accept(self, ids: list[int]) -> None:
        self.accepted_at.append(time.monotonic())
        super().accept(ids)

    def close_sockets(self) -> None:
        self._read.close()
        self._write.close()


def test_a_held_packet_goes_when_due_not_at_the_next_whole_millisecond() -> None:
    # epoll's timeout is whole milliseconds rounded up: a delay of 5.05 ms would be kept ~6 ms. The delayer waits
    # with select(2), whose timeout is in microseconds.
    queue = _TimedQueue()
    delay = 0.00505
    delayer = Delayer(queue, DelaySchedule({"198.18.0.3": delay}))  # type: ignore[arg-type]
    runner = threading.Thread(target=delayer.run)
    runner.start()
    late: list[float] = []
    try:
        for packet_id in range(1, 12):
            sent = time.monotonic()
            queue.arrive(_packet(packet_id, "198.18.0.3"))
            poll(lambda n=packet_id: len(queue.accepted_at) >= n, timeout=5, interval=0.001)
            late.append(queue.accepted_at[-1] - sent - delay)
    finally:
        delayer.stop()
        runner.join(5)
        queue.close_sockets()
    assert min(late) >= -0.0002  # never early (beyond the clock's read order)
    assert statistics.median(late) < 0.0005, late
