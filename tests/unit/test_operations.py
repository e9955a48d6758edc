"""Each operation's facts are declared once (node/model/operations.py, node/ops/<family>.register): every operation of
the service model is declared exactly once, and the tables the layers used to keep by hand come out of the
declarations as they were (the literals below are those tables as they stood, the oracle)."""

from __future__ import annotations

from collections import Counter

import botocore.session

from trent.node.model.key import KeyRecord
from trent.node.model.key_specs import USAGES
from trent.node.model.operations import Operation
from trent.node.model.states import KeyState
from trent.node.ops import build_registry, declare
from trent.node.ops.registry import Registry
from trent.node.ops.tables import (
    cloudtrail_read_only,
    consumes_key_name,
    context_grant_operations,
    cross_account,
    grant_operations,
    key_actions,
    logged_responses,
    usage_tracked,
)

MODEL = botocore.session.get_session().get_service_model("kms")


class Recording(Registry):
    def __init__(self) -> None:
        super().__init__()
        self.added: list[str] = []

    def add(self, operation: Operation) -> None:
        self.added.append(operation.name)
        super().add(operation)


DECLARED = declare(Recording())
OPS = list(DECLARED)

KEY_ACTIONS = {
    "CancelKeyDeletion": (("KeyId", "CancelKeyDeletion", None),),
    "CreateAlias": (("TargetKeyId", "CreateAlias", None),),
    "CreateGrant": (("KeyId", "CreateGrant", None),),
    "Decapsulate": (("KeyId", "Decapsulate", None),),
    "Decrypt": (("KeyId", "Decrypt", "EncryptionContext"),),
    "DeleteImportedKeyMaterial": (("KeyId", "DeleteImportedKeyMaterial", None),),
    "DeriveSharedSecret": (("KeyId", "DeriveSharedSecret", None),),
    "DescribeKey": (("KeyId", "DescribeKey", None),),
    "DisableKey": (("KeyId", "DisableKey", None),),
    "DisableKeyRotation": (("KeyId", "DisableKeyRotation", None),),
    "EnableKey": (("KeyId", "EnableKey", None),),
    "EnableKeyRotation": (("KeyId", "EnableKeyRotation", None),),
    "Encapsulate": (("KeyId", "Encapsulate", None),),
    "Encrypt": (("KeyId", "Encrypt", "EncryptionContext"),),
    "GenerateDataKey": (("KeyId", "GenerateDataKey", "EncryptionContext"),),
    "GenerateDataKeyPair": (("KeyId", "GenerateDataKeyPair", "EncryptionContext"),),
    "GenerateDataKeyPairWithoutPlaintext": (("KeyId", "GenerateDataKeyPairWithoutPlaintext", "EncryptionContext"),),
    "GenerateDataKeyWithoutPlaintext": (("KeyId", "GenerateDataKeyWithoutPlaintext", "EncryptionContext"),),
    "GenerateMac": (("KeyId", "GenerateMac", None),),
    "GetKeyLastUsage": (("KeyId", "GetKeyLastUsage", None),),
    "GetKeyPolicy": (("KeyId", "GetKeyPolicy", None),),
    "GetKeyRotationStatus": (("KeyId", "GetKeyRotationStatus", None),),
    "GetParametersForImport": (("KeyId", "GetParametersForImport", None),),
    "GetPublicKey": (("KeyId", "GetPublicKey", None),),
    "ImportKeyMaterial": (("KeyId", "ImportKeyMaterial", None),),
    "ListGrants": (("KeyId", "ListGrants", None),),
    "ListKeyPolicies": (("KeyId", "ListKeyPolicies", None),),
    "ListKeyRotations": (("KeyId", "ListKeyRotations", None),),
    "ListResourceTags": (("KeyId", "ListResourceTags", None),),
    "PutKeyPolicy": (("KeyId", "PutKeyPolicy", None),),
    "ReEncrypt": (("SourceKeyId", "ReEncryptFrom", "SourceEncryptionContext"),
                  ("DestinationKeyId", "ReEncryptTo", "DestinationEncryptionContext")),
    "ReplicateKey": (("KeyId", "ReplicateKey", None),),
    "RevokeGrant": (("KeyId", "RevokeGrant", None),),
    "RotateKeyOnDemand": (("KeyId", "RotateKeyOnDemand", None),),
    "ScheduleKeyDeletion": (("KeyId", "ScheduleKeyDeletion", None),),
    "Sign": (("KeyId", "Sign", None),),
    "TagResource": (("KeyId", "TagResource", None),),
    "UntagResource": (("KeyId", "UntagResource", None),),
    "UpdateAlias": (("TargetKeyId", "UpdateAlias", None),),
    "UpdateKeyDescription": (("KeyId", "UpdateKeyDescription", None),),
    "UpdatePrimaryRegion": (("KeyId", "UpdatePrimaryRegion", None),),
    "Verify": (("KeyId", "Verify", None),),
    "VerifyMac": (("KeyId", "VerifyMac", None),),
}
CROSS_ACCOUNT_OPERATIONS = {
    "CreateGrant", "Decapsulate", "Decrypt", "DeriveSharedSecret", "DescribeKey", "Encapsulate", "Encrypt",
    "GenerateDataKey", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateDataKeyWithoutPlaintext",
    "GenerateMac", "GetKeyRotationStatus", "GetPublicKey", "ListGrants", "ReEncrypt", "RetireGrant", "RevokeGrant",
    "Sign", "Verify", "VerifyMac",
}
USAGE_OPERATIONS = {
    "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext", "Sign", "Verify", "GenerateMac", "VerifyMac", "DeriveSharedSecret",
    "Encapsulate", "Decapsulate",
}
RESPONSE_LOGGED = {
    "CreateKey": ("KeyMetadata",),
    "ReplicateKey": ("ReplicaKeyMetadata", "ReplicaPolicy"),
    "CreateGrant": ("GrantId",),
    "ScheduleKeyDeletion": ("KeyId", "DeletionDate", "KeyState", "PendingWindowInDays"),
    "CancelKeyDeletion": ("KeyId",),
    "CreateCustomKeyStore": ("CustomKeyStoreId",),  # CloudTrail records the new store's id
}
READ_ONLY_PREFIXES = ("Describe", "Get", "List", "Encrypt", "Decrypt", "ReEncrypt", "GenerateDataKey",
                      "GenerateRandom", "GenerateMac", "VerifyMac", "Sign", "Verify", "DeriveSharedSecret",
                      "Encapsulate", "Decapsulate")
STORE_READ_ONLY = {
    "GetParametersForImport",
    "Decapsulate", "Decrypt", "DeriveSharedSecret", "DescribeCustomKeyStores", "DescribeKey", "Encapsulate", "Encrypt",
    "GenerateDataKey", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "GenerateDataKeyWithoutPlaintext",
    "GenerateMac", "GenerateRandom", "GetKeyLastUsage", "GetKeyPolicy", "GetKeyRotationStatus", "GetPublicKey",
    "ListAliases", "ListGrants", "ListKeyPolicies", "ListKeyRotations", "ListKeys", "ListResourceTags",
    "ListRetirableGrants", "ReEncrypt", "Sign", "Verify", "VerifyMac",
}
CONSUMES_KEY_NAME = {"DeleteAlias", "RetireGrant"}
EC_OPERATIONS = {"Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom",
                 "ReEncryptTo", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext"}
# CreateGrant's check, as it was: the grant operations a key allows by its usage and spec.
COMMON_OPERATIONS = {"CreateGrant", "RetireGrant", "DescribeKey"}
GRANT_USAGE_OPERATIONS = {
    "ENCRYPT_DECRYPT": {"Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo"},
    "SIGN_VERIFY": {"Sign", "Verify", "GetPublicKey"},
    "GENERATE_VERIFY_MAC": {"GenerateMac", "VerifyMac"},
    "KEY_AGREEMENT": {"DeriveSharedSecret", "GetPublicKey"},
    "ENCAPSULATE_DECAPSULATE": {"Encapsulate", "Decapsulate", "GetPublicKey"},
}
SYMMETRIC_ONLY = {"GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "GenerateDataKeyPair",
                  "GenerateDataKeyPairWithoutPlaintext"}


def allowed_operations_before(key_spec: str, key_usage: str) -> set[str]:
    allowed = COMMON_OPERATIONS | GRANT_USAGE_OPERATIONS.get(key_usage, set())
    if key_spec == "SYMMETRIC_DEFAULT":
        allowed |= SYMMETRIC_ONLY
    elif key_usage == "ENCRYPT_DECRYPT":
        allowed.add("GetPublicKey")
    return allowed


def test_every_model_operation_is_declared_exactly_once() -> None:
    counts = Counter(DECLARED.added)
    assert [name for name, n in counts.items() if n > 1] == []
    # Declared by a family, not filled in as "a newer KMS feature" for want of a declaration.
    assert set(counts) == set(MODEL.operation_names)


def test_the_registry_serves_the_declarations() -> None:
    registry = build_registry(MODEL.operation_names)
    assert registry.names() == sorted(MODEL.operation_names)
    for op in OPS:
        served = registry.get(op.name)
        assert served is not None and served.name == op.name and served.keys == op.keys
    assert registry.get("NoSuchOperation") is None


def test_declared_members_are_the_models() -> None:
    for op in OPS:
        members = MODEL.operation_model(op.name).input_shape.members
        for named in op.keys:
            assert named.member in members, (op.name, named.member)
            assert named.context is None or named.context in members, (op.name, named.context)
        for name in op.logged_response:
            assert name in MODEL.operation_model(op.name).output_shape.members, (op.name, name)


def test_grant_operations_are_the_models() -> None:
    assert set(grant_operations(OPS)) == set(MODEL.shape_for("GrantOperation").enum)


def test_usage_tracked_operations_are_the_models() -> None:
    assert usage_tracked(OPS) == set(MODEL.shape_for("KeyLastUsageTrackingOperation").enum)


def test_derived_tables_are_the_tables_they_replace() -> None:
    assert key_actions(OPS) == KEY_ACTIONS
    assert cross_account(OPS) == CROSS_ACCOUNT_OPERATIONS
    assert usage_tracked(OPS) == USAGE_OPERATIONS
    assert logged_responses(OPS) == RESPONSE_LOGGED
    assert cloudtrail_read_only(OPS) == {op.name for op in OPS if op.name.startswith(READ_ONLY_PREFIXES)}
    assert {op.name for op in OPS if op.read_only} == STORE_READ_ONLY
    assert consumes_key_name(OPS) == CONSUMES_KEY_NAME
    assert context_grant_operations(OPS) == EC_OPERATIONS
    assert {op.name for op in OPS if op.alias_target} == {"DeleteAlias", "UpdateAlias"}


def test_grant_operations_allowed_per_key_are_as_before() -> None:
    scopes = grant_operations(OPS)
    for spec, usages in USAGES.items():
        for usage in usages:
            key = KeyRecord("k", "us-east-1", "111122223333", 0.0, KeyState.ENABLED, key_usage=usage, key_spec=spec)
            allowed = {name for name, scope in scopes.items() if scope.allows(key)}
            assert allowed == allowed_operations_before(spec, usage), (spec, usage)
