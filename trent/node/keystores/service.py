"""One region's custom key stores: their records (region state, persisted and followed like keys), their
connections (a session pool per connected store, opened asynchronously as AWS's ConnectCustomKeyStore is), and the
cryptography of their keys, always in the token and off the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, TypeVar

import pkcs11

from trent.node.consistency import Changes
from trent.node.deferred import Deferred
from trent.node.hsm.faults import HsmFaults
from trent.node.hsm.pool import HsmError, HsmLoginFailed, HsmUnavailable, Library, SessionPool
from trent.node.keystores import token_crypto
from trent.node.keystores.clusters import ClusterDirectory
from trent.node.keystores.records import (
    CONNECTED,
    CONNECTING,
    FAILED,
    RESUME,
    STORE_ID,
    TABLE,
    KeyStoreCodec,
    KeyStoreRecord,
)
from trent.node.model.errors import KmsError, internal
from trent.node.model.key import KeyRecord
from trent.node.model.states import PENDING_DELETION_STATES, KeyState
from trent.node.service import Region
from trent.node.store.base import Batch

if TYPE_CHECKING:
    from trent.node.xks.stores import XksStores

log = logging.getLogger("trent.keystores")
T = TypeVar("T")
CONNECT_TIMEOUT = 10.0


def _close_late_pool(opening: Future[SessionPool]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def store_of(key: KeyRecord) -> str | None:
    """The custom key store a key lives in (None: a key of KMS's own)."""
    value = key.extra.get(STORE_ID)
    return value if isinstance(value, str) else None


def dependency_timeout() -> KmsError:
    return KmsError("DependencyTimeoutException",
                    "The system timed out while trying to fulfill the request. You can retry the request.", 503)


class KeyStoreService:
    def __init__(self, region: Region, codec: KeyStoreCodec, clusters: ClusterDirectory, faults: HsmFaults, *,
                 pool_size: int = 2, timeout: float = 3.0) -> None:
        self.region = region
        self.codec = codec
        self.clusters = clusters
        self.faults = faults
        self.pool_size = pool_size
        self.timeout = timeout  # a PKCS#11 call (with its wait for a session) that takes longer fails the request
        self.stores: dict[str, KeyStoreRecord] = {}
        self._pools: dict[str, SessionPool] = {}
        self.handles: dict[str, token_crypto.Handles] = {}  # per store: key objects its sessions have found
        self._tasks: set[asyncio.Task[None]] = set()
        # Logins run here, off the event loop (one that hangs holds only this thread).
        self._connector = ThreadPoolExecutor(2, thread_name_prefix=f"hsm-connect-{region.name}")
        self.xks: XksStores | None = None  # external key stores' proxies (node/xks), where the cluster has them
        region.store.declare(TABLE, feed=True)
        if region.follower is not None:
            region.follower.follow((TABLE,), self._apply_changes)
        self._load()

    # -- state ---------------------------------------------------------------------------------------------

    def _load(self) -> None:
        self.stores = {ident: self.codec.decode(raw) for ident, raw in self.region.store.scan(TABLE)}
        self._drop_stale_pools()

    def _apply_changes(self, changes: Changes) -> None:
        if changes is None:
            self._load()
            return
        for ident in changes.get(TABLE, ()):
            raw = self.region.store.get(TABLE, ident)
            if raw is None:
                self.stores.pop(ident, None)
            else:
                self.stores[ident] = self.codec.decode(raw)
        self._drop_stale_pools()

    def _drop_stale_pools(self) -> None:
        for store_id in list(self._pools):
            record = self.stores.get(store_id)
            if record is None or record.state != CONNECTED:
                self._close_pool(store_id)

    def by_name(self, name: str) -> KeyStoreRecord | None:
        return next((s for s in self.stores.values() if s.name == name), None)

    def keys_in(self, store_id: str) -> list[KeyRecord]:
        return [k for k in self.region.keys.values() if k.extra.get(STORE_ID) == store_id]

    def commit(self, stores: Iterable[KeyStoreRecord] = (), delete: Iterable[str] = (),
               keys: Iterable[KeyRecord] = ()) -> None:
        """Key store records and keys in one transaction (the region's), then memory."""
        stores, delete = list(stores), list(delete)
        batch = Batch()
        for record in stores:
            batch.put(TABLE, record.store_id, self.codec.encode(record))
        for store_id in delete:
            batch.delete(TABLE, store_id)
        self.region.commit(keys=keys, batch=batch)
        for record in stores:
            self.stores[record.store_id] = record
        for store_id in delete:
            self.stores.pop(store_id, None)
        self._drop_stale_pools()

    def set_state(self, record: KeyStoreRecord, state: str, error_code: str | None = None) -> None:
        """The store's new connection state, and its keys' with it: Unavailable unless it is connected (a key
        pending deletion stays so), back to what they were once it is."""
        updated = record.with_changes(state=state, error_code=error_code)
        keys: list[KeyRecord] = []
        for key in self.keys_in(record.store_id):
            if state == CONNECTED and key.state is KeyState.UNAVAILABLE:
                extra = {k: v for k, v in key.extra.items() if k != RESUME}
                keys.append(key.with_changes(state=KeyState(key.extra.get(RESUME, KeyState.ENABLED.value)),
                                             extra=extra))
            elif (state != CONNECTED and key.state is not KeyState.UNAVAILABLE
                  and key.state not in PENDING_DELETION_STATES):
                keys.append(key.with_changes(state=KeyState.UNAVAILABLE,
                                             extra={**key.extra, RESUME: key.state.value}))
        self.commit(stores=[updated], keys=keys)

    # -- connections ---------------------------------------------------------------------------------------

    def begin_connect(self, store_id: str) -> None:
        """Connect in the background (ConnectCustomKeyStore answers at once); the outcome is the store's state."""
        task = asyncio.get_running_loop().create_task(self._connect(store_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, store_id: str) -> None:
        record = self.stores.get(store_id)
        if record is None or record.state != CONNECTING:
            return
        state, code = CONNECTED, None
        pool: SessionPool | None = None
        cluster = self.clusters.get(record.cluster_id)
        if record.xks is not None:
            state, code = await self._connect_external(record)
        elif cluster is None:
            state, code = FAILED, "CLUSTER_NOT_FOUND"
        elif cluster.spec.hsms < 1:
            state, code = FAILED, "INSUFFICIENT_CLOUDHSM_HSMS"
        else:
            opening = self._connector.submit(self._open_pool, record)
            try:
                pool = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(opening)), CONNECT_TIMEOUT)
            except TimeoutError:
                opening.add_done_callback(_close_late_pool)  # a login that ends after all is undone
                state, code = FAILED, "NETWORK_ERRORS"
            except HsmLoginFailed as exc:
                state, code = FAILED, exc.code
            except HsmError:
                state, code = FAILED, "NETWORK_ERRORS"
            except Exception:
                log.exception("region %s: connecting key store %s failed", self.region.name, store_id)
                state, code = FAILED, "INTERNAL_ERROR"
        current = self.stores.get(store_id)
        if current is None or current.state != CONNECTING:  # disconnected or deleted meanwhile
            if pool is not None:
                pool.close()
            return
        if pool is not None:
            self._pools[store_id] = pool
        self.region.run_fresh(lambda: self._finish_connect(store_id, state, code))
        log.info("region %s: key store %s %s%s", self.region.name, store_id, state, f" ({code})" if code else "")

    async def _connect_external(self, record: KeyStoreRecord) -> tuple[str, str | None]:
        """An external key store connects once its proxy passes the health check AWS makes."""
        from trent.node.xks.client import XksCallFailure
        from trent.node.xks.errors import connection_error_code

        if self.xks is None:
            return FAILED, "XKS_PROXY_NOT_REACHABLE"
        try:
            await self.xks.health_check(record, "ConnectCustomKeyStore")
        except XksCallFailure as exc:
            return FAILED, connection_error_code(exc)
        return CONNECTED, None

    def _finish_connect(self, store_id: str, state: str, code: str | None) -> None:
        record = self.stores.get(store_id)
        if record is not None and record.state == CONNECTING:
            self.set_state(record, state, code)

    def _open_pool(self, record: KeyStoreRecord) -> SessionPool:
        cluster = self.clusters.get(record.cluster_id)
        if cluster is None:
            raise HsmLoginFailed("CLUSTER_NOT_FOUND", f"no cluster {record.cluster_id}")
        try:
            cluster.library()
        except (OSError, pkcs11.PKCS11Error) as exc:
            raise HsmLoginFailed("NETWORK_ERRORS", f"cannot load the PKCS#11 library: {type(exc).__name__}") from None
        pool = self._new_pool(record, cluster.library, cluster.lineage_id)
        try:
            pool.open()
        except BaseException:
            pool.close()
            raise
        return pool

    def _new_pool(self, record: KeyStoreRecord, library: Callable[[], Library], label: str) -> SessionPool:
        return SessionPool(library, label, record.password.reveal().decode(), self.pool_size,
                           name=f"hsm-{self.region.name}-{record.store_id}",
                           before_call=self.faults.hook(record.cluster_id))

    def pool(self, record: KeyStoreRecord) -> SessionPool:
        """The session pool of a connected store; a process that did not connect it opens its own (lazily, in the
        pool's first call: logging in never runs on the event loop)."""
        pool = self._pools.get(record.store_id)
        if pool is None:
            cluster = self.clusters.get(record.cluster_id)
            if cluster is None:
                raise HsmUnavailable(f"no cluster {record.cluster_id}")
            pool = self._new_pool(record, cluster.library, cluster.lineage_id)
            self._pools[record.store_id] = pool
        return pool

    def _close_pool(self, store_id: str) -> None:
        pool = self._pools.pop(store_id, None)
        if pool is not None:
            pool.close()
        self.handles.pop(store_id, None)

    def handles_of(self, store_id: str) -> token_crypto.Handles:
        handles = self.handles.get(store_id)
        if handles is None:
            handles = self.handles[store_id] = token_crypto.Handles()
        return handles

    def pkcs11_usage(self, store_id: str) -> tuple[int, float]:
        """Calls made into the token for this store by this process, and the seconds they took."""
        pool = self._pools.get(store_id)
        return (pool.calls, pool.busy_seconds) if pool is not None else (0, 0.0)

    def resume(self) -> None:
        """At start: connections that were under way when the process stopped are made again."""
        for record in list(self.stores.values()):
            if record.state == CONNECTING:
                self.begin_connect(record.store_id)

    def close(self) -> None:
        for store_id in list(self._pools):
            self._close_pool(store_id)
        self._connector.shutdown(wait=False, cancel_futures=True)

    # -- work in the token ---------------------------------------------------------------------------------

    def destroy_material(self, key: KeyRecord) -> Future[bool] | None:
        """A deleted key's token object is destroyed (best effort, as AWS's: a store that is not connected then
        keeps it, and the log says so). None when nothing was attempted."""
        record = self.stores.get(store_of(key) or "")
        object_hex = key.extra.get("hsm_object")
        if record is None or not isinstance(object_hex, str):
            return None
        if record.state != CONNECTED:
            log.warning("region %s: key %s deleted while key store %s is %s: its token object stays in cluster %s",
                        self.region.name, key.key_id, record.store_id, record.state, record.cluster_id)
            return None
        object_id = bytes.fromhex(object_hex)
        handles = self.handles_of(record.store_id)
        future = self.run(record, lambda session: token_crypto.destroy(session, object_id, handles))

        def done(f: Future[bool]) -> None:
            if f.cancelled() or f.exception() is not None:
                log.warning("region %s: the token object of deleted key %s could not be destroyed: %s",
                            self.region.name, key.key_id, "cancelled" if f.cancelled() else f.exception())
            else:
                log.info("region %s: token object of deleted key %s destroyed", self.region.name, key.key_id)
        future.add_done_callback(done)
        return future

    def run(self, record: KeyStoreRecord, work: Callable[[pkcs11.Session], T]) -> Future[T]:
        try:
            return self.pool(record).submit(work)
        except HsmError as exc:
            failed: Future[T] = Future()
            failed.set_exception(exc)
            return failed

    def deferred(self, record: KeyStoreRecord, work: Callable[[pkcs11.Session], T],
                 finish: Callable[[T], dict[str, Any]], unavailable: Callable[[], KmsError]) -> Deferred:
        """``work`` in the store's token, then ``finish`` with its result; a token that cannot be reached is
        ``unavailable()``, one that fails the call a KMSInternalException, one too slow DependencyTimeoutException."""
        def failed(exc: BaseException) -> KmsError:
            if isinstance(exc, KmsError):
                return exc
            if isinstance(exc, TimeoutError | FutureTimeout):
                return dependency_timeout()
            if isinstance(exc, HsmUnavailable):
                return unavailable()
            if isinstance(exc, HsmError):
                log.warning("region %s: key store %s: %s", self.region.name, record.store_id, exc)
                return internal()
            log.error("region %s: key store %s: unexpected %s", self.region.name, record.store_id,
                      type(exc).__name__)
            return internal()
        return Deferred(self.run(record, work), finish, failed, self.timeout)
