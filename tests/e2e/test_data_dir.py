"""One cluster per data directory: a second `trent up` on it is refused at once, naming the cluster that runs there,
and leaves that cluster reachable; a start that fails leaves no data directory it made behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import ROOT, RunningCluster, free_port_block

ONE = ("us-east-1",)


def up(data_dir: Path, port: int, *extra: str) -> subprocess.CompletedProcess[str]:
    """`trent up` that is expected to give up at once (a bound, not a wait: a started cluster would run on)."""
    args = [sys.executable, "-m", "trent.cluster.cli", "up", "--data-dir", str(data_dir), "--port", str(port),
            "--regions", ",".join(ONE), *extra]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=30)


def test_a_second_start_on_the_same_data_directory_is_refused(tmp_path: Path) -> None:
    first = RunningCluster(tmp_path / "data", free_port_block(2), regions=ONE).start()
    try:
        key = first.client().create_key()["KeyMetadata"]["KeyId"]
        assert first.proc is not None
        for extra in ((), ("--workers", "2")):  # other ports, and a run with workers
            done = up(first.data_dir, free_port_block(2), *extra)
            assert done.returncode == 1, done.stdout + done.stderr
            assert done.stderr.startswith(f"trent: cannot start: {first.data_dir} is in use by a running cluster "
                                          f"(pid {first.proc.pid}, gateway {first.gateway_url})"), done.stderr
            assert "Traceback" not in done.stderr
        # The first cluster still runs, and the command line still finds it.
        assert first.client().describe_key(KeyId=key)["KeyMetadata"]["Enabled"]
        status = first.trent("status")
        assert f"gateway {first.gateway_url}" in status.stdout
        assert first.trent("clock", "show").returncode == 0
    finally:
        assert first.stop() == 0
    # Once it has stopped, the directory is free again (the lock died with its holder).
    again = first.start()
    try:
        assert again.client().describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key
    finally:
        again.stop()


def test_a_start_that_fails_leaves_no_data_directory_behind(tmp_path: Path) -> None:
    running = RunningCluster(tmp_path / "data", free_port_block(2), regions=ONE).start()
    try:
        # The gateway port is taken: nothing the failed start made stays, parent directories included.
        done = up(tmp_path / "new" / "deeper", running.port)
        assert done.returncode == 1
        assert "address already in use" in done.stderr
        assert not (tmp_path / "new").exists()

        # A stopped cluster's directory is another matter: its data stays whole.
        stopped = RunningCluster(tmp_path / "old", free_port_block(2), regions=ONE).start()
        key = stopped.client().create_key()["KeyMetadata"]["KeyId"]
        stopped.stop()
        before = sorted(p.relative_to(stopped.data_dir) for p in stopped.data_dir.rglob("*"))
        done = up(stopped.data_dir, running.port)
        assert done.returncode == 1
        assert sorted(p.relative_to(stopped.data_dir) for p in stopped.data_dir.rglob("*")) == before
        assert stopped.start().client().describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key
        stopped.stop()
    finally:
        running.stop()
