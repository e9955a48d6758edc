"""The audit log of one region: JSON lines, appended in order, fsynced in batches, rotated by size."""

from __future__ import annotations

import heapq
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


class AuditSink:
    def __init__(self, directory: Path, max_bytes: int = 64 * 1024 * 1024, name: str = CURRENT) -> None:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / name
        self.max_bytes = max_bytes
        self._lock = threading.Lock()        # guards the pending list: held only to append or swap it
        self._write_lock = threading.Lock()  # serialises file writes, fsync and rotation (flush may run in a thread)
        self._pending: list[bytes] = []
        self._file: BinaryIO = open(self.path, "ab")  # noqa: SIM115 - long-lived
        self._size = self._file.tell()

    def emit(self, event: dict[str, Any]) -> None:
        """Queue one event; ``flush`` makes it durable (the caller flushes in batches)."""
        self.emit_line(orjson.dumps(event))

    def emit_line(self, line: bytes) -> None:
        """Queue one event already serialised (one line of JSON, without its newline)."""
        with self._lock:
            self._pending.append(line)

    def flush(self) -> int:
        """Write and fsync what is pending. Safe to run in another thread: callers of ``emit`` never wait for the
        disk, only for the moment it takes to swap the pending list."""
        with self._write_lock:
            with self._lock:
                lines, self._pending = self._pending, []
            if not lines:
                return 0
            data = b"\n".join(lines) + b"\n"
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._size += len(data)
            if self._size >= self.max_bytes:
                self._rotate()
            return len(lines)

    def _rotate(self) -> None:
        self._file.close()
        stamp = f"{os.getpid()}-{len(list(self.directory.glob('audit-*.jsonl'))) + 1:06d}"
        os.replace(self.path, self.directory / f"audit-{stamp}.jsonl")
        self._file = open(self.path, "ab")  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        self.flush()
        with self._write_lock:
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
