"""Seed files: keys a cluster holds from its first start on, with fixed KeyIds and, if given, fixed material, so a
ciphertext made in one run decrypts in the next. Trent's own format in TOML or YAML (``keys`` and ``aliases``),
and local-kms's seed files (cluster/seed_localkms.py translates them into this format).

Parsing only: what is declared, checked for shape. Applying it to the regions is cluster/seeding.py. Key material
never appears in an error message; a message names the key and the field.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, rsa

from trent.node.auth.policy import parse_policy
from trent.node.crypto.handles import MATERIAL_LEN, SecretBytes
from trent.node.model.errors import KmsError
from trent.node.model.ids import MRK_RE, UUID_RE
from trent.node.model.key import ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT
from trent.node.model.key_specs import HMAC_KEY_BYTES, UNSUPPORTED_SPECS, USAGES

ALIAS_RE = re.compile(r"alias/[a-zA-Z0-9/_-]{1,250}")
KEY_FIELDS = ("key_id", "region", "key_spec", "key_usage", "description", "enabled", "aliases", "tags", "policy",
              "rotation", "material", "materials", "private_key_pem", "multi_region", "replicas", "origin")
REPLICA_FIELDS = ("region", "description", "enabled", "aliases", "tags", "policy")
ROTATION_FIELDS = ("enabled", "period_days", "next_rotation")
ALIAS_FIELDS = ("name", "key_id", "region")
# YAML anchors let a small file stand for an enormous (or endless) structure; no seed file needs this many values.
MAX_SEED_VALUES = 200_000


class SeedError(ValueError):
    """The seed file cannot be used as written (or conflicts with the cluster's keys); nothing was changed."""


@dataclass(frozen=True)
class PerRegion:
    """What a key has of its own in one region (a multi-Region key's replicas each have theirs)."""

    region: str
    description: str = ""
    enabled: bool = True
    aliases: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    policy: str | None = None  # None: the default key policy


@dataclass(frozen=True)
class SeedKey:
    key_id: str
    key_spec: str
    key_usage: str
    home: PerRegion  # the key's region (a multi-Region key's primary)
    replicas: tuple[PerRegion, ...] = ()
    # Oldest first, the last current; empty: generated at first creation and kept from then on.
    materials: tuple[SecretBytes, ...] = ()
    rotation_enabled: bool = False
    rotation_period_days: int = 365
    next_rotation: float | None = None

    @property
    def multi_region(self) -> bool:
        return self.key_id.startswith("mrk-")


@dataclass(frozen=True)
class SeedAlias:
    name: str
    key_id: str
    region: str | None  # None: the key's own region


@dataclass(frozen=True)
class Seed:
    keys: tuple[SeedKey, ...]
    aliases: tuple[SeedAlias, ...]


def load_seed(path: Path, regions: tuple[str, ...]) -> Seed:
    """The seed file at ``path`` for a cluster of ``regions`` (the first is where a key without a region goes)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SeedError(f"cannot read seed file {path}: {exc}") from None
    raw = _decode(text, path)
    from trent.cluster.seed_localkms import is_local_kms, translate

    if is_local_kms(raw):
        raw = translate(raw)
    return parse_seed(raw, regions, str(path))


def _decode(text: str, path: Path) -> Mapping[str, Any]:
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml  # only for YAML seed files

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SeedError(f"seed file {path} is not valid YAML: {_first_line(exc)}") from None
    else:
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SeedError(f"seed file {path} is not valid TOML ({exc}); YAML files end in .yaml") from None
    if raw is None:
        return {}
    _bounded(raw, path)
    if not isinstance(raw, Mapping):
        raise SeedError(f"seed file {path}: expected a table of keys and aliases at the top")
    return raw


def _bounded(raw: Any, path: Path) -> None:
    """Refuse a structure that expands (through YAML anchors and aliases) to more than MAX_SEED_VALUES values, or
    refers to itself: reading it further would exhaust memory or never end."""
    pending, seen = [raw], 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > MAX_SEED_VALUES:
            raise SeedError(f"seed file {path} expands to more than {MAX_SEED_VALUES} values (YAML anchors and "
                            "aliases repeating themselves?)")
        if isinstance(value, Mapping):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def parse_seed(raw: Mapping[str, Any], regions: tuple[str, ...], where: str) -> Seed:
    _only(raw, ("keys", "aliases"), where)
    keys = tuple(_key(item, regions, f"{where}: keys[{n}]") for n, item in enumerate(_list(raw, "keys", where)))
    seen: set[tuple[str, str]] = set()
    for key in keys:
        for region in (key.home.region, *(r.region for r in key.replicas)):
            if (key.key_id, region) in seen:
                raise SeedError(f"{where}: key {key.key_id} is declared twice in {region}")
            seen.add((key.key_id, region))
    aliases = tuple(_alias(item, regions, f"{where}: aliases[{n}]")
                    for n, item in enumerate(_list(raw, "aliases", where)))
    return Seed(keys, aliases)


def _list(raw: Mapping[str, Any], name: str, where: str) -> list[Mapping[str, Any]]:
    items = raw.get(name, [])
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise SeedError(f"{where}: {name} must be a list of tables ([[{name}]] in TOML)")
    return items


def _only(raw: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    for name in raw:
        if name not in known:
            raise SeedError(f"{where}: unknown field {name!r} (known: {', '.join(known)})")


def _str(raw: Mapping[str, Any], name: str, where: str, default: str | None = None) -> str:
    value = raw.get(name, default)
    if not isinstance(value, str):
        raise SeedError(f"{where}: {name} must be a string" + ("" if name in raw else " (it is required)"))
    return value


def _bool(raw: Mapping[str, Any], name: str, where: str, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise SeedError(f"{where}: {name} must be true or false")
    return value


def _region(raw: Mapping[str, Any], regions: tuple[str, ...], where: str) -> str:
    region = _str(raw, "region", where, regions[0])
    if region not in regions:
        raise SeedError(f"{where}: region {region!r} is not a region of this cluster ({', '.join(regions)})")
    return region


def _key(raw: Mapping[str, Any], regions: tuple[str, ...], where: str) -> SeedKey:
    _only(raw, KEY_FIELDS, where)
    key_id = _str(raw, "key_id", where)
    where = f"{where} ({key_id})"
    if not (UUID_RE.fullmatch(key_id) or MRK_RE.fullmatch(key_id)):
        raise SeedError(f"{where}: key_id must be a lowercase UUID, or mrk- and 32 hex digits for a multi-Region key")
    if raw.get("origin", "AWS_KMS") != "AWS_KMS":
        raise SeedError(f"{where}: origin {raw.get('origin')!r} is not supported in a seed file (a seed never "
                        "imports material: give the material in the seed file, or import it with ImportKeyMaterial)")
    pem = raw.get("private_key_pem")
    private = _private_key(pem, where) if pem is not None else None
    spec = _str(raw, "key_spec", where, _spec_of(private, where) if private is not None else SYMMETRIC_DEFAULT)
    if spec not in USAGES:
        raise SeedError(f"{where}: unknown key_spec {spec!r}")
    if spec in UNSUPPORTED_SPECS:
        raise SeedError(f"{where}: {UNSUPPORTED_SPECS[spec]}")
    usage = _str(raw, "key_usage", where, USAGES[spec][0] if spec != SYMMETRIC_DEFAULT else ENCRYPT_DECRYPT)
    if usage not in USAGES[spec]:
        raise SeedError(f"{where}: key_usage {usage} is not valid for {spec} (valid: {', '.join(USAGES[spec])})")
    multi = raw.get("multi_region", key_id.startswith("mrk-"))
    if multi != key_id.startswith("mrk-"):
        raise SeedError(f"{where}: a multi-Region key's id starts with mrk-, and only a multi-Region key's does")
    if private is not None and "key_spec" in raw:
        check_private_key_spec(private, spec, where)
    home = _per_region(raw, regions, where, replica=False)
    replica_items = raw.get("replicas", [])
    if not isinstance(replica_items, list):
        raise SeedError(f"{where}: replicas must be a list of regions or tables")
    if replica_items and not multi:
        raise SeedError(f"{where}: only a multi-Region key (mrk-...) has replicas")
    replicas = tuple(_per_region({"region": r} if isinstance(r, str) else r, regions, f"{where}: replica",
                                 replica=True) for r in replica_items)
    placed = [home.region, *(r.region for r in replicas)]
    if len(set(placed)) != len(placed):
        raise SeedError(f"{where}: a multi-Region key has one key per region (primary and replicas)")
    materials = _materials(raw, spec, private, key_id, where)
    rotation = _rotation(raw.get("rotation", {}), spec, where)
    return SeedKey(key_id, spec, usage, home, replicas, materials, *rotation)


def _per_region(raw: Any, regions: tuple[str, ...], where: str, *, replica: bool) -> PerRegion:
    """The per-region fields of a key's own table, or of one of its replicas' tables."""
    if not isinstance(raw, Mapping):
        raise SeedError(f"{where}: expected a region name or a table")
    if replica:
        _only(raw, REPLICA_FIELDS, where)
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise SeedError(f"{where}: aliases must be a list of names (alias/...)")
    for alias in aliases:
        _check_alias(alias, where)
    tags = raw.get("tags", {})
    if not isinstance(tags, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise SeedError(f"{where}: tags must be a table of strings")
    if len(tags) > 50 or any(not 1 <= len(k) <= 128 or len(v) > 256 for k, v in tags.items()):
        raise SeedError(f"{where}: tags: at most 50, keys 1-128 and values up to 256 characters")
    if any(k.lower().startswith("aws:") for k in tags):
        raise SeedError(f"{where}: tags: keys starting with aws: are reserved for AWS")
    description = _str(raw, "description", where, "")
    if len(description) > 8192:  # DescribeKey's Description, as CreateKey takes it
        raise SeedError(f"{where}: description: at most 8192 characters")
    return PerRegion(_region(raw, regions, where), description,
                     _bool(raw, "enabled", where, True), tuple(aliases), tuple(sorted(tags.items())),
                     _policy(raw.get("policy"), where))


def _check_alias(name: str, where: str) -> None:
    if ALIAS_RE.fullmatch(name) is None or name.startswith("alias/aws/"):
        raise SeedError(f"{where}: {name!r} is not an alias name of your own (alias/ then letters, digits, "
                        "/ _ -; alias/aws/ is reserved)")


def _policy(value: Any, where: str) -> str | None:
    if value is None:
        return None
    try:
        text = json.dumps(value, indent=2) if isinstance(value, Mapping) else value
    except (TypeError, ValueError):  # a date (YAML and TOML read an unquoted 2012-10-17 as one), a cycle
        raise SeedError(f"{where}: policy holds a value JSON has no form for (quote dates: "
                        "Version: \"2012-10-17\")") from None
    if not isinstance(text, str):
        raise SeedError(f"{where}: policy must be a JSON string or a table")
    try:
        parse_policy(text, key_policy=True)
    except KmsError as exc:
        raise SeedError(f"{where}: policy is not a valid key policy: {exc.message}") from None
    return text


def _alias(raw: Mapping[str, Any], regions: tuple[str, ...], where: str) -> SeedAlias:
    _only(raw, ALIAS_FIELDS, where)
    name = _str(raw, "name", where)
    _check_alias(name, where)
    region = _region(raw, regions, where) if "region" in raw else None
    return SeedAlias(name, _str(raw, "key_id", where), region)


# -- material ----------------------------------------------------------------------------------------------


def decode_material(text: Any, where: str) -> SecretBytes:
    """``hex:<digits>`` or ``base64:<text>``; the error never repeats the value."""
    if not isinstance(text, str) or ":" not in text:
        raise SeedError(f"{where}: material must be a string written hex:<hex digits> or base64:<base64>")
    kind, _, body = text.partition(":")
    try:
        if kind == "hex":
            return SecretBytes(bytes.fromhex(body), label="seed-material")
        if kind == "base64":
            return SecretBytes(base64.b64decode(body.strip(), validate=True), label="seed-material")
    except (ValueError, binascii.Error):
        raise SeedError(f"{where}: material is not valid {kind}") from None
    raise SeedError(f"{where}: material must start with hex: or base64:")


def _materials(raw: Mapping[str, Any], spec: str, private: SecretBytes | None, key_id: str, where: str
               ) -> tuple[SecretBytes, ...]:
    if "material" in raw and "materials" in raw:
        raise SeedError(f"{where}: give material or materials, not both")
    items = raw.get("materials", [raw["material"]] if "material" in raw else [])
    if not isinstance(items, list):
        raise SeedError(f"{where}: materials must be a list (oldest first, the last is current)")
    if private is not None:
        if items:
            raise SeedError(f"{where}: an asymmetric key's material is its private_key_pem alone")
        return (private,)
    if items and spec not in HMAC_KEY_BYTES and spec != SYMMETRIC_DEFAULT:
        raise SeedError(f"{where}: a {spec} key's material is a private_key_pem (PEM), not material")
    length = HMAC_KEY_BYTES.get(spec, MATERIAL_LEN)
    out = tuple(decode_material(item, where) for item in items)
    if any(len(m) != length for m in out):
        raise SeedError(f"{where}: {spec} material is {length} bytes ({2 * length} hex digits)")
    if len({m.reveal() for m in out}) != len(out):
        raise SeedError(f"{where}: the same material is listed twice")
    if len(out) > 1 and spec != SYMMETRIC_DEFAULT:
        raise SeedError(f"{where}: only a symmetric encryption key has several material versions (rotations)")
    return out


def _private_key(pem: Any, where: str) -> SecretBytes:
    if not isinstance(pem, str):
        raise SeedError(f"{where}: private_key_pem must be a PEM text")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        raise SeedError(f"{where}: private_key_pem is not an unencrypted PEM private key (PKCS#8, or RSA/EC "
                        "traditional)") from None
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return SecretBytes(der, label="seed-private-key")


_CURVE_SPECS = {"secp256r1": "ECC_NIST_P256", "secp384r1": "ECC_NIST_P384", "secp521r1": "ECC_NIST_P521",
                "secp256k1": "ECC_SECG_P256K1"}


def _spec_of(private: SecretBytes, where: str) -> str:
    """The key spec a private key is (local-kms seed files do not say it)."""
    key = serialization.load_der_private_key(private.reveal(), None)
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size in (2048, 3072, 4096):
        return f"RSA_{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in _CURVE_SPECS:
        return _CURVE_SPECS[key.curve.name]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ECC_NIST_EDWARDS25519"
    for cls, spec in ((mldsa.MLDSA44PrivateKey, "ML_DSA_44"), (mldsa.MLDSA65PrivateKey, "ML_DSA_65"),
                      (mldsa.MLDSA87PrivateKey, "ML_DSA_87"), (mlkem.MLKEM768PrivateKey, "ML_KEM_768"),
                      (mlkem.MLKEM1024PrivateKey, "ML_KEM_1024")):
        if isinstance(key, cls):
            return spec
    raise SeedError(f"{where}: private_key_pem holds a kind of key KMS has no key spec for")


def check_private_key_spec(private: SecretBytes, spec: str, where: str) -> None:
    actual = _spec_of(private, where)
    if actual != spec:
        raise SeedError(f"{where}: private_key_pem is a {actual} key, not {spec}")


# -- rotation ------------------------------------------------------------------------------------------------


def _rotation(raw: Any, spec: str, where: str) -> tuple[bool, int, float | None]:
    if not isinstance(raw, Mapping):
        raise SeedError(f"{where}: rotation must be a table (enabled, period_days, next_rotation)")
    _only(raw, ROTATION_FIELDS, f"{where}: rotation")
    enabled = _bool(raw, "enabled", where, "next_rotation" in raw)
    period = raw.get("period_days", 365)
    if isinstance(period, bool) or not isinstance(period, int) or not 90 <= period <= 2560:
        raise SeedError(f"{where}: rotation period_days must be a whole number from 90 to 2560")
    if enabled and spec != SYMMETRIC_DEFAULT:
        raise SeedError(f"{where}: only symmetric encryption keys rotate automatically")
    nxt = raw.get("next_rotation")
    return enabled, period, None if nxt is None else _epoch(nxt, where)


def _epoch(value: Any, where: str) -> float:
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise SeedError(f"{where}: next_rotation must be an ISO 8601 time") from None
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise SeedError(f"{where}: next_rotation must be an ISO 8601 time")
    when: dt.datetime = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    return when.timestamp()
