"""Outbox records every region has applied are trimmed; replication carries on across the trim."""

from __future__ import annotations

import asyncio
from pathlib import Path

from trent.cluster.ports import free_port_block
from trent.cluster.region_host import RegionHost
from trent.node.config import ClusterConfig
from trent.node.ops.keys import create_key
from trent.node.ops.multi_region import replicate_key
from trent.node.ops.registry import RequestContext
from trent.node.ops.rotation import rotate_key_on_demand


async def _until(predicate: object, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "replication did not converge"
        await asyncio.sleep(0.02)


async def test_trim_keeps_replication_going(tmp_path: Path) -> None:
    cluster = RegionHost.from_config(ClusterConfig(data_dir=tmp_path / "data", port=free_port_block(4),
                                                   replica_creating_seconds=0))
    await cluster.start()
    try:
        regions = cluster.parts.regions
        home = regions["us-east-1"]
        replications = cluster.jobs.replication.replications
        ctx = RequestContext("r", "op", cluster.config.effective_principals()[0], "127.0.0.1", "test")
        key_id = create_key(home.region, {"MultiRegion": True}, ctx)["KeyMetadata"]["KeyId"]
        for region in ("eu-west-1", "ap-northeast-2"):
            replicate_key(home.region, {"KeyId": key_id, "ReplicaRegion": region}, ctx)
        for _ in range(3):
            rotate_key_on_demand(home.region, {"KeyId": key_id}, ctx)
            await _until(lambda: home.region.keys[key_id].mrk is not None
                         and home.region.keys[key_id].mrk.pending_material_id is None)
        outbox = home.outbox
        await _until(lambda: all(r.cursors.get("us-east-1") == outbox.head
                                 for n, r in replications.items() if n != "us-east-1"))
        before = len(outbox.read_after(0, 1000))
        assert cluster.jobs.trimming.trim() > 0
        assert len(outbox.read_after(0, 1000)) == 1 < before  # only the newest record stays
        rotate_key_on_demand(home.region, {"KeyId": key_id}, ctx)  # replication goes on after the trim
        await _until(lambda: all(r.region.keys[key_id].current_material_id
                                 == home.region.keys[key_id].current_material_id for r in regions.values()))
    finally:
        await cluster.stop()
