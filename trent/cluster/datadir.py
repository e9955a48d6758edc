"""One `trent up` per data directory: the leader holds an exclusive lock on it for its whole life (its workers run
under that lock and never take it), and a start that fails removes the directory again if it made it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

LOCK_FILE = "trent.lock"


class DataDirInUse(OSError):
    """Another running cluster holds the data directory."""


def _first_missing(path: Path) -> Path | None:
    """The outermost directory of ``path`` that does not exist yet (what creating it would make), or None."""
    missing = None
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def holder(data_dir: Path) -> str:
    """Who holds ``data_dir``, as cluster.json (written once the cluster is up) or the lock file says."""
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        doc = json.loads((data_dir / "cluster.json").read_text())
        return f"pid {int(doc['pid'])}, gateway {doc['gateway']}"
    with contextlib.suppress(OSError, ValueError):
        return f"pid {int((data_dir / LOCK_FILE).read_text())}, still starting"
    return "pid unknown"


class DataDirLock:
    """Taken at construction (DataDirInUse when another process holds it); released when the process ends at the
    latest, since the kernel drops a flock with its last descriptor."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._created = _first_missing(data_dir.absolute())
        if not data_dir.is_dir():
            data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Not inherited by child processes (Python opens descriptors close-on-exec).
        self._fd: int | None = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            self._fd = None
            raise DataDirInUse(f"{data_dir} is in use by a running cluster ({holder(data_dir)}); stop it first or "
                               "choose another --data-dir") from None
        # The holder's pid, for a second start's message while this one has no cluster.json yet.
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())

    def release(self) -> None:
        """Give the directory up (the lock file stays: removing it could let two processes lock different files)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def abandon(self) -> None:
        """After a failed start: remove the directory if this start made it (never a directory that was there
        before, which may hold a cluster's data), then release."""
        if self._created is not None:
            shutil.rmtree(self._created, ignore_errors=True)
        self.release()
