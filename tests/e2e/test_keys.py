"""Key lifecycle over the wire: CreateKey, DescribeKey, ListKeys, Enable/Disable, description, deletion window,
and the operation × state table of KMS-REFERENCE.md §3 for Disabled and PendingDeletion keys."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError

from tests.e2e.harness import RunningCluster, all_key_ids, error, marker_pages

ACCOUNT = "111122223333"
DAY = dt.timedelta(days=1)


def new_key(kms: Any, **kwargs: Any) -> dict[str, Any]:
    meta: dict[str, Any] = kms.create_key(**kwargs)["KeyMetadata"]
    return meta


# -- CreateKey / KeyMetadata ----------------------------------------------------------------------------------

ALWAYS = {"AWSAccountId", "KeyId", "Arn", "CreationDate", "Enabled", "Description", "KeyUsage", "KeyState", "Origin",
          "KeyManager", "KeySpec", "CustomerMasterKeySpec", "MultiRegion"}
NEVER_FOR_ENABLED_SYMMETRIC = {"SigningAlgorithms", "MacAlgorithms", "KeyAgreementAlgorithms",
                               "EncapsulationAlgorithms", "MultiRegionConfiguration", "DeletionDate",
                               "PendingDeletionWindowInDays", "ExpirationModel", "ValidTo", "ValidFrom",
                               "CustomKeyStoreId", "CloudHsmClusterId", "XksKeyConfiguration"}


def test_create_key_defaults(kms: Any) -> None:
    meta = new_key(kms)
    assert set(meta) >= ALWAYS
    assert not NEVER_FOR_ENABLED_SYMMETRIC & set(meta)
    key_id = meta["KeyId"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", key_id)
    assert meta["Arn"] == f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{key_id}"
    assert meta["AWSAccountId"] == ACCOUNT
    assert isinstance(meta["CreationDate"], dt.datetime)
    expected = {
        "Enabled": True, "Description": "", "KeyUsage": "ENCRYPT_DECRYPT", "KeyState": "Enabled", "Origin": "AWS_KMS",
        "KeyManager": "CUSTOMER", "KeySpec": "SYMMETRIC_DEFAULT", "CustomerMasterKeySpec": "SYMMETRIC_DEFAULT",
        "MultiRegion": False, "EncryptionAlgorithms": ["SYMMETRIC_DEFAULT"],
    }
    assert {k: meta[k] for k in expected} == expected
    # DescribeKey reports the very same metadata.
    described = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert described == meta


def test_create_key_in_each_region_gets_that_regions_arn(cluster: RunningCluster) -> None:
    for region in cluster.regions:
        meta = new_key(cluster.client(region))
        assert meta["Arn"] == f"arn:aws:kms:{region}:{ACCOUNT}:key/{meta['KeyId']}"


def test_create_key_with_explicit_symmetric_spec_and_usage(kms: Any) -> None:
    a = new_key(kms, KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT", MultiRegion=False, Origin="AWS_KMS")
    b = new_key(kms, CustomerMasterKeySpec="SYMMETRIC_DEFAULT")
    for meta in (a, b):
        assert (meta["KeySpec"], meta["CustomerMasterKeySpec"], meta["KeyUsage"]) == (
            "SYMMETRIC_DEFAULT", "SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT")
        assert meta["MultiRegion"] is False


def test_create_key_description_and_tags(kms: Any) -> None:
    tags = [{"TagKey": "team", "TagValue": "payments"}, {"TagKey": "env", "TagValue": ""}]
    meta = new_key(kms, Description="Orders key — ünïcode ok", Tags=tags)
    assert meta["Description"] == "Orders key — ünïcode ok"
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["Description"] == "Orders key — ünïcode ok"
    listed = kms.list_resource_tags(KeyId=meta["KeyId"])
    assert sorted(listed["Tags"], key=lambda t: t["TagKey"]) == sorted(tags, key=lambda t: t["TagKey"])
    assert listed["Truncated"] is False


def test_create_key_stores_the_policy_exactly_as_given(kms: Any) -> None:
    policy = ('{"Version":"2012-10-17",  "Id": "custom",\n "Statement":[{"Sid":"All","Effect":"Allow",'
              f'"Principal":{{"AWS":"arn:aws:iam::{ACCOUNT}:root"}},"Action":"kms:*","Resource":"*"}}]}}')
    meta = new_key(kms, Policy=policy)
    out = kms.get_key_policy(KeyId=meta["KeyId"], PolicyName="default")
    assert out["Policy"] == policy
    assert kms.get_key_policy(KeyId=meta["Arn"])["Policy"] == policy  # PolicyName is optional in the model
    assert kms.list_key_policies(KeyId=meta["KeyId"])["PolicyNames"] == ["default"]


def test_default_policy_is_the_documented_one(kms: Any) -> None:
    loader = botocore.session.get_session().get_component("data_loader")
    examples = loader.load_service_model("kms", "examples-1")["examples"]["GetKeyPolicy"]
    documented: str = examples[0]["output"]["Policy"]
    meta = new_key(kms)
    expected = documented.replace("111122223333", meta["AWSAccountId"])
    out = kms.get_key_policy(KeyId=meta["KeyId"], PolicyName="default")
    assert out["Policy"] == expected
    assert json.loads(out["Policy"])["Statement"][0]["Principal"]["AWS"] == f"arn:aws:iam::{ACCOUNT}:root"


def test_get_key_policy_with_another_name_is_not_found(kms: Any) -> None:
    meta = new_key(kms)
    err = error(kms.get_key_policy, KeyId=meta["KeyId"], PolicyName="other")
    assert err["Code"] == "NotFoundException"


def test_create_key_with_both_spec_fields_is_a_validation_error(kms: Any) -> None:
    err = error(kms.create_key, KeySpec="SYMMETRIC_DEFAULT", CustomerMasterKeySpec="SYMMETRIC_DEFAULT")
    assert (err["Code"], err["Status"]) == ("ValidationException", 400)
    assert "KeySpec" in err["Message"] and "CustomerMasterKeySpec" in err["Message"]


@pytest.mark.parametrize(("kwargs", "code", "needle"), [
    # Specs the cryptography library cannot do; the others (tests/e2e/test_asymmetric.py) are created.
    ({"KeySpec": "SM2", "KeyUsage": "SIGN_VERIFY"}, "UnsupportedOperationException", "SM2"),
    ({"KeySpec": "ML_KEM_512", "KeyUsage": "ENCAPSULATE_DECAPSULATE"}, "UnsupportedOperationException", "ML_KEM_512"),
    ({"CustomerMasterKeySpec": "SM2", "KeyUsage": "ENCRYPT_DECRYPT"}, "UnsupportedOperationException", "SM2"),
    # KeyUsage is required for every spec but SYMMETRIC_DEFAULT, and must suit the spec.
    ({"KeySpec": "RSA_2048"}, "ValidationException", "KeyUsage"),
    ({"CustomerMasterKeySpec": "HMAC_256"}, "ValidationException", "KeyUsage"),
    ({"KeySpec": "ECC_NIST_P256", "KeyUsage": "ENCRYPT_DECRYPT"}, "ValidationException", "ECC_NIST_P256"),
    ({"Origin": "EXTERNAL", "KeySpec": "ML_KEM_512", "KeyUsage": "ENCAPSULATE_DECAPSULATE"},
     "UnsupportedOperationException", "ML_KEM_512"),
    ({"CustomKeyStoreId": "cks-1234567890abcdef0"}, "CustomKeyStoreNotFoundException", None),
    ({"KeyUsage": "SIGN_VERIFY"}, "ValidationException", "SIGN_VERIFY"),
])
def test_refused_create_key_leaves_no_key(cluster: RunningCluster, kwargs: dict[str, Any], code: str,
                                          needle: str | None) -> None:
    kms = cluster.client("ap-northeast-2")
    before = all_key_ids(kms)
    err = error(kms.create_key, **kwargs)
    assert (err["Code"], err["Status"]) == (code, 400)
    assert err["Message"]
    if needle is not None:
        assert needle in err["Message"]
    assert all_key_ids(kms) == before


# -- DescribeKey and identifiers ------------------------------------------------------------------------------


def test_describe_key_by_every_identifier_form(kms: Any) -> None:
    meta = new_key(kms, Description="by-any-id")
    alias = f"alias/describe-{meta['KeyId']}"
    kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    alias_arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:{alias}"
    for ident in (meta["KeyId"], meta["Arn"], alias, alias_arn):
        got = kms.describe_key(KeyId=ident)["KeyMetadata"]
        assert (got["KeyId"], got["Arn"], got["Description"]) == (meta["KeyId"], meta["Arn"], "by-any-id"), ident


def test_describe_unknown_key_is_not_found_with_its_arn(kms: Any) -> None:
    missing = str(uuid.uuid4())
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{missing}"
    for ident in (missing, arn):
        err = error(kms.describe_key, KeyId=ident)
        assert err == {"Code": "NotFoundException", "Message": f"Key '{arn}' does not exist", "Status": 400}


def test_describe_unknown_alias_is_not_found(kms: Any) -> None:
    name = f"alias/missing-{uuid.uuid4()}"
    err = error(kms.describe_key, KeyId=name)
    assert err["Code"] == "NotFoundException"
    assert err["Message"] == f"Alias arn:aws:kms:us-east-1:{ACCOUNT}:{name} is not found."


@pytest.mark.parametrize("ident", ["nope", "1234", "key/1234abcd-12ab-34cd-56ef-1234567890ab",
                                   "1234abcd-12ab-34cd-56ef-1234567890", "mrk-1234", "alias"])
def test_malformed_key_id_is_invalid_key_id(kms: Any, ident: str) -> None:
    err = error(kms.describe_key, KeyId=ident)
    assert err == {"Code": "NotFoundException", "Message": f"Invalid keyId {ident}", "Status": 400}


def test_arn_of_another_region_is_not_found(cluster: RunningCluster) -> None:
    eu = cluster.client("eu-west-1")
    us = cluster.client("us-east-1")
    meta = new_key(eu)
    alias = f"alias/elsewhere-{meta['KeyId']}"
    eu.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    # The key exists, in eu-west-1: us-east-1 does not find it by ARN, nor by bare id, nor by alias.
    for ident in (meta["Arn"], meta["KeyId"], alias, f"arn:aws:kms:eu-west-1:{ACCOUNT}:{alias}"):
        err = error(us.describe_key, KeyId=ident)
        assert (err["Code"], err["Status"]) == ("NotFoundException", 400), ident
    assert eu.describe_key(KeyId=meta["Arn"])["KeyMetadata"]["KeyId"] == meta["KeyId"]
    for call in (us.encrypt,):
        err = error(call, KeyId=meta["Arn"], Plaintext=b"x")
        assert err["Code"] == "NotFoundException"
    err = error(us.enable_key, KeyId=meta["Arn"])
    assert err["Code"] == "NotFoundException"


def test_arn_of_another_account_is_not_found(kms: Any) -> None:
    meta = new_key(kms)
    foreign = meta["Arn"].replace(ACCOUNT, "999988887777")
    err = error(kms.describe_key, KeyId=foreign)
    assert (err["Code"], err["Status"]) == ("NotFoundException", 400)


def test_alias_forms_are_refused_where_only_key_id_or_arn_is_accepted(kms: Any) -> None:
    meta = new_key(kms)
    alias = f"alias/only-ids-{meta['KeyId']}"
    kms.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    alias_arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:{alias}"
    calls: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (kms.enable_key, {}), (kms.disable_key, {}), (kms.update_key_description, {"Description": "x"}),
        (kms.schedule_key_deletion, {}), (kms.cancel_key_deletion, {}), (kms.get_key_policy, {}),
        (kms.list_key_policies, {}), (kms.tag_resource, {"Tags": [{"TagKey": "a", "TagValue": "b"}]}),
        (kms.untag_resource, {"TagKeys": ["a"]}), (kms.list_resource_tags, {}), (kms.list_aliases, {}),
        (kms.enable_key_rotation, {}), (kms.get_key_rotation_status, {}),
    ]
    for ident in (alias, alias_arn):
        for call, extra in calls:
            err = error(call, KeyId=ident, **extra)
            assert err == {"Code": "NotFoundException", "Message": f"Invalid keyId {ident}", "Status": 400}, call
    # Nothing happened to the key through any of those calls.
    got = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert (got["KeyState"], got["Description"]) == ("Enabled", "")
    assert kms.list_resource_tags(KeyId=meta["KeyId"])["Tags"] == []


# -- ListKeys --------------------------------------------------------------------------------------------------


def _collect_keys(kms: Any, limit: int) -> list[str]:
    seen: list[str] = []
    for page in marker_pages(kms.list_keys, "Keys", limit):
        for entry in page:
            assert set(entry) == {"KeyId", "KeyArn"}
            assert entry["KeyArn"].endswith(":key/" + entry["KeyId"])
            seen.append(entry["KeyId"])
    return seen


@pytest.mark.parametrize("limit", [1, 2, 7])
def test_list_keys_marker_chain_returns_each_key_once(cluster: RunningCluster, limit: int) -> None:
    kms = cluster.client("eu-west-1")
    mine = {new_key(kms)["KeyId"] for _ in range(5)}
    seen = _collect_keys(kms, limit)
    assert len(seen) == len(set(seen)), "a key was listed twice"
    assert mine <= set(seen)
    assert set(seen) == all_key_ids(kms)


def test_list_keys_without_limit_and_with_paginator(kms: Any) -> None:
    mine = {new_key(kms)["KeyId"] for _ in range(3)}
    first = kms.list_keys()
    assert "Truncated" in first
    assert ("NextMarker" in first) is first["Truncated"]
    pages = list(kms.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2}))
    ids = [k["KeyId"] for p in pages for k in p["Keys"]]
    assert len(ids) == len(set(ids)) and mine <= set(ids)
    assert all(p["Truncated"] for p in pages[:-1]) and pages[-1]["Truncated"] is False


def test_list_keys_includes_disabled_and_pending_deletion_keys(kms: Any) -> None:
    disabled, pending = new_key(kms)["KeyId"], new_key(kms)["KeyId"]
    kms.disable_key(KeyId=disabled)
    kms.schedule_key_deletion(KeyId=pending, PendingWindowInDays=7)
    assert {disabled, pending} <= all_key_ids(kms)


@pytest.mark.parametrize("marker", ["!!!", "garbage", "Zm9v", "bm90LWEtbWFya2Vy", "====", "a b"])
def test_list_keys_bad_marker(kms: Any, marker: str) -> None:
    err = error(kms.list_keys, Marker=marker)
    assert (err["Code"], err["Status"]) == ("InvalidMarkerException", 400)


def test_list_keys_limit_above_1000(kms: Any) -> None:
    err = error(kms.list_keys, Limit=5000)
    assert err == {"Code": "ValidationException", "Status": 400, "Message": (
        "1 validation error detected: Value '5000' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 1000")}
    assert kms.list_keys(Limit=1000)["Truncated"] in (True, False)


def test_list_keys_is_per_region(cluster: RunningCluster) -> None:
    us, eu = cluster.client("us-east-1"), cluster.client("eu-west-1")
    key = new_key(us)["KeyId"]
    assert key in all_key_ids(us)
    assert key not in all_key_ids(eu)


# -- Enable / Disable / UpdateKeyDescription ---------------------------------------------------------------------


def test_disable_and_enable(kms: Any) -> None:
    meta = new_key(kms)
    for ident in (meta["KeyId"], meta["Arn"]):
        assert set(kms.disable_key(KeyId=ident)) == {"ResponseMetadata"}
        got = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
        assert (got["KeyState"], got["Enabled"]) == ("Disabled", False)
        kms.disable_key(KeyId=ident)  # idempotent
        assert set(kms.enable_key(KeyId=ident)) == {"ResponseMetadata"}
        got = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
        assert (got["KeyState"], got["Enabled"]) == ("Enabled", True)
        kms.enable_key(KeyId=ident)  # idempotent
    assert kms.decrypt(CiphertextBlob=kms.encrypt(KeyId=meta["KeyId"], Plaintext=b"back")["CiphertextBlob"])[
        "Plaintext"] == b"back"


def test_enable_and_disable_unknown_key(kms: Any) -> None:
    missing = str(uuid.uuid4())
    for call in (kms.enable_key, kms.disable_key):
        err = error(call, KeyId=missing)
        assert err["Message"] == f"Key 'arn:aws:kms:us-east-1:{ACCOUNT}:key/{missing}' does not exist"


def test_update_key_description(kms: Any) -> None:
    meta = new_key(kms, Description="before")
    assert set(kms.update_key_description(KeyId=meta["KeyId"], Description="after")) == {"ResponseMetadata"}
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["Description"] == "after"
    kms.update_key_description(KeyId=meta["Arn"], Description="")
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["Description"] == ""
    err = error(kms.update_key_description, KeyId=meta["KeyId"], Description="d" * 8193)
    assert err["Code"] == "ValidationException"
    assert err["Message"].endswith("at 'description' failed to satisfy constraint: "
                                   "Member must have length less than or equal to 8192")
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["Description"] == ""


# -- ScheduleKeyDeletion / CancelKeyDeletion ----------------------------------------------------------------------


def _close(a: dt.datetime, b: dt.datetime, tolerance: dt.timedelta = dt.timedelta(minutes=2)) -> bool:
    return abs(a - b) <= tolerance


def test_schedule_key_deletion_default_window_is_30_days(kms: Any) -> None:
    meta = new_key(kms)
    out = kms.schedule_key_deletion(KeyId=meta["KeyId"])
    out.pop("ResponseMetadata")
    assert set(out) == {"KeyId", "DeletionDate", "KeyState", "PendingWindowInDays"}
    assert (out["KeyId"], out["KeyState"], out["PendingWindowInDays"]) == (meta["Arn"], "PendingDeletion", 30)
    assert _close(out["DeletionDate"], meta["CreationDate"] + 30 * DAY)
    got = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert (got["KeyState"], got["Enabled"]) == ("PendingDeletion", False)
    assert got["DeletionDate"] == out["DeletionDate"]
    assert "PendingDeletionWindowInDays" not in got  # only for PendingReplicaDeletion


@pytest.mark.parametrize("days", [7, 8, 29, 30])
def test_schedule_key_deletion_window(kms: Any, days: int) -> None:
    meta = new_key(kms)
    out = kms.schedule_key_deletion(KeyId=meta["Arn"], PendingWindowInDays=days)
    assert out["PendingWindowInDays"] == days
    assert _close(out["DeletionDate"], meta["CreationDate"] + days * DAY)


@pytest.mark.parametrize("days", [3, 6, 31, 365, 400])
def test_schedule_key_deletion_window_out_of_range(kms: Any, days: int) -> None:
    meta = new_key(kms)
    err = error(kms.schedule_key_deletion, KeyId=meta["KeyId"], PendingWindowInDays=days)
    assert (err["Code"], err["Status"]) == ("ValidationException", 400)
    assert err["Message"].startswith(f"1 validation error detected: Value '{days}' at 'pendingWindowInDays' "
                                     "failed to satisfy constraint: Member must have value ")
    got = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert got["KeyState"] == "Enabled" and "DeletionDate" not in got


def test_schedule_key_deletion_of_a_disabled_key(kms: Any) -> None:
    meta = new_key(kms)
    kms.disable_key(KeyId=meta["KeyId"])
    assert kms.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=7)["KeyState"] == "PendingDeletion"


def test_cancel_key_deletion_lands_in_disabled(kms: Any) -> None:
    meta = new_key(kms)
    kms.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=7)
    out = kms.cancel_key_deletion(KeyId=meta["Arn"])
    out.pop("ResponseMetadata")
    assert out == {"KeyId": meta["Arn"]}
    got = kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]
    assert (got["KeyState"], got["Enabled"]) == ("Disabled", False)
    assert "DeletionDate" not in got
    err = error(kms.encrypt, KeyId=meta["KeyId"], Plaintext=b"x")
    assert err["Code"] == "DisabledException"
    kms.enable_key(KeyId=meta["KeyId"])
    assert kms.describe_key(KeyId=meta["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"
    # A new schedule starts a new window.
    again = kms.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=10)
    assert again["PendingWindowInDays"] == 10


def test_cancel_key_deletion_of_a_key_not_pending_deletion(kms: Any) -> None:
    meta = new_key(kms)
    for _ in ("Enabled", "Disabled"):
        err = error(kms.cancel_key_deletion, KeyId=meta["KeyId"])
        assert err == {"Code": "KMSInvalidStateException", "Status": 400,
                       "Message": f"{meta['Arn']} is not pending deletion."}
        kms.disable_key(KeyId=meta["KeyId"])


def test_rotation_setting_is_hidden_while_pending_deletion_and_returns_on_cancel(kms: Any) -> None:
    meta = new_key(kms)
    kms.enable_key_rotation(KeyId=meta["KeyId"])
    kms.schedule_key_deletion(KeyId=meta["KeyId"], PendingWindowInDays=7)
    assert kms.get_key_rotation_status(KeyId=meta["KeyId"])["KeyRotationEnabled"] is False
    kms.cancel_key_deletion(KeyId=meta["KeyId"])
    assert kms.get_key_rotation_status(KeyId=meta["KeyId"])["KeyRotationEnabled"] is True


# -- the state table ------------------------------------------------------------------------------------------------


class Subject:
    """A key put into a state, with what the table's operations need: an alias, a tag, a ciphertext, another key."""

    def __init__(self, kms: Any, state: str) -> None:
        self.kms = kms
        meta = new_key(kms, Tags=[{"TagKey": "keep", "TagValue": "1"}])
        self.key_id: str = meta["KeyId"]
        self.arn: str = meta["Arn"]
        self.alias = f"alias/matrix-{self.key_id}"
        kms.create_alias(AliasName=self.alias, TargetKeyId=self.key_id)
        self.blob: bytes = kms.encrypt(KeyId=self.key_id, Plaintext=b"matrix")["CiphertextBlob"]
        self.other: str = new_key(kms)["KeyId"]
        self.other_blob: bytes = kms.encrypt(KeyId=self.other, Plaintext=b"other")["CiphertextBlob"]
        self.other_alias = f"alias/matrix-other-{self.other}"
        kms.create_alias(AliasName=self.other_alias, TargetKeyId=self.other)
        if state == "Disabled":
            kms.disable_key(KeyId=self.key_id)
        elif state == "PendingDeletion":
            kms.schedule_key_deletion(KeyId=self.key_id, PendingWindowInDays=7)
        assert self.state() == state

    def state(self) -> str:
        return str(self.kms.describe_key(KeyId=self.key_id)["KeyMetadata"]["KeyState"])


def _op(name: str, **fixed: Any) -> Callable[[Subject], Any]:
    def run(s: Subject) -> Any:
        return getattr(s.kms, name)(KeyId=s.key_id, **fixed)
    run.__name__ = name
    return run


OPS: dict[str, Callable[[Subject], Any]] = {
    "Encrypt": _op("encrypt", Plaintext=b"x"),
    "EncryptViaAlias": lambda s: s.kms.encrypt(KeyId=s.alias, Plaintext=b"x"),
    "Decrypt": lambda s: s.kms.decrypt(CiphertextBlob=s.blob),
    "GenerateDataKey": _op("generate_data_key", KeySpec="AES_256"),
    "GenerateDataKeyWithoutPlaintext": _op("generate_data_key_without_plaintext", NumberOfBytes=16),
    "ReEncryptFrom": lambda s: s.kms.re_encrypt(CiphertextBlob=s.blob, DestinationKeyId=s.other),
    "ReEncryptTo": lambda s: s.kms.re_encrypt(CiphertextBlob=s.other_blob, DestinationKeyId=s.key_id),
    "CreateAlias": lambda s: s.kms.create_alias(AliasName=f"alias/matrix-new-{s.key_id}", TargetKeyId=s.key_id),
    "UpdateAliasOnto": lambda s: s.kms.update_alias(AliasName=s.other_alias, TargetKeyId=s.key_id),
    "UpdateAliasAway": lambda s: s.kms.update_alias(AliasName=s.alias, TargetKeyId=s.other),
    "DeleteAlias": lambda s: s.kms.delete_alias(AliasName=s.alias),
    "TagResource": _op("tag_resource", Tags=[{"TagKey": "t", "TagValue": "v"}]),
    "UntagResource": _op("untag_resource", TagKeys=["keep"]),
    "UpdateKeyDescription": _op("update_key_description", Description="new"),
    "EnableKey": _op("enable_key"),
    "DisableKey": _op("disable_key"),
    "ScheduleKeyDeletion": _op("schedule_key_deletion", PendingWindowInDays=7),
    "CancelKeyDeletion": _op("cancel_key_deletion"),
    "EnableKeyRotation": _op("enable_key_rotation"),
    "DisableKeyRotation": _op("disable_key_rotation"),
    "GetKeyRotationStatus": _op("get_key_rotation_status"),
    "RotateKeyOnDemand": _op("rotate_key_on_demand"),
    "ListKeyRotations": _op("list_key_rotations"),
    "DescribeKey": _op("describe_key"),
    "DescribeKeyViaAlias": lambda s: s.kms.describe_key(KeyId=s.alias),
    "ListAliases": _op("list_aliases"),
    "ListResourceTags": _op("list_resource_tags"),
    "GetKeyPolicy": _op("get_key_policy"),
    "ListKeyPolicies": _op("list_key_policies"),
}

# ok = success; D = DisabledException "<arn> is disabled."; PD = KMSInvalidStateException "<arn> is pending
# deletion."; NPD = KMSInvalidStateException "<arn> is not pending deletion."
MATRIX: dict[str, tuple[str, str]] = {  # operation: (Disabled, PendingDeletion)
    "Encrypt": ("D", "PD"),
    "EncryptViaAlias": ("D", "PD"),
    "Decrypt": ("D", "PD"),
    "GenerateDataKey": ("D", "PD"),
    "GenerateDataKeyWithoutPlaintext": ("D", "PD"),
    "ReEncryptFrom": ("D", "PD"),
    "ReEncryptTo": ("D", "PD"),
    "CreateAlias": ("ok", "PD"),
    "UpdateAliasOnto": ("ok", "PD"),
    "UpdateAliasAway": ("ok", "ok"),
    "DeleteAlias": ("ok", "ok"),
    "TagResource": ("ok", "PD"),
    "UntagResource": ("ok", "PD"),
    "UpdateKeyDescription": ("ok", "PD"),
    "EnableKey": ("ok", "PD"),
    "DisableKey": ("ok", "PD"),
    "ScheduleKeyDeletion": ("ok", "PD"),
    "CancelKeyDeletion": ("NPD", "ok"),
    "EnableKeyRotation": ("D", "PD"),
    "DisableKeyRotation": ("D", "PD"),
    "GetKeyRotationStatus": ("ok", "ok"),
    "RotateKeyOnDemand": ("D", "PD"),
    "ListKeyRotations": ("ok", "ok"),
    "DescribeKey": ("ok", "ok"),
    "DescribeKeyViaAlias": ("ok", "ok"),
    "ListAliases": ("ok", "ok"),
    "ListResourceTags": ("ok", "ok"),
    "GetKeyPolicy": ("ok", "ok"),
    "ListKeyPolicies": ("ok", "ok"),
}

# The state a successful call leaves the key in (unchanged unless listed).
AFTER: dict[tuple[str, str], str] = {
    ("EnableKey", "Disabled"): "Enabled",
    ("ScheduleKeyDeletion", "Disabled"): "PendingDeletion",
    ("CancelKeyDeletion", "PendingDeletion"): "Disabled",
}

STATES = ("Disabled", "PendingDeletion")
CASES = [(op, state, cells[i]) for op, cells in MATRIX.items() for i, state in enumerate(STATES)]


def test_matrix_names_real_operations() -> None:
    assert set(MATRIX) == set(OPS)


@pytest.mark.parametrize(("op", "state", "expected"), CASES, ids=[f"{o}-{s}" for o, s, _ in CASES])
def test_state_matrix(kms: Any, op: str, state: str, expected: str) -> None:
    subject = Subject(kms, state)
    if expected == "ok":
        out = OPS[op](subject)
        assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert subject.state() == AFTER.get((op, state), state)
        if op == "GetKeyRotationStatus":
            assert out["KeyRotationEnabled"] is False
        if op in ("DescribeKey", "DescribeKeyViaAlias"):
            assert out["KeyMetadata"]["KeyState"] == state
        if op == "ListAliases":
            assert [a["AliasName"] for a in out["Aliases"]] == [subject.alias]
        if op == "ListResourceTags":
            assert out["Tags"] == [{"TagKey": "keep", "TagValue": "1"}]
        return
    with pytest.raises(ClientError) as info:
        OPS[op](subject)
    got = info.value.response["Error"]
    code, message = {
        "D": ("DisabledException", f"{subject.arn} is disabled."),
        "PD": ("KMSInvalidStateException", f"{subject.arn} is pending deletion."),
        "NPD": ("KMSInvalidStateException", f"{subject.arn} is not pending deletion."),
    }[expected]
    assert (got["Code"], got.get("Message")) == (code, message)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert subject.state() == state  # a refused call changes nothing
