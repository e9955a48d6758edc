"""The configuration of `trent xks-proxy` (a TOML file): where it listens, its URI prefix, the SigV4 credentials it
accepts, its keys, its TLS, and the PKCS#11 token the keys live in (SoftHSM2 under the data directory by default).

    host = "127.0.0.1"          port = 8443           uri_prefix = "example/uri/path/prefix"
    tls_cert = "proxy.crt"      tls_key = "proxy.key" tls_client_ca = "kms-clients-ca.crt"   # all optional
    [[credentials]]  access_key_id = "...", secret_access_key = "..."
    [[keys]]         id = "foo", usage = ["ENCRYPT", "DECRYPT"], enabled = true
    [pkcs11]         module = "/usr/lib/...so", token_label = "...", user_pin = "..."           # optional
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trent.node.xks.wire import KEY_ID_RE

ACCESS_KEY_RE = re.compile(r"[A-Z2-7]{20,30}")  # what KMS accepts as an XKS access key id
SECRET_RE = re.compile(r"[A-Za-z0-9/+=]{43,64}")
USAGES = ("ENCRYPT", "DECRYPT")
PREFIX_RE = re.compile(r"[A-Za-z0-9_/-]{0,116}")  # with "/kms/xks/v1" at most 128 characters, as KMS allows
TOP_KEYS = ("host", "port", "uri_prefix", "tls_cert", "tls_key", "tls_client_ca", "max_skew_seconds", "credentials",
            "keys", "pkcs11", "pool_size")


class ProxyConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ProxyKey:
    key_id: str
    usage: tuple[str, ...] = USAGES
    enabled: bool = True


@dataclass(frozen=True)
class Pkcs11Token:
    module: Path
    token_label: str
    user_pin: str = field(repr=False)


@dataclass(frozen=True)
class ProxyConfig:
    host: str = "127.0.0.1"
    port: int = 8443
    uri_prefix: str = ""
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)  # access key id -> secret
    keys: tuple[ProxyKey, ...] = ()
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    max_skew_seconds: float = 300.0
    pkcs11: Pkcs11Token | None = None
    pool_size: int = 8

    @property
    def base_path(self) -> str:
        """``/<uri_prefix>/kms/xks/v1``: the XksProxyUriPath a key store names."""
        prefix = self.uri_prefix.strip("/")
        return f"/{prefix}/kms/xks/v1" if prefix else "/kms/xks/v1"

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert is not None else "http"

    def key(self, key_id: str) -> ProxyKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)


def _path(raw: Mapping[str, Any], name: str, base: Path) -> Path | None:
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ProxyConfigError(f"{name} must be a file name")
    path = Path(value)
    return path if path.is_absolute() else base / path


def parse_proxy_config(raw: Mapping[str, Any], base: Path = Path(".")) -> ProxyConfig:
    """A checked configuration (messages never show a secret or a PIN); relative file names are from ``base``."""
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        raise ProxyConfigError(f"unknown key {unknown[0]!r} (keys: {', '.join(TOP_KEYS)})")
    host = raw.get("host", "127.0.0.1")
    port = raw.get("port", 8443)
    prefix = raw.get("uri_prefix", "")
    if not isinstance(host, str) or not host:
        raise ProxyConfigError("host must be an address or a name")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ProxyConfigError("port must be a number from 0 to 65535")
    if not isinstance(prefix, str) or PREFIX_RE.fullmatch(prefix.strip("/")) is None or "//" in prefix.strip("/"):
        raise ProxyConfigError("uri_prefix may hold letters, digits, '/', '-' and '_' (116 characters at most)")
    skew = raw.get("max_skew_seconds", 300.0)
    if isinstance(skew, bool) or not isinstance(skew, int | float) or not 0 < skew <= 3600:
        raise ProxyConfigError("max_skew_seconds must be a number of seconds from 0 to 3600")
    pool_size = raw.get("pool_size", 8)
    if isinstance(pool_size, bool) or not isinstance(pool_size, int) or not 1 <= pool_size <= 64:
        raise ProxyConfigError("pool_size must be a number from 1 to 64")
    credentials = _credentials(raw.get("credentials", []))
    keys = _keys(raw.get("keys", []))
    tls_cert, tls_key, tls_ca = (_path(raw, n, base) for n in ("tls_cert", "tls_key", "tls_client_ca"))
    if (tls_cert is None) != (tls_key is None):
        raise ProxyConfigError("tls_cert and tls_key go together")
    if tls_ca is not None and tls_cert is None:
        raise ProxyConfigError("tls_client_ca (mutual TLS) needs tls_cert and tls_key")
    return ProxyConfig(host, port, prefix.strip("/"), credentials, keys, tls_cert, tls_key, tls_ca, float(skew),
                       _pkcs11(raw.get("pkcs11"), base), pool_size)


def _credentials(items: Any) -> dict[str, str]:
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise ProxyConfigError("credentials must be a list of tables ([[credentials]] in TOML)")
    if not items:
        raise ProxyConfigError("at least one [[credentials]] is needed (access_key_id, secret_access_key)")
    out: dict[str, str] = {}
    for number, item in enumerate(items, 1):
        extra = [k for k in item if k not in ("access_key_id", "secret_access_key")]
        if extra:
            raise ProxyConfigError(f"[[credentials]] #{number}: unknown key {extra[0]!r}")
        ak, secret = item.get("access_key_id"), item.get("secret_access_key")
        if not isinstance(ak, str) or ACCESS_KEY_RE.fullmatch(ak) is None:
            raise ProxyConfigError(f"[[credentials]] #{number}: access_key_id must be 20 to 30 characters, "
                                   "A-Z and 2-7")
        if not isinstance(secret, str) or SECRET_RE.fullmatch(secret) is None:
            raise ProxyConfigError(f"[[credentials]] #{number} ({ak}): secret_access_key must be 43 to 64 "
                                   "characters, a-z, A-Z, 0-9, /, + and =")
        if ak in out:
            raise ProxyConfigError(f"access key id {ak} is configured twice")
        out[ak] = secret
    return out


def _keys(items: Any) -> tuple[ProxyKey, ...]:
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise ProxyConfigError("keys must be a list of tables ([[keys]] in TOML)")
    out: list[ProxyKey] = []
    for number, item in enumerate(items, 1):
        extra = [k for k in item if k not in ("id", "usage", "enabled")]
        if extra:
            raise ProxyConfigError(f"[[keys]] #{number}: unknown key {extra[0]!r}")
        key_id = item.get("id")
        if not isinstance(key_id, str) or KEY_ID_RE.fullmatch(key_id) is None:
            raise ProxyConfigError(f"[[keys]] #{number}: id must be 1 to 128 letters, digits, '.', '-' or '_'")
        usage = item.get("usage", list(USAGES))
        if not isinstance(usage, list) or not all(u in USAGES for u in usage) or len(set(usage)) != len(usage):
            raise ProxyConfigError(f"[[keys]] {key_id}: usage must be a list of ENCRYPT and/or DECRYPT (or empty)")
        enabled = item.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ProxyConfigError(f"[[keys]] {key_id}: enabled must be true or false")
        if any(k.key_id == key_id for k in out):
            raise ProxyConfigError(f"key {key_id} is configured twice")
        out.append(ProxyKey(key_id, tuple(u for u in USAGES if u in usage), enabled))
    return tuple(out)


def _pkcs11(item: Any, base: Path) -> Pkcs11Token | None:
    if item is None:
        return None
    if not isinstance(item, Mapping):
        raise ProxyConfigError("pkcs11 must be a table ([pkcs11] module, token_label, user_pin)")
    extra = [k for k in item if k not in ("module", "token_label", "user_pin")]
    if extra:
        raise ProxyConfigError(f"[pkcs11]: unknown key {extra[0]!r}")
    module = _path(item, "module", base)
    label, pin = item.get("token_label"), item.get("user_pin")
    if module is None or not isinstance(label, str) or not label or not isinstance(pin, str) or not pin:
        raise ProxyConfigError("[pkcs11] needs module, token_label and user_pin")
    return Pkcs11Token(module, label, pin)


def load_proxy_config(path: Path) -> ProxyConfig:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProxyConfigError(f"cannot read {path}: {exc}") from None
    return parse_proxy_config(raw, path.parent)
