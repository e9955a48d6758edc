"""Operation families, one module each, registered explicitly."""

from __future__ import annotations

from collections.abc import Iterable

from trent.node.ops import (
    aliases,
    asymmetric,
    custom_key_stores,
    data_key_pairs,
    encryption,
    grants,
    imports,
    key_agreement,
    keys,
    later,
    mac,
    multi_region,
    policies,
    rotation,
    signing,
    tags,
    usage,
)
from trent.node.ops.registry import Registry

FAMILIES = (keys, aliases, tags, encryption, asymmetric, signing, mac, key_agreement, data_key_pairs, rotation,
            policies, grants, usage, custom_key_stores, multi_region, imports, later)


def declare(registry: Registry) -> Registry:
    """Every operation the families declare, each once, with its facts."""
    for family in FAMILIES:
        family.register(registry)
    return registry


def build_registry(model_operations: Iterable[str]) -> Registry:
    registry = declare(Registry())
    # Whatever the model has that no family declares answers with a proper KMS error.
    later.register_rest(registry, model_operations)
    return registry
