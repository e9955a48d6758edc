"""AWS managed keys through boto3: the predefined aliases, the key DescribeKey creates, its fixed policy (a direct
Encrypt is denied; a principal acting through the service may use it), and everything a customer may not do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.harness import RunningCluster, error, free_port_block, poll

ACCOUNT = "111122223333"
ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"
S3_APP = ("AKIAS3APPEXAMPLE0001", "s3-app-secret", f"arn:aws:iam::{ACCOUNT}:role/uploads-through-s3")
EC2_APP = ("AKIAEC2APPEXAMPLE001", "ec2-app-secret", f"arn:aws:iam::{ACCOUNT}:role/volumes-through-ec2")
REGIONS = ("us-east-1", "eu-west-1")
S3_DESCRIPTION = "Default key that protects my S3 objects when no other key is defined"

CONFIG = f"""
account = "{ACCOUNT}"

[[principals]]
access_key = "test"
secret_key = "test"

[[principals]]
access_key = "{S3_APP[0]}"
secret_key = "{S3_APP[1]}"
arn = "{S3_APP[2]}"
via_service = "s3"

[[principals]]
access_key = "{EC2_APP[0]}"
secret_key = "{EC2_APP[1]}"
arn = "{EC2_APP[2]}"
via_service = "ec2"
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    root = tmp_path_factory.mktemp("managed")
    (root / "trent.toml").write_text(CONFIG)
    c = RunningCluster(root / "data", free_port_block(len(REGIONS) + 1), regions=REGIONS,
                       extra_args=("--config", str(root / "trent.toml"))).start()
    yield c
    if c.proc is not None:
        c.stop()


@pytest.fixture(scope="module")
def kms(cluster: RunningCluster) -> Any:
    return cluster.client("us-east-1")


def _as(cluster: RunningCluster, who: tuple[str, str, str], region: str = "us-east-1") -> Any:
    return cluster.client(region, access_key=who[0], secret_key=who[1])


def _aliases(kms: Any) -> dict[str, dict[str, Any]]:
    return {a["AliasName"]: a for page in kms.get_paginator("list_aliases").paginate() for a in page["Aliases"]}


def _denied(who: str, action: str, arn: str) -> dict[str, Any]:
    return {"Code": "AccessDeniedException", "Status": 400,
            "Message": f"User: {who} is not authorized to perform: kms:{action} on resource: {arn} because no "
                       f"resource-based policy allows the kms:{action} action"}


def test_predefined_aliases_are_listed_without_a_target_until_used(kms: Any) -> None:
    aliases = _aliases(kms)
    for name in ("alias/aws/s3", "alias/aws/ebs", "alias/aws/rds", "alias/aws/lambda", "alias/aws/secretsmanager",
                 "alias/aws/ssm", "alias/aws/dynamodb", "alias/aws/sqs", "alias/aws/sns"):
        assert aliases[name] == {"AliasName": name, "AliasArn": f"arn:aws:kms:us-east-1:{ACCOUNT}:{name}"}
    assert not any(k for page in kms.get_paginator("list_keys").paginate() for k in page["Keys"])


def test_describe_key_creates_the_managed_key_once_per_region(cluster: RunningCluster, kms: Any) -> None:
    meta = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]
    assert meta["KeyManager"] == "AWS"
    assert meta["Description"] == S3_DESCRIPTION
    assert (meta["KeyState"], meta["Enabled"], meta["MultiRegion"], meta["Origin"], meta["KeySpec"]) == (
        "Enabled", True, False, "AWS_KMS", "SYMMETRIC_DEFAULT")
    assert kms.describe_key(KeyId=f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/aws/s3")["KeyMetadata"]["KeyId"] == \
        meta["KeyId"]
    bound = _aliases(kms)["alias/aws/s3"]
    assert bound["TargetKeyId"] == meta["KeyId"] and "CreationDate" in bound
    assert [a["AliasName"] for a in kms.list_aliases(KeyId=meta["KeyId"])["Aliases"]] == ["alias/aws/s3"]
    # Per region: eu-west-1 gets a key of its own on first use there.
    eu = cluster.client("eu-west-1").describe_key(KeyId="alias/aws/s3")["KeyMetadata"]
    assert eu["KeyId"] != meta["KeyId"] and eu["Arn"].startswith("arn:aws:kms:eu-west-1:")
    rotation = kms.get_key_rotation_status(KeyId=meta["KeyId"])
    assert rotation["KeyRotationEnabled"] is True and rotation["RotationPeriodInDays"] == 365
    policy = kms.get_key_policy(KeyId=meta["KeyId"], PolicyName="default")["Policy"]
    assert policy.startswith('{\n  "Version" : "2012-10-17",\n  "Id" : "auto-s3-2",\n  "Statement" : [ {\n')
    statements = json.loads(policy)["Statement"]
    assert statements[0]["Principal"] == {"AWS": "*"}
    assert statements[0]["Condition"] == {"StringEquals": {"kms:CallerAccount": ACCOUNT,
                                                           "kms:ViaService": "s3.us-east-1.amazonaws.com"}}
    assert statements[1]["Action"] == ["kms:Describe*", "kms:Get*", "kms:List*"]


def test_direct_use_is_denied_and_use_through_the_service_allowed(cluster: RunningCluster, kms: Any) -> None:
    arn = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["Arn"]
    assert error(kms.encrypt, KeyId="alias/aws/s3", Plaintext=b"x") == _denied(ROOT_ARN, "Encrypt", arn)
    s3 = _as(cluster, S3_APP)
    blob = s3.encrypt(KeyId="alias/aws/s3", Plaintext=b"object body")["CiphertextBlob"]
    assert s3.decrypt(CiphertextBlob=blob)["Plaintext"] == b"object body"
    data_key = s3.generate_data_key(KeyId="alias/aws/s3", KeySpec="AES_256")
    assert len(data_key["Plaintext"]) == 32
    # The account itself may not decrypt directly, nor may a principal acting through another service.
    assert error(kms.decrypt, CiphertextBlob=blob) == _denied(ROOT_ARN, "Decrypt", arn)
    ec2 = _as(cluster, EC2_APP)
    assert error(ec2.encrypt, KeyId="alias/aws/s3", Plaintext=b"x") == _denied(EC2_APP[2], "Encrypt", arn)
    # kms:ViaService names the region the request is made in: the s3 key of eu-west-1 is not usable from here.
    eu_arn = cluster.client("eu-west-1").describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["Arn"]
    assert _as(cluster, S3_APP, "eu-west-1").encrypt(KeyId=eu_arn, Plaintext=b"y")["KeyId"] == eu_arn


def test_a_service_using_an_alias_first_creates_its_key(cluster: RunningCluster, kms: Any) -> None:
    ec2 = _as(cluster, EC2_APP)
    assert "TargetKeyId" not in _aliases(kms)["alias/aws/ebs"]
    out = ec2.generate_data_key_without_plaintext(KeyId="alias/aws/ebs", KeySpec="AES_256")
    meta = kms.describe_key(KeyId="alias/aws/ebs")["KeyMetadata"]
    assert out["KeyId"] == meta["Arn"] and meta["KeyManager"] == "AWS"
    assert meta["Description"] == "Default key that protects my EBS volumes when no other key is defined"
    assert json.loads(kms.get_key_policy(KeyId=meta["KeyId"])["Policy"])["Statement"][0]["Condition"][
        "StringEquals"]["kms:ViaService"] == "ec2.us-east-1.amazonaws.com"
    # Audited like any key: the creation is KMS's own event, and the use is recorded against the key.
    def first_event() -> dict[str, Any] | None:
        lines = cluster.trent("audit", "--json", "--key", meta["KeyId"]).stdout.splitlines()
        return json.loads(lines[0]) if lines else None

    found = poll(first_event, timeout=20)
    assert found["eventName"] == "CreateKey" and found["eventType"] == "AwsServiceEvent"
    # The service's call is recorded as CloudTrail records calls a service makes for a principal.
    def service_call() -> dict[str, Any] | None:
        lines = cluster.trent("audit", "--json", "--event", "GenerateDataKeyWithoutPlaintext", "--principal",
                              "ec2.amazonaws.com").stdout.splitlines()
        return json.loads(lines[-1]) if lines else None

    used = poll(service_call, timeout=20)
    assert used["userIdentity"]["invokedBy"] == "ec2.amazonaws.com"
    assert used["userIdentity"]["arn"] == EC2_APP[2] and used["resources"][0]["ARN"] == meta["Arn"]


def test_what_a_customer_may_not_do_to_a_managed_key(cluster: RunningCluster, kms: Any) -> None:
    meta = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]
    key_id, arn = meta["KeyId"], meta["Arn"]
    refused: list[tuple[str, Any, dict[str, Any]]] = [
        ("DisableKey", kms.disable_key, {"KeyId": key_id}),
        ("ScheduleKeyDeletion", kms.schedule_key_deletion, {"KeyId": key_id, "PendingWindowInDays": 7}),
        ("PutKeyPolicy", kms.put_key_policy, {"KeyId": key_id, "PolicyName": "default",
                                              "Policy": json.dumps({"Version": "2012-10-17", "Statement": []})}),
        ("EnableKeyRotation", kms.enable_key_rotation, {"KeyId": key_id, "RotationPeriodInDays": 90}),
        ("DisableKeyRotation", kms.disable_key_rotation, {"KeyId": key_id}),
        ("RotateKeyOnDemand", kms.rotate_key_on_demand, {"KeyId": key_id}),
        ("TagResource", kms.tag_resource, {"KeyId": key_id, "Tags": [{"TagKey": "team", "TagValue": "a"}]}),
        ("UpdateKeyDescription", kms.update_key_description, {"KeyId": key_id, "Description": "mine"}),
        ("CreateAlias", kms.create_alias, {"AliasName": "alias/my-s3", "TargetKeyId": key_id}),
    ]
    for action, call, params in refused:
        assert error(call, **params) == _denied(ROOT_ARN, action, arn), action
    # Not through the service either: the service may only use the key.
    assert error(_as(cluster, S3_APP).disable_key, KeyId=key_id) == _denied(S3_APP[2], "DisableKey", arn)
    # The alias/aws/ names are AWS's: no alias is made, moved or deleted there.
    mine = kms.create_key()["KeyMetadata"]["KeyId"]
    for call, params in ((kms.create_alias, {"AliasName": "alias/aws/mine", "TargetKeyId": mine}),
                         (kms.delete_alias, {"AliasName": "alias/aws/s3"}),
                         (kms.update_alias, {"AliasName": "alias/aws/s3", "TargetKeyId": mine})):
        assert error(call, **params)["Code"] == "NotAuthorizedException"
    assert _aliases(kms)["alias/aws/s3"]["TargetKeyId"] == key_id
    after = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert (after["KeyState"], after["Description"]) == ("Enabled", S3_DESCRIPTION)
    assert kms.list_resource_tags(KeyId=key_id)["Tags"] == []


def test_unknown_aws_aliases_and_paging_over_the_predefined_ones(cluster: RunningCluster, kms: Any) -> None:
    for name in ("alias/aws/not-a-service", "alias/aws/" + "x" * 200):
        assert error(kms.describe_key, KeyId=name) == {
            "Code": "NotFoundException", "Status": 400,
            "Message": f"Alias arn:aws:kms:us-east-1:{ACCOUNT}:{name} is not found."}
    keys_before = {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]}
    paged: list[str] = []
    kwargs: dict[str, Any] = {"Limit": 3}
    while True:
        page = kms.list_aliases(**kwargs)
        paged += [a["AliasName"] for a in page["Aliases"]]
        if not page["Truncated"]:
            break
        kwargs["Marker"] = page["NextMarker"]
    assert paged == sorted(_aliases(kms)) and len(paged) == len(set(paged))
    assert {k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]} == keys_before  # listing creates nothing
