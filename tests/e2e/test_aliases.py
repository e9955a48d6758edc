"""Aliases over the wire: CreateAlias, UpdateAlias, DeleteAlias, ListAliases (KMS-REFERENCE.md §2, §11)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from tests.e2e.harness import RunningCluster, error, marker_pages

ACCOUNT = "111122223333"


def new_key(kms: Any) -> dict[str, Any]:
    meta: dict[str, Any] = kms.create_key()["KeyMetadata"]
    return meta


def unique(prefix: str = "t") -> str:
    return f"alias/{prefix}-{uuid.uuid4().hex}"


def aliases_of(kms: Any, key_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """All pages of ListAliases, following the markers by hand and checking the paging contract."""
    kwargs = {} if key_id is None else {"KeyId": key_id}
    return [alias for page in marker_pages(kms.list_aliases, "Aliases", limit, **kwargs) for alias in page]


def entry(kms: Any, name: str) -> dict[str, Any] | None:
    found = [a for a in aliases_of(kms) if a["AliasName"] == name]
    assert len(found) <= 1
    return found[0] if found else None


def test_create_list_update_delete(kms: Any) -> None:
    a, b = new_key(kms), new_key(kms)
    name = unique("life")
    assert set(kms.create_alias(AliasName=name, TargetKeyId=a["KeyId"])) == {"ResponseMetadata"}
    listed = entry(kms, name)
    assert listed is not None
    assert set(listed) == {"AliasName", "AliasArn", "TargetKeyId", "CreationDate", "LastUpdatedDate"}
    assert listed["AliasArn"] == f"arn:aws:kms:us-east-1:{ACCOUNT}:{name}"
    assert listed["TargetKeyId"] == a["KeyId"]
    assert isinstance(listed["CreationDate"], dt.datetime)
    assert listed["LastUpdatedDate"] >= listed["CreationDate"]
    assert kms.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == a["KeyId"]
    assert kms.describe_key(KeyId=listed["AliasArn"])["KeyMetadata"]["KeyId"] == a["KeyId"]

    assert set(kms.update_alias(AliasName=name, TargetKeyId=b["Arn"])) == {"ResponseMetadata"}
    updated = entry(kms, name)
    assert updated is not None
    assert updated["TargetKeyId"] == b["KeyId"]
    assert updated["CreationDate"] == listed["CreationDate"]
    assert updated["LastUpdatedDate"] >= listed["LastUpdatedDate"]
    assert kms.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == b["KeyId"]
    # Encrypting through the alias now uses the new key; the old ciphertext still decrypts with the old key.
    blob = kms.encrypt(KeyId=name, Plaintext=b"via alias")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["KeyId"] == b["Arn"]

    assert set(kms.delete_alias(AliasName=name)) == {"ResponseMetadata"}
    assert entry(kms, name) is None
    err = error(kms.describe_key, KeyId=name)
    assert err["Code"] == "NotFoundException"
    # The key itself is untouched by deleting its alias.
    assert kms.describe_key(KeyId=b["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"


def test_create_alias_with_key_arn_target_stores_the_bare_key_id(kms: Any) -> None:
    key = new_key(kms)
    name = unique("arn-target")
    kms.create_alias(AliasName=name, TargetKeyId=key["Arn"])
    listed = entry(kms, name)
    assert listed is not None and listed["TargetKeyId"] == key["KeyId"]
    assert kms.encrypt(KeyId=name, Plaintext=b"x")["KeyId"] == key["Arn"]


def test_list_aliases_key_id_filter(kms: Any) -> None:
    a, b = new_key(kms), new_key(kms)
    a_names = sorted([unique("fa"), unique("fa"), unique("fa")])
    b_name = unique("fb")
    for n in a_names:
        kms.create_alias(AliasName=n, TargetKeyId=a["KeyId"])
    kms.create_alias(AliasName=b_name, TargetKeyId=b["KeyId"])
    for ident in (a["KeyId"], a["Arn"]):
        assert sorted(x["AliasName"] for x in aliases_of(kms, ident)) == a_names
        assert {x["TargetKeyId"] for x in aliases_of(kms, ident)} == {a["KeyId"]}
    assert [x["AliasName"] for x in aliases_of(kms, b["KeyId"])] == [b_name]
    # Filtered listing pages too.
    assert sorted(x["AliasName"] for x in aliases_of(kms, a["KeyId"], limit=1)) == a_names
    # A key without aliases lists none.
    lonely = new_key(kms)
    page = kms.list_aliases(KeyId=lonely["KeyId"])
    assert (page["Aliases"], page["Truncated"]) == ([], False)
    assert "NextMarker" not in page


def test_list_aliases_key_id_must_be_a_key_id_or_arn(kms: Any) -> None:
    key = new_key(kms)
    name = unique("filter")
    kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    for ident in (name, f"arn:aws:kms:us-east-1:{ACCOUNT}:{name}"):
        err = error(kms.list_aliases, KeyId=ident)
        assert err == {"Code": "NotFoundException", "Message": f"Invalid keyId {ident}", "Status": 400}
    missing = str(uuid.uuid4())
    err = error(kms.list_aliases, KeyId=missing)
    assert err["Code"] == "NotFoundException"
    assert err["Message"] == f"Key 'arn:aws:kms:us-east-1:{ACCOUNT}:key/{missing}' does not exist"


@pytest.mark.parametrize("limit", [1, 2, 100])
def test_list_aliases_pagination_returns_each_alias_once(kms: Any, limit: int) -> None:
    key = new_key(kms)
    mine = {unique("page") for _ in range(5)}
    for n in mine:
        kms.create_alias(AliasName=n, TargetKeyId=key["KeyId"])
    listed = [a["AliasName"] for a in aliases_of(kms, limit=limit)]
    assert len(listed) == len(set(listed))
    assert mine <= set(listed)


def test_list_aliases_limits_and_markers(kms: Any) -> None:
    err = error(kms.list_aliases, Limit=101)
    assert err == {"Code": "ValidationException", "Status": 400, "Message": (
        "1 validation error detected: Value '101' at 'limit' failed to satisfy constraint: "
        "Member must have value less than or equal to 100")}
    for marker in ("!!!", "garbage", "YWxpYXMvYQ=="):
        assert error(kms.list_aliases, Marker=marker)["Code"] == "InvalidMarkerException"


@pytest.mark.parametrize("name", ["alias/aws/ebs", "alias/aws/my-key", "alias/aws/a/b"])
def test_reserved_aws_aliases_are_not_authorized(kms: Any, name: str) -> None:
    key = new_key(kms)
    for call, kwargs in ((kms.create_alias, {"TargetKeyId": key["KeyId"]}),
                         (kms.update_alias, {"TargetKeyId": key["KeyId"]}),
                         (kms.delete_alias, {})):
        err = error(call, AliasName=name, **kwargs)
        assert (err["Code"], err["Status"]) == ("NotAuthorizedException", 400), call
    assert aliases_of(kms, key["KeyId"]) == []


def test_duplicate_alias_already_exists(kms: Any) -> None:
    a, b = new_key(kms), new_key(kms)
    name = unique("dup")
    kms.create_alias(AliasName=name, TargetKeyId=a["KeyId"])
    for target in (a["KeyId"], b["KeyId"]):
        err = error(kms.create_alias, AliasName=name, TargetKeyId=target)
        assert (err["Code"], err["Status"]) == ("AlreadyExistsException", 400)
        assert f"arn:aws:kms:us-east-1:{ACCOUNT}:{name}" in err["Message"]
    listed = entry(kms, name)
    assert listed is not None and listed["TargetKeyId"] == a["KeyId"]


PREFIX = ('Alias must start with the prefix "alias/". Please see '
          "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html")
PATTERN = "Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$"


def _model_clause(name: str, rule: str) -> str:
    return f"1 validation error detected: Value '{name}' at 'aliasName' failed to satisfy constraint: {rule}"


@pytest.mark.parametrize(("name", "message"), [
    ("payments", PREFIX),
    ("Alias/x", PREFIX),
    ("my:alias", PREFIX),
    # The model's pattern admits ':'; AWS's service answers with its own message.
    ("alias/my:alias", "alias/my:alias contains invalid characters for an alias"),
    ("alias/a:b", "alias/a:b contains invalid characters for an alias"),
    ("alias/", "alias/ contains invalid characters for an alias"),
    # Everything else the model refuses, with the model's own message (before the prefix is looked at).
    ("alias/bad name", _model_clause("alias/bad name", PATTERN)),
    ("alias/bad name!", _model_clause("alias/bad name!", PATTERN)),
    ("alias/x.y", _model_clause("alias/x.y", PATTERN)),
    ("bad name", _model_clause("bad name", PATTERN)),
    ("alias/" + "x" * 251, _model_clause("alias/" + "x" * 251, "Member must have length less than or equal to 256")),
])
def test_bad_alias_names_are_validation_errors(kms: Any, name: str, message: str) -> None:
    key = new_key(kms)
    kms.create_alias(AliasName=(good := unique("good")), TargetKeyId=key["KeyId"])
    for call, kwargs in ((kms.create_alias, {"TargetKeyId": key["KeyId"]}),
                         (kms.update_alias, {"TargetKeyId": key["KeyId"]}),
                         (kms.delete_alias, {})):
        err = error(call, AliasName=name, **kwargs)
        assert err == {"Code": "ValidationException", "Message": message, "Status": 400}, call
    assert [a["AliasName"] for a in aliases_of(kms, key["KeyId"])] == [good]


def test_the_reserved_prefix_is_checked_before_the_characters(kms: Any) -> None:
    key = new_key(kms)
    for call, kwargs in ((kms.create_alias, {"TargetKeyId": key["KeyId"]}),
                         (kms.update_alias, {"TargetKeyId": key["KeyId"]}),
                         (kms.delete_alias, {})):
        for name in ("alias/aws/a:b", "alias/aws"):
            err = error(call, AliasName=name, **kwargs)
            assert (err["Code"], err["Status"]) == ("NotAuthorizedException", 400), (call, name)


@pytest.mark.parametrize("name", ["alias/my:alias", "alias/", "alias/aws/never-made"])
def test_alias_names_no_alias_can_have_are_not_found_as_key_ids(kms: Any, name: str) -> None:
    # Where an alias stands for a key (DescribeKey, Encrypt, ...), a name no alias can have is simply not found.
    arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:{name}"
    for ident in (name, arn) if name != "alias/" else (name,):  # an alias ARN naming nothing is an InvalidArn
        for call, kwargs in ((kms.describe_key, {}), (kms.encrypt, {"Plaintext": b"x"})):
            err = error(call, KeyId=ident, **kwargs)
            assert err == {"Code": "NotFoundException", "Message": f"Alias {arn} is not found.", "Status": 400}


def test_alias_as_target_is_a_validation_error(kms: Any) -> None:
    key = new_key(kms)
    existing = unique("target")
    kms.create_alias(AliasName=existing, TargetKeyId=key["KeyId"])
    other = unique("other")
    kms.create_alias(AliasName=other, TargetKeyId=new_key(kms)["KeyId"])
    for target in (existing, f"arn:aws:kms:us-east-1:{ACCOUNT}:{existing}"):
        err = error(kms.create_alias, AliasName=unique("x"), TargetKeyId=target)
        assert (err["Code"], err["Status"]) == ("ValidationException", 400)
        err = error(kms.update_alias, AliasName=other, TargetKeyId=target)
        assert (err["Code"], err["Status"]) == ("ValidationException", 400)
    assert aliases_of(kms, key["KeyId"])[0]["AliasName"] == existing
    assert len(aliases_of(kms, key["KeyId"])) == 1


def test_unknown_target_and_unknown_alias(kms: Any) -> None:
    missing = str(uuid.uuid4())
    missing_arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{missing}"
    err = error(kms.create_alias, AliasName=unique(), TargetKeyId=missing)
    assert err == {"Code": "NotFoundException", "Message": f"Key '{missing_arn}' does not exist", "Status": 400}
    err = error(kms.create_alias, AliasName=unique(), TargetKeyId="not-a-key")
    assert err == {"Code": "NotFoundException", "Message": "Invalid keyId not-a-key", "Status": 400}
    key = new_key(kms)
    name = unique("nobody")
    for call, kwargs in ((kms.update_alias, {"TargetKeyId": key["KeyId"]}), (kms.delete_alias, {})):
        err = error(call, AliasName=name, **kwargs)
        assert err == {"Code": "NotFoundException", "Status": 400,
                       "Message": f"Alias arn:aws:kms:us-east-1:{ACCOUNT}:{name} is not found."}


def test_target_pending_deletion(kms: Any) -> None:
    live, doomed = new_key(kms), new_key(kms)
    name = unique("pd")
    kms.create_alias(AliasName=name, TargetKeyId=live["KeyId"])
    old_alias = unique("on-doomed")
    kms.create_alias(AliasName=old_alias, TargetKeyId=doomed["KeyId"])
    kms.schedule_key_deletion(KeyId=doomed["KeyId"], PendingWindowInDays=7)
    message = f"{doomed['Arn']} is pending deletion."
    err = error(kms.create_alias, AliasName=unique(), TargetKeyId=doomed["KeyId"])
    assert err == {"Code": "KMSInvalidStateException", "Message": message, "Status": 400}
    err = error(kms.update_alias, AliasName=name, TargetKeyId=doomed["Arn"])
    assert err == {"Code": "KMSInvalidStateException", "Message": message, "Status": 400}
    # An alias of a key pending deletion can still move away to a live key, or be deleted.
    kms.update_alias(AliasName=old_alias, TargetKeyId=live["KeyId"])
    assert entry(kms, old_alias)["TargetKeyId"] == live["KeyId"]  # type: ignore[index]
    kms.delete_alias(AliasName=old_alias)


def test_disabled_target_is_fine(kms: Any) -> None:
    key = new_key(kms)
    kms.disable_key(KeyId=key["KeyId"])
    name = unique("disabled")
    kms.create_alias(AliasName=name, TargetKeyId=key["KeyId"])
    assert kms.describe_key(KeyId=name)["KeyMetadata"]["KeyState"] == "Disabled"
    err = error(kms.encrypt, KeyId=name, Plaintext=b"x")
    assert err == {"Code": "DisabledException", "Message": f"{key['Arn']} is disabled.", "Status": 400}


def test_fifty_aliases_per_key(kms: Any) -> None:
    key, other = new_key(kms), new_key(kms)
    for i in range(50):
        kms.create_alias(AliasName=f"alias/limit-{key['KeyId']}-{i:02d}", TargetKeyId=key["KeyId"])
    err = error(kms.create_alias, AliasName=f"alias/limit-{key['KeyId']}-50", TargetKeyId=key["KeyId"])
    assert (err["Code"], err["Status"]) == ("LimitExceededException", 400)
    # Moving another alias onto the full key is refused the same way.
    spare = unique("spare")
    kms.create_alias(AliasName=spare, TargetKeyId=other["KeyId"])
    err = error(kms.update_alias, AliasName=spare, TargetKeyId=key["KeyId"])
    assert err["Code"] == "LimitExceededException"
    # Re-pointing one of the key's own aliases at it is not a new alias.
    kms.update_alias(AliasName=f"alias/limit-{key['KeyId']}-00", TargetKeyId=key["KeyId"])
    assert len(aliases_of(kms, key["KeyId"])) == 50
    assert len(aliases_of(kms, key["KeyId"], limit=7)) == 50
    # Deleting one frees a slot.
    kms.delete_alias(AliasName=f"alias/limit-{key['KeyId']}-00")
    kms.create_alias(AliasName=f"alias/limit-{key['KeyId']}-50", TargetKeyId=key["KeyId"])
    assert len(aliases_of(kms, key["KeyId"])) == 50


def test_same_alias_name_in_two_regions_is_independent(cluster: RunningCluster) -> None:
    us, eu = cluster.client("us-east-1"), cluster.client("eu-west-1")
    us_key, eu_key = new_key(us), new_key(eu)
    name = unique("both")
    us.create_alias(AliasName=name, TargetKeyId=us_key["KeyId"])
    eu.create_alias(AliasName=name, TargetKeyId=eu_key["KeyId"])
    assert us.describe_key(KeyId=name)["KeyMetadata"]["Arn"] == us_key["Arn"]
    assert eu.describe_key(KeyId=name)["KeyMetadata"]["Arn"] == eu_key["Arn"]
    assert entry(us, name)["AliasArn"] == f"arn:aws:kms:us-east-1:{ACCOUNT}:{name}"  # type: ignore[index]
    assert entry(eu, name)["AliasArn"] == f"arn:aws:kms:eu-west-1:{ACCOUNT}:{name}"  # type: ignore[index]
    # An alias in one region cannot target a key of another region.
    err = error(us.create_alias, AliasName=unique(), TargetKeyId=eu_key["Arn"])
    assert err["Code"] == "NotFoundException"
    # Deleting it in one region leaves the other alone.
    eu.delete_alias(AliasName=name)
    assert entry(eu, name) is None
    assert us.describe_key(KeyId=name)["KeyMetadata"]["Arn"] == us_key["Arn"]
    assert error(eu.describe_key, KeyId=name)["Code"] == "NotFoundException"
    # ... and it can be created again there, for another key.
    eu_other = new_key(eu)
    eu.create_alias(AliasName=name, TargetKeyId=eu_other["KeyId"])
    assert eu.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == eu_other["KeyId"]
