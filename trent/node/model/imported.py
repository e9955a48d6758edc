"""Imported key material as data: each material a key with EXTERNAL origin has ever had, whether its bytes are
held now (ImportState), when they expire, and the pure rules of importing, deleting, expiring and rotating it.

The secret bytes themselves live in the key's ``materials`` (wrapped under the root key at rest, like generated
material) only while imported; this catalogue keeps what outlives them (the id, the dates, the description), so a
re-import can be checked against it and old ciphertexts open again once the same bytes are back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from trent.node.crypto.handles import Material
from trent.node.crypto.wrapping import importable
from trent.node.model.errors import KmsError, invalid_state, unsupported, validation
from trent.node.model.key import SYMMETRIC_DEFAULT, KeyRecord, MaterialVersion
from trent.node.model.mrk import SharedImport
from trent.node.model.states import PENDING_DELETION_STATES, KeyState

EXTERNAL = "EXTERNAL"
EXPIRES, DOES_NOT_EXPIRE = "KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"
NEW, EXISTING = "NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"
CURRENT, NON_CURRENT = "CURRENT", "NON_CURRENT"
PENDING_ROTATION = "PENDING_ROTATION"
PENDING_MULTI_REGION = "PENDING_MULTI_REGION_IMPORT_AND_ROTATION"
# MultiRegionState.pending_type while a primary waits for its replicas to import new material.
IMPORT_PENDING = "IMPORT"
MAX_VALID_DAYS = 365
DAY = 86400.0
_EXTRA = "imports"  # the KeyRecord.extra entry holding the catalogue


@dataclass(frozen=True)
class ImportedMaterial:
    material_id: bytes
    imported: bool  # ImportState: IMPORTED (the bytes are held) or PENDING_IMPORT (deleted or expired)
    created: float  # first imported
    expiration_model: str = DOES_NOT_EXPIRE
    valid_to: float | None = None
    description: str = ""
    # Imported as new material into a key that already had some: waits for RotateKeyOnDemand.
    pending: bool = False
    rotated_at: float | None = None  # when RotateKeyOnDemand made it current

    @property
    def import_state(self) -> str:
        return "IMPORTED" if self.imported else "PENDING_IMPORT"


def check_importable(key_spec: str) -> None:
    """CreateKey with Origin EXTERNAL: refused (with the reason) for what cannot hold imported material here."""
    if not importable(key_spec):
        raise unsupported(f"KeySpec {key_spec} cannot have imported key material in this cluster: the cryptography "
                          "library it uses cannot load such private keys.")


def incorrect_material(message: str) -> KmsError:
    return KmsError("IncorrectKeyMaterialException", message)


def catalogue(key: KeyRecord) -> tuple[ImportedMaterial, ...]:
    raw = key.extra.get(_EXTRA) or ()
    return tuple(ImportedMaterial(**doc) for doc in raw)


def _with_catalogue(key: KeyRecord, entries: tuple[ImportedMaterial, ...], **changes: Any) -> KeyRecord:
    # Plain dicts: the record codec (msgpack) persists ``extra`` as it is.
    extra = {**key.extra, _EXTRA: [asdict(e) for e in entries]}
    return key.with_changes(extra=extra, **changes)


def entry(key: KeyRecord, material_id: bytes) -> ImportedMaterial | None:
    return next((e for e in catalogue(key) if e.material_id == material_id), None)


def settled_state(key: KeyRecord) -> KeyState:
    """The state a key with EXTERNAL origin is in given which of its materials are held: PendingImport while any
    (other than one waiting to be rotated in) is missing; Enabled once all are back (from PendingImport)."""
    if key.state in PENDING_DELETION_STATES or key.state in (KeyState.CREATING, KeyState.UPDATING):
        return key.state
    entries = catalogue(key)
    complete = bool(entries) and all(e.imported for e in entries if not e.pending)
    if not complete:
        return KeyState.PENDING_IMPORT
    return KeyState.ENABLED if key.state is KeyState.PENDING_IMPORT else key.state


def check_expiration(model: str | None, valid_to: float | None, now: float) -> tuple[str, float | None]:
    """ExpirationModel (default KEY_MATERIAL_EXPIRES) and ValidTo as AWS requires them together."""
    model = model or EXPIRES
    if model == EXPIRES:
        if valid_to is None:
            raise validation("A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES")
        if valid_to <= now:
            raise validation("The validTo date must be in the future.")
        if valid_to > now + MAX_VALID_DAYS * DAY:
            raise validation(f"The validTo date must be no more than {MAX_VALID_DAYS} days in the future.")
        return model, valid_to
    if valid_to is not None:
        raise validation("A validTo date must not be set if the ExpirationModel is KEY_MATERIAL_DOES_NOT_EXPIRE")
    return model, None


@dataclass(frozen=True)
class ImportRequest:
    material: Material  # the canonical bytes and their id
    import_type: str | None
    material_id: str | None  # the KeyMaterialId the caller named (hex), if any
    expiration_model: str
    valid_to: float | None
    description: str | None
    now: float
    replica: bool  # a multi-Region replica: new material comes only through its primary


def apply_import(key: KeyRecord, req: ImportRequest) -> KeyRecord:
    """The key after importing ``req.material`` (AWS's ImportType rules), or the error AWS gives."""
    entries = catalogue(key)
    mid = req.material.material_id
    import_type = req.import_type or (NEW if not entries else EXISTING)
    if import_type == NEW:
        if req.material_id is not None:
            raise validation("You cannot specify a KeyMaterialId with ImportType NEW_KEY_MATERIAL.")
        return _import_new(key, entries, req)
    found = next((e for e in entries if e.material_id == mid), None)
    if req.material_id is not None and req.material_id != mid.hex():
        raise incorrect_material(f"The key material does not match key material ID {req.material_id}.")
    if found is None:
        raise incorrect_material("The key material is not key material previously imported into this KMS key.")
    updated = replace(found, imported=True, expiration_model=req.expiration_model, valid_to=req.valid_to,
                      description=found.description if req.description is None else req.description)
    materials = key.materials
    if key.material(mid) is None:
        materials = (*materials, MaterialVersion(req.material, found.created,
                                                 "ON_DEMAND" if found.rotated_at is not None else None))
    changed = _with_catalogue(key, tuple(updated if e is found else e for e in entries), materials=materials)
    return changed.with_changes(state=settled_state(changed))


def _import_new(key: KeyRecord, entries: tuple[ImportedMaterial, ...], req: ImportRequest) -> KeyRecord:
    mid = req.material.material_id
    fresh = ImportedMaterial(mid, True, req.now, req.expiration_model, req.valid_to, req.description or "")
    version = MaterialVersion(req.material, req.now)
    if not entries:
        first = _with_catalogue(key, (fresh,), materials=(version,), current_material_id=mid)
        return first.with_changes(state=settled_state(first))
    if req.replica:
        raise unsupported(f"{key.arn} is a replica key; import new key material into its primary key, then the same "
                          "key material into each replica with ImportType EXISTING_KEY_MATERIAL.")
    if any(e.material_id == mid for e in entries):
        raise incorrect_material("This key material is already associated with the KMS key; import it again with "
                                 "ImportType EXISTING_KEY_MATERIAL.")
    if key.key_spec != SYMMETRIC_DEFAULT:
        raise incorrect_material(f"The key material of a {key.key_spec} key cannot change after its first import.")
    if any(e.pending for e in entries):
        raise invalid_state(f"{key.arn} already has key material pending rotation; rotate it in with "
                            "RotateKeyOnDemand or delete it first.")
    pending = replace(fresh, pending=True)
    return _with_catalogue(key, (*entries, pending), materials=(*key.materials, version))


def delete_material(key: KeyRecord, material_id: bytes) -> KeyRecord:
    """The key once ``material_id``'s bytes are gone (deleted or expired). Material waiting to be rotated in is
    forgotten altogether (it was never part of the key); any other stays listed, PENDING_IMPORT."""
    entries = catalogue(key)
    found = next(e for e in entries if e.material_id == material_id)
    materials = tuple(v for v in key.materials if v.material_id != material_id)
    if found.pending:
        return _with_catalogue(key, tuple(e for e in entries if e is not found), materials=materials)
    gone = replace(found, imported=False, expiration_model=DOES_NOT_EXPIRE, valid_to=None)
    changed = _with_catalogue(key, tuple(gone if e is found else e for e in entries), materials=materials)
    return changed.with_changes(state=settled_state(changed) if not key.pending_deletion else key.state)


def expiry_due(key: KeyRecord) -> float | None:
    times = [e.valid_to for e in catalogue(key) if e.imported and e.valid_to is not None]
    return min(times) if times else None


def expire(key: KeyRecord, now: float) -> tuple[KeyRecord, list[bytes]]:
    """The key after deleting every material whose ValidTo has passed, and the ids deleted."""
    expired = [e.material_id for e in catalogue(key) if e.imported and e.valid_to is not None and e.valid_to <= now]
    for mid in expired:
        key = delete_material(key, mid)
    return key, expired


def material_state(key: KeyRecord, e: ImportedMaterial) -> str:
    if e.material_id == key.current_material_id:
        return CURRENT
    if e.pending:
        mrk = key.mrk
        if mrk is not None and mrk.pending_material_id == e.material_id and set(mrk.replica_regions) - set(
                mrk.holders):
            return PENDING_MULTI_REGION
        return PENDING_ROTATION
    return NON_CURRENT


def rotate_in(key: KeyRecord, now: float) -> KeyRecord:
    """RotateKeyOnDemand of a key with EXTERNAL origin: the material waiting in PENDING_ROTATION becomes current."""
    entries = catalogue(key)
    waiting = next((e for e in entries if e.pending), None)
    if waiting is None:
        raise invalid_state(f"{key.arn} has no imported key material in PENDING_ROTATION state; import new key "
                            "material with ImportType NEW_KEY_MATERIAL first.")
    if material_state(key, waiting) == PENDING_MULTI_REGION:
        raise invalid_state(f"{key.arn} has new key material that is not yet imported into every replica key.")
    if not waiting.imported:
        raise invalid_state(f"{key.arn} is pending import.")
    rotated = replace(waiting, pending=False, rotated_at=now)
    materials = tuple(replace(v, rotation_type="ON_DEMAND", created=now) if v.material_id == waiting.material_id
                      else v for v in key.materials)
    return _with_catalogue(key, tuple(rotated if e is waiting else e for e in entries), materials=materials,
                           current_material_id=waiting.material_id)


def metadata(key: KeyRecord) -> dict[str, Any]:
    """KeyMetadata's ExpirationModel and ValidTo: those of the current material, once imported."""
    if key.origin != EXTERNAL:
        return {}
    current = entry(key, key.current_material_id) if key.current_material_id else None
    if current is None or not current.imported:
        return {}
    out: dict[str, Any] = {"ExpirationModel": current.expiration_model}
    if current.valid_to is not None:
        out["ValidTo"] = current.valid_to
    return out


def rotation_entry(key: KeyRecord, e: ImportedMaterial) -> dict[str, Any]:
    """A ListKeyRotations entry of imported material (the fields AWS gives only for EXTERNAL keys)."""
    out: dict[str, Any] = {"KeyId": key.key_id, "KeyMaterialId": e.material_id.hex(),
                           "KeyMaterialState": material_state(key, e), "ImportState": e.import_state}
    if e.description:
        out["KeyMaterialDescription"] = e.description
    if e.imported:
        out["ExpirationModel"] = e.expiration_model
        if e.valid_to is not None:
            out["ValidTo"] = e.valid_to
    if e.rotated_at is not None:
        out["RotationDate"] = e.rotated_at
        out["RotationType"] = "ON_DEMAND"
    return out


# -- multi-Region keys: what travels is the catalogue's shared part, never the bytes -----------------------------


def shared_imports(key: KeyRecord) -> tuple[SharedImport, ...]:
    return tuple(SharedImport(e.material_id, e.created, e.pending, e.rotated_at) for e in catalogue(key))


def merged_from_primary(local: KeyRecord | None, shared: tuple[SharedImport, ...]) -> dict[str, Any]:
    """The materials and catalogue of a related key after its primary's snapshot: every material the primary
    lists (this region's own import state, expiry and description kept; new ones PENDING_IMPORT here), and
    material the primary dropped while it waited for rotation dropped here too, bytes and all."""
    mine = {e.material_id: e for e in catalogue(local)} if local is not None else {}
    entries = []
    for s in shared:
        own = mine.get(s.material_id)
        base = own if own is not None else ImportedMaterial(s.material_id, False, s.created)
        entries.append(replace(base, created=s.created, pending=s.pending, rotated_at=s.rotated_at))
    kept = {e.material_id for e in entries}
    materials = tuple(v for v in (local.materials if local is not None else ()) if v.material_id in kept)
    extra = {**(local.extra if local is not None else {}), _EXTRA: [asdict(e) for e in entries]}
    return {"materials": materials, "extra": extra}


def holds_pending(key: KeyRecord) -> bool:
    """A replica holds the material its primary waits to rotate in (it imported the same bytes)."""
    mrk = key.mrk
    return mrk is not None and mrk.pending_material_id is not None and key.material(mrk.pending_material_id) is not None
