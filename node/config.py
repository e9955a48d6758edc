"""Cluster configuration: one frozen object built from a TOML file, flags and the environment."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from node.auth.principals import Principal

DEFAULT_ACCOUNT = "111122223333"
DEFAULT_REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-2")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ClusterConfig:
    data_dir: Path = Path(".trent")
    host: str = "127.0.0.1"
    port: int = 4599
    regions: tuple[str, ...] = DEFAULT_REGIONS
    region_ports: Mapping[str, int] = field(default_factory=dict)
    account: str = DEFAULT_ACCOUNT
    principals: tuple[Principal, ...] = ()
    verify_signatures: bool = True
    max_skew_seconds: float = 300.0
    scheduler_interval: float = 1.0
    # Hex root keys per region; a region without one gets a 0600 file in its data directory.
    root_keys: Mapping[str, str] = field(default_factory=dict)
    admin_token: str | None = None

    def port_of(self, region: str) -> int:
        if region in self.region_ports:
            return self.region_ports[region]
        return self.port + 1 + self.regions.index(region)

    def effective_principals(self) -> tuple[Principal, ...]:
        if self.principals:
            return self.principals
        return (Principal("test", "test", f"arn:aws:iam::{self.account}:root", self.account),)

    def root_key_hex(self, region: str) -> str | None:
        env = os.environ.get("TRENT_ROOT_KEY_" + region.upper().replace("-", "_"))
        return env or self.root_keys.get(region)


def _principals(items: list[Mapping[str, Any]], account: str) -> tuple[Principal, ...]:
    out = []
    for item in items:
        try:
            arn = item.get("arn") or f"arn:aws:iam::{account}:root"
            out.append(Principal(
                access_key=str(item["access_key"]), secret_key=str(item["secret_key"]), arn=str(arn),
                account=str(item.get("account") or arn.split(":")[4] or account),
                session_token=item.get("session_token"),
            ))
        except (KeyError, IndexError) as exc:
            raise ConfigError(f"principal entry {dict(item)!r} needs access_key, secret_key and arn") from exc
    return tuple(out)


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> ClusterConfig:
    """File values first, then explicit overrides (command-line flags); None overrides are ignored."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    config = ClusterConfig()
    simple = {"host": str, "port": int, "account": str, "max_skew_seconds": float,
              "scheduler_interval": float, "admin_token": str}
    changes: dict[str, Any] = {k: conv(raw[k]) for k, conv in simple.items() if k in raw}
    if "data_dir" in raw:
        changes["data_dir"] = Path(raw["data_dir"])
    if "regions" in raw:
        regions = raw["regions"]
        changes["regions"] = tuple(r.strip() for r in (regions.split(",") if isinstance(regions, str) else regions)
                                   if r.strip())
        if not changes["regions"]:
            raise ConfigError("at least one region is required")
    if "region_ports" in raw:
        changes["region_ports"] = {str(k): int(v) for k, v in raw["region_ports"].items()}
    if "auth" in raw:
        if raw["auth"] not in ("verify", "off"):
            raise ConfigError("auth must be 'verify' or 'off'")
        changes["verify_signatures"] = raw["auth"] == "verify"
    if "root_keys" in raw:
        changes["root_keys"] = {str(k): str(v) for k, v in raw["root_keys"].items()}
    account = str(changes.get("account", config.account))
    if not (len(account) == 12 and account.isdigit()):
        raise ConfigError("account must be 12 digits")
    if "principals" in raw:
        changes["principals"] = _principals(raw["principals"], account)
    return replace(config, **changes)
