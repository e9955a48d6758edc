"""Region root keys in `trent init` bundles: every node of a region must hold the same root key when several serve
it over etcd (the key itself never goes to etcd). `trent init` keeps one key per region among the cluster's own
secrets and gives a node's bundle the keys of the regions the node is named after (``us-east-1``, ``us-east-1-b``,
``us-east-1-2``); a node started from its bundle takes them, unless its region directory already holds a root key
of its own (a node made before bundles carried them keeps the key its data is wrapped under)."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path

from trent.cluster.files import write_private

ROOTS = "root-keys.json"


def region_roots(cluster_dir: Path, regions: Iterable[str]) -> dict[str, str]:
    """The cluster's root key of each region (hex), made for a region that has none yet."""
    path = cluster_dir / ROOTS
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [r for r in regions if r not in known]
    if missing:
        known |= {r: secrets.token_bytes(32).hex() for r in missing}
        write_private(path, json.dumps(known))
    return known


def roots_for(node: str, roots: dict[str, str]) -> dict[str, str]:
    """The root keys a node named ``node`` gets: those of the regions it is named after."""
    return {r: key for r, key in roots.items() if node == r or node.startswith(r + "-")}


def write_bundle_roots(bundle: Path, node: str, roots: dict[str, str]) -> None:
    mine = roots_for(node, roots)
    if mine:
        write_private(bundle / ROOTS, json.dumps(mine))


def bundle_roots(bundle: Path, data_dir: Path, read: Callable[[Path], str]) -> dict[str, str]:
    """The bundle's region root keys for regions whose directory under ``data_dir`` has no root key file yet;
    ``read``: the bundle's reader of private files (it refuses one readable by others)."""
    path = bundle / ROOTS
    if not path.exists():
        return {}
    doc: dict[str, str] = json.loads(read(path))
    return {r: key for r, key in doc.items() if not (data_dir / r / "root.key").exists()}
