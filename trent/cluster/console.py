"""The web console at /_trent/console: the cluster's regions, keys and audit trail in a browser, with buttons for
the faults and the clock. Served by the cluster itself from files inside this package (no CDN: it works offline).

The page and its script hold no data and no secret, so they are served to anyone; everything they show or change
goes through the admin API with the admin token, which the page takes from its address' fragment
(``/_trent/console#token=...``, never sent to a server or written to a log) or asks for, and keeps in the tab's
session storage. The page may not be framed, and runs only its own script (Content-Security-Policy).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from trent.cluster.metrics import metrics_authorized
from trent.node.audit.sink import current_files
from trent.node.service import Region

ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
KEYS_SHOWN = 200  # per region: the console is for a drill's few keys, not for paging through thousands
EVENTS_SHOWN = 40
_TAIL_BYTES = 64 * 1024
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _asset(name: str) -> bytes:
    return resources.files("trent.cluster").joinpath("console_assets", name).read_bytes()


def key_rows(region: Region, limit: int = KEYS_SHOWN) -> dict[str, Any]:
    """A region's keys as the console lists them: state, spec and, for a multi-Region key, where it lives."""
    aliases: dict[str, list[str]] = {}
    for alias in list(region.aliases.values()):
        aliases.setdefault(alias.key_id, []).append(alias.name)
    keys = sorted(list(region.keys.values()), key=lambda k: k.created, reverse=True)
    rows = []
    for key in keys[:limit]:
        row: dict[str, Any] = {"id": key.key_id, "state": key.state.value, "spec": key.key_spec,
                               "usage": key.key_usage, "created": key.created,
                               "aliases": sorted(aliases.get(key.key_id, []))}
        if key.mrk is not None:
            row["primary"] = key.mrk.primary_region
            row["replicas"] = list(key.mrk.replica_regions)
        rows.append(row)
    return {"total": len(keys), "keys": rows}


def recent_events(data_dir: Path, regions: list[str], limit: int = EVENTS_SHOWN) -> list[dict[str, Any]]:
    """The newest audit records of every region (the tail of each process's current file), newest first."""
    found: list[tuple[str, int, dict[str, Any]]] = []
    for region in regions:
        for path in current_files(data_dir / region / "audit"):
            # Within a second (CloudTrail's precision) a file's own order says which came later.
            found += [(str(e.get("eventTime", "")), n, e) for n, e in enumerate(_tail_events(path))]
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [_event_row(e) for _, _, e in found[:limit]]


def _tail_events(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - _TAIL_BYTES))
            data = f.read(_TAIL_BYTES)
    except OSError:
        return []
    lines = data.split(b"\n")
    if size > _TAIL_BYTES:
        lines = lines[1:]  # the first line is cut
    out = []
    for line in lines[-EVENTS_SHOWN:]:
        with contextlib.suppress(ValueError):
            event = orjson.loads(line)
            if isinstance(event, dict):
                out.append(event)
    return out


def _event_row(event: Mapping[str, Any]) -> dict[str, Any]:
    """What the console shows of a record: already free of secrets (node/audit), and smaller."""
    identity = event.get("userIdentity") or {}
    return {"time": event.get("eventTime"), "region": event.get("awsRegion"), "event": event.get("eventName"),
            "error": event.get("errorCode"), "principal": identity.get("arn") or identity.get("invokedBy"),
            "keys": [str(r.get("ARN", "")).rsplit("/", 1)[-1] for r in event.get("resources") or ()]}


def console_routes(token: str, status: Callable[[], dict[str, Any]], regions: Mapping[str, Region],
                   data_dir: Path) -> list[web.RouteDef]:
    async def page(_request: web.Request) -> web.Response:
        return web.Response(body=_asset("index.html"), content_type="text/html", headers=_HEADERS)

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in ASSETS:
            raise web.HTTPNotFound()
        return web.Response(body=_asset(name), content_type=ASSETS[name], headers=_HEADERS)

    async def state(request: web.Request) -> web.Response:
        if not metrics_authorized(request, token):
            return web.json_response({"error": "admin token required"}, status=403, headers=_HEADERS)
        doc = status()
        doc["keys"] = {name: key_rows(region) for name, region in regions.items()}
        doc["events"] = recent_events(data_dir, list(regions))
        return web.json_response(doc, headers=_HEADERS)

    return [web.get("/_trent/console", page), web.get("/_trent/console/", page),
            web.get("/_trent/console/state", state), web.get("/_trent/console/assets/{name}", asset)]
