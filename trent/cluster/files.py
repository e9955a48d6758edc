"""The cluster's own files in its data directory: private (0600/0700), written whole or not at all."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any


def write_private(path: Path, text: str) -> None:
    """Write ``path`` (mode 0600) whole or not at all: written beside it, then renamed over it, so a crash leaves
    the old file or none, never an empty or cut one (an empty token file would read as an empty token)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def make_private_dir(path: Path) -> None:
    """Create ``path`` (0700) if missing; an existing directory the user chose keeps its mode."""
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)


def load_or_create_token(data_dir: Path, name: str) -> str:
    """The secret in ``data_dir/name``, made (random, 0600) on first use."""
    make_private_dir(data_dir)
    path = data_dir / name
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
        # Empty: left by a crash of an older version mid-write. Never an empty token (it matches no header).
    # Hex: a token never begins with "-", which a command line would take for an option (`--admin-token -x...`).
    token = secrets.token_hex(24)
    write_private(path, token)
    return token


def write_cluster_file(data_dir: Path, doc: dict[str, Any]) -> None:
    """cluster.json: where a running cluster listens, for `trent status|clock|fault` and the harnesses."""
    write_private(data_dir / "cluster.json", json.dumps(doc, indent=2))


def remove_cluster_file(data_dir: Path) -> None:
    with contextlib.suppress(OSError):
        (data_dir / "cluster.json").unlink()
