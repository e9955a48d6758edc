"""One region's state: the in-memory view of its keys and aliases, and the one way to change them.

Every change goes through ``commit``: the store commits first, then the in-memory view is swapped, so a failed
write leaves the region exactly as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypeVar

from trent.node.catch_up import CatchUps, Followed
from trent.node.clock import Clock
from trent.node.consistency import STALE_ATTEMPTS, ChangeFollower, Changes
from trent.node.crypto.blob import parse_header
from trent.node.crypto.handles import SecretBytes
from trent.node.crypto.rootkey import RootKey
from trent.node.crypto.wrapping_keys import WrappingKeys
from trent.node.model.errors import KmsError, NotReady, not_found
from trent.node.model.grants import GrantRecord, decode_grant, encode_grant
from trent.node.model.ids import RefKind, alias_arn, key_arn, parse_key_ref
from trent.node.model.key import AliasRecord, KeyRecord
from trent.node.model.mrk import Command
from trent.node.store.base import Batch, StaleState, Store
from trent.node.store.codec import RecordCodec

if TYPE_CHECKING:
    from trent.node.audit.trail import AuditTrail
    from trent.node.keystores.service import KeyStoreService

log = logging.getLogger("trent.region")
T = TypeVar("T")
# The region's own tables: its state (held in memory, so followed through the change feed), and anything else.
KEYS, ALIASES, GRANTS, META = "keys", "aliases", "grants", "meta"
STATE_TABLES = (KEYS, ALIASES, GRANTS)


class ChangeLog(Protocol):
    """Where a region's multi-Region changes go (cluster/replication's outbox): records are staged into the
    same batch as the change they describe, so both commit or neither does."""

    def append(self, batch: Batch, command: Command) -> None: ...

    def committed(self) -> None: ...

    def rolled_back(self) -> None: ...


@dataclass(frozen=True)
class RegionIdentity:
    name: str
    account: str


class Region:
    def __init__(
        self, identity: RegionIdentity, store: Store, root_key: RootKey, clock: Clock,
        change_log: ChangeLog | None = None,
        cluster_regions: Iterable[str] = (),
        audit: AuditTrail | None = None,
        key_pairs: Callable[[str], tuple[SecretBytes, bytes]] | None = None,
        wrapping_keys: WrappingKeys | None = None,
    ) -> None:
        """When other processes write this region's store too (it has a change feed), ``sync`` catches up with
        their commits, and every commit is conditional on this view having seen every change before it.
        ``audit``: the region's audit trail (GetKeyLastUsage reads it); ``key_pairs``: where slow (RSA) key pairs
        come from (a pre-generating pool), else generated on the spot; ``wrapping_keys``: the RSA wrapping keys of
        key material imports (None: generated on the spot)."""
        self.identity = identity
        # Plain attributes, not properties: read several times by every request.
        self.name = identity.name
        self.account = identity.account
        # Every region of the cluster (this one included): where multi-Region keys may have replicas.
        self.cluster_regions: tuple[str, ...] = tuple(cluster_regions) or (identity.name,)
        self.store = store
        self.clock = clock
        # None: a region with no peers; replication commands then have no one to go to and are dropped.
        self.change_log = change_log
        self.codec = RecordCodec(root_key)
        # Import tokens are sealed under it (node/crypto/import_token.py).
        self.root_key = root_key
        # Key ids changed since the scheduler last looked; None while no scheduler watches (worker processes).
        self._touched: set[str] | None = None
        self.keys: dict[str, KeyRecord] = {}
        self.aliases: dict[str, AliasRecord] = {}
        self._aliases_by_key: dict[str, set[str]] = {}
        self.audit = audit
        self.key_pairs = key_pairs
        self.wrapping_keys = wrapping_keys
        # Where other nodes serve the region too (an etcd store): brings this view every commit made anywhere, so a
        # client that made a key through one node finds it through another, and a commit that lost a race decides
        # again on what beat it.
        self.catch_ups: CatchUps | None = CatchUps(store, identity.name) if isinstance(store, Followed) else None
        # When the request being decided arrived (the endpoint's clock), set by the endpoint around its synchronous
        # dispatch: a lookup that misses then waits off the loop for a catch-up begun after that (NotReady).
        self.requested_at: float | None = None
        self.grants: dict[str, GrantRecord] = {}
        # This region's custom key stores (node/keystores), when it has HSM clusters; set by the composition.
        self.key_stores: KeyStoreService | None = None
        self._grants_by_key: dict[str, set[str]] = {}
        for table in STATE_TABLES:
            store.declare(table, feed=True)
        store.declare(META)
        self._appliers: dict[str, Callable[[str, bytes | None], None]] = {
            KEYS: self._apply_key, ALIASES: self._apply_alias, GRANTS: self._apply_grant}
        feed = store.change_feed()
        # Made before the load: it notes how far the feed is, and the load includes at least that.
        self.follower = ChangeFollower(feed) if feed is not None else None
        if self.follower is not None:
            self.follower.follow(STATE_TABLES, self._apply_changes)
        self._load()

    def now(self) -> float:
        return self.clock.now()

    def _load(self) -> None:
        self._touch(self.keys)  # keys that may be gone after the reload
        self.keys.clear()
        self.aliases.clear()
        self._aliases_by_key.clear()
        self.grants.clear()
        self._grants_by_key.clear()
        for _, raw in self.store.scan(KEYS):
            key = self.codec.decode_key(raw)
            self.keys[key.key_id] = key
        for _, raw in self.store.scan(ALIASES):
            alias = self.codec.decode_alias(raw)
            self._index_alias(alias)
        for _, raw in self.store.scan(GRANTS):
            self._index_grant(decode_grant(raw))
        self._touch(self.keys)
        log.info("region %s loaded %d keys, %d aliases, %d grants", self.name, len(self.keys), len(self.aliases),
                 len(self.grants))

    # -- several processes over one store (node/consistency.py) ----------------------------------------

    def run_fresh(self, run: Callable[[], T], attempts: int = STALE_ATTEMPTS,
                  after_sync: Callable[[], None] | None = None) -> T:
        """``run`` decides on the region's state and commits; when another process committed first (StaleState:
        nothing was written), catch up and run it again, ``attempts`` times in all. ``after_sync`` runs after each
        catch-up (to check again what the decision rested on); the last StaleState is raised."""
        for attempt in range(attempts):
            try:
                return run()
            except StaleState as exc:
                if self.catch_ups is not None:
                    self.catch_ups.now_after_race(exc.head)  # (a request waits off the loop instead: consistency.py)
                self.sync(force=True)
                if after_sync is not None:
                    after_sync()
                if attempt == attempts - 1:
                    raise
        raise ValueError("run_fresh needs at least one attempt")

    def sync(self, force: bool = False) -> bool:
        """Catch up with what other processes committed (nothing to do when none shares the store); True if
        anything changed."""
        return self.follower is not None and self.follower.sync(force)

    def _apply_changes(self, changes: Changes) -> None:
        """The feed's news of the region's own tables, applied to the in-memory view (None: load it all again)."""
        if changes is None:
            self._load()
            return
        for table, idents in changes.items():
            apply = self._appliers[table]
            for ident in idents:
                apply(ident, self.store.get(table, ident))

    def _apply_key(self, key_id: str, raw: bytes | None) -> None:
        self._touch((key_id,))
        if raw is None:
            self.keys.pop(key_id, None)
        else:
            self.keys[key_id] = self.codec.decode_key(raw)

    def _apply_alias(self, name: str, raw: bytes | None) -> None:
        self._unindex_alias(name)
        if raw is not None:
            self._index_alias(self.codec.decode_alias(raw))

    def _apply_grant(self, grant_id: str, raw: bytes | None) -> None:
        self._unindex_grant(grant_id)
        if raw is not None:
            self._index_grant(decode_grant(raw))

    def watch_keys(self) -> list[str]:
        """Start recording which keys change (see ``take_touched``); the ids of every key there is now."""
        self._touched = set()
        return list(self.keys)

    def take_touched(self) -> set[str]:
        """The ids of keys changed, added or deleted since the last call (the scheduler's view of what to look at
        again: it does not rescan every key on every tick)."""
        touched = self._touched
        if touched is None:
            return set()  # nobody watches: nothing was recorded
        self._touched = set()
        return touched

    def _touch(self, key_ids: Iterable[str]) -> None:
        if self._touched is not None:
            self._touched.update(key_ids)

    # -- lookups ---------------------------------------------------------------------------------------

    def key_arn(self, key_id: str) -> str:
        return key_arn(self.name, self.account, key_id)

    def key_arn_in(self, region: str, key_id: str) -> str:
        """The ARN of ``key_id`` in another region of this account (a multi-Region key's relatives)."""
        return key_arn(region, self.account, key_id)

    def alias_arn(self, name: str) -> str:
        return alias_arn(self.name, self.account, name)

    def resolve(self, value: str, *, allow_alias: bool) -> KeyRecord:
        """Find the key a KeyId parameter names in this region, with AWS's NotFound messages."""
        key = self.keys.get(value)
        if key is not None:
            return key  # a bare key id of this region (keys are stored by id): what parsing it would find
        ref = parse_key_ref(value, allow_alias=allow_alias)
        if ref.kind in (RefKind.KEY_ARN, RefKind.ALIAS_ARN) and (
            ref.region != self.name or ref.account != self.account
        ):
            if ref.kind is RefKind.KEY_ARN:
                raise not_found(f"Key '{value}' does not exist")
            raise not_found(f"Alias {value} is not found.")
        if ref.alias_name is not None:
            alias_name = ref.alias_name
            key = self.key_of_alias(alias_name) or self._after_catch_up(lambda: self.key_of_alias(alias_name))
            if key is None:
                raise not_found(f"Alias {self.alias_arn(ref.alias_name)} is not found.")
            return key
        key_id = ref.key_id
        assert key_id is not None
        key = self.keys.get(key_id) or self._after_catch_up(lambda: self.keys.get(key_id))
        if key is None:
            raise not_found(f"Key '{self.key_arn(key_id)}' does not exist")
        return key

    def _after_catch_up(self, lookup: Callable[[], KeyRecord | None]) -> KeyRecord | None:
        """``lookup`` again once this view holds every commit made before the request arrived, where other nodes
        serving the region may have made what a client names a moment ago (etcd); None elsewhere. In a request, the
        catch-up is awaited off the event loop (NotReady) and the request decided again; other work waits for it."""
        catch_ups = self.catch_ups
        if catch_ups is None:
            return None
        since = self.requested_at
        if since is None:
            if not catch_ups.now():
                return None
        elif not catch_ups.covers(since):
            raise NotReady(catch_ups.next())
        self.sync()
        return lookup()

    def key_of_alias(self, name: str) -> KeyRecord | None:
        """The key an alias of this region points at, if both exist."""
        alias = self.aliases.get(name)
        return None if alias is None else self.keys.get(alias.key_id)

    def key_of_ciphertext(self, blob: object) -> KeyRecord | None:
        """The key of this region a symmetric ciphertext names; None for anything else (the operation says why)."""
        if not isinstance(blob, bytes):
            return None
        try:
            return self.keys.get(parse_header(blob).key_id)
        except KmsError:
            return None

    def aliases_of(self, key_id: str) -> list[AliasRecord]:
        return sorted((self.aliases[n] for n in self._aliases_by_key.get(key_id, ())), key=lambda a: a.name)

    def grants_of(self, key_id: str) -> list[GrantRecord]:
        return sorted((self.grants[g] for g in self._grants_by_key.get(key_id, ())),
                      key=lambda g: (g.created, g.grant_id))

    # -- the one write path ----------------------------------------------------------------------------

    def commit(
        self,
        *,
        keys: Iterable[KeyRecord] = (),
        delete_keys: Iterable[str] = (),
        aliases: Iterable[AliasRecord] = (),
        delete_aliases: Iterable[str] = (),
        grants: Iterable[GrantRecord] = (),
        delete_grants: Iterable[str] = (),
        commands: Iterable[Command] = (),
        batch: Batch | None = None,
    ) -> None:
        """Durably apply the changes (and stage ``commands`` in the change log, in the same transaction), then
        update the in-memory view. On any failure nothing is written and memory is unchanged."""
        keys, delete_keys = list(keys), list(delete_keys)
        aliases, delete_aliases = list(aliases), list(delete_aliases)
        grants = list(grants)
        # Grants die with their key.
        delete_grants = list(delete_grants) + [g for k in delete_keys for g in self._grants_by_key.get(k, ())]
        batch = batch if batch is not None else Batch()
        for key in keys:
            batch.put(KEYS, key.key_id, self.codec.encode_key(key))
        for key_id in delete_keys:
            batch.delete(KEYS, key_id)
        for alias in aliases:
            batch.put(ALIASES, alias.name, self.codec.encode_alias(alias))
        for name in delete_aliases:
            batch.delete(ALIASES, name)
        for grant in grants:
            batch.put(GRANTS, grant.grant_id, encode_grant(grant))
        for grant_id in delete_grants:
            batch.delete(GRANTS, grant_id)
        change_log = self.change_log
        staged = False
        try:
            if change_log is not None:
                for command in commands:
                    staged = True
                    change_log.append(batch, command)
            follower = self.follower
            if follower is None:
                self.store.commit(batch)  # raises StoreError with nothing written; memory stays as it was
            else:
                # Only over a view that has seen every change (else StaleState: the caller syncs, decides again).
                follower.commit(batch)
        except BaseException:
            if staged and change_log is not None:
                change_log.rolled_back()
            raise
        for key in keys:
            self.keys[key.key_id] = key
        for key_id in delete_keys:
            self.keys.pop(key_id, None)
        self._touch(key.key_id for key in keys)
        self._touch(delete_keys)
        for name in delete_aliases:
            self._unindex_alias(name)
        for alias in aliases:
            self._unindex_alias(alias.name)
            self._index_alias(alias)
        for grant_id in delete_grants:
            self._unindex_grant(grant_id)
        for grant in grants:
            self._index_grant(grant)
        if staged and change_log is not None:
            change_log.committed()

    def _index_alias(self, alias: AliasRecord) -> None:
        self.aliases[alias.name] = alias
        self._aliases_by_key.setdefault(alias.key_id, set()).add(alias.name)

    def _unindex_alias(self, name: str) -> None:
        old = self.aliases.pop(name, None)
        if old is not None:
            _unlink(self._aliases_by_key, old.key_id, name)

    def _index_grant(self, grant: GrantRecord) -> None:
        self.grants[grant.grant_id] = grant
        self._grants_by_key.setdefault(grant.key_id, set()).add(grant.grant_id)

    def _unindex_grant(self, grant_id: str) -> None:
        old = self.grants.pop(grant_id, None)
        if old is not None:
            _unlink(self._grants_by_key, old.key_id, grant_id)


def _unlink(by_key: dict[str, set[str]], key_id: str, member: str) -> None:
    """Drop ``member`` from a key's entry in a per-key index, and the entry once it is empty."""
    members = by_key.get(key_id)
    if members is not None:
        members.discard(member)
        if not members:
            del by_key[key_id]
