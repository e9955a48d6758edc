"""AWS managed keys without a network: the catalogue's policies, the key first use creates, and the fixed policy
that holds even with access control off."""

from __future__ import annotations

import json
from pathlib import Path

import botocore.session
import pytest

from trent.node.auth.authorizer import AccessSettings, Authorizer
from trent.node.auth.policy import parse_policy
from trent.node.auth.principals import Principal
from trent.node.clock import FixedClock
from trent.node.config import ConfigError, load_config
from trent.node.crypto.rootkey import RootKey
from trent.node.model.errors import KmsError
from trent.node.model.managed import SERVICES, managed_service, pretty_json
from trent.node.ops import build_registry
from trent.node.ops.managed import provision, wanted
from trent.node.ops.registry import RequestContext
from trent.node.service import Region, RegionIdentity
from trent.node.store.memory import MemoryStore

ACCT = "111122223333"
ROOT = Principal("test", "test", f"arn:aws:iam::{ACCT}:root", ACCT)
S3 = Principal("AKIAS3", "s", f"arn:aws:iam::{ACCT}:role/s3-app", ACCT, via_service="s3")
OTHER = Principal("AKIAOTHER", "s", "arn:aws:iam::444455556666:root", "444455556666")
REGISTRY = build_registry(botocore.session.get_session().get_service_model("kms").operation_names)


@pytest.fixture
def region() -> Region:
    return Region(RegionIdentity("eu-west-1", ACCT), MemoryStore(), RootKey.from_bytes(bytes(range(32))),
                  FixedClock())


def test_every_catalogued_policy_is_a_valid_key_policy_naming_its_service() -> None:
    for alias, service in SERVICES.items():
        assert alias == f"alias/aws/{service.alias_suffix}"
        text = service.policy(ACCT, "eu-west-1")
        parse_policy(text)
        doc = json.loads(text)
        assert doc["Id"] == service.policy_id
        assert f"{service.via}." in text and f"arn:aws:iam::{ACCT}:root" in text
        assert service.description.startswith("Default key that protects my ")
    assert SERVICES["alias/aws/ebs"].via_service("eu-west-1") == "ec2.eu-west-1.amazonaws.com"
    assert managed_service("alias/aws/nothing") is None and managed_service("alias/s3") is None


def test_policies_print_as_aws_prints_them() -> None:
    assert pretty_json({"A": "x", "B": [{"C": {"D": "y"}}, {"E": True}], "F": ["p", "q"]}) == (
        '{\n  "A" : "x",\n  "B" : [ {\n    "C" : {\n      "D" : "y"\n    }\n  }, {\n    "E" : true\n  } ],\n'
        '  "F" : [ "p", "q" ]\n}')


def test_first_use_creates_one_key_and_binds_its_alias(region: Region) -> None:
    named = {"KeyId": "alias/aws/s3", "DestinationKeyId": f"arn:aws:kms:eu-west-1:{ACCT}:alias/aws/s3"}
    services = wanted(region, ROOT, named)
    assert [s.alias for s in services] == ["alias/aws/s3"]
    # Another region's or account's alias ARN, a customer alias, or another account's caller: nothing to make.
    assert wanted(region, ROOT, {"KeyId": f"arn:aws:kms:us-east-1:{ACCT}:alias/aws/s3"}) == []
    assert wanted(region, ROOT, {"KeyId": "alias/mine"}) == []
    assert wanted(region, OTHER, {"KeyId": "alias/aws/s3"}) == []
    (key,) = provision(region, services)
    assert (key.key_manager, key.multi_region, key.rotation.enabled, key.rotation.period_days) == ("AWS", False,
                                                                                                  True, 365)
    assert region.aliases["alias/aws/s3"].key_id == key.key_id
    assert provision(region, services) == [] and wanted(region, ROOT, named) == []
    assert len(region.keys) == 1


def _call(authz: Authorizer, region: Region, who: Principal, operation: str, **params: object) -> None:
    authz.check_request(region, who, REGISTRY[operation], params)


@pytest.mark.parametrize("enforce", [True, False])
def test_the_fixed_policy_holds_with_access_control_on_or_off(region: Region, enforce: bool) -> None:
    (key,) = provision(region, wanted(region, ROOT, {"KeyId": "alias/aws/s3"}))
    authz = Authorizer(AccessSettings(enforce, {}))
    _call(authz, region, ROOT, "DescribeKey", KeyId=key.key_id)
    _call(authz, region, ROOT, "GetKeyRotationStatus", KeyId=key.key_id)
    _call(authz, region, S3, "Encrypt", KeyId="alias/aws/s3", Plaintext=b"x")
    for operation, params in (("Encrypt", {"KeyId": key.key_id, "Plaintext": b"x"}),
                              ("DisableKey", {"KeyId": key.key_id}),
                              ("ScheduleKeyDeletion", {"KeyId": key.key_id}),
                              ("PutKeyPolicy", {"KeyId": key.key_id, "Policy": "{}"})):
        with pytest.raises(KmsError) as info:
            _call(authz, region, ROOT, operation, **params)
        assert info.value.code == "AccessDeniedException"
        assert info.value.message == (f"User: {ROOT.arn} is not authorized to perform: kms:{operation} on resource: "
                                      f"{key.arn} because no resource-based policy allows the kms:{operation} action")
    with pytest.raises(KmsError):
        _call(authz, region, S3, "DisableKey", KeyId=key.key_id)


def test_via_service_is_read_from_the_principal_entry(tmp_path: Path) -> None:
    config = tmp_path / "trent.toml"
    config.write_text('[[principals]]\naccess_key = "a"\nsecret_key = "b"\nvia_service = "ec2"\n')
    assert load_config(config).principals[0].via_service == "ec2"
    for bad in ('"EC2!"', "3", '""'):
        config.write_text(f'[[principals]]\naccess_key = "a"\nsecret_key = "b"\nvia_service = {bad}\n')
        with pytest.raises(ConfigError, match="via_service"):
            load_config(config)


def test_unused_predefined_aliases_list_without_target(region: Region) -> None:
    from trent.node.ops.aliases import list_aliases

    context = RequestContext("r", "ListAliases", ROOT, "127.0.0.1", "unit")
    listed = list_aliases(region, {"Limit": 100}, context)["Aliases"]
    assert {a["AliasName"] for a in listed} == set(SERVICES)
    assert all(set(a) == {"AliasName", "AliasArn"} for a in listed)
    assert list_aliases(region, {}, context._replace(principal=OTHER))["Aliases"] == []


def test_a_service_principal_makes_grants_for_aws_resources(region: Region) -> None:
    from trent.node.ops import keys as key_ops

    authz = Authorizer(AccessSettings(True, {}))
    only_for_resources = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ROOT.arn}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:CreateGrant", "Resource": "*",
         "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}}}]})
    context = RequestContext("r", "CreateKey", ROOT, "127.0.0.1", "unit", authz)
    key_id = key_ops.create_key(region, {"Policy": only_for_resources}, context)["KeyMetadata"]["KeyId"]
    grant = {"KeyId": key_id, "GranteePrincipal": S3.arn, "Operations": ["Decrypt"]}
    _call(authz, region, S3, "CreateGrant", **grant)
    app = Principal("AKIAAPP", "s", f"arn:aws:iam::{ACCT}:role/app", ACCT)
    with pytest.raises(KmsError) as info:
        _call(authz, region, app, "CreateGrant", **grant)
    assert info.value.code == "AccessDeniedException"


def test_provisioning_operations_are_declared_and_name_their_key_by_key_id() -> None:
    from trent.node.ops.managed import PROVISIONING_OPERATIONS

    for name in PROVISIONING_OPERATIONS:
        members = {action.member for action in REGISTRY[name].keys}
        assert members & {"KeyId", "SourceKeyId", "DestinationKeyId"}, name
