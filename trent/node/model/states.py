"""Key states and the operation × state table (KMS-REFERENCE.md §3)."""

from __future__ import annotations

from enum import Enum, StrEnum

from trent.node.model.errors import KmsError, invalid_state, unsupported


class KeyState(StrEnum):
    CREATING = "Creating"
    ENABLED = "Enabled"
    DISABLED = "Disabled"
    PENDING_DELETION = "PendingDeletion"
    PENDING_IMPORT = "PendingImport"
    PENDING_REPLICA_DELETION = "PendingReplicaDeletion"
    UNAVAILABLE = "Unavailable"
    UPDATING = "Updating"


PENDING_DELETION_STATES = frozenset({KeyState.PENDING_DELETION, KeyState.PENDING_REPLICA_DELETION})


class OpClass(Enum):
    """Groups of operations that share a row of the state table."""

    CRYPTO = "crypto"                  # Encrypt, Decrypt, GenerateDataKey*, ... CreateGrant
    ANY = "any"                        # DescribeKey, List*, GetKeyPolicy, DeleteAlias, ...
    METADATA = "metadata"              # CreateAlias, TagResource, UntagResource, UpdateKeyDescription
    ENABLE_DISABLE = "enable-disable"  # EnableKey, DisableKey
    SCHEDULE_DELETION = "schedule-deletion"
    CANCEL_DELETION = "cancel-deletion"
    ROTATION_SETTINGS = "rotation-settings"  # EnableKeyRotation, DisableKeyRotation
    ROTATION_STATUS = "rotation-status"      # GetKeyRotationStatus, ListKeyRotations
    ROTATE_ON_DEMAND = "rotate-on-demand"
    REPLICATE = "replicate"            # ReplicateKey
    UPDATE_PRIMARY = "update-primary"  # UpdatePrimaryRegion (unlike ReplicateKey, allowed while Updating)


def _disabled(arn: str) -> KmsError:
    return KmsError("DisabledException", f"{arn} is disabled.")


def _state_error(state: KeyState, arn: str) -> KmsError:
    words = {
        KeyState.PENDING_DELETION: "pending deletion",
        KeyState.PENDING_REPLICA_DELETION: "pending replica deletion",
        KeyState.PENDING_IMPORT: "pending import",
        KeyState.CREATING: "creating",
        KeyState.UPDATING: "updating",
        KeyState.UNAVAILABLE: "unavailable",
        KeyState.ENABLED: "enabled",
        KeyState.DISABLED: "disabled",
    }
    return invalid_state(f"{arn} is {words[state]}.")


def _external_only(arn: str) -> KmsError:
    # A key in PendingImport has EXTERNAL origin: rotation settings and status do not apply to it.
    return unsupported(f"{arn} origin is EXTERNAL which is not valid for this operation.")


def check_state(op: OpClass, state: KeyState, arn: str) -> None:
    """Raise the error AWS gives for ``op`` on a key in ``state``; return if allowed."""
    if state is KeyState.ENABLED and op is not OpClass.CANCEL_DELETION:
        return  # the common case: an Enabled key allows every operation but cancelling a deletion
    if op is OpClass.ANY:
        return
    if op is OpClass.CANCEL_DELETION:
        if state not in PENDING_DELETION_STATES:
            raise invalid_state(f"{arn} is not pending deletion.")
        return
    if op is OpClass.ROTATION_STATUS:
        # Allowed in every state (a key pending deletion reports rotation off), except for imported material.
        if state is KeyState.PENDING_IMPORT:
            raise _external_only(arn)
        return
    if state in PENDING_DELETION_STATES:
        raise _state_error(state, arn)
    if op is OpClass.METADATA or (op is OpClass.SCHEDULE_DELETION and state is not KeyState.UPDATING):
        return
    if op is OpClass.SCHEDULE_DELETION:
        raise _state_error(state, arn)
    if state is KeyState.DISABLED:
        if op is OpClass.ENABLE_DISABLE:
            return
        raise _disabled(arn)
    if op is OpClass.ROTATION_SETTINGS and state is KeyState.PENDING_IMPORT:
        raise _external_only(arn)
    if state in (KeyState.PENDING_IMPORT, KeyState.CREATING, KeyState.UNAVAILABLE):
        raise _state_error(state, arn)
    if state is KeyState.UPDATING and op in (OpClass.ENABLE_DISABLE, OpClass.ROTATE_ON_DEMAND, OpClass.REPLICATE):
        raise _state_error(state, arn)
