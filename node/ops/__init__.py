"""Operation families, one module each, registered explicitly."""

from __future__ import annotations

from collections.abc import Iterable

from node.ops import (
    aliases,
    asymmetric,
    custom_key_stores,
    data_key_pairs,
    encryption,
    grants,
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
from node.ops.registry import Registry


def build_registry(model_operations: Iterable[str]) -> Registry:
    registry = Registry()
    for family in (keys, aliases, tags, encryption, asymmetric, signing, mac, key_agreement, data_key_pairs, rotation,
                   policies, grants, usage, custom_key_stores, multi_region):
        family.register(registry)
    # Whatever the model has that no family implements yet answers with a proper KMS error.
    later.register(registry, model_operations)
    return registry
