"""Imported key material (BYOK): GetParametersForImport, ImportKeyMaterial, DeleteImportedKeyMaterial."""

from __future__ import annotations

from typing import Any

from trent.node.crypto.asymmetric import generate_key_pair
from trent.node.crypto.handles import Material, material_id_for
from trent.node.crypto.import_token import ImportParameters, InvalidToken, open_token, seal
from trent.node.crypto.wrapping import (
    WRAPPING_ALGORITHMS,
    WRAPPING_KEY_SPECS,
    BadMaterial,
    UnwrapFailed,
    canonical_material,
    combination_error,
    unwrap,
)
from trent.node.model.errors import KmsError, invalid_ciphertext, invalid_state, not_found, unsupported, validation
from trent.node.model.imported import (
    EXTERNAL,
    IMPORT_PENDING,
    ImportRequest,
    apply_import,
    catalogue,
    check_expiration,
    delete_material,
    holds_pending,
    incorrect_material,
    shared_imports,
)
from trent.node.model.key import SYMMETRIC_DEFAULT, KeyRecord
from trent.node.model.mrk import HoldsMaterial
from trent.node.model.mrk_rules import bump, snapshot_of
from trent.node.model.operations import KeyAction, Operation
from trent.node.model.states import KeyState
from trent.node.ops.registry import Params, Registry, RequestContext, Response
from trent.node.service import Region

PARAMETERS_VALID_SECONDS = 24 * 3600.0
_STATE_WORDS = {KeyState.PENDING_DELETION: "pending deletion", KeyState.PENDING_REPLICA_DELETION:
                "pending replica deletion", KeyState.CREATING: "creating", KeyState.UPDATING: "updating"}
_SYMMETRIC_ONLY = ("ImportType", "KeyMaterialDescription", "KeyMaterialId")


def _external_key(region: Region, params: Params, *, refuse: tuple[KeyState, ...]) -> KeyRecord:
    """The key named, which must have EXTERNAL origin (else UnsupportedOperationException, before its state), and
    not be in one of the ``refuse`` states (KMSInvalidStateException)."""
    key = region.resolve(params["KeyId"], allow_alias=False)
    if key.origin != EXTERNAL:
        raise unsupported(f"{key.arn} origin is {key.origin} which is not valid for this operation.")
    if key.state in refuse:
        raise invalid_state(f"{key.arn} is {_STATE_WORDS[key.state]}.")
    return key


def _check_wrapping(algorithm: str, spec: str) -> None:
    if algorithm == "RSAES_PKCS1_V1_5":
        raise validation("The wrapping algorithm RSAES_PKCS1_V1_5 is no longer supported. Use RSAES_OAEP_SHA_256, "
                         "RSAES_OAEP_SHA_1, RSA_AES_KEY_WRAP_SHA_256 or RSA_AES_KEY_WRAP_SHA_1.")
    if algorithm == "SM2PKE" or spec == "SM2":
        raise unsupported("The SM2PKE wrapping algorithm and SM2 wrapping key spec are available only in China "
                          "Regions.")
    if algorithm not in WRAPPING_ALGORITHMS or spec not in WRAPPING_KEY_SPECS:  # the model's enums refused others
        raise validation(f"Wrapping algorithm {algorithm} with wrapping key spec {spec} is not supported.")


def get_parameters_for_import(region: Region, params: Params, ctx: RequestContext) -> Response:
    algorithm, spec = params["WrappingAlgorithm"], params["WrappingKeySpec"]
    _check_wrapping(algorithm, spec)
    key = _external_key(region, params, refuse=(KeyState.PENDING_DELETION, KeyState.PENDING_REPLICA_DELETION,
                                               KeyState.CREATING, KeyState.UPDATING))
    why = combination_error(algorithm, spec, key.key_spec)
    if why is not None:
        raise validation(why)
    source = region.wrapping_keys
    private, public = source.take(spec) if source is not None else generate_key_pair(spec)
    valid_to = region.now() + PARAMETERS_VALID_SECONDS
    token = seal(region.root_key, ImportParameters(key.key_id, region.name, algorithm, spec, valid_to, private))
    return {"KeyId": key.arn, "ImportToken": token, "PublicKey": public, "ParametersValidTo": valid_to}


def _token_for(region: Region, key: KeyRecord, token: bytes) -> ImportParameters:
    try:
        parameters = open_token(region.root_key, token)
    except InvalidToken:
        raise KmsError("InvalidImportTokenException", "The import token is invalid.") from None
    if parameters.key_id != key.key_id or parameters.region != region.name:
        raise KmsError("InvalidImportTokenException",
                       f"The import token was not issued for {key.arn}; call GetParametersForImport for this key.")
    if region.now() > parameters.valid_to:
        raise KmsError("ExpiredImportTokenException", "The import token has expired; call GetParametersForImport "
                       "for a new public key and import token.")
    return parameters


def import_key_material(region: Region, params: Params, ctx: RequestContext) -> Response:
    now = region.now()
    model, valid_to = check_expiration(params.get("ExpirationModel"), params.get("ValidTo"), now)
    key = _external_key(region, params, refuse=(KeyState.PENDING_DELETION, KeyState.PENDING_REPLICA_DELETION,
                                               KeyState.CREATING))
    if key.key_spec != SYMMETRIC_DEFAULT:
        named = [m for m in _SYMMETRIC_ONLY if params.get(m) is not None]
        if named:
            raise validation(f"{named[0]} is valid only for symmetric encryption keys, not {key.key_spec} keys.")
    parameters = _token_for(region, key, params["ImportToken"])
    try:
        raw = unwrap(parameters.private, parameters.wrapping_spec, parameters.algorithm,
                     params["EncryptedKeyMaterial"])
    except UnwrapFailed:
        raise invalid_ciphertext() from None
    try:
        secret = canonical_material(raw, key.key_spec)
    except BadMaterial as exc:
        raise incorrect_material(str(exc)) from None
    material = Material(material_id_for(secret.reveal(), key.key_id), secret)
    replica = key.mrk is not None and not key.mrk.is_primary(region.name)
    request = ImportRequest(material, params.get("ImportType"), params.get("KeyMaterialId"), model, valid_to,
                            params.get("KeyMaterialDescription"), now, replica)
    commit_imported(region, key, apply_import(key, request))
    return {"KeyId": key.arn, "KeyMaterialId": material.material_id.hex()}


def delete_imported_key_material(region: Region, params: Params, ctx: RequestContext) -> Response:
    key = _external_key(region, params, refuse=(KeyState.CREATING, KeyState.UPDATING))
    named: Any = params.get("KeyMaterialId")
    entries = catalogue(key)
    if named is not None:
        target = next((e for e in entries if e.material_id.hex() == named), None)
        if target is None:
            raise not_found(f"Key material {named} is not associated with {key.arn}.")
    else:
        target = next((e for e in entries if e.material_id == key.current_material_id), None)
    if target is None or (not target.imported and not target.pending):
        # Nothing held (never imported, or already deleted): no effect, as AWS answers for PendingImport keys.
        return {"KeyId": key.arn, "KeyMaterialId": target.material_id.hex() if target is not None else ""}
    commit_imported(region, key, delete_material(key, target.material_id))
    return {"KeyId": key.arn, "KeyMaterialId": target.material_id.hex()}


def commit_imported(region: Region, before: KeyRecord, after: KeyRecord) -> None:
    """Commit an import or deletion. A multi-Region primary tells its replicas when the materials they share
    changed (by id: the bytes stay here); a replica that now holds the material its primary waits to rotate in
    says so (the primary's PENDING_MULTI_REGION_IMPORT_AND_ROTATION ends when every replica has)."""
    mrk = after.mrk
    if mrk is None:
        region.commit(keys=[after])
        return
    if mrk.is_primary(region.name):
        if shared_imports(before) == shared_imports(after) and before.current_material_id == after.current_material_id:
            region.commit(keys=[after])
            return
        waiting = next((e.material_id for e in catalogue(after) if e.pending), None)
        same = waiting is not None and waiting == mrk.pending_material_id
        after = bump(after, pending_material_id=waiting, holders=mrk.holders if same else (),
                     pending_since=(mrk.pending_since if same else region.now()) if waiting else None,
                     pending_type=IMPORT_PENDING if waiting else None)
        region.commit(keys=[after], commands=[snapshot_of(after)])
        return
    pending = mrk.pending_material_id
    if pending is not None and holds_pending(after) and not holds_pending(before) and region.name not in mrk.holders:
        region.commit(keys=[after], commands=[HoldsMaterial(after.key_id, region.name, pending, mrk.epoch)])
    else:
        region.commit(keys=[after])


def register(registry: Registry) -> None:
    # GetParametersForImport writes nothing: the token carries everything ImportKeyMaterial needs. CloudTrail
    # records none of the three answers (AWS's examples show responseElements null).
    registry.add(Operation(name="GetParametersForImport", handler=get_parameters_for_import, read_only=True,
                           keys=(KeyAction("KeyId", "GetParametersForImport"),)))
    registry.add(Operation(name="ImportKeyMaterial", handler=import_key_material,
                           keys=(KeyAction("KeyId", "ImportKeyMaterial"),)))
    registry.add(Operation(name="DeleteImportedKeyMaterial", handler=delete_imported_key_material,
                           keys=(KeyAction("KeyId", "DeleteImportedKeyMaterial"),)))
