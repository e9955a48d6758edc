"""The configuration keys of etcd-backed regions: ``region_stores`` and ``etcd_*`` (node/config.py reads them through
``etcd_settings``; a ValueError here is a ConfigError there)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from trent.node.store.etcd_client import EtcdSettings
from trent.node.store.factory import BACKENDS

ETCD_KEYS = ("etcd_endpoints", "etcd_prefix", "etcd_ca", "etcd_cert", "etcd_key", "etcd_user", "etcd_password",
             "etcd_lease_ttl")
_ENDPOINT = re.compile(r"https?://[^/\s]+")
_PREFIX = re.compile(r"/[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")


def etcd_settings(raw: Mapping[str, Any], regions: tuple[str, ...]) -> dict[str, Any]:
    """``{"region_stores": ..., "etcd": EtcdSettings}`` for what ``raw`` sets (``{}`` when it sets none of it)."""
    out: dict[str, Any] = {}
    if "region_stores" in raw:
        table = raw["region_stores"]
        if not isinstance(table, Mapping) or not all(isinstance(v, str) for v in table.values()):
            raise ValueError("region_stores must be a table of region = backend")
        for region, backend in table.items():
            if region not in regions:
                raise ValueError(f"region_stores names {region!r}, which is not one of the regions")
            if backend not in BACKENDS:
                raise ValueError(f"region_stores.{region} must be one of: {', '.join(sorted(BACKENDS))}")
        out["region_stores"] = dict(table)
    if not any(k in raw for k in ETCD_KEYS):
        return out
    settings: dict[str, Any] = {}
    if "etcd_endpoints" in raw:
        value = raw["etcd_endpoints"]
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(e, str) for e in items):
            raise ValueError("etcd_endpoints must be a list of URLs (like http://10.0.0.5:2379)")
        endpoints = tuple(e.strip().rstrip("/") for e in items if e.strip())
        bad = [e for e in endpoints if _ENDPOINT.fullmatch(e) is None]
        if not endpoints or bad:
            raise ValueError(f"etcd_endpoints: {bad[0] if bad else '(none)'} is not an etcd URL "
                             "(like http://10.0.0.5:2379)")
        settings["endpoints"] = endpoints
    if "etcd_prefix" in raw:
        prefix = raw["etcd_prefix"]
        if not isinstance(prefix, str) or _PREFIX.fullmatch(prefix) is None:
            raise ValueError("etcd_prefix must be a key path like /trent or /trent/staging")
        settings["prefix"] = prefix
    for key, name in (("etcd_ca", "ca_file"), ("etcd_cert", "cert_file"), ("etcd_key", "key_file"),
                      ("etcd_user", "user"), ("etcd_password", "password")):
        if key in raw:
            if not isinstance(raw[key], str) or not raw[key]:
                raise ValueError(f"{key} must be a non-empty string")  # (never echoed: it may be a secret)
            settings[name] = raw[key]
    if ("cert_file" in settings) != ("key_file" in settings):
        raise ValueError("etcd_cert and etcd_key go together")
    if ("password" in settings) and ("user" not in settings):
        raise ValueError("etcd_password needs etcd_user")
    if "etcd_lease_ttl" in raw:
        ttl = raw["etcd_lease_ttl"]
        if isinstance(ttl, str) and ttl.isdigit():
            ttl = int(ttl)
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 1 <= ttl <= 600:
            raise ValueError("etcd_lease_ttl must be a whole number of seconds between 1 and 600")
        settings["lease_ttl"] = ttl
    out["etcd"] = EtcdSettings(**settings)
    return out
