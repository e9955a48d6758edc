"""The audit log of one region: JSON lines, appended in order, fsynced in batches, rotated by size."""

from __future__ import annotations

import heapq
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

CURRENT = "audit.jsonl"
# When several processes serve a region, each appends to its own current file: the first one to CURRENT, the
# others to these (rotated files of every process are audit-<pid>-<n>.jsonl).
WORKER_CURRENT = "audit.w{}.jsonl"
WORKER_GLOB = "audit.w*.jsonl"

log = logging.getLogger("trent.audit")


class AuditSink:
    # Lines are copied into the file's own buffer as they come: one buffer, reused for the life of the file, rather
    # than a list of line objects kept alive until the next flush (which made every request touch fresh memory and
    # every flush join a large new block). A buffer that fills is written out at once; ``flush`` writes the rest.
    BUFFER_BYTES = 1 << 20

    def __init__(self, directory: Path, max_bytes: int = 64 * 1024 * 1024, name: str = CURRENT) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / name
        self.max_bytes = max_bytes
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

    def flush(self) -> int:
        """Write and fsync what is pending; the number of lines it made durable. Safe to run in another thread:
        callers of ``emit`` never wait for the disk, at most for the write of what was buffered."""
        with self._sync_lock:
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
            return lines

    def _rotate(self) -> None:
        stamp = f"{os.getpid()}-{len(list(self.directory.glob('audit-*.jsonl'))) + 1:06d}"
        os.replace(self.path, self.directory / f"audit-{stamp}.jsonl")
        self._file = self._open()
        self._size = 0

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
    files = sorted(directory.glob("audit-*.jsonl"), key=lambda p: p.stat().st_mtime)
    currents = current_files(directory)
    if len(currents) <= 1:
        for path in [*files, *currents]:
            yield from _read_file(path)
        return
    streams = [_read_file(path) for path in [*files, *currents]]
    yield from heapq.merge(*streams, key=lambda event: str(event.get("eventTime", "")))


def _read_file(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    yield orjson.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash
