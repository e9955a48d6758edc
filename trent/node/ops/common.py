"""Checks and response pieces shared by several operation families."""

from __future__ import annotations

from typing import Any

from trent.node.model.errors import KmsError, unsupported, validation
from trent.node.model.imported import metadata as imported_metadata
from trent.node.model.key import ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT, KeyRecord
from trent.node.model.key_specs import algorithm_lists
from trent.node.model.states import KeyState, OpClass, check_state
from trent.node.ops.registry import Params
from trent.node.service import Region


def key_for(region: Region, params: Params, op: OpClass, *, allow_alias: bool, field: str = "KeyId") -> KeyRecord:
    """Resolve the key named by ``field`` and check the state table for ``op``."""
    key = region.resolve(params[field], allow_alias=allow_alias)
    check_state(op, key.state, key.arn)
    return key


def require_usage(key: KeyRecord, usage: str, operation: str) -> None:
    if key.key_usage != usage:
        raise KmsError(
            "InvalidKeyUsageException",
            f"{key.arn} key usage is {key.key_usage} which is not valid for {operation}.",
        )


def require_symmetric_encryption(key: KeyRecord, operation: str) -> None:
    require_usage(key, ENCRYPT_DECRYPT, operation)
    if key.key_spec != SYMMETRIC_DEFAULT:  # an RSA encryption key: no data keys, no TRENT-V1 blobs
        raise KmsError(
            "InvalidKeyUsageException", f"{key.arn} key spec is {key.key_spec} which is not valid for {operation}."
        )


def require_algorithm(key: KeyRecord, algorithm: str, allowed: tuple[str, ...]) -> str:
    """The algorithm a request names must be one the key's spec advertises (AWS's message, verbatim)."""
    if algorithm not in allowed:
        raise KmsError(
            "InvalidKeyUsageException", f"Algorithm {algorithm} is incompatible with key spec {key.key_spec}."
        )
    return algorithm


def require_symmetric_algorithm(key: KeyRecord, algorithm: str | None) -> str:
    return require_algorithm(key, algorithm or SYMMETRIC_DEFAULT, (SYMMETRIC_DEFAULT,))


def reject_encryption_context(params: Params, field: str = "EncryptionContext") -> None:
    """An encryption context is bound only into symmetric ciphertexts; AWS refuses one for any other key."""
    if params.get(field):
        raise validation("EncryptionContext is not supported with asymmetric KMS keys.")


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
        "KeyManager": key.key_manager,
        "CustomerMasterKeySpec": key.key_spec,
        "KeySpec": key.key_spec,
        "MultiRegion": key.multi_region,
    }
    meta.update(algorithm_lists(key.key_spec, key.key_usage))
    # Only symmetric encryption keys name their material (AWS has no material versions for other keys).
    if key.key_spec == SYMMETRIC_DEFAULT and key.current_material_id:
        meta["CurrentKeyMaterialId"] = key.current_material_id.hex()
    meta.update(imported_metadata(key))  # ExpirationModel, ValidTo (EXTERNAL origin)
    if key.extra:
        store_id = key.extra.get("custom_key_store_id")
        if store_id is not None:  # a key in a custom key store (node/ops/key_store_keys.py, external_keys.py)
            meta["CustomKeyStoreId"] = store_id
            xks_key_id = key.extra.get("xks_key_id")
            if xks_key_id is not None:
                meta["XksKeyConfiguration"] = {"Id": xks_key_id}
            else:
                meta["CloudHsmClusterId"] = key.extra.get("cloud_hsm_cluster_id")
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
