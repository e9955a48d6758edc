"""Multi-Region keys as data: the shared state a primary owns and the commands that carry it between regions.

The primary is the only author of shared state (material, rotation settings, topology). Every change it makes
bumps ``version``; a primary hand-off bumps ``epoch`` and fences the old primary. A region applies a snapshot only
if its (epoch, version) is newer than what it holds, so re-delivery and reordering are harmless.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trent.node.crypto.handles import Material


@dataclass(frozen=True)
class MultiRegionState:
    primary_region: str
    replica_regions: tuple[str, ...] = ()
    epoch: int = 0
    version: int = 0
    # Two-phase rotation: a new material version is distributed first and made current only when every replica
    # holds it.
    pending_material_id: bytes | None = None
    pending_since: float | None = None
    pending_type: str | None = None
    holders: tuple[str, ...] = ()

    @property
    def stamp(self) -> tuple[int, int]:
        return (self.epoch, self.version)

    def is_primary(self, region: str) -> bool:
        return self.primary_region == region

    def related_regions(self) -> tuple[str, ...]:
        return (self.primary_region, *self.replica_regions)


@dataclass(frozen=True)
class ReplicaInit:
    """The per-region properties a ReplicateKey call gives the new replica."""

    description: str
    policy: str
    tags: tuple[tuple[str, str], ...]
    created: float


@dataclass(frozen=True)
class SharedMaterial:
    material: Material
    created: float
    rotation_type: str | None


@dataclass(frozen=True)
class SharedImport:
    """A material of a key with EXTERNAL origin as its primary knows it: its id and place in the key's history,
    never its bytes (AWS never copies imported material between Regions; each Region imports it itself)."""

    material_id: bytes
    created: float
    pending: bool  # imported as new material on the primary, not yet rotated in
    rotated_at: float | None


@dataclass(frozen=True)
class KeySnapshot:
    """Everything related multi-Region keys share, as the primary sees it (command SYNC)."""

    key_id: str
    origin_region: str
    key_spec: str
    key_usage: str
    origin: str
    materials: tuple[SharedMaterial, ...]
    current_material_id: bytes
    rotation_enabled: bool
    rotation_period_days: int
    next_rotation: float | None
    state: MultiRegionState
    replica_init: dict[str, ReplicaInit] = field(default_factory=dict)
    imported: tuple[SharedImport, ...] = ()  # EXTERNAL origin: the materials (by id) instead of ``materials``


@dataclass(frozen=True)
class HoldsMaterial:
    """A replica reports that it stores a pending material version (command HOLDS)."""

    key_id: str
    region: str
    material_id: bytes
    epoch: int


@dataclass(frozen=True)
class ReplicaGone:
    """A replica was deleted at the end of its waiting period (command REPLICA_GONE)."""

    key_id: str
    region: str


Command = KeySnapshot | HoldsMaterial | ReplicaGone
