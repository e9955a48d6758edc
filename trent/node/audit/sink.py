"""The audit log of one region: JSON lines, appended in order, fsynced in batches, rotated by size, rotated files
kept for a while (by age and by the region's total)."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import re
import threading
import time
from calendar import timegm
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

CURRENT = "audit.jsonl"
# When several processes serve a region, each appends to its own current file: the first one to CURRENT, the
# others to these. A rotated file of any process is audit-<UTC time of its rotation>-<n>.jsonl, n counting the
# rotations in that second; files of earlier versions were audit-<pid>-<n>.jsonl.
WORKER_CURRENT = "audit.w{}.jsonl"
WORKER_GLOB = "audit.w*.jsonl"
ROTATED_GLOB = "audit-*.jsonl"
_ROTATED = re.compile(r"audit-(\d{8}T\d{6}Z)-(\d+)\.jsonl")
_STAMP = "%Y%m%dT%H%M%SZ"
DAY = 86400.0
MIB = 1 << 20

log = logging.getLogger("trent.audit")


@dataclass(frozen=True)
class Retention:
    """How long rotated files are kept: until the newest record in one is ``max_age`` seconds old, and while the
    region's audit files together stay within ``max_bytes`` (the oldest go first). 0 means no such limit. The
    current files are never removed."""

    max_age: float = 30 * DAY
    max_bytes: int = 1024 * MIB
    every: float = 3600.0  # how often a quiet sink looks for expired files (a rotation always looks)


def _rotated_at(path: Path) -> tuple[float, int, str]:
    """When a rotated file was rotated (from its name; an older file's by its modification time), for ordering."""
    m = _ROTATED.fullmatch(path.name)
    if m is not None:
        with contextlib.suppress(ValueError):
            return float(timegm(time.strptime(m[1], _STAMP))), int(m[2]), path.name
    return path.stat().st_mtime, 0, path.name


def rotated_files(directory: Path) -> list[tuple[float, Path]]:
    """A region's rotated audit files (every process's), oldest first, each with the time it was rotated."""
    found: list[tuple[tuple[float, int, str], Path]] = []
    for path in directory.glob(ROTATED_GLOB):
        with contextlib.suppress(FileNotFoundError):  # removed meanwhile by another process's retention
            found.append((_rotated_at(path), path))
    found.sort()
    return [(order[0], path) for order, path in found]


class AuditSink:
    # Lines are copied into the file's own buffer as they come: one buffer, reused for the life of the file, rather
    # than a list of line objects kept alive until the next flush (which made every request touch fresh memory and
    # every flush join a large new block). A buffer that fills is written out at once; ``flush`` writes the rest.
    BUFFER_BYTES = 1 << 20

    def __init__(self, directory: Path, max_bytes: int = 64 * MIB, name: str = CURRENT,
                 retention: Retention | None = None, clock: Callable[[], float] = time.time) -> None:
        """``clock``: the real time (not the cluster's adjustable clock: moving that forward to drive key deletion
        must not expire the audit trail); it names rotated files and ages them."""
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / name
        self.max_bytes = max_bytes
        self.retention = retention or Retention()
        self._clock = clock
        self._retained_at = float("-inf")
        # Appends, the write of what is buffered and rotation take turns under ``_lock``, held by an append only for
        # its copy; a flush holds ``_sync_lock`` throughout (flush runs in a worker thread), so its fsync, outside
        # ``_lock``, never meets a file another flush is closing.
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._file: BinaryIO = self._open()
        self._size = self._file.tell()  # bytes in the current file, written or still buffered
        self._unsynced = 0  # lines appended since the last flush
        self._failing = False  # the last append could not be written

    def _open(self) -> BinaryIO:
        if self._torn():
            with open(self.path, "ab") as f:
                f.write(b"\n")  # the next event starts a line of its own, not glued onto the cut one
        return open(self.path, "ab", buffering=self.BUFFER_BYTES)

    def _torn(self) -> bool:
        """The file's last line lacks its newline: a crash cut it."""
        try:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                return f.read(1) != b"\n"
        except OSError:  # no file yet, or an empty one
            return False

    def emit(self, event: dict[str, Any]) -> None:
        """Queue one event; ``flush`` makes it durable (the caller flushes in batches)."""
        self.emit_line(orjson.dumps(event))

    def emit_line(self, line: bytes) -> None:
        """Queue one event already serialised (one line of JSON, without its newline)."""
        with self._lock:
            try:
                self._file.write(line + b"\n")
            except OSError as exc:
                # The buffer was full and the disk refused it: the call it records has already been answered, so
                # the failure is logged here (once, until a write succeeds again) rather than made the call's error.
                if not self._failing:
                    log.error("cannot write the audit log %s: %s", self.path, exc)
                self._failing = True
                return
            self._failing = False
            self._size += len(line) + 1
            self._unsynced += 1

    @property
    def pending(self) -> int:
        """Lines appended and not yet made durable (the audit queue the metrics show)."""
        return self._unsynced

    def flush(self) -> int:
        """Write and fsync what is pending; the number of lines it made durable. Safe to run in another thread:
        callers of ``emit`` never wait for the disk, at most for the write of what was buffered."""
        with self._sync_lock:
            if self._clock() - self._retained_at >= self.retention.every:
                self.retain()
            with self._lock:
                lines = self._unsynced
                if not lines:
                    return 0
                self._file.flush()
                self._unsynced = 0  # only once written: a flush the disk refused leaves them for the next one
                written = self._file
                if self._size >= self.max_bytes:
                    self._rotate()
            os.fsync(written.fileno())
            if written is not self._file:
                written.close()  # rotated away: its last lines are on disk now
                self.retain()
            return lines

    def _rotate(self) -> None:
        """Rename the current file to a name no other file has (nor will have: the name is first created
        exclusively, so neither a reused pid nor a removed older file makes a rotation overwrite one)."""
        stamp = time.strftime(_STAMP, time.gmtime(self._clock()))
        # After the last number used in this second (not the first one free: that could be an older file's, removed).
        used = (_ROTATED.fullmatch(p.name) for p in self.directory.glob(f"audit-{stamp}-*.jsonl"))
        for n in itertools.count(1 + max((int(m[2]) for m in used if m is not None), default=0)):
            target = self.directory / f"audit-{stamp}-{n:06d}.jsonl"
            try:
                os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            except FileExistsError:
                continue
            os.replace(self.path, target)  # over the empty file this sink just made for it
            break
        self._file = self._open()
        self._size = 0

    def retain(self) -> list[Path]:
        """Remove the rotated files that retention no longer keeps (oldest first); the paths removed."""
        self._retained_at = now = self._clock()
        max_age, max_bytes = self.retention.max_age, self.retention.max_bytes
        rotated = rotated_files(self.directory)
        sizes: dict[Path, int] = {}
        for path in [p for _, p in rotated] + current_files(self.directory):
            with contextlib.suppress(FileNotFoundError):
                sizes[path] = path.stat().st_size
        total = sum(sizes.values())
        removed: list[Path] = []
        for at, path in rotated:
            if not ((max_age and now - at > max_age) or (max_bytes and total > max_bytes)):
                break  # the rest are newer still
            try:
                path.unlink()
            except FileNotFoundError:
                pass  # another process of the region removed it first
            except OSError as exc:  # keeping too much is no reason to stop recording
                log.warning("audit retention cannot remove %s: %s", path, exc)
                break
            total -= sizes.get(path, 0)
            removed.append(path)
        if removed:
            log.info("audit retention removed %d rotated file(s) in %s", len(removed), self.directory)
        return removed

    def close(self) -> None:
        self.flush()
        with self._sync_lock, self._lock:
            self._file.close()


def current_files(directory: Path) -> list[Path]:
    """Every process's current file (the first process's first)."""
    files = [directory / CURRENT] if (directory / CURRENT).exists() else []
    return files + sorted(directory.glob(WORKER_GLOB))


def read_events(directory: Path) -> Iterator[dict[str, Any]]:
    """Every event of a region's audit log, oldest first (rotated files, then the current one). When several
    processes wrote it, their files are merged by event time (each file is in time order already)."""
    files = [path for _, path in rotated_files(directory)]
    currents = current_files(directory)
    if len(currents) <= 1:
        for path in [*files, *currents]:
            yield from _read_file(path)
        return
    streams = [_read_file(path) for path in [*files, *currents]]
    yield from heapq.merge(*streams, key=lambda event: str(event.get("eventTime", "")))


def _read_file(path: Path) -> Iterator[dict[str, Any]]:
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 (a with below: only the open may find it removed)
    except FileNotFoundError:
        return  # removed by retention since the directory was listed
    with f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    yield orjson.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash
