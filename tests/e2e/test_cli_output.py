"""`trent` as a person reads it: the clock in dates, faults as a table, colour on a terminal and none when piped, a
reader that leaves early, and `trent audit` refusing a region or event it does not know."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.e2e.harness import ROOT, RunningCluster, private_cluster

ESCAPE = "\033["


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    yield from private_cluster(tmp_path_factory, "cli-output")


def _on_a_terminal(c: RunningCluster, *args: str, env: dict[str, str] | None = None) -> str:
    """Run `trent ARGS` with its output on a pseudo-terminal; what it printed."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "trent.cluster.cli", *args, "--data-dir", str(c.data_dir)],
                                cwd=ROOT,
                                stdout=follower, stderr=subprocess.PIPE, env={**os.environ, "TERM": "xterm",
                                                                             **(env or {})})
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other side closed: the command is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert proc.wait(timeout=60) == 0
    finally:
        os.close(leader)
    return b"".join(chunks).decode()


def test_clock_shows_dates_not_epochs(shown: RunningCluster) -> None:
    out = shown.trent("clock", "show").stdout
    assert re.search(r"^now\s+20\d\d-\d\d-\d\d \d\d:\d\d:\d\d UTC$", out, re.M), out
    assert re.search(r"^offset\s+the real time$", out, re.M), out
    assert not re.search(r"\d{10}\.\d", out)
    moved = shown.trent("clock", "advance", "1d2h").stdout
    assert re.search(r"^offset\s+1d 2h ahead of the real time$", moved, re.M), moved
    assert "due deletions and rotations done: none" in moved


def test_faults_as_a_table(shown: RunningCluster) -> None:
    try:
        out = shown.trent("fault", "latency", "us-east-1", "200ms").stdout
        assert re.search(r"^REGION\s+STATE\s+LATENCY\s+ERRORS\s+THROTTLE$", out, re.M), out
        assert re.search(r"^us-east-1\s+up\s+200 ms\s+-\s+-$", out, re.M), out
        shown.trent("fault", "down", "eu-west-1")
        shown.trent("fault", "partition", "us-east-1", "ap-northeast-2")
        out = shown.trent("fault").stdout  # no action: show
        assert re.search(r"^eu-west-1\s+DOWN\s+-\s+-\s+-$", out, re.M), out
        assert "partitions: ap-northeast-2 <-> us-east-1" in out
        assert ESCAPE not in out  # piped: plain
        coloured = _on_a_terminal(shown, "fault", "show")
        assert f"{ESCAPE}31mDOWN" in coloured and f"{ESCAPE}1mREGION" in coloured
        assert ESCAPE not in _on_a_terminal(shown, "fault", "show", env={"NO_COLOR": "1"})
        status = _on_a_terminal(shown, "status")
        assert f"{ESCAPE}31mDOWN" in status and f"{ESCAPE}32mup" in status
    finally:
        shown.trent("fault", "clear")
    assert "partitions: none" in shown.trent("fault", "show").stdout


def test_a_reader_that_leaves_gets_no_traceback(shown: RunningCluster) -> None:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        done = subprocess.run([sys.executable, "-m", "trent.cluster.cli", "status", "--data-dir", str(shown.data_dir)],
                              cwd=ROOT, stdout=write, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write)
    assert done.returncode == 1
    assert done.stderr == ""


def test_audit_names_are_checked_in_any_case(shown: RunningCluster) -> None:
    kms = shown.client("eu-west-1")
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.decrypt(CiphertextBlob=kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"])

    def decrypts() -> bool:
        out = shown.trent("audit", "--region", "EU-West-1", "--event", "decrypt")
        return out.returncode == 0 and " Decrypt " in out.stdout

    from tests.e2e.harness import poll

    poll(decrypts, timeout=20)
    unknown = shown.trent("audit", "--region", "us-west-9", check=False)
    assert unknown.returncode == 2
    assert "unknown region 'us-west-9'" in unknown.stderr and "eu-west-1" in unknown.stderr
    typo = shown.trent("audit", "--event", "Decrpyt", check=False)
    assert typo.returncode == 2 and "unknown event 'Decrpyt' (did you mean Decrypt?)" in typo.stderr
    assert shown.trent("audit", "--event", "rotatekey").returncode == 0  # work KMS does by itself
