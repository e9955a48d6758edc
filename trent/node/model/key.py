"""The key record of one region: metadata plus versioned material (never changed in place, replaced whole)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from typing import Any

from trent.node.crypto.handles import Material
from trent.node.model.ids import key_arn
from trent.node.model.mrk import MultiRegionState
from trent.node.model.states import PENDING_DELETION_STATES, KeyState

SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"
ORIGIN_AWS_KMS = "AWS_KMS"


@dataclass(frozen=True)
class MaterialVersion:
    material: Material
    created: float
    # None for the key's original material; AUTOMATIC or ON_DEMAND for versions added by rotation.
    rotation_type: str | None = None

    @property
    def material_id(self) -> bytes:
        return self.material.material_id


@dataclass(frozen=True)
class RotationSettings:
    enabled: bool = False
    period_days: int = 365
    # Next automatic rotation (epoch seconds); meaningful only while enabled.
    next_rotation: float | None = None
    on_demand_count: int = 0


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    region: str
    account: str
    created: float
    state: KeyState
    description: str = ""
    key_usage: str = ENCRYPT_DECRYPT
    key_spec: str = SYMMETRIC_DEFAULT
    origin: str = ORIGIN_AWS_KMS
    policy: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    materials: tuple[MaterialVersion, ...] = ()
    current_material_id: bytes = b""
    deletion_date: float | None = None
    pending_window_days: int | None = None
    rotation: RotationSettings = field(default_factory=RotationSettings)
    multi_region: bool = False
    # Shared multi-Region state as this region last applied it (None for single-Region keys).
    mrk: MultiRegionState | None = None
    # The state to return to when a transient state (Creating, Updating) ends, and when Creating ends.
    resume_state: KeyState | None = None
    ready_at: float | None = None
    # Free-form extras later features persist with the key (kept through encode/decode).
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @functools.cached_property
    def arn(self) -> str:  # asked for several times per request: built once per record
        return key_arn(self.region, self.account, self.key_id)

    @property
    def enabled(self) -> bool:
        return self.state is KeyState.ENABLED

    @property
    def key_manager(self) -> str:
        """AWS for an AWS managed key (node/model/managed.py), else CUSTOMER."""
        return str(self.extra.get("key_manager", "CUSTOMER"))

    @property
    def pending_deletion(self) -> bool:
        return self.state in PENDING_DELETION_STATES

    def material(self, material_id: bytes) -> MaterialVersion | None:
        for version in self.materials:
            if version.material_id == material_id:
                return version
        return None

    def current_material(self) -> MaterialVersion:
        version = self.material(self.current_material_id)
        if version is None:  # an invariant of every stored record
            raise RuntimeError(f"key {self.key_id} has no current material")
        return version

    def with_changes(self, **changes: Any) -> KeyRecord:
        return replace(self, **changes)


@dataclass(frozen=True)
class AliasRecord:
    name: str
    key_id: str
    created: float
    updated: float
