"""The composition root (cluster/compose.py) and the parts the roles start and stop: what a configuration
composes into, without a port opened, and the order background jobs start and stop in."""

from __future__ import annotations

import asyncio
import json
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web

from tests.unit.test_scheduler import create, schedule
from trent.cluster.clock_control import ClockControl, load_clock
from trent.cluster.compose import Parts, compose, host_jobs, worker_jobs
from trent.cluster.fault_control import parse_fault
from trent.cluster.jobs import FollowWorkers, Jobs, Periodic, SchedulerJob
from trent.cluster.shared_runtime import SharedAuditTrail
from trent.node.audit.sink import CURRENT, WORKER_CURRENT
from trent.node.config import ClusterConfig, load_config
from trent.node.endpoint import WireResponse
from trent.node.model.mrk import ReplicaGone
from trent.node.model.rotation import DAY

REGIONS = "us-east-1,eu-west-1"


def two_regions(tmp_path: Path, workers: int = 1) -> ClusterConfig:
    # Nothing listens: composing opens no port.
    return load_config(None, {"data_dir": str(tmp_path / "data"), "port": 4599, "regions": REGIONS,
                              "workers": workers})


@pytest.fixture()
def parts(tmp_path: Path) -> Any:
    composed = compose(two_regions(tmp_path), CURRENT)
    yield composed
    composed.close()


def test_a_configuration_composes_into_wired_regions(parts: Parts) -> None:
    config = parts.config
    assert list(parts.regions) == ["us-east-1", "eu-west-1"]
    for name, r in parts.regions.items():
        assert r.port == config.port_of(name)
        assert r.endpoint.region is r.region and r.region.change_log is r.outbox
        # What the endpoint records is what GetKeyLastUsage reads: one trail, given to the region at construction.
        assert r.region.audit is r.trail is r.endpoint.audit
        assert r.region.key_pairs == parts.key_pairs.take
        region_dir = config.data_dir / name
        assert (region_dir / "kms.db").is_file() and (region_dir / "audit" / CURRENT).parent.is_dir()
        assert stat.S_IMODE(region_dir.stat().st_mode) == 0o700
    # Regions keep their own state; one process alone shares nothing with others.
    key_id = create(parts.regions["us-east-1"].region)
    assert key_id not in parts.regions["eu-west-1"].region.keys
    assert parts.runtime is None and parts.gate(follows_runtime=True) is not None


def test_usage_tracking_start_survives_a_restart(tmp_path: Path) -> None:
    config = two_regions(tmp_path)
    first = compose(config, CURRENT)
    started = {name: r.trail.tracking_start for name, r in first.regions.items()}
    first.close()
    again = compose(config, CURRENT)
    try:
        assert {name: r.trail.tracking_start for name, r in again.regions.items()} == started
    finally:
        again.close()


class _Request:
    transport = None  # what a fault gate looks at of a request it refuses
    headers = {"X-Amz-Target": "TrentService.Encrypt"}  # and what the metrics count it under


def test_a_worker_follows_what_the_host_publishes_and_commits(tmp_path: Path) -> None:
    config = two_regions(tmp_path, workers=2)
    host, worker = compose(config, CURRENT), compose(config, WORKER_CURRENT.format(1))
    try:
        assert isinstance(worker.regions["us-east-1"].trail, SharedAuditTrail)
        host.faults.set("down", ["us-east-1"])
        host.clock.advance(DAY)
        host.publish_runtime()
        gate = worker.gate(follows_runtime=True)
        request = cast(web.BaseRequest, _Request())
        refused = gate(worker.regions["us-east-1"].endpoint, request)
        assert isinstance(refused, WireResponse) and refused.status == 503
        assert worker.clock.offset == DAY
        # A commit through the worker is in the host's view once a request is past the host's gate and its
        # endpoint's catch-up step.
        key_id = create(worker.regions["eu-west-1"].region)
        endpoint = host.regions["eu-west-1"].endpoint
        assert host.gate(follows_runtime=False)(endpoint, request) is None
        assert endpoint.consistency is not None
        endpoint.consistency.before_request()
        assert key_id in host.regions["eu-west-1"].region.keys
    finally:
        host.close()
        worker.close()


async def test_the_host_catches_up_on_due_work_before_serving(parts: Parts) -> None:
    region = parts.regions["us-east-1"].region
    key_id = create(region)
    schedule(region, key_id, 7)
    parts.clock.advance(8 * DAY)  # while "stopped": no scheduler ran
    jobs = host_jobs(parts)
    assert not any(isinstance(j, FollowWorkers) for j in jobs.background.jobs)  # one process: nothing to follow
    await jobs.background.start()
    try:
        assert key_id not in region.keys
    finally:
        await jobs.background.stop()
    assert not any(isinstance(j, SchedulerJob) for j in worker_jobs(parts).jobs)


def test_moving_the_clock_persists_and_runs_due_work(parts: Parts) -> None:
    region = parts.regions["eu-west-1"].region
    schedule(region, create(region), 7)
    published: list[float] = []
    control = ClockControl(parts.clock, parts.config.data_dir, host_jobs(parts).schedulers,
                           lambda: published.append(parts.clock.offset))
    state = control.advance(8 * DAY)
    assert state["changed"] == {"us-east-1": 0, "eu-west-1": 1} and state["offset"] == 8 * DAY
    assert published == [8 * DAY]  # the other processes are told before the answer
    assert json.loads((parts.config.data_dir / "clock.json").read_text()) == {"offset": 8 * DAY}
    assert load_clock(parts.config.data_dir).offset == 8 * DAY


class _Fake:
    def __init__(self, name: str, log: list[str], fail_start: bool = False, fail_stop: bool = False) -> None:
        self.name, self.log, self.fail_start, self.fail_stop = name, log, fail_start, fail_stop

    async def start(self) -> None:
        if self.fail_start:
            raise OSError("cannot start")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError("cannot stop")


async def test_jobs_stop_in_reverse_and_despite_a_failing_stop() -> None:
    log: list[str] = []
    jobs = Jobs([_Fake("a", log), _Fake("b", log, fail_stop=True), _Fake("c", log)])
    await jobs.start()
    await jobs.stop()
    assert log == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    await jobs.stop()  # stopped jobs are not stopped twice
    assert len(log) == 6


async def test_after_a_failed_start_only_the_started_jobs_stop() -> None:
    log: list[str] = []
    jobs = Jobs([_Fake("a", log), _Fake("b", log, fail_start=True), _Fake("c", log)])
    with pytest.raises(OSError):
        await jobs.start()
    await jobs.stop()
    assert log == ["start a", "stop a"]


async def test_a_periodic_job_keeps_ticking_after_a_failed_tick() -> None:
    ticks: list[int] = []

    def tick() -> None:
        ticks.append(len(ticks))
        if len(ticks) == 1:
            raise RuntimeError("one bad tick")

    job = Periodic("test ticks", 0.001, tick)
    await job.start()
    try:
        async with asyncio.timeout(5):
            while len(ticks) < 3:
                await asyncio.sleep(0.005)
    finally:
        await job.stop()
    stopped_at = len(ticks)
    await asyncio.sleep(0.01)
    assert len(ticks) == stopped_at  # stop ends the ticking


@pytest.mark.parametrize(("doc", "message"), [
    ({"action": "explode"}, "unknown fault"),
    ({"action": "down", "regions": "us-east-1"}, "a list"),
    ({"action": "down", "regions": ["mars-1"]}, "unknown region"),
    ({"action": "latency"}, "needs a region"),
    ({"action": "latency", "regions": ["us-east-1"], "value": "fast"}, "could not convert"),
    ({"action": "disk", "regions": ["us-east-1", "us-east-1"]}, "one region"),
    ({"action": "disk"}, "needs a region"),
])
def test_bad_fault_commands_are_refused(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault(doc, lambda name: name == "us-east-1")
    assert parse_fault({"action": "clear", "value": "anything"}, lambda name: False).action == "clear"


def test_every_process_numbers_its_outbox_after_the_records_of_the_others(tmp_path: Path) -> None:
    # A worker has no replication jobs, but appends to its regions' outboxes: composed without following them, it
    # numbered its next multi-Region record as one the host had already written, and overwrote it (acknowledged
    # replicas and rotations never reached the other regions).
    config = two_regions(tmp_path, workers=2)
    host, worker = compose(config, CURRENT), compose(config, WORKER_CURRENT.format(1))
    try:
        host_side, worker_side = host.regions["us-east-1"], worker.regions["us-east-1"]
        key_id = create(host_side.region, MultiRegion=True)
        host_side.region.commit(commands=[ReplicaGone(key_id, "eu-west-1")])
        assert worker_side.endpoint.consistency is not None
        worker_side.endpoint.consistency.before_request()  # as every request on the worker does
        worker_side.region.commit(commands=[ReplicaGone(key_id, "us-east-1")])
        host_side.region.sync()
        assert [seq for seq, _ in host_side.outbox.read_after(0, 10)] == [1, 2]
        assert worker_side.outbox.head == host_side.outbox.head == 2
    finally:
        host.close()
        worker.close()


def test_external_key_stores_need_no_hsm_cluster(tmp_path: Path) -> None:
    """Without SoftHSM2 or a configured HSM cluster a region still has its key-store service, for external key
    stores (whose keys live behind an XKS proxy, not in a token of ours); no token directory is made."""
    config = load_config(None, {"data_dir": str(tmp_path / "data"), "port": 4599, "regions": REGIONS})
    composed = compose(replace(config, hsm_clusters=()), CURRENT)
    try:
        for name, r in composed.regions.items():
            stores = r.region.key_stores
            assert stores is not None and stores.xks is not None and not stores.clusters.clusters
            assert not (config.data_dir / name / "hsm").exists()
    finally:
        composed.close()


def test_a_region_whose_store_failed_a_sync_says_so_in_its_status(parts: Parts) -> None:
    """`trent status` (and a node's report in `--processes`) names the region whose store failed a sync: it refuses
    every call until it starts again (node/store/groupsync.py), and the operator must see why."""
    from types import SimpleNamespace

    from trent.cluster.cluster_view import cluster_status, node_status
    from trent.cluster.status import status_report
    from trent.node.store.base import Batch, StoreError

    assert {n: r["store"] for n, r in status_report(parts, {}, {})["regions"].items()} == {
        "us-east-1": "ok", "eu-west-1": "ok"}
    store = parts.regions["eu-west-1"].region.store

    def eio() -> None:
        raise OSError(5, "Input/output error")

    store._group._sync = eio  # type: ignore[attr-defined]  # the disk fails the next fsync
    store.commit(Batch().put("meta", "probe", b"x"))
    pending = store.durable()
    assert pending is not None
    with pytest.raises(StoreError):
        pending.result(timeout=10)
    assert {n: r["store"] for n, r in status_report(parts, {}, {})["regions"].items()} == {
        "us-east-1": "ok", "eu-west-1": "failed"}

    # One node's report (`trent up --processes`), its region alone, and the cluster's status gathered from it.
    alone = SimpleNamespace(regions={"eu-west-1": parts.regions["eu-west-1"]}, faults=parts.faults, url=parts.url)
    report = node_status(alone, SimpleNamespace(pullers={}), {})  # type: ignore[arg-type]
    assert report["store"] == "failed"
    gathered = cluster_status("http://g", ["eu-west-1"], {}, {"eu-west-1": report})
    assert gathered["regions"]["eu-west-1"]["store"] == "failed"


async def test_a_disk_fault_is_carried_out_only_where_the_region_has_a_disk_of_its_own(tmp_path: Path) -> None:
    import time

    from trent.cluster.fault_control import FaultControl
    from trent.cluster.faults import Faults
    from trent.node.store.memory import MemoryStore
    from trent.node.store.sqlite import SqliteStore

    sqlite = SqliteStore(tmp_path / "kms.db", group_sync=True)
    stores = {"us-east-1": sqlite, "eu-west-1": MemoryStore()}  # (in memory: as a store kept elsewhere, in etcd)
    control = FaultControl(Faults(monotonic=time.monotonic), None, {}, lambda: None,  # type: ignore[arg-type]
                           known=lambda name: name in (*stores, "ap-northeast-2"), disks=stores.get)
    try:
        answer = await control.apply({"action": "disk", "regions": ["us-east-1"]})
        assert answer["disk"] == {"region": "us-east-1", "here": True}
        assert (await control.apply({"action": "disk", "regions": ["ap-northeast-2"]}))["disk"]["here"] is False
        with pytest.raises(ValueError, match="no disk of its own"):
            await control.apply({"action": "disk", "regions": ["eu-west-1"]})
    finally:
        sqlite.close()
