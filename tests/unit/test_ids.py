"""Key ids, ARNs and alias names (KMS-REFERENCE.md §2): generation, parsing and the accepted-forms rules."""

from __future__ import annotations

import re

import pytest

from trent.node.model.errors import KmsError
from trent.node.model.ids import (
    RefKind,
    alias_arn,
    check_alias_name,
    is_key_id,
    key_arn,
    new_key_id,
    parse_key_ref,
    partition_for,
)

KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
MRK_ID = "mrk-1234abcd12ab34cd56ef1234567890ab"
ACCOUNT = "111122223333"


def error_of(fn: object, *args: object, **kwargs: object) -> KmsError:
    with pytest.raises(KmsError) as info:
        fn(*args, **kwargs)  # type: ignore[operator]
    return info.value


# -- generation --------------------------------------------------------------------------------------------


def test_new_single_region_key_id_is_lowercase_uuid4() -> None:
    ids = {new_key_id() for _ in range(200)}
    assert len(ids) == 200
    for key_id in ids:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", key_id), key_id
        assert is_key_id(key_id)


def test_new_multi_region_key_id_is_mrk_plus_32_hex_without_hyphens() -> None:
    ids = {new_key_id(multi_region=True) for _ in range(200)}
    assert len(ids) == 200
    for key_id in ids:
        assert re.fullmatch(r"mrk-[0-9a-f]{32}", key_id), key_id
        assert len(key_id) == 36
        assert is_key_id(key_id)


@pytest.mark.parametrize("value", [KEY_ID, MRK_ID])
def test_is_key_id_accepts_aws_shapes(value: str) -> None:
    assert is_key_id(value)


@pytest.mark.parametrize("value", [
    "", "nope", "1234abcd", KEY_ID.upper(), KEY_ID + "0", KEY_ID[:-1], KEY_ID.replace("-", ""),
    "mrk-" + KEY_ID,  # moto's hyphenated shape is not AWS's
    "mrk-1234abcd12ab34cd56ef1234567890a", "mrk-1234abcd12ab34cd56ef1234567890ab0",
    "MRK-1234abcd12ab34cd56ef1234567890ab",
    f"key/{KEY_ID}", f" {KEY_ID}", f"{KEY_ID}\n",
])
def test_is_key_id_rejects_other_strings(value: str) -> None:
    assert not is_key_id(value)


# -- ARNs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("region", "partition"), [
    ("us-east-1", "aws"), ("eu-west-1", "aws"), ("ap-northeast-2", "aws"),
    ("cn-north-1", "aws-cn"), ("cn-northwest-1", "aws-cn"),
    ("us-gov-west-1", "aws-us-gov"), ("us-gov-east-1", "aws-us-gov"),
])
def test_partition_follows_region_prefix(region: str, partition: str) -> None:
    assert partition_for(region) == partition


def test_key_and_alias_arns() -> None:
    assert key_arn("us-east-2", ACCOUNT, KEY_ID) == f"arn:aws:kms:us-east-2:{ACCOUNT}:key/{KEY_ID}"
    assert key_arn("cn-north-1", ACCOUNT, MRK_ID) == f"arn:aws-cn:kms:cn-north-1:{ACCOUNT}:key/{MRK_ID}"
    assert alias_arn("us-east-2", ACCOUNT, "alias/payments") == f"arn:aws:kms:us-east-2:{ACCOUNT}:alias/payments"
    assert alias_arn("us-gov-west-1", ACCOUNT, "alias/a/b") == f"arn:aws-us-gov:kms:us-gov-west-1:{ACCOUNT}:alias/a/b"


# -- parse_key_ref: every accepted form ----------------------------------------------------------------


@pytest.mark.parametrize("allow_alias", [True, False])
@pytest.mark.parametrize("key_id", [KEY_ID, MRK_ID])
def test_bare_key_id(key_id: str, allow_alias: bool) -> None:
    ref = parse_key_ref(key_id, allow_alias=allow_alias)
    assert (ref.kind, ref.key_id, ref.alias_name, ref.region, ref.account) == (
        RefKind.KEY_ID, key_id, None, None, None)
    assert ref.raw == key_id


@pytest.mark.parametrize("allow_alias", [True, False])
@pytest.mark.parametrize(("arn", "region"), [
    (f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{KEY_ID}", "eu-west-1"),
    (f"arn:aws:kms:ap-northeast-2:{ACCOUNT}:key/{MRK_ID}", "ap-northeast-2"),
    (f"arn:aws-cn:kms:cn-north-1:{ACCOUNT}:key/{KEY_ID}", "cn-north-1"),
    (f"arn:aws-us-gov:kms:us-gov-west-1:{ACCOUNT}:key/{KEY_ID}", "us-gov-west-1"),
])
def test_key_arn(arn: str, region: str, allow_alias: bool) -> None:
    ref = parse_key_ref(arn, allow_alias=allow_alias)
    assert ref.kind is RefKind.KEY_ARN
    assert ref.key_id == arn.rsplit("/", 1)[1]
    assert (ref.region, ref.account, ref.alias_name, ref.raw) == (region, ACCOUNT, None, arn)


def test_alias_name_where_aliases_are_accepted() -> None:
    ref = parse_key_ref("alias/my/app-key_1", allow_alias=True)
    assert (ref.kind, ref.alias_name, ref.key_id, ref.region) == (RefKind.ALIAS_NAME, "alias/my/app-key_1", None, None)


def test_alias_arn_where_aliases_are_accepted() -> None:
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/my/app"
    ref = parse_key_ref(arn, allow_alias=True)
    assert (ref.kind, ref.alias_name, ref.key_id) == (RefKind.ALIAS_ARN, "alias/my/app", None)
    assert (ref.region, ref.account) == ("us-east-1", ACCOUNT)


# -- parse_key_ref: the forms an operation refuses, and garbage ----------------------------------------


@pytest.mark.parametrize("value", ["alias/app", f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/app"])
def test_alias_forms_where_only_key_id_or_arn_is_accepted(value: str) -> None:
    err = error_of(parse_key_ref, value, allow_alias=False)
    assert (err.code, err.message, err.status) == ("NotFoundException", f"Invalid keyId {value}", 400)


@pytest.mark.parametrize("allow_alias", [True, False])
@pytest.mark.parametrize("value", [
    "nope", "1234", KEY_ID.upper(), KEY_ID[:-1], "mrk-" + KEY_ID, f"key/{KEY_ID}", "alias",
    f"arn:aws:kms:us-east-1:{ACCOUNT}:key/nope", f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{KEY_ID.upper()}",
])
def test_malformed_key_ids_are_invalid_key_id(value: str, allow_alias: bool) -> None:
    err = error_of(parse_key_ref, value, allow_alias=allow_alias)
    assert (err.code, err.message) == ("NotFoundException", f"Invalid keyId {value}")


@pytest.mark.parametrize("value", [
    "arn:aws:foo", f"arn:aws:s3:us-east-1:{ACCOUNT}:key/{KEY_ID}", f"arn:aws:kms:us-east-1:1234:key/{KEY_ID}",
    f"arn:other:kms:us-east-1:{ACCOUNT}:key/{KEY_ID}", f"arn:aws:kms:us-east-1:{ACCOUNT}:grant/{KEY_ID}",
    f"arn:aws:kms::{ACCOUNT}:key/{KEY_ID}",
])
def test_unparsable_arns_are_refused(value: str) -> None:
    err = error_of(parse_key_ref, value, allow_alias=True)
    assert err.code == "InvalidArnException"
    assert err.message is not None and value in err.message


# -- alias names ------------------------------------------------------------------------------------------


PREFIX_MESSAGE = ('Alias must start with the prefix "alias/". Please see '
                  "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html")


@pytest.mark.parametrize("name", ["alias/a", "alias/My-Key_1", "alias/team/app/prod", "alias/" + "x" * 250,
                                  "alias/awsome", "alias/my/aws/x", "alias/aws-x", "alias/my-alias_/"])
def test_valid_alias_names(name: str) -> None:
    check_alias_name(name)


@pytest.mark.parametrize("name", ["payments", "Alias/x", "aliasx", "/alias/x", "arn:aws:kms:us-east-1:1:alias/x",
                                  "Alias/aws/x", "my:alias"])
def test_alias_name_without_prefix(name: str) -> None:
    err = error_of(check_alias_name, name)
    assert (err.code, err.message, err.status) == ("ValidationException", PREFIX_MESSAGE, 400)


@pytest.mark.parametrize("name", ["alias/my:alias", "alias/a:b:c", "alias/:", "alias/"])
def test_colon_or_no_name_after_the_prefix(name: str) -> None:
    # The model's pattern admits ':'; AWS's service refuses it with its own message.
    err = error_of(check_alias_name, name)
    assert (err.code, err.message, err.status) == (
        "ValidationException", f"{name} contains invalid characters for an alias", 400)


@pytest.mark.parametrize("name", ["alias/aws/ebs", "alias/aws/x/y", "alias/aws/", "alias/aws", "alias/aws/a:b"])
def test_reserved_aws_aliases_are_not_authorized(name: str) -> None:
    # Before the character check, as AWS (and moto after it) answers.
    err = error_of(check_alias_name, name)
    assert (err.code, err.message, err.status) == ("NotAuthorizedException", None, 400)
