"""nfnetlink_queue from Python: the messages (encoded and decoded with struct) and a socket that binds one queue,
receives the packets netfilter's NFQUEUE target hands it and gives each its verdict.

Spoken directly over AF_NETLINK/NETLINK_NETFILTER with the standard library: the PyPI binding (NetfilterQueue) is
shipped as an sdist only and needs libnetfilter_queue's C headers and a compiler to install, and no well-kept
pure-Python implementation exists. The format is linux/netfilter/nfnetlink_queue.h: a netlink header, a nfgenmsg
(family, version, queue number in network order), then netlink attributes (length, type, value, padded to 4)."""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG, NFQNL_MSG_VERDICT_BATCH = 0, 1, 2, 3

NFQA_PACKET_HDR, NFQA_VERDICT_HDR, NFQA_PAYLOAD = 1, 2, 10
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN, NFQA_CFG_MASK, NFQA_CFG_FLAGS = 1, 2, 3, 4, 5
NFQNL_CFG_CMD_BIND, NFQNL_CFG_CMD_UNBIND = 1, 2
NFQNL_COPY_PACKET = 2
# Fail open: a packet that finds the queue full is accepted by the kernel instead of dropped. GSO: a large
# segmentation-offload packet is queued as it is, not cut into wire-sized ones first (fewer verdicts).
NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_GSO = 0x1, 0x4
NF_DROP, NF_ACCEPT = 0, 1

_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id (host order)
_NFGENMSG = struct.Struct("!BBH")  # family, version, resource id = queue number (network order)
_NLATTR = struct.Struct("=HH")
_NLA_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER
_HEADER = _NLMSGHDR.size + _NFGENMSG.size


class NfQueueError(OSError):
    """The kernel refused a request (its errno), or the queue could not be set up."""


@dataclass(frozen=True)
class Packet:
    queue: int
    packet_id: int
    payload: bytes  # the first copy-range bytes of the packet (for IPv4: its header first)


@dataclass(frozen=True)
class Ack:
    seq: int
    error: int  # 0, or the errno the kernel answered the request with sequence ``seq``


def _align(n: int) -> int:
    return (n + 3) & ~3


def attr(kind: int, value: bytes) -> bytes:
    length = _NLATTR.size + len(value)
    return _NLATTR.pack(length, kind) + value + b"\0" * (_align(length) - length)


def message(msg: int, queue: int, attrs: Iterable[bytes], seq: int = 0, flags: int = NLM_F_REQUEST,
            family: int = socket.AF_UNSPEC) -> bytes:
    body = _NFGENMSG.pack(family, 0, queue) + b"".join(attrs)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg, flags, seq, 0) + body


def config(queue: int, seq: int, *, command: int | None = None, copy_range: int | None = None,
           maxlen: int | None = None, flags: int | None = None) -> bytes:
    """NFQNL_MSG_CONFIG, asking for an acknowledgement: bind/unbind, copy mode and range, queue length, flags."""
    attrs = []
    if command is not None:
        attrs.append(attr(NFQA_CFG_CMD, struct.pack("!BxH", command, socket.AF_INET)))
    if copy_range is not None:
        attrs.append(attr(NFQA_CFG_PARAMS, struct.pack("!IB", copy_range, NFQNL_COPY_PACKET)))
    if maxlen is not None:
        attrs.append(attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", maxlen)))
    if flags is not None:
        every = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO  # the flags this module sets or clears
        attrs += [attr(NFQA_CFG_FLAGS, struct.pack("!I", flags)), attr(NFQA_CFG_MASK, struct.pack("!I", every))]
    return message(NFQNL_MSG_CONFIG, queue, attrs, seq, NLM_F_REQUEST | NLM_F_ACK)


def verdict(queue: int, packet_id: int, decision: int = NF_ACCEPT, batch: bool = False) -> bytes:
    """The verdict on one packet, or (``batch``) on every packet of the queue up to and including ``packet_id``."""
    return message(NFQNL_MSG_VERDICT_BATCH if batch else NFQNL_MSG_VERDICT, queue,
                   [attr(NFQA_VERDICT_HDR, struct.pack("!II", decision, packet_id))])


def _attrs(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while offset + _NLATTR.size <= end:
        length, kind = _NLATTR.unpack_from(data, offset)
        if length < _NLATTR.size or offset + length > end:
            break
        out[kind & _NLA_TYPE_MASK] = data[offset + _NLATTR.size:offset + length]
        offset += _align(length)
    return out


def parse(data: bytes) -> list[Packet | Ack]:
    """The packets and acknowledgements in one datagram from the kernel; anything else is skipped."""
    out: list[Packet | Ack] = []
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, _flags, seq, _port = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            break
        if kind == NLMSG_ERROR:
            (error,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
            out.append(Ack(seq, -error))
        elif kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET and length >= _HEADER:
            _family, _version, queue = _NFGENMSG.unpack_from(data, offset + _NLMSGHDR.size)
            attrs = _attrs(data, offset + _HEADER, offset + length)
            header = attrs.get(NFQA_PACKET_HDR)
            if header is not None and len(header) >= 4:
                (packet_id,) = struct.unpack_from("!I", header)
                out.append(Packet(queue, packet_id, attrs.get(NFQA_PAYLOAD, b"")))
        offset += _align(length)
    return out


def ipv4_address(payload: bytes, source: bool) -> str | None:
    """The source (or destination) address of an IPv4 header, or None when ``payload`` is not one."""
    if len(payload) < 20 or payload[0] >> 4 != 4:
        return None
    offset = 12 if source else 16
    return socket.inet_ntoa(payload[offset:offset + 4])


class NfQueue:
    """One bound queue: ``packets()`` reads what is waiting, ``accept`` gives verdicts. Non-blocking; ``fileno``
    for a selector."""

    def __init__(self, queue: int, copy_range: int = 20, maxlen: int = 20000, rcvbuf: int = 8 << 20) -> None:
        self.queue = queue
        self.errors: list[int] = []  # errnos the kernel answered verdicts with (none normally)
        self._seq = 0
        self._early: list[Packet] = []  # packets that arrived while waiting for an acknowledgement
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE: past rmem_max, as root
        except OSError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        # A packet the socket has no room for is dropped by the kernel (as a full link would); the reader is
        # not told with ENOBUFS on its next read.
        self._sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self._sock.bind((0, 0))
        self._sock.setblocking(False)
        try:
            self.request(command=NFQNL_CFG_CMD_BIND)
            self.request(copy_range=copy_range, maxlen=maxlen, flags=NFQA_CFG_F_GSO)
        except OSError:
            self._sock.close()
            raise

    def fileno(self) -> int:
        return self._sock.fileno()

    def request(self, timeout: float = 5.0, **fields: int) -> None:
        """A config request, waiting (bounded) for the kernel's acknowledgement; packets read meanwhile are kept
        for the next ``packets()``."""
        self._seq += 1
        seq = self._seq
        self._sock.send(config(self.queue, seq, **fields))
        deadline = time.monotonic() + timeout
        while True:
            for item in self._read():
                if isinstance(item, Packet):
                    self._early.append(item)
                elif item.seq == seq:
                    if item.error:
                        raise NfQueueError(item.error, f"nfqueue {self.queue} config {sorted(fields)}: "
                                                       f"{os.strerror(item.error)}")
                    return
            left = deadline - time.monotonic()
            if left <= 0:
                raise NfQueueError(errno.ETIMEDOUT, f"nfqueue {self.queue}: no answer to config {sorted(fields)}")
            select.select([self._sock], [], [], left)

    def _read(self) -> list[Packet | Ack]:
        out: list[Packet | Ack] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return out
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    continue
                raise
            for item in parse(data):
                if isinstance(item, Ack) and item.error and item.seq == 0:
                    self.errors.append(item.error)  # a verdict the kernel refused (unknown packet id)
                else:
                    out.append(item)

    def packets(self) -> list[Packet]:
        """Every packet waiting on the socket now (none: an empty list)."""
        out, self._early = self._early, []
        out += [item for item in self._read() if isinstance(item, Packet)]
        return out

    def accept(self, packet_ids: Iterable[int]) -> None:
        """NF_ACCEPT for each packet, in the order given; several verdicts to one datagram."""
        chunk: list[bytes] = []
        for packet_id in packet_ids:
            chunk.append(verdict(self.queue, packet_id))
            if len(chunk) == 512:
                self._send(b"".join(chunk))
                chunk = []
        if chunk:
            self._send(b"".join(chunk))

    def accept_up_to(self, packet_id: int) -> None:
        """NF_ACCEPT for every packet still queued with an id up to ``packet_id``."""
        self._send(verdict(self.queue, packet_id, batch=True))

    def _send(self, data: bytes) -> None:
        while True:
            try:
                self._sock.send(data)
                return
            except BlockingIOError:
                select.select([], [self._sock], [], 1.0)

    def close(self) -> None:
        """Unbind (the kernel drops what is still queued: accept it first) and close."""
        try:
            self.request(command=NFQNL_CFG_CMD_UNBIND)
        except OSError:
            pass
        finally:
            self._sock.close()
