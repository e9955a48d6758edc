"""What processes of one cluster share besides the stores: faults and the clock (runtime.db), and the audit
files every process writes, read back merged by time."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_scheduler import create
from trent.cluster.compose import compose, host_jobs
from trent.cluster.faults import Faults
from trent.cluster.ports import free_port_block
from trent.cluster.shared_runtime import SharedState
from trent.cluster.worker_processes import worker_import_path
from trent.node.audit.sink import CURRENT, WORKER_CURRENT, AuditSink, read_events
from trent.node.clock import AdjustableClock
from trent.node.config import load_config
from trent.node.store.factory import SqliteStoreFactory


def test_faults_described_by_one_process_are_taken_on_by_another() -> None:
    leader = Faults(lambda: 0.0, share=0.5)
    leader.set("down", ["eu-west-1"])
    leader.set("partition", ["us-east-1", "ap-northeast-2"])
    leader.set("latency", ["us-east-1"], 0.2)
    leader.set("errors", ["us-east-1"], 0.05)
    leader.set("throttle", ["us-east-1"], 10.0)
    worker = Faults(lambda: 0.0, share=0.5)
    worker.load(leader.describe())
    assert worker.describe() == leader.describe()
    assert worker.is_down("eu-west-1") and not worker.can_replicate("us-east-1", "ap-northeast-2")
    assert worker.throttle["us-east-1"].rate == 5.0  # its half of the cluster's 10/s
    leader.clear()
    worker.load(leader.describe())
    assert worker.describe() == Faults(lambda: 0.0).describe()


def test_shared_state_reports_only_what_another_process_changed(tmp_path: Path) -> None:
    stores = SqliteStoreFactory()
    writer, reader = SharedState(stores.open_runtime(tmp_path)), SharedState(stores.open_runtime(tmp_path))
    writer.publish({"clock_offset": 0.0})
    assert reader.changed() == {"clock_offset": 0.0}
    assert reader.changed() is None
    writer.publish({"clock_offset": 86400.0})
    assert reader.changed() == {"clock_offset": 86400.0}
    clock = AdjustableClock()
    clock.follow(86400.0)
    clock.follow(10.0)  # never backwards
    assert clock.offset == 86400.0


def test_every_process_file_is_read_back_merged_by_time(tmp_path: Path) -> None:
    leader = AuditSink(tmp_path)
    worker = AuditSink(tmp_path, name=WORKER_CURRENT.format(1))
    for second in range(6):
        sink = leader if second % 2 else worker
        sink.emit({"eventTime": f"2026-11-24T00:00:0{second}Z", "n": second})
    leader.flush()
    worker.flush()
    assert [e["n"] for e in read_events(tmp_path)] == list(range(6))
    assert (tmp_path / "audit.w1.jsonl").exists() and not list(tmp_path.glob("audit-*.jsonl"))


def test_only_the_leader_schedules_background_work(tmp_path: Path) -> None:
    config = load_config(None, {"data_dir": str(tmp_path / "data"), "port": free_port_block(4), "workers": 2})
    leader = compose(config, CURRENT)
    assert set(host_jobs(leader).schedulers) == set(config.regions)
    worker = compose(config, WORKER_CURRENT.format(1))  # a worker's parts get no jobs that schedule
    try:
        name = config.regions[0]
        # The leader's region records the keys its scheduler must look at again; a worker's, which runs none, not.
        created = create(leader.regions[name].region)
        assert leader.regions[name].region.take_touched() == {created}
        worker.regions[name].region.sync()  # it catches up with the leader's commit first, as every request does
        create(worker.regions[name].region)
        assert worker.regions[name].region.take_touched() == set()
    finally:
        leader.close()
        worker.close()


def test_a_worker_imports_nothing_from_the_working_directory(tmp_path: Path) -> None:
    code, cwd, lib = tmp_path / "code", tmp_path / "cwd", tmp_path / "lib"
    # "" and the directory itself both stand for the working directory; other entries stay, in order.
    assert worker_import_path(["", str(lib), str(cwd), "hook-entry"], cwd, code) == [str(lib), "hook-entry"]
    # Run from a source checkout (python -m trent.cluster.cli in it): the code is there, so that directory stays.
    assert worker_import_path(["", str(lib)], code, code) == [str(code), str(lib)]
