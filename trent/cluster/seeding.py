"""Applying a seed file (cluster/seed_file.py) to the regions at every start, and again after a reset.

Idempotent: a key the cluster already holds is left as it is (what a run changed stays), only checked against the
file; a key or alias it lacks is created. A file that contradicts what is there (the same KeyId with another spec,
usage or material; an alias naming another key) is refused as a whole with every contradiction named, before
anything is written."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import replace as dc_replace

from trent.cluster.seed_file import PerRegion, Seed, SeedError, SeedKey
from trent.node.crypto.asymmetric import new_key_material
from trent.node.crypto.handles import Material, material_from_secret
from trent.node.model.key import ORIGIN_AWS_KMS, AliasRecord, KeyRecord, MaterialVersion, RotationSettings
from trent.node.model.mrk import Command, MultiRegionState
from trent.node.model.mrk_rules import bump, snapshot_of
from trent.node.model.rotation import AUTOMATIC, DAY
from trent.node.model.states import KeyState
from trent.node.ops.keys import default_policy
from trent.node.service import Region


@dataclass
class _Plan:
    keys: dict[str, list[KeyRecord]] = field(default_factory=dict)
    aliases: dict[str, list[AliasRecord]] = field(default_factory=dict)
    commands: dict[str, list[Command]] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    created: int = 0
    unchanged: int = 0

    def put(self, key: KeyRecord) -> None:
        self.keys.setdefault(key.region, []).append(key)

    def holds(self, region: str, key_id: str, regions: Mapping[str, Region]) -> bool:
        return key_id in regions[region].keys or any(k.key_id == key_id for k in self.keys.get(region, ()))


def apply_seed(seed: Seed, regions: Mapping[str, Region]) -> dict[str, int]:
    """Create what the seed declares and the regions lack; SeedError (nothing written) on any contradiction."""
    plan = _Plan()
    for key in seed.keys:
        _plan_key(plan, key, regions)
    _plan_aliases(plan, seed, regions)
    if plan.conflicts:
        raise SeedError("the seed file contradicts the keys this cluster holds; nothing was changed:\n  "
                        + "\n  ".join(plan.conflicts))
    for name, region in regions.items():
        keys, aliases, commands = plan.keys.get(name, []), plan.aliases.get(name, []), plan.commands.get(name, [])
        if keys or aliases or commands:
            region.commit(keys=keys, aliases=aliases, commands=commands)
    return {"created": plan.created, "unchanged": plan.unchanged,
            "aliases": sum(len(a) for a in plan.aliases.values())}


def _versions(key: SeedKey, now: float) -> tuple[MaterialVersion, ...]:
    if not key.materials:
        return (MaterialVersion(new_key_material(key.key_spec, key.key_id), now),)
    return tuple(MaterialVersion(_material(secret.reveal(), key.key_id), now, None if n == 0 else AUTOMATIC)
                 for n, secret in enumerate(key.materials))


def _material(raw: bytes, key_id: str) -> Material:
    return material_from_secret(raw, key_id)


def _record(key: SeedKey, per: PerRegion, region: Region, versions: tuple[MaterialVersion, ...],
            mrk: MultiRegionState | None) -> KeyRecord:
    now = region.now()
    rotation = RotationSettings()
    if key.rotation_enabled:
        rotation = RotationSettings(True, key.rotation_period_days,
                                    key.next_rotation or now + key.rotation_period_days * DAY)
    return KeyRecord(
        key_id=key.key_id, region=per.region, account=region.account, created=now,
        state=KeyState.ENABLED if per.enabled else KeyState.DISABLED, description=per.description,
        key_usage=key.key_usage, key_spec=key.key_spec, origin=ORIGIN_AWS_KMS,
        policy=per.policy if per.policy is not None else default_policy(region.account), tags=per.tags,
        materials=versions, current_material_id=versions[-1].material_id, rotation=rotation,
        multi_region=mrk is not None, mrk=mrk)


def _conflicts(key: SeedKey, existing: KeyRecord) -> list[str]:
    where = f"key {key.key_id} in {existing.region}"
    out = []
    if (existing.key_spec, existing.key_usage) != (key.key_spec, key.key_usage):
        out.append(f"{where} is {existing.key_spec}/{existing.key_usage}, the seed file says "
                   f"{key.key_spec}/{key.key_usage}")
    held = {m.material_id for m in existing.materials}
    if any(_material(m.reveal(), key.key_id).material_id not in held for m in key.materials):
        out.append(f"{where} holds different key material than the seed file gives")
    return out


def _plan_key(plan: _Plan, key: SeedKey, regions: Mapping[str, Region]) -> None:
    home = regions[key.home.region]
    places = (key.home, *key.replicas)
    existing = {p.region: regions[p.region].keys.get(key.key_id) for p in places}
    for record in existing.values():
        if record is not None:
            plan.conflicts += _conflicts(key, record)
    primary = existing[key.home.region]
    if primary is None:
        if any(existing.values()):
            held = ", ".join(r for r, k in existing.items() if k is not None)
            plan.conflicts.append(f"key {key.key_id} exists in {held} but not in {key.home.region}, the region the "
                                  "seed file creates it in (reset the cluster, or change the file)")
            return
        versions = _versions(key, home.now())
        mrk = (MultiRegionState(key.home.region, tuple(r.region for r in key.replicas), epoch=1, version=1)
               if key.multi_region else None)
        for per in places:
            plan.put(_record(key, per, regions[per.region], versions, mrk))
        plan.created += 1
    else:
        plan.unchanged += 1
        missing = [p for p in key.replicas if existing[p.region] is None]
        if missing and primary.mrk is not None and primary.mrk.is_primary(key.home.region):
            # A replica the file declares (since this cluster's first start, or deleted meanwhile): added as
            # ReplicateKey adds one, the other replicas told through the outbox.
            updated = bump(primary, replica_regions=(*primary.mrk.replica_regions,
                                                     *(p.region for p in missing)))
            assert updated.mrk is not None
            plan.put(updated)
            plan.commands.setdefault(key.home.region, []).append(snapshot_of(updated))
            for per in missing:
                replica = _record(key, per, regions[per.region], updated.materials, updated.mrk)
                plan.put(dc_replace(replica, current_material_id=updated.current_material_id,
                                    rotation=updated.rotation))
    for per in places:
        for alias in per.aliases:
            _plan_alias(plan, regions, per.region, alias, key.key_id)


def _plan_aliases(plan: _Plan, seed: Seed, regions: Mapping[str, Region]) -> None:
    homes = {k.key_id: k.home.region for k in seed.keys}
    first = next(iter(regions))
    for alias in seed.aliases:
        region = alias.region or homes.get(alias.key_id, first)
        if not plan.holds(region, alias.key_id, regions):
            plan.conflicts.append(f"alias {alias.name} names key {alias.key_id}, which {region} does not hold")
            continue
        _plan_alias(plan, regions, region, alias.name, alias.key_id)


def _plan_alias(plan: _Plan, regions: Mapping[str, Region], region: str, name: str, key_id: str) -> None:
    planned = {a.name: a for a in plan.aliases.get(region, [])}
    current = regions[region].aliases.get(name) or planned.get(name)
    if current is not None:
        if current.key_id != key_id:
            plan.conflicts.append(f"alias {name} in {region} names key {current.key_id}, the seed file says "
                                  f"{key_id}")
        return
    now = regions[region].now()
    plan.aliases.setdefault(region, []).append(AliasRecord(name, key_id, now, now))
