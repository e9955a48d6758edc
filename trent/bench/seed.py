"""Seeds a data directory with many keys per region, straight into each region's store in large transactions,
so the scale benchmark can start a cluster with 1k–100k keys in seconds rather than hours of CreateKey calls."""

from __future__ import annotations

import os
from pathlib import Path

from trent.node.clock import AdjustableClock
from trent.node.crypto.handles import new_material
from trent.node.crypto.rootkey import RootKey
from trent.node.model.ids import new_key_id
from trent.node.model.key import KeyRecord, MaterialVersion
from trent.node.model.states import KeyState
from trent.node.ops.keys import default_policy
from trent.node.service import Region, RegionIdentity
from trent.node.store.etcd_client import EtcdSettings
from trent.node.store.factory import make_store_factory

BATCH = 2000


def seed(data_dir: Path, regions: tuple[str, ...], keys_per_region: int, account: str = "111122223333",
         backend: str = "sqlite", etcd: EtcdSettings | None = None) -> None:
    clock = AdjustableClock()
    stores = make_store_factory(backend, etcd)
    # etcd takes at most 128 writes in one transaction.
    per_batch = BATCH if backend == "sqlite" else 100
    for name in regions:
        region_dir = data_dir / name
        region_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        store = stores.open(name, region_dir, shared=False)
        region = Region(RegionIdentity(name, account), store, RootKey.load_or_create(region_dir / "root.key"), clock)
        policy = default_policy(account)
        made = len(region.keys)
        while made < keys_per_region:
            batch = []
            for _ in range(min(per_batch, keys_per_region - made)):
                key_id = new_key_id()
                version = MaterialVersion(new_material(key_id), clock.now())
                batch.append(KeyRecord(key_id=key_id, region=name, account=account, created=clock.now(),
                                       state=KeyState.ENABLED, policy=policy, materials=(version,),
                                       current_material_id=version.material_id,
                                       description=f"seeded {os.getpid()}"))
            region.commit(keys=batch)
            made += len(batch)
        store.close()
