"""Tags over the wire: TagResource, UntagResource, ListResourceTags (KMS-REFERENCE.md §11)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.harness import RunningCluster, error, marker_pages

ACCOUNT = "111122223333"


def new_key(kms: Any, **kwargs: Any) -> dict[str, Any]:
    meta: dict[str, Any] = kms.create_key(**kwargs)["KeyMetadata"]
    return meta


def tags(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"TagKey": k, "TagValue": v} for k, v in pairs]


def all_tags(kms: Any, key_id: str, limit: int | None = None) -> dict[str, str]:
    """Every tag of a key, following markers by hand and checking the paging contract."""
    out: dict[str, str] = {}
    for page in marker_pages(kms.list_resource_tags, "Tags", limit, max_pages=1000, KeyId=key_id):
        for t in page:
            assert set(t) == {"TagKey", "TagValue"}
            assert t["TagKey"] not in out, "tag listed twice"
            out[t["TagKey"]] = t["TagValue"]
    return out


def test_tag_untag_and_overwrite(kms: Any) -> None:
    key = new_key(kms)
    assert kms.list_resource_tags(KeyId=key["KeyId"])["Tags"] == []
    out = kms.tag_resource(KeyId=key["KeyId"], Tags=tags(("team", "payments"), ("env", "prod"), ("Env", "case")))
    assert set(out) == {"ResponseMetadata"}
    assert all_tags(kms, key["KeyId"]) == {"team": "payments", "env": "prod", "Env": "case"}
    # Same key again: the value is replaced, no duplicate appears.
    kms.tag_resource(KeyId=key["Arn"], Tags=tags(("env", "staging")))
    assert all_tags(kms, key["KeyId"]) == {"team": "payments", "env": "staging", "Env": "case"}
    # Empty values are allowed.
    kms.tag_resource(KeyId=key["KeyId"], Tags=tags(("flag", "")))
    assert all_tags(kms, key["KeyId"])["flag"] == ""
    out = kms.untag_resource(KeyId=key["KeyId"], TagKeys=["env", "flag"])
    assert set(out) == {"ResponseMetadata"}
    assert all_tags(kms, key["Arn"]) == {"team": "payments", "Env": "case"}


def test_untag_of_a_missing_tag_key_is_a_no_op(kms: Any) -> None:
    key = new_key(kms, Tags=tags(("a", "1")))
    kms.untag_resource(KeyId=key["KeyId"], TagKeys=["not-there", "A"])
    assert all_tags(kms, key["KeyId"]) == {"a": "1"}
    bare = new_key(kms)
    kms.untag_resource(KeyId=bare["KeyId"], TagKeys=["anything"])
    assert all_tags(kms, bare["KeyId"]) == {}


def test_tags_are_case_sensitive_and_allow_the_aws_character_set(kms: Any) -> None:
    key = new_key(kms)
    odd = tags(("Cost Center", "a b"), ("k.e_y:/=+-@", "v.a_l:/=+-@"), ("ünï", "cödé"), ("K", "1"), ("k", "2"))
    kms.tag_resource(KeyId=key["KeyId"], Tags=odd)
    assert all_tags(kms, key["KeyId"]) == {t["TagKey"]: t["TagValue"] for t in odd}


def test_list_resource_tags_pagination(kms: Any) -> None:
    expected = {f"tag-{i:02d}": f"value-{i}" for i in range(50)}
    key = new_key(kms, Tags=tags(*expected.items()))
    for limit in (1, 2, 7, 49, 50):
        assert all_tags(kms, key["KeyId"], limit=limit) == expected
    page = kms.list_resource_tags(KeyId=key["KeyId"])  # default page size is the whole 50
    assert (len(page["Tags"]), page["Truncated"]) == (50, False)
    assert "NextMarker" not in page
    first = kms.list_resource_tags(KeyId=key["KeyId"], Limit=10)
    assert (len(first["Tags"]), first["Truncated"]) == (10, True)


def test_list_resource_tags_limit_and_marker_errors(kms: Any) -> None:
    key = new_key(kms, Tags=tags(("a", "1"), ("b", "2")))
    err = error(kms.list_resource_tags, KeyId=key["KeyId"], Limit=51)
    assert err == {"Code": "ValidationException", "Status": 400, "Message": (
        "1 validation error detected: Value '51' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 50")}
    for marker in ("!!!", "garbage", "YQ=="):
        assert error(kms.list_resource_tags, KeyId=key["KeyId"], Marker=marker)["Code"] == "InvalidMarkerException"


@pytest.mark.parametrize("tag_key", ["aws:x", "AWS:x", "Aws:CreatedBy", "aWs:", "aws:cloudformation:stack-name"])
def test_reserved_aws_prefix_is_a_tag_exception(kms: Any, tag_key: str) -> None:
    key = new_key(kms, Tags=tags(("keep", "1")))
    err = error(kms.tag_resource, KeyId=key["KeyId"], Tags=tags(("ok", "1"), (tag_key, "v")))
    assert (err["Code"], err["Status"]) == ("TagException", 400)
    assert err["Message"]
    assert all_tags(kms, key["KeyId"]) == {"keep": "1"}  # nothing of the refused request was applied
    before = _key_ids(kms)
    err = error(kms.create_key, Tags=tags((tag_key, "v")))
    assert err["Code"] == "TagException"
    assert _key_ids(kms) == before


def test_aws_inside_a_key_is_fine(kms: Any) -> None:
    key = new_key(kms, Tags=tags(("my:aws:thing", "1"), ("awsome", "2")))
    assert all_tags(kms, key["KeyId"]) == {"my:aws:thing": "1", "awsome": "2"}


def _key_ids(kms: Any) -> set[str]:
    return {k["KeyId"] for p in kms.get_paginator("list_keys").paginate() for k in p["Keys"]}


def test_more_than_fifty_tags(kms: Any) -> None:
    before = _key_ids(kms)
    err = error(kms.create_key, Tags=tags(*((f"k{i}", "v") for i in range(51))))
    assert (err["Code"], err["Status"]) == ("TagException", 400)
    assert _key_ids(kms) == before
    key = new_key(kms, Tags=tags(*((f"k{i}", "v") for i in range(45))))
    err = error(kms.tag_resource, KeyId=key["KeyId"], Tags=tags(*((f"n{i}", "v") for i in range(6))))
    assert err["Code"] == "TagException"
    assert len(all_tags(kms, key["KeyId"])) == 45
    # Exactly 50 is fine; overwriting existing keys at the limit is fine (no new tag).
    kms.tag_resource(KeyId=key["KeyId"], Tags=tags(*((f"n{i}", "v") for i in range(5))))
    kms.tag_resource(KeyId=key["KeyId"], Tags=tags(("k0", "changed"), ("n4", "changed")))
    got = all_tags(kms, key["KeyId"])
    assert len(got) == 50 and got["k0"] == "changed"
    assert error(kms.tag_resource, KeyId=key["KeyId"], Tags=tags(("one-more", "v")))["Code"] == "TagException"
    # Removing one makes room again.
    kms.untag_resource(KeyId=key["KeyId"], TagKeys=["k1"])
    kms.tag_resource(KeyId=key["KeyId"], Tags=tags(("one-more", "v")))
    assert len(all_tags(kms, key["KeyId"])) == 50


def test_tag_key_and_value_length_limits_are_validation_errors(kms: Any) -> None:
    key = new_key(kms)
    long_key = "k" * 200
    err = error(kms.tag_resource, KeyId=key["KeyId"], Tags=tags((long_key, "v")))
    assert err == {"Code": "ValidationException", "Status": 400, "Message": (
        f"1 validation error detected: Value '{long_key}' at 'tags.1.member.tagKey' failed to satisfy "
        "constraint: Member must have length less than or equal to 128")}
    err = error(kms.tag_resource, KeyId=key["KeyId"], Tags=tags(("fine", "v"), (long_key, "v")))
    assert "at 'tags.2.member.tagKey'" in err["Message"]
    long_value = "v" * 300
    err = error(kms.tag_resource, KeyId=key["KeyId"], Tags=tags(("a", long_value)))
    assert err["Code"] == "ValidationException"
    assert err["Message"] == (
        f"1 validation error detected: Value '{long_value}' at 'tags.1.member.tagValue' failed to satisfy "
        "constraint: Member must have length less than or equal to 256")
    # Both at once: two clauses.
    err = error(kms.tag_resource, KeyId=key["KeyId"], Tags=tags((long_key, long_value)))
    assert err["Message"].startswith("2 validation errors detected: ")
    # 128 / 256 exactly are accepted.
    kms.tag_resource(KeyId=key["KeyId"], Tags=tags(("k" * 128, "v" * 256)))
    assert all_tags(kms, key["KeyId"]) == {"k" * 128: "v" * 256}
    # Same limits at CreateKey.
    err = error(kms.create_key, Tags=tags((long_key, "v")))
    assert err["Code"] == "ValidationException" and "at 'tags.1.member.tagKey'" in err["Message"]


def test_tag_operations_take_key_id_or_arn_only(kms: Any) -> None:
    key = new_key(kms)
    alias = f"alias/tags-{uuid.uuid4().hex}"
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    for call, extra in ((kms.tag_resource, {"Tags": tags(("a", "b"))}), (kms.untag_resource, {"TagKeys": ["a"]}),
                        (kms.list_resource_tags, {})):
        err = error(call, KeyId=alias, **extra)
        assert err == {"Code": "NotFoundException", "Message": f"Invalid keyId {alias}", "Status": 400}
    missing = str(uuid.uuid4())
    err = error(kms.tag_resource, KeyId=missing, Tags=tags(("a", "b")))
    assert err["Message"] == f"Key 'arn:aws:kms:us-east-1:{ACCOUNT}:key/{missing}' does not exist"


def test_tags_are_per_region(cluster: RunningCluster) -> None:
    us, eu = cluster.client("us-east-1"), cluster.client("eu-west-1")
    us_key = new_key(us, Tags=tags(("region", "us")))
    eu_key = new_key(eu, Tags=tags(("region", "eu")))
    us.tag_resource(KeyId=us_key["KeyId"], Tags=tags(("only", "us")))
    assert all_tags(us, us_key["KeyId"]) == {"region": "us", "only": "us"}
    assert all_tags(eu, eu_key["KeyId"]) == {"region": "eu"}
    # A key is tagged only through its own region.
    for call, extra in ((us.tag_resource, {"Tags": tags(("x", "y"))}), (us.list_resource_tags, {}),
                        (us.untag_resource, {"TagKeys": ["region"]})):
        assert error(call, KeyId=eu_key["Arn"], **extra)["Code"] == "NotFoundException"
    assert all_tags(eu, eu_key["Arn"]) == {"region": "eu"}


def test_tags_on_disabled_and_pending_deletion_keys(kms: Any) -> None:
    disabled = new_key(kms, Tags=tags(("a", "1")))
    kms.disable_key(KeyId=disabled["KeyId"])
    kms.tag_resource(KeyId=disabled["KeyId"], Tags=tags(("b", "2")))
    kms.untag_resource(KeyId=disabled["KeyId"], TagKeys=["a"])
    assert all_tags(kms, disabled["KeyId"]) == {"b": "2"}
    pending = new_key(kms, Tags=tags(("a", "1")))
    kms.schedule_key_deletion(KeyId=pending["KeyId"], PendingWindowInDays=7)
    message = f"{pending['Arn']} is pending deletion."
    for call, extra in ((kms.tag_resource, {"Tags": tags(("b", "2"))}), (kms.untag_resource, {"TagKeys": ["a"]})):
        assert error(call, KeyId=pending["KeyId"], **extra) == {
            "Code": "KMSInvalidStateException", "Message": message, "Status": 400}
    assert all_tags(kms, pending["KeyId"]) == {"a": "1"}
