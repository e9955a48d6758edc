"""Audit files on disk: rotated files get names no other file has (a removed older file or a reused pid never makes a
rotation overwrite one), are read back in order (by `trent audit` too), and are kept by age and by total size."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from trent.cluster.audit_view import audit_events
from trent.node.audit.sink import DAY, AuditSink, Retention, read_events

T0 = 1_796_000_000.0  # 2026-11-29T00:53:20Z
PAD = "x" * 80  # one event makes a file big enough to rotate (max_bytes=100)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write(sink: AuditSink, *numbers: int) -> None:
    """One flush per event: each lands in a rotated file of its own."""
    for n in numbers:
        sink.emit({"n": n, "pad": PAD, "eventTime": "2026-11-30T12:00:00Z"})
        sink.flush()


def rotated(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("audit-*.jsonl"))


def numbers(directory: Path) -> list[int]:
    return [e["n"] for e in read_events(directory)]


def test_removing_the_oldest_file_never_makes_a_rotation_overwrite_one(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path, max_bytes=100)
    write(sink, 0, 1)
    oldest = tmp_path / rotated(tmp_path)[0]
    assert [e["n"] for e in read_events(tmp_path)] == [0, 1] and oldest.read_text().count('"n":0') == 1
    oldest.unlink()  # an operator (or retention) removes the oldest file
    write(sink, 2, 3)
    sink.close()
    assert numbers(tmp_path) == [1, 2, 3]
    assert len(rotated(tmp_path)) == 3


def test_a_restart_with_the_same_pid_overwrites_nothing(tmp_path: Path) -> None:
    # pid 1 in a container is the same pid after every restart; here the same process plays both runs.
    first = AuditSink(tmp_path, max_bytes=100)
    write(first, 0, 1, 2)
    first.close()
    (tmp_path / rotated(tmp_path)[0]).unlink()
    again = AuditSink(tmp_path, max_bytes=100)
    write(again, 3, 4)
    again.close()
    assert numbers(tmp_path) == [1, 2, 3, 4]


def test_a_name_already_taken_is_skipped(tmp_path: Path) -> None:
    clock = Clock(1_796_176_800.0)  # 2026-12-02T02:00:00Z
    stamp = "20261202T020000Z"
    existing = tmp_path / f"audit-{stamp}-000001.jsonl"
    existing.write_text('{"n": -1}\n')  # left by another process (or an earlier run) in this very second
    sink = AuditSink(tmp_path, max_bytes=100, clock=clock)
    write(sink, 0, 1)
    sink.close()
    assert existing.read_text() == '{"n": -1}\n'
    assert rotated(tmp_path) == [f"audit-{stamp}-{n:06d}.jsonl" for n in (1, 2, 3)]
    assert numbers(tmp_path) == [-1, 0, 1]


def test_rotated_files_are_read_in_order_across_seconds_and_older_names(tmp_path: Path) -> None:
    clock = Clock()
    legacy = tmp_path / "audit-1-000009.jsonl"  # named by an earlier version: ordered by modification time
    legacy.write_text('{"n": -2}\n')
    os.utime(legacy, (T0 - 60, T0 - 60))
    sink = AuditSink(tmp_path, max_bytes=100, clock=clock)
    for n in range(12):
        write(sink, n)
        clock.now += 0.4  # several rotations in one second, then the next second
    sink.emit({"n": 12, "eventTime": "2026-11-30T12:00:00Z"})
    sink.close()
    assert numbers(tmp_path) == [-2, *range(13)]


def test_trent_audit_reads_rotated_files_in_the_order_written(tmp_path: Path) -> None:
    def event(n: int) -> dict[str, Any]:  # all in one second: only the files' order tells them apart
        return {"n": n, "eventName": "Encrypt", "eventTime": "2026-11-30T12:00:00Z", "awsRegion": "us-east-1"}

    sink = AuditSink(tmp_path / "us-east-1" / "audit", max_bytes=100, clock=Clock())
    for n in range(8):
        sink.emit({**event(n), "pad": PAD})
        sink.flush()
    sink.close()
    assert len(rotated(tmp_path / "us-east-1" / "audit")) == 8
    assert [e["n"] for e in audit_events(tmp_path)] == list(range(8))


def test_retention_keeps_the_newest_files_within_the_total_size(tmp_path: Path) -> None:
    clock = Clock()
    sink = AuditSink(tmp_path, max_bytes=100, clock=clock, retention=Retention(max_age=0, max_bytes=600))
    write(sink, *range(20))
    size = (tmp_path / rotated(tmp_path)[0]).stat().st_size
    kept = numbers(tmp_path)
    assert kept == list(range(20 - len(kept), 20))  # the newest, none missing among them
    assert len(kept) == 600 // size
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 600
    sink.close()


def test_retention_removes_files_older_than_the_age_limit(tmp_path: Path) -> None:
    clock = Clock()
    sink = AuditSink(tmp_path, max_bytes=100, clock=clock, retention=Retention(max_age=10 * DAY, max_bytes=0))
    write(sink, 0)  # rotated at T0
    clock.now += 5 * DAY
    write(sink, 1)  # rotated at T0 + 5 days
    sink.emit({"n": 2})  # the current file: never removed, however old
    clock.now = T0 + 10 * DAY
    sink.flush()
    assert numbers(tmp_path) == [0, 1, 2]  # exactly 10 days old: still kept
    clock.now = T0 + 12 * DAY
    sink.flush()  # nothing new to write: an hourly look all the same
    assert numbers(tmp_path) == [1, 2]
    clock.now += 0.5 * DAY
    sink.flush()
    assert numbers(tmp_path) == [1, 2]
    clock.now = T0 + 16 * DAY
    sink.flush()
    assert numbers(tmp_path) == [2]
    sink.close()
    assert rotated(tmp_path) == []


def test_no_limits_keep_every_file(tmp_path: Path) -> None:
    clock = Clock()
    sink = AuditSink(tmp_path, max_bytes=100, clock=clock, retention=Retention(max_age=0, max_bytes=0))
    write(sink, 0, 1, 2)
    clock.now += 3650 * DAY
    write(sink, 3)
    sink.close()
    assert numbers(tmp_path) == [0, 1, 2, 3]


def test_a_file_removed_while_it_is_being_read_is_skipped(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path, max_bytes=100, retention=Retention(max_age=0, max_bytes=0))
    write(sink, 0, 1, 2)
    sink.close()
    events = read_events(tmp_path)
    assert next(events)["n"] == 0
    (tmp_path / rotated(tmp_path)[1]).unlink()  # another process's retention, between two files
    assert [e["n"] for e in events] == [2]
