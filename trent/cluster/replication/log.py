"""A region's outbox: its multi-Region changes as numbered records, written in the same transaction as the
change they describe, and the cursors recording how far it has applied each peer's outbox."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import struct

from trent.cluster.replication.commands import CommandCodec
from trent.node.clock import Clock
from trent.node.consistency import ChangeFollower, Changes
from trent.node.model.mrk import Command
from trent.node.store.base import Batch, StaleState, Store

SEQ_WIDTH = 16
# Replication's tables in the region's store: the outbox (ids are zero-padded sequence numbers, so id order is log
# order; followed through the change feed, as other processes serving the region append to it), and how far this
# region has applied each peer's outbox.
OUTBOX, CURSORS = "outbox", "cursors"
# After a reset emptied the outbox: the number its records had reached, so numbering continues above every peer's
# cursor (a peer that has applied record N asks for records after N, and must find the next one there).
FLOOR = "outbox-floor"


def seq_id(seq: int) -> str:
    return f"{seq:0{SEQ_WIDTH}d}"


class Outbox:
    """Implements the region's change log (node.service.ChangeLog) over the region's own store."""

    def __init__(self, region: str, store: Store, codec: CommandCodec, clock: Clock) -> None:
        self.region = region
        self.store = store
        self.codec = codec
        self.clock = clock
        store.declare(OUTBOX, feed=True)
        store.declare("meta")
        self.head = self._last_seq()
        self._identity: str | None = None
        self._allocated = self.head
        # One future per waiting peer, made in the loop it waits in (an asyncio.Event would bind to the first
        # loop that waited on it, and the outbox may outlive that loop).
        self._waiters: set[asyncio.Future[None]] = set()
        self._closed = False
        # How far each peer said it has applied this outbox, on its latest pull: what outbox trimming may drop
        # when the peer's own cursors live in another process or on another host. Not kept across a restart (no
        # trimming then until every peer has pulled again).
        self.pulled: dict[str, int] = {}

    @property
    def identity(self) -> str:
        """Names this outbox's numbering. A store that starts over (a region rebuilt from nothing) gets a new
        identity, so peers know to read it from the start instead of waiting for numbers they already passed."""
        if self._identity is None:
            raw = self.store.get("meta", "outbox-identity")
            if raw is None:
                raw = secrets.token_hex(8).encode()
                self.store.commit(Batch().put("meta", "outbox-identity", raw))
            self._identity = raw.decode()
        return self._identity

    def append(self, batch: Batch, command: Command) -> None:
        seq = seq_id(self._allocated + 1)
        if self.store.get(OUTBOX, seq) is not None:
            # Numbered by another process already, which this one has not heard of: a record is never overwritten.
            # The region's write is decided again once it has caught up.
            raise StaleState(f"outbox record {seq} of {self.region} exists already")
        self._allocated += 1
        batch.put(OUTBOX, seq, self.codec.encode(command, self.region, self.clock.now()))

    def committed(self) -> None:
        """Called once a batch holding appended records is durable: wakes peers waiting for news."""
        self.head = self._allocated
        self._wake()

    def _last_seq(self) -> int:
        """The newest record's number in the store (0 for an empty outbox)."""
        last = self.store.last_id(OUTBOX)
        floor = self.store.get("meta", FLOOR)
        return max(int(last) if last is not None else 0, int(floor) if floor is not None else 0)

    def stage_clear(self, batch: Batch) -> int:
        """Stage the deletion of every record (a reset); numbering goes on from the newest, so the cursors peers
        hold stay valid. How many records there were."""
        doomed = [ident for ident, _ in self.store.scan(OUTBOX)]
        for ident in doomed:
            batch.delete(OUTBOX, ident)
        batch.put("meta", FLOOR, str(max(self._allocated, self.head)).encode())
        return len(doomed)

    @property
    def parked(self) -> int:
        """Peers' long-polls waiting here for the next record."""
        return len(self._waiters)

    def follow(self, follower: ChangeFollower | None) -> None:
        """Where several processes serve the region: hear of the records they append."""
        if follower is not None:
            follower.follow((OUTBOX,), self.refresh)

    def refresh(self, _changes: Changes = None) -> None:
        """Another process committed records (several processes serve the region): take up its numbering and wake
        the peers waiting for news."""
        newest = self._last_seq()
        if newest > self.head:
            self.head = newest
            self._allocated = max(self._allocated, newest)
            self._wake()

    def close(self) -> None:
        """Release every peer waiting for news (the region is stopping)."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def rolled_back(self) -> None:
        # Sequence numbers of a failed batch are simply skipped: readers ask for "after N", so gaps are harmless.
        pass

    def trim_through(self, applied_everywhere: int, batch_size: int = 1000) -> int:
        """Delete records every peer has applied. The newest record always stays, so numbering continues from it
        after a restart (peers' cursors must never find the outbox starting over below them)."""
        limit = min(applied_everywhere, self.head - 1)
        removed = 0
        while True:
            doomed = [int(i) for i, _ in self.store.scan_after(OUTBOX, seq_id(0), batch_size) if int(i) <= limit]
            if not doomed:
                return removed
            batch = Batch()
            for seq in doomed:
                batch.delete(OUTBOX, seq_id(seq))
            self.store.commit(batch)
            removed += len(doomed)

    def read_after(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        return [(int(i), doc) for i, doc in self.store.scan_after(OUTBOX, seq_id(after), limit)]

    async def wait_beyond(self, after: int, timeout: float) -> None:
        """Return once a record beyond ``after`` is committed, the outbox closes, or ``timeout`` seconds pass."""
        if self.head > after or self._closed or not timeout > 0:  # (not > 0: also a NaN timeout)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiters.discard(waiter)

    def oldest_after(self, after: int) -> float | None:
        """When the first record after ``after`` was written (for lag in seconds), or None if there is none."""
        records = self.read_after(after, 1)
        if not records:
            return None
        _, _, at = self.codec.decode(records[0][1])
        return at


class Cursors:
    """How far this region has applied each peer's outbox (persisted with every applied record)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        store.declare(CURSORS)
        self.positions: dict[str, int] = {}
        for peer, raw in store.scan(CURSORS):
            self.positions[peer] = struct.unpack(">Q", raw)[0]

    def get(self, peer: str) -> int:
        return self.positions.get(peer, 0)

    def stage(self, batch: Batch, peer: str, seq: int) -> None:
        batch.put(CURSORS, peer, struct.pack(">Q", seq))

    def committed(self, peer: str, seq: int) -> None:
        self.positions[peer] = max(self.positions.get(peer, 0), seq)

    def identity_of(self, peer: str) -> str | None:
        raw = self.store.get("meta", f"peer-outbox-identity:{peer}")
        return None if raw is None else raw.decode()

    def follow(self, peer: str, identity: str) -> None:
        """Read ``peer``'s outbox named ``identity`` from now on; a new identity means its log started over."""
        known = self.identity_of(peer)
        if known == identity:
            return
        batch = Batch().put("meta", f"peer-outbox-identity:{peer}", identity.encode())
        if known is not None:  # not the first contact: the peer's numbering restarted, so must this cursor
            batch.put(CURSORS, peer, struct.pack(">Q", 0))
        self.store.commit(batch)
        if known is not None:
            self.positions[peer] = 0
