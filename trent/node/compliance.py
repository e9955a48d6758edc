"""Rotation-age compliance, as data: what AWS leaves to AWS Config rules (keys not rotated for N days, rotation off,
keys that cannot rotate, imported material about to expire, multi-Region replicas behind their primary's rotation)
computed from the regions' key records and the cluster's clock. No I/O: the admin API, `trent compliance`, the
notifier and metrics all read ``evaluate``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from trent.node.model.imported import EXTERNAL, expiry_due
from trent.node.model.key import ENCRYPT_DECRYPT, ORIGIN_AWS_KMS, SYMMETRIC_DEFAULT, KeyRecord
from trent.node.model.managed import KEY_MANAGER_AWS
from trent.node.model.states import PENDING_DELETION_STATES

DAY = 86400.0
AGE, ROTATION_OFF, CANNOT_ROTATE, EXPIRING, REPLICA_LAG = (
    "age", "rotation-off", "cannot-rotate", "expiring", "replica-lag")
KINDS = (AGE, ROTATION_OFF, CANNOT_ROTATE, EXPIRING, REPLICA_LAG)


@dataclass(frozen=True)
class ComplianceSettings:
    max_age_days: float = 365.0  # current material older than this is a finding (AWS Config's rule: e.g. 90)
    expiry_days: float = 30.0  # imported material expiring within this many days is a finding


@dataclass(frozen=True)
class Finding:
    region: str
    key_id: str
    arn: str
    kind: str
    detail: str
    material_id: str = ""  # the current material the finding is about (hex), when it is about one
    age_days: float | None = None
    expires: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


def evaluate(regions: Mapping[str, Iterable[KeyRecord]], now: float,
             settings: ComplianceSettings = ComplianceSettings()) -> list[Finding]:
    """Every finding of every region, in region then key order. Keys pending deletion are left out (they are on
    their way out: AWS reports their rotation as off, and nothing should be done to them)."""
    by_region = {name: sorted((k for k in keys if k.state not in PENDING_DELETION_STATES), key=lambda k: k.key_id)
                 for name, keys in regions.items()}
    findings: list[Finding] = []
    for name, keys in by_region.items():
        for key in keys:
            findings.extend(_key_findings(name, key, now, settings))
    findings.extend(_replica_lag(by_region))
    order = {name: n for n, name in enumerate(by_region)}
    findings.sort(key=lambda f: (order[f.region], f.key_id, KINDS.index(f.kind)))
    return findings


def counts(findings: Iterable[Finding]) -> dict[tuple[str, str], int]:
    """(region, kind) → how many: the shape a gauge per region and kind wants."""
    return dict(Counter((f.region, f.kind) for f in findings))


def _key_findings(region: str, key: KeyRecord, now: float, settings: ComplianceSettings) -> list[Finding]:
    out: list[Finding] = []
    version = key.material(key.current_material_id)
    if version is None or key.key_manager == KEY_MANAGER_AWS:
        # No material (yet): an imported key waiting for its material has nothing to age. AWS managed keys rotate
        # every year on AWS's schedule, which their owner cannot change: nothing to report about them.
        return out
    mid = key.current_material_id.hex()

    def finding(kind: str, detail: str, **extra: Any) -> Finding:
        return Finding(region, key.key_id, key.arn, kind, detail, mid, **extra)

    age = (now - version.created) / DAY
    if age > settings.max_age_days:
        out.append(finding(AGE, f"current key material is {age:.0f} days old (threshold "
                                f"{settings.max_age_days:g} days)", age_days=round(age, 3)))
    if key.key_spec != SYMMETRIC_DEFAULT or key.key_usage != ENCRYPT_DECRYPT:
        out.append(finding(CANNOT_ROTATE, f"{key.key_spec} keys have no automatic rotation"))
    elif key.origin != ORIGIN_AWS_KMS:
        out.append(finding(CANNOT_ROTATE, f"keys with origin {key.origin} have no automatic rotation"))
    elif not key.rotation.enabled:
        out.append(finding(ROTATION_OFF, "automatic rotation is disabled"))
    expires = material_expiry(key)
    if expires is not None and expires - now <= settings.expiry_days * DAY:
        left = (expires - now) / DAY
        detail = (f"imported key material expired {-left:.0f} days ago" if left < 0 else
                  f"imported key material expires in {left:.1f} days")
        out.append(finding(EXPIRING, detail, expires=expires))
    return out


def _replica_lag(by_region: Mapping[str, list[KeyRecord]]) -> list[Finding]:
    """A replica behind its primary: it lacks material the primary has, or its current material is another."""
    keys = {(name, k.key_id): k for name, ks in by_region.items() for k in ks if k.mrk is not None}
    out: list[Finding] = []
    for (name, key_id), replica in keys.items():
        assert replica.mrk is not None
        primary_region = replica.mrk.primary_region
        primary = keys.get((primary_region, key_id))
        if primary_region == name or primary is None:
            continue
        have = {m.material_id for m in replica.materials}
        missing = [m for m in primary.materials if m.material_id not in have]
        if missing or replica.current_material_id != primary.current_material_id:
            behind = f"{len(missing)} material version(s)" if missing else "its current material"
            out.append(Finding(name, key_id, replica.arn, REPLICA_LAG,
                               f"replica lags the rotation of its primary in {primary_region} ({behind})",
                               replica.current_material_id.hex()))
    return out


def material_expiry(key: KeyRecord) -> float | None:
    """When the key's imported material next expires (epoch seconds; the earliest ValidTo of the material it holds),
    or None: generated material never expires, nor imported material with KEY_MATERIAL_DOES_NOT_EXPIRE."""
    if key.origin != EXTERNAL:
        return None
    return expiry_due(key)
