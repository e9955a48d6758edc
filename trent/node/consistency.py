"""Several processes serving one region over one store (`trent up --workers N`): how each keeps in step.

The mechanism, in one place:

- the store keeps a change feed: every commit records, in the same transaction, which rows of the tables its
  users declared with ``feed=True`` it changed (node/store);
- each process follows the feed (``ChangeFollower``): the owners of those tables (the region, the replication
  outbox) register a callback that applies the changed rows to what they hold in memory;
- before every request the endpoint asks its ``RegionConsistency`` to catch up (``before_request``: one look at
  the store's data version when nothing changed);
- every commit is conditional on having seen every change before it; an operation that writes (its declared
  ``read_only`` is False) and loses that race is caught up and run again, authorization included
  (``RegionConsistency.run_write``); a read-only operation never commits, so it never races;
- after a write, ``notify`` tells whoever must hear of it at once (the leader process: cluster/shared_runtime.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, TypeVar

from trent.node.model.errors import KmsError, NotReady
from trent.node.store.base import Batch, ChangeFeed, StaleState

if TYPE_CHECKING:
    from trent.node.service import Region

log = logging.getLogger("trent.consistency")
T = TypeVar("T")
STALE_ATTEMPTS = 8  # tries of one decision racing other processes' commits before giving up

# What changed in the tables one owner registered: table → the ids of its changed rows (oldest change first);
# None when changes were trimmed away before this process saw them: the owner must load everything again.
Changes = Mapping[str, list[str]] | None
ApplyChanges = Callable[[Changes], None]


class Consistency(Protocol):
    """The endpoint's step before every request, and its way of running an operation that writes."""

    def before_request(self) -> None: ...

    def run_write(self, operation: str, run: Callable[[], T], recheck: Callable[[], None]) -> T: ...


class ChangeFollower:
    """One process's view of a store's change feed: how far it has caught up, and who applies what changed."""

    def __init__(self, feed: ChangeFeed) -> None:
        self.feed = feed
        # Taken before the owners load: a commit made meanwhile is looked at again by the first sync (harmlessly).
        self._version = feed.data_version()
        self.seen = feed.change_head()  # the newest change this process's view includes
        self._owners: list[tuple[frozenset[str], ApplyChanges]] = []

    def follow(self, tables: tuple[str, ...], apply: ApplyChanges) -> None:
        """``apply`` keeps the in-memory view of ``tables`` current: called with what changed in them."""
        self._owners.append((frozenset(tables), apply))

    def sync(self, force: bool = False) -> bool:
        """Catch up with what other processes committed; True if anything changed. Cheap when nothing did (one look
        at the data version); ``force`` looks at the feed even if that version did not move (after StaleState: a
        commit of this process's own, made outside ``commit``, does not move it)."""
        feed = self.feed
        version = feed.data_version()
        if version == self._version and not force:
            return False
        self._version = version
        oldest, changes = feed.changes_after(self.seen)
        if not changes:
            return False
        if oldest > self.seen + 1:
            # Changes this view never saw were trimmed away: every owner loads everything again.
            head = feed.change_head()
            for _, apply in self._owners:
                apply(None)
            self.seen = head
            return True
        touched: dict[str, dict[str, None]] = {}
        for _, table, ident in changes:
            touched.setdefault(table, {})[ident] = None
        for tables, apply in self._owners:
            mine = {t: list(ids) for t, ids in touched.items() if t in tables}
            if mine:
                apply(mine)
        # The rows read are at least as new as the last change listed (possibly newer: a commit that follows
        # fails as stale and catches up again, never the reverse).
        self.seen = changes[-1][0]
        return True

    def commit(self, batch: Batch) -> None:
        """Commit only over a view that has seen every change (else StaleState: catch up, decide again)."""
        self.seen = self.feed.commit_if(batch, self.seen)


def conflicted() -> KmsError:
    """The answer to a write that lost every race for the store to other processes' commits."""
    return KmsError("KMSInternalException", "The request conflicted with concurrent changes; retry it.", 500)


class RegionConsistency:
    """The endpoint's consistency step for a region other processes serve too (KmsEndpoint ``consistency``)."""

    def __init__(self, region: Region, notify: Callable[[], None] | None = None,
                 attempts: int = STALE_ATTEMPTS) -> None:
        self.region = region
        self.notify = notify
        self.attempts = attempts

    def before_request(self) -> None:
        """What other processes committed, in this process's view before the request is decided."""
        self.region.sync()

    def run_write(self, operation: str, run: Callable[[], T], recheck: Callable[[], None]) -> T:
        """Run a writing operation; when another process committed first, catch up, ``recheck`` (authorization:
        a key policy or grant may have changed) and run it again. Losing every try is a retryable 500. Where the
        catch-up is a read of etcd (``catch_ups``), a request waits for it off the event loop and is run again whole
        (NotReady: its authorization too); the adapter bounds how often."""
        region = self.region
        catch_ups = region.catch_ups
        try:
            if catch_ups is not None and region.requested_at is not None:
                racing = catch_ups.racing()
                if racing is not None:
                    raise NotReady(racing, conflicted())
                try:
                    return run()
                except StaleState as exc:
                    raise NotReady(catch_ups.next_after_race(exc.head), conflicted()) from None
            return region.run_fresh(run, self.attempts, after_sync=recheck)
        except StaleState:
            log.warning("region %s: %s lost %d races for the store; answering a retryable error", self.region.name,
                        operation, self.attempts)
            raise conflicted() from None
        finally:
            if self.notify is not None:
                self.notify()
