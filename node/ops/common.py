"""Checks and response pieces shared by several operation families."""

from __future__ import annotations

from typing import Any

from node.model.errors import KmsError, unsupported
from node.model.key import ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT, KeyRecord
from node.model.states import KeyState, OpClass, check_state
from node.ops.registry import Params
from node.service import Region

SYMMETRIC_ALGORITHMS = ["SYMMETRIC_DEFAULT"]


def key_for(region: Region, params: Params, op: OpClass, *, allow_alias: bool, field: str = "KeyId") -> KeyRecord:
    """Resolve the key named by ``field`` and check the state table for ``op``."""
    key = region.resolve(params[field], allow_alias=allow_alias)
    check_state(op, key.state, key.arn)
    return key


def require_symmetric_encryption(key: KeyRecord, operation: str) -> None:
    if key.key_usage != ENCRYPT_DECRYPT or key.key_spec != SYMMETRIC_DEFAULT:
        raise KmsError(
            "InvalidKeyUsageException",
            f"{key.arn} key usage is {key.key_usage} which is not valid for {operation}.",
        )


def require_symmetric_algorithm(key: KeyRecord, algorithm: str | None) -> str:
    algorithm = algorithm or SYMMETRIC_DEFAULT
    if algorithm != SYMMETRIC_DEFAULT:
        raise KmsError(
            "InvalidKeyUsageException", f"Algorithm {algorithm} is incompatible with key spec {key.key_spec}."
        )
    return algorithm


def require_rotatable(key: KeyRecord) -> None:
    """Automatic and on-demand rotation exist only for symmetric encryption keys with AWS_KMS material."""
    if key.key_spec != SYMMETRIC_DEFAULT or key.key_usage != ENCRYPT_DECRYPT:
        raise unsupported(f"{key.arn} key spec is {key.key_spec} which is not valid for this operation.")
    if key.origin != "AWS_KMS":
        raise unsupported(f"{key.arn} origin is {key.origin} which is not valid for this operation.")


def finish_dry_run(params: Params) -> None:
    """Everything checked: a DryRun request stops here, as AWS's does."""
    if params.get("DryRun"):
        raise KmsError(
            "DryRunOperationException", "The request would have succeeded, but the DryRun option is set.", 412
        )


def reject_recipient(params: Params) -> None:
    if params.get("Recipient") is not None:
        raise unsupported("Recipient (Nitro Enclaves attestation) is not supported by this cluster.")


def key_metadata(region: Region, key: KeyRecord) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "AWSAccountId": key.account,
        "KeyId": key.key_id,
        "Arn": key.arn,
        "CreationDate": key.created,
        "Enabled": key.state is KeyState.ENABLED,
        "Description": key.description,
        "KeyUsage": key.key_usage,
        "KeyState": key.state.value,
        "Origin": key.origin,
        "KeyManager": "CUSTOMER",
        "CustomerMasterKeySpec": key.key_spec,
        "KeySpec": key.key_spec,
        "MultiRegion": key.multi_region,
    }
    if key.key_usage == ENCRYPT_DECRYPT and key.key_spec == SYMMETRIC_DEFAULT:
        meta["EncryptionAlgorithms"] = list(SYMMETRIC_ALGORITHMS)
        if key.current_material_id:
            meta["CurrentKeyMaterialId"] = key.current_material_id.hex()
    if key.mrk is not None:
        meta["MultiRegionConfiguration"] = multi_region_configuration(region, key)
    if key.state is KeyState.PENDING_DELETION and key.deletion_date is not None:
        meta["DeletionDate"] = key.deletion_date
    if key.state is KeyState.PENDING_REPLICA_DELETION and key.pending_window_days is not None:
        meta["PendingDeletionWindowInDays"] = key.pending_window_days
    return meta


def multi_region_configuration(region: Region, key: KeyRecord) -> dict[str, Any]:
    """Always present for multi-Region keys (clients such as Terraform's provider rely on it)."""
    assert key.mrk is not None
    st = key.mrk
    return {
        "MultiRegionKeyType": "PRIMARY" if st.is_primary(key.region) else "REPLICA",
        "PrimaryKey": {"Arn": region.key_arn_in(st.primary_region, key.key_id), "Region": st.primary_region},
        "ReplicaKeys": [{"Arn": region.key_arn_in(r, key.key_id), "Region": r} for r in st.replica_regions],
    }
