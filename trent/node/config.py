"""Cluster configuration: one frozen object built from a TOML file, flags and the environment."""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from trent.node.auth.policy import parse_policy
from trent.node.auth.principals import Principal
from trent.node.etcd_config import ETCD_KEYS, etcd_settings
from trent.node.keystores.clusters import ClusterConfigError, HsmClusterSpec, parse_clusters
from trent.node.model.errors import KmsError
from trent.node.quotas.aws_table import QUOTA_NAMES
from trent.node.store.etcd_client import EtcdSettings
from trent.node.store.factory import BACKENDS as STORE_BACKENDS
from trent.node.xks.settings import xks_settings

DEFAULT_ACCOUNT = "111122223333"
DEFAULT_REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-2")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class EdgeLimits:
    """How long a client may take and how many connections a process keeps (enforced in node/edge.py)."""

    header_timeout: float = 10.0  # from connecting until the first request's head is complete
    body_timeout: float = 30.0  # from a request's head until its whole body is in
    idle_timeout: float = 60.0  # a kept-alive connection waiting for its next request
    max_connections: int = 1000  # open at once in one process, over all its ports; more are closed at once


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
    # Seconds between passes that drop outbox records every peer region has applied.
    outbox_trim_interval: float = 30.0
    # How long a new multi-Region replica stays Creating before it is usable (AWS: a few seconds).
    replica_creating_seconds: float = 2.0
    # Hex root keys per region; a region without one gets a 0600 file in its data directory.
    root_keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    admin_token: str | None = field(default=None, repr=False)  # secrets: never in a repr that may be logged
    # Key policies, identity policies and grants decide every call ("enforce"), or nothing is checked ("off").
    enforce_access: bool = True
    # principal ARN → identity (IAM) policy document; a principal without one has no IAM permissions.
    identity_policies: Mapping[str, str] = field(default_factory=dict)
    # Processes serving the cluster: the leader (everything) plus workers - 1 more on the gateway port.
    workers: int = 1
    # Where regions keep their state: a backend of node/store/factory.py; ``region_stores``: another for some.
    store: str = "sqlite"
    region_stores: Mapping[str, str] = field(default_factory=dict)
    # How an etcd-backed region reaches etcd (the file's etcd_* keys: node/etcd_config.py).
    etcd: EtcdSettings = field(default_factory=EtcdSettings)
    # Each region's audit log: rotated at this size; rotated files kept this long and within this total (0: no limit).
    audit_rotate_mib: int = 64
    audit_retention_days: float = 30.0
    audit_retention_mib: int = 1024
    edge: EdgeLimits = EdgeLimits()
    # Rotation-age monitoring (node/compliance.py): current material older than this many days is a finding;
    # imported material expiring within compliance_expiry_days too. Crossings are sent to the webhook (a JSON POST)
    # and/or appended to the file (JSON lines), once each.
    compliance_max_age_days: float = 365.0
    compliance_expiry_days: float = 30.0
    compliance_webhook: str | None = None
    compliance_file: str | None = None
    # /metrics without the admin token (for a Prometheus that cannot send one).
    metrics_open: bool = False
    # Request quotas: "off", or "aws" (KMS's published per-account, per-region rates, node/quotas/aws_table.py);
    # quota_overrides sets some of them (by quota name) to other rates, in requests per second.
    quotas: str = "off"
    quota_overrides: Mapping[str, float] = field(default_factory=dict)
    # A seed file (TOML, or YAML such as local-kms's): keys every start creates if missing (cluster/seeding.py).
    seed: Path | None = None
    # A region no one configured is made on its first request through the gateway (cluster/any_region.py).
    any_region: bool = False
    # Regions served by other processes or hosts (`trent node`, `trent gateway`): region → its nodes' URLs.
    peers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # A node bundle made by `trent init` (the cluster's secrets, CA and this node's certificate).
    bundle: Path | None = None
    # Client-facing TLS on the ports this process serves, and the CA that peers' certificates are checked against.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    # Delays between regions' replication links: "none", or "aws" (cluster/latency.py's published matrix).
    latency_profile: str = "none"
    # HSM clusters custom key stores connect to ([[hsm_clusters]]); None: a default one where SoftHSM2 is installed.
    hsm_clusters: tuple[HsmClusterSpec, ...] | None = field(default=None, repr=False)
    # External key stores: the CA their proxies' certificates chain to (None: the system's), whether a proxy may be
    # reached over plain HTTP (local experiments only), and how long a proxy call may take (AWS: 250 ms).
    xks_trusted_ca: Path | None = None
    xks_allow_http: bool = False
    xks_timeout_ms: float = 250.0

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


# Fields a file spells differently (a choice of words instead of a boolean), or does not set at all.
_FILE_NAME_OF = {"verify_signatures": "auth", "enforce_access": "access_control", "identity_policies": None,
                 "edge": None, "etcd": None}
PRINCIPAL_KEYS = ("access_key", "secret_key", "arn", "session_token", "account", "policy", "via_service")


def _file_keys() -> list[str]:
    """The keys a config file may hold: every field of ClusterConfig, under the name the file uses for it."""
    names = (_FILE_NAME_OF.get(f.name, f.name) for f in fields(ClusterConfig))
    # EdgeLimits' fields stand at the top level of the file.
    return [name for name in names if name is not None] + [f.name for f in fields(EdgeLimits)] + list(ETCD_KEYS)


def _suggestion(name: str, known: list[str]) -> str | None:
    spelt = name.replace("-", "_").lower()
    spelt = _FILE_NAME_OF.get(spelt) or spelt  # verify_signatures = false means auth = "off"
    if spelt in known:
        return spelt
    close = difflib.get_close_matches(name, known, n=1) or difflib.get_close_matches(spelt, known, n=1)
    return close[0] if close else None


def _check_names(names: Iterable[str], known: list[str], where: str, what: str = "key") -> None:
    """A misspelt key is an error naming it (a silently ignored one would start the cluster on a default)."""
    for name in names:
        if name not in known:
            guess = _suggestion(name, known)
            hint = f" (did you mean {guess!r}?)" if guess else ""
            raise ConfigError(f"unknown {what} {name!r} in {where}{hint}")


def _check_file(raw: Mapping[str, Any], path: Path) -> None:
    _check_names(raw, _file_keys(), str(path))
    principals = raw.get("principals")
    if isinstance(principals, list):
        for number, item in enumerate(principals, 1):
            if isinstance(item, Mapping):
                _check_names(item, list(PRINCIPAL_KEYS), f"[[principals]] #{number} of {path}")


def _check_region_tables(changes: Mapping[str, Any], regions: tuple[str, ...]) -> None:
    """A port or root key for a region that is not configured is a misspelt region (which would otherwise get a
    default port, or a new root key of its own)."""
    for table in ("region_ports", "root_keys"):
        _check_names(changes.get(table, {}), list(regions), table, what="region")


_REGION_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_HEX_KEY_RE = re.compile(r"[0-9a-fA-F]{64}")
_SERVICE_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def _convert(name: str, value: Any, conv: Callable[[Any], Any]) -> Any:
    """``value`` as a str, int or float; TOML gives native types, flags and the environment give strings."""
    wrong = ConfigError(f"{name} has the wrong type: {value!r}")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise wrong
    if conv is str:
        if not isinstance(value, str):
            raise wrong
        return value
    if conv is int and isinstance(value, float):
        raise wrong
    try:
        return conv(value)
    except ValueError:
        raise wrong from None


def _principals(items: Any, account: str) -> tuple[Principal, ...]:
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise ConfigError("principals must be a list of tables ([[principals]] in TOML)")
    out: list[Principal] = []
    for number, item in enumerate(items, 1):
        access_key, secret_key = item.get("access_key"), item.get("secret_key")
        if not isinstance(access_key, str) or not access_key or not isinstance(secret_key, str) or not secret_key:
            # Never echo the entry: it holds a secret.
            raise ConfigError(f"principal #{number} needs access_key and secret_key (non-empty strings)")
        arn = item.get("arn") or f"arn:aws:iam::{account}:root"
        parts = arn.split(":") if isinstance(arn, str) else []
        if len(parts) < 6 or parts[0] != "arn":
            raise ConfigError(f"principal {access_key}: arn {arn!r} is not an ARN")
        token = item.get("session_token")
        if token is not None and (not isinstance(token, str) or not token):
            raise ConfigError(f"principal {access_key}: session_token must be a non-empty string")
        via = item.get("via_service")
        if via is not None and (not isinstance(via, str) or _SERVICE_RE.fullmatch(via) is None):
            raise ConfigError(f"principal {access_key}: via_service must be a service name such as s3 or ec2")
        if any(p.access_key == access_key for p in out):
            raise ConfigError(f"principal {access_key} is configured twice")
        out.append(Principal(access_key=access_key, secret_key=secret_key, arn=arn,
                             account=str(item.get("account") or parts[4] or account), session_token=token,
                             via_service=via))
    return tuple(out)


def _regions(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(r, str) for r in items):
        raise ConfigError("regions must be a list of names or a comma-separated string")
    regions = tuple(r.strip() for r in items if r.strip())
    if not regions:
        raise ConfigError("at least one region is required")
    for region in regions:
        # Region names become directory names: nothing but lowercase letters, digits and inner dashes.
        if _REGION_RE.fullmatch(region) is None:
            raise ConfigError(f"{region!r} is not a region name (like us-east-1)")
    if len(set(regions)) != len(regions):
        raise ConfigError("a region is listed twice")
    return regions


def _port(name: str, value: Any) -> int:
    port: int = _convert(name, value, int)
    if not 0 < port < 65536:
        raise ConfigError(f"{name} must be between 1 and 65535")
    return port


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> ClusterConfig:
    """File values first, then explicit overrides (command-line flags); None overrides are ignored."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
        _check_file(raw, path)
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    config = ClusterConfig()
    simple: dict[str, Callable[[Any], Any]] = {"host": str, "account": str, "max_skew_seconds": float,
                                               "scheduler_interval": float, "admin_token": str,
                                               "replica_creating_seconds": float, "outbox_trim_interval": float}
    changes: dict[str, Any] = {k: _convert(k, raw[k], conv) for k, conv in simple.items() if k in raw}
    if "port" in raw:
        changes["port"] = _port("port", raw["port"])
    if "data_dir" in raw:
        changes["data_dir"] = Path(_convert("data_dir", raw["data_dir"], str))
    if "seed" in raw:
        changes["seed"] = Path(_convert("seed", raw["seed"], str))
    if "any_region" in raw:
        if not isinstance(raw["any_region"], bool):
            raise ConfigError("any_region must be true or false")
        changes["any_region"] = raw["any_region"]
    if "regions" in raw:
        changes["regions"] = _regions(raw["regions"])
    if "region_ports" in raw:
        if not isinstance(raw["region_ports"], Mapping):
            raise ConfigError("region_ports must be a table of region = port")
        changes["region_ports"] = {str(k): _port(f"region_ports.{k}", v) for k, v in raw["region_ports"].items()}
    if "auth" in raw:
        if raw["auth"] not in ("verify", "off"):
            raise ConfigError("auth must be 'verify' or 'off'")
        changes["verify_signatures"] = raw["auth"] == "verify"
    if "root_keys" in raw:
        if not isinstance(raw["root_keys"], Mapping):
            raise ConfigError("root_keys must be a table of region = hex key")
        changes["root_keys"] = {str(k): str(v) for k, v in raw["root_keys"].items()}
        for region, value in changes["root_keys"].items():
            if _HEX_KEY_RE.fullmatch(value) is None:
                raise ConfigError(f"root_keys.{region} must be 64 hexadecimal digits (32 bytes)")
    skew, interval = changes.get("max_skew_seconds", 0.0), changes.get("scheduler_interval", 1.0)
    if not (math.isfinite(skew) and skew >= 0):
        raise ConfigError("max_skew_seconds must be a non-negative number")
    if not (math.isfinite(interval) and interval > 0):
        raise ConfigError("scheduler_interval must be a positive number")
    trim = changes.get("outbox_trim_interval", 30.0)
    if not (math.isfinite(trim) and trim > 0):
        raise ConfigError("outbox_trim_interval must be a positive number")
    if "workers" in raw:
        workers = _convert("workers", raw["workers"], int)
        if not 1 <= workers <= 64:
            raise ConfigError("workers must be between 1 and 64")
        changes["workers"] = workers
    changes |= _checked(raw, "store", str, lambda backend: backend in STORE_BACKENDS,
                        f"must be one of: {', '.join(sorted(STORE_BACKENDS))}")
    changes.update(_audit_settings(raw))
    changes.update(_compliance_settings(raw))
    changes.update(_node_settings(raw))
    try:
        changes.update(etcd_settings(raw, changes.get("regions", config.regions)))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    edge = _edge_limits(raw)
    if edge != config.edge:
        changes["edge"] = edge
    if changes.get("replica_creating_seconds", 0.0) < 0:
        raise ConfigError("replica_creating_seconds must not be negative")
    account = str(changes.get("account", config.account))
    if not (len(account) == 12 and account.isdigit()):
        raise ConfigError("account must be 12 digits")
    if "principals" in raw:
        changes["principals"] = _principals(raw["principals"], account)
        changes["identity_policies"] = _identity_policies(raw["principals"], changes["principals"])
    if "access_control" in raw:
        if raw["access_control"] not in ("enforce", "off"):
            raise ConfigError("access_control must be 'enforce' or 'off'")
        changes["enforce_access"] = raw["access_control"] == "enforce"
    _check_region_tables(changes, changes.get("regions", config.regions))
    changes.update(_observability_settings(raw))
    if changes.get("any_region") and changes.get("workers", 1) > 1:
        raise ConfigError("any_region works with workers = 1 only (for now)")
    if "hsm_clusters" in raw:
        try:
            changes["hsm_clusters"] = parse_clusters(raw["hsm_clusters"], changes.get("regions", config.regions))
        except ClusterConfigError as exc:
            raise ConfigError(str(exc)) from None
    try:
        changes.update(xks_settings(raw))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return replace(config, **changes)


def _observability_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """metrics_open, quotas and quota_overrides."""
    changes: dict[str, Any] = {}
    if "metrics_open" in raw:
        if not isinstance(raw["metrics_open"], bool):
            raise ConfigError("metrics_open must be true or false")
        changes["metrics_open"] = raw["metrics_open"]
    changes |= _checked(raw, "quotas", str, lambda mode: mode in ("off", "aws"), "must be 'off' or 'aws'")
    if "quota_overrides" in raw:
        overrides = raw["quota_overrides"]
        if not isinstance(overrides, Mapping):
            raise ConfigError("quota_overrides must be a table of quota name = requests per second")
        _check_names(overrides, list(QUOTA_NAMES), "quota_overrides", what="quota")
        rates = {str(k): _convert(f"quota_overrides.{k}", v, float) for k, v in overrides.items()}
        for name, rate in rates.items():
            if not (math.isfinite(rate) and rate > 0):
                raise ConfigError(f"quota_overrides.{name} must be a positive number of requests per second")
        changes["quota_overrides"] = rates
    return changes


def _checked(raw: Mapping[str, Any], name: str, kind: Callable[[Any], Any], ok: Callable[[Any], bool],
             rule: str) -> dict[str, Any]:
    """``{name: value}`` when the file or a flag sets ``name`` and its value meets ``ok`` (else a ConfigError saying
    ``name`` ``rule``); ``{}`` when it is not set."""
    if name not in raw:
        return {}
    value = _convert(name, raw[name], kind)
    if not ok(value):
        raise ConfigError(f"{name} {rule}")
    return {name: value}


def _audit_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **_checked(raw, "audit_rotate_mib", int, lambda n: n >= 1, "must be at least 1"),
        **_checked(raw, "audit_retention_mib", int, lambda n: n >= 0, "must be at least 0"),
        **_checked(raw, "audit_retention_days", float, lambda d: math.isfinite(d) and d >= 0,
                   "must be a non-negative number (0: keep every file)"),
    }


def _compliance_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **_checked(raw, "compliance_max_age_days", float, lambda d: math.isfinite(d) and d > 0,
                   "must be a positive number of days"),
        **_checked(raw, "compliance_expiry_days", float, lambda d: math.isfinite(d) and d >= 0,
                   "must be a non-negative number of days"),
        **_checked(raw, "compliance_webhook", str, lambda u: re.fullmatch(r"https?://[^\s/]+(/\S*)?", u) is not None,
                   "must be an http:// or https:// URL"),
        **_checked(raw, "compliance_file", str, bool, "must be a file path"),
    }
def _node_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of separate region processes: peers, bundle, TLS files, latency profile."""
    out: dict[str, Any] = {}
    for key in ("bundle", "tls_cert", "tls_key", "tls_ca"):
        if key in raw:
            out[key] = Path(_convert(key, raw[key], str))
    if ("tls_cert" in out) != ("tls_key" in out):
        raise ConfigError("tls_cert and tls_key go together")
    out |= _checked(raw, "latency_profile", str, lambda p: p in ("none", "aws"), "must be 'none' or 'aws'")
    if "peers" in raw:
        peers = raw["peers"]
        if not isinstance(peers, Mapping):
            raise ConfigError("peers must be a table of region = URL (or a list of URLs)")
        out["peers"] = {_regions([str(region)])[0]: _urls(f"peers.{region}", urls) for region, urls in peers.items()}
    return out


def _urls(name: str, value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items or not all(isinstance(u, str) for u in items):
        raise ConfigError(f"{name} must be a URL or a list of URLs")
    urls = tuple(u.strip().rstrip("/") for u in items if u.strip())
    for url in urls:
        if re.fullmatch(r"https?://[^/\s]+", url) is None:
            raise ConfigError(f"{name}: {url!r} is not a node URL (like http://10.0.0.2:4600)")
    if not urls:
        raise ConfigError(f"{name} must be a URL or a list of URLs")
    return urls


def _edge_limits(raw: Mapping[str, Any]) -> EdgeLimits:
    changes: dict[str, Any] = {}
    for key in ("header_timeout", "body_timeout", "idle_timeout"):
        changes |= _checked(raw, key, float, lambda s: math.isfinite(s) and s > 0,
                            "must be a positive number of seconds")
    changes |= _checked(raw, "max_connections", int, lambda n: n >= 1, "must be at least 1")
    return replace(EdgeLimits(), **changes)


def _identity_policies(items: list[Mapping[str, Any]], principals: tuple[Principal, ...]) -> dict[str, str]:
    """A principal's optional `policy`: an IAM policy document, as a JSON string or an inline TOML table. Kept under
    the principal's ARN as ``_principals`` made it (its account's root when the entry names none)."""
    out: dict[str, str] = {}
    for item, principal in zip(items, principals, strict=True):
        policy = item.get("policy")
        if policy is None:
            continue
        if isinstance(policy, Mapping):
            policy = json.dumps(policy)
        if not isinstance(policy, str):
            raise ConfigError(f"principal {item.get('access_key')}: policy must be a JSON string or a table")
        try:
            parse_policy(policy, key_policy=False)
        except KmsError as exc:
            raise ConfigError(f"principal {item.get('access_key')}: policy is not a valid IAM policy: "
                              f"{exc.message}") from exc
        out[principal.arn] = policy
    return out
