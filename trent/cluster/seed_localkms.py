"""local-kms seed files (github.com/nsmithuk/local-kms), so its users' files load unchanged: both its classic layout

    Keys: {Symmetric: {Aes: [...]}, Asymmetric: {Rsa: [...], Ecc: [...]}}
    Aliases: [{AliasName, TargetKeyId}]

with ``Metadata`` (KeyId, Description, KeyUsage, Origin), ``BackingKeys`` (hex, oldest first: more than one is a
key that has been rotated), ``NextKeyRotation`` and ``PrivateKeyPem``; and its ``Version: 2`` layout (a list of
keys, each with KeyId, Metadata {Description, KeySpec, KeyUsage}, NextKeyRotation and Material {BackingKeys,
PrivateKeyPem}). Both become Trent's own format (cluster/seed_file.py); local-kms has one region, so the keys go
to the cluster's first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trent.cluster.seed_file import SeedError


def is_local_kms(raw: Mapping[str, Any]) -> bool:
    return "Keys" in raw or "Aliases" in raw or "Version" in raw


def translate(raw: Mapping[str, Any]) -> dict[str, Any]:
    version = raw.get("Version", 1)
    keys = raw.get("Keys") or ([] if version == 2 else {})
    if version == 2:
        if not isinstance(keys, list):
            raise SeedError("local-kms seed file (Version 2): Keys must be a list")
        out_keys = [_v2_key(item) for item in keys]
    elif version == 1:
        if not isinstance(keys, Mapping):
            raise SeedError("local-kms seed file: Keys must hold Symmetric and/or Asymmetric")
        out_keys = _v1_keys(keys)
    else:
        raise SeedError(f"local-kms seed file: Version {version!r} is not one this cluster reads (1 or 2)")
    aliases = raw.get("Aliases") or []
    if not isinstance(aliases, list):
        raise SeedError("local-kms seed file: Aliases must be a list")
    return {"keys": out_keys, "aliases": [_alias(a) for a in aliases]}


def _table(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SeedError(f"local-kms seed file: {where} must be a mapping")
    return value


def _items(value: Any, where: str) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(i, Mapping) for i in value):
        raise SeedError(f"local-kms seed file: {where} must be a list of keys")
    return value


def _v1_keys(keys: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    symmetric = _table(keys.get("Symmetric"), "Keys.Symmetric")
    for item in _items(symmetric.get("Aes"), "Keys.Symmetric.Aes"):
        out.append(_common(item, item.get("BackingKeys"), None))
    asymmetric = _table(keys.get("Asymmetric"), "Keys.Asymmetric")
    for kind in ("Rsa", "Ecc"):
        for item in _items(asymmetric.get(kind), f"Keys.Asymmetric.{kind}"):
            out.append(_common(item, None, item.get("PrivateKeyPem")))
    return out


def _v2_key(item: Any) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise SeedError("local-kms seed file (Version 2): each key must be a mapping")
    material = _table(item.get("Material"), "Material")
    metadata = dict(_table(item.get("Metadata"), "Metadata"))
    metadata.setdefault("KeyId", item.get("KeyId"))
    return _common({**item, "Metadata": metadata}, material.get("BackingKeys"), material.get("PrivateKeyPem"),
                   metadata.get("KeySpec"))


def _common(item: Mapping[str, Any], backing: Any, pem: Any, spec: Any = None) -> dict[str, Any]:
    metadata = _table(item.get("Metadata"), "Metadata")
    key: dict[str, Any] = {"key_id": metadata.get("KeyId")}
    if metadata.get("Description") is not None:
        key["description"] = metadata["Description"]
    if metadata.get("KeyUsage"):
        key["key_usage"] = metadata["KeyUsage"]
    if metadata.get("Origin") not in (None, "AWS_KMS"):
        key["origin"] = metadata["Origin"]
    if spec:
        key["key_spec"] = spec
    elif pem is not None and not metadata.get("KeyUsage"):
        key["key_usage"] = "SIGN_VERIFY"  # local-kms's default for asymmetric keys
    if backing:
        if not isinstance(backing, list):
            raise SeedError(f"local-kms seed file: key {key['key_id']}: BackingKeys must be a list of hex keys")
        key["materials"] = [f"hex:{k}" if isinstance(k, str) else k for k in backing]
    if pem is not None:
        key["private_key_pem"] = pem
    if item.get("NextKeyRotation") is not None:
        key["rotation"] = {"enabled": True, "next_rotation": item["NextKeyRotation"]}
    return key


def _alias(item: Any) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise SeedError("local-kms seed file: each alias must be a mapping (AliasName, TargetKeyId)")
    name = item.get("AliasName")
    if isinstance(name, str) and not name.startswith("alias/"):
        name = "alias/" + name  # local-kms accepts the name without its prefix
    return {"name": name, "key_id": item.get("TargetKeyId")}
