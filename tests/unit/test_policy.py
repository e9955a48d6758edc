"""Key-policy language: parsing and AWS's evaluation order (explicit Deny, Allow, delegation, implicit deny)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from trent.node.auth.policy import Caller, Decision, Request, parse_policy
from trent.node.model.errors import KmsError

ACCT = "111122223333"
OTHER = "444455556666"
ROOT = Caller(f"arn:aws:iam::{ACCT}:root", ACCT)
APP = Caller(f"arn:aws:iam::{ACCT}:role/app", ACCT)
OUTSIDER = Caller(f"arn:aws:iam::{OTHER}:role/partner", OTHER)
KEY = f"arn:aws:kms:us-east-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def decide(doc: str, caller: Caller, action: str, **context: list[str]) -> Decision:
    ctx = {k.lower(): v for k, v in context.items()}
    return parse_policy(doc).evaluate(Request(caller, action, KEY, ctx))


DEFAULT = policy({"Sid": "Enable IAM User Permissions", "Effect": "Allow",
                  "Principal": {"AWS": f"arn:aws:iam::{ACCT}:root"}, "Action": "kms:*", "Resource": "*"})


def test_default_policy_allows_root_and_delegates_others_to_iam() -> None:
    assert decide(DEFAULT, ROOT, "kms:Encrypt") is Decision.ALLOW
    assert decide(DEFAULT, APP, "kms:Encrypt") is Decision.DELEGATED
    assert decide(DEFAULT, OUTSIDER, "kms:Encrypt") is Decision.IMPLICIT_DENY


def test_explicit_deny_beats_allow() -> None:
    doc = policy({"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"},
                 {"Effect": "Deny", "Principal": {"AWS": APP.arn}, "Action": "kms:Decrypt", "Resource": "*"})
    assert decide(doc, APP, "kms:Decrypt") is Decision.EXPLICIT_DENY
    assert decide(doc, APP, "kms:Encrypt") is Decision.ALLOW


def test_actions_are_wildcards_and_case_insensitive() -> None:
    doc = policy({"Effect": "Allow", "Principal": {"AWS": APP.arn}, "Action": ["kms:GenerateDataKey*",
                  "KMS:describe?ey"], "Resource": "*"})
    assert decide(doc, APP, "kms:GenerateDataKeyWithoutPlaintext") is Decision.ALLOW
    assert decide(doc, APP, "kms:DescribeKey") is Decision.ALLOW
    assert decide(doc, APP, "kms:Encrypt") is Decision.IMPLICIT_DENY


def test_not_action_and_missing_elements() -> None:
    doc = policy({"Effect": "Allow", "Principal": {"AWS": APP.arn}, "NotAction": "kms:Decrypt", "Resource": "*"})
    assert decide(doc, APP, "kms:Encrypt") is Decision.ALLOW
    assert decide(doc, APP, "kms:Decrypt") is Decision.IMPLICIT_DENY
    # A statement without Action or Resource is accepted but never matches.
    assert decide(policy({"Effect": "Allow", "Principal": "*", "Resource": "*"}), APP, "kms:Encrypt") \
        is Decision.IMPLICIT_DENY


def test_cross_account_principal_by_account_id_delegates() -> None:
    doc = policy({"Effect": "Allow", "Principal": {"AWS": OTHER}, "Action": "kms:Encrypt", "Resource": "*"})
    assert decide(doc, OUTSIDER, "kms:Encrypt") is Decision.DELEGATED
    doc = policy({"Effect": "Allow", "Principal": {"AWS": [OUTSIDER.arn]}, "Action": "kms:Encrypt",
                  "Resource": "*"})
    assert decide(doc, OUTSIDER, "kms:Encrypt") is Decision.ALLOW


@pytest.mark.parametrize(("operator", "value", "context", "expected"), [
    ("StringEquals", "Finance", ["Finance"], True),
    ("StringEquals", "Finance", ["finance"], False),
    ("StringEqualsIgnoreCase", "Finance", ["finance"], True),
    ("StringNotEquals", "Finance", ["HR"], True),
    ("StringNotEquals", "Finance", None, True),
    ("StringEquals", "Finance", None, False),
    ("StringEqualsIfExists", "Finance", None, True),
    ("StringLike", "Fin*", ["Finance"], True),
    ("StringNotLike", "Fin*", ["Finance"], False),
    ("NumericLessThanEquals", "90", ["90"], True),
    ("NumericGreaterThan", "90", ["90"], False),
    ("Bool", "true", ["true"], True),
    ("Null", "true", None, True),
    ("Null", "false", None, False),
    ("DateLessThan", "2030-01-01T00:00:00Z", ["2026-11-23T00:00:00Z"], True),
    ("ArnLike", "arn:aws:iam::*:role/app", [APP.arn], True),
    ("IpAddress", "127.0.0.0/8", ["127.0.0.1"], True),
    ("NotIpAddress", "127.0.0.0/8", ["10.0.0.1"], True),
    ("StringMatchesSomehow", "x", ["x"], False),  # unknown operators never allow
])
def test_condition_operators(operator: str, value: str, context: list[str] | None, expected: bool) -> None:
    doc = policy({"Effect": "Allow", "Principal": {"AWS": APP.arn}, "Action": "kms:Encrypt", "Resource": "*",
                  "Condition": {operator: {"kms:EncryptionContext:Dept": value}}})
    ctx = {} if context is None else {"kms:EncryptionContext:Dept": context}
    assert (decide(doc, APP, "kms:Encrypt", **ctx) is Decision.ALLOW) is expected


def test_set_operators_on_multivalued_keys() -> None:
    any_doc = policy({"Effect": "Allow", "Principal": {"AWS": APP.arn}, "Action": "kms:Encrypt", "Resource": "*",
                      "Condition": {"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["a", "b"]}}})
    all_doc = policy({"Effect": "Allow", "Principal": {"AWS": APP.arn}, "Action": "kms:Encrypt", "Resource": "*",
                      "Condition": {"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["a", "b"]}}})
    keys = "kms:EncryptionContextKeys"
    assert decide(any_doc, APP, "kms:Encrypt", **{keys: ["a", "z"]}) is Decision.ALLOW
    assert decide(any_doc, APP, "kms:Encrypt", **{keys: ["z"]}) is Decision.IMPLICIT_DENY
    assert decide(all_doc, APP, "kms:Encrypt", **{keys: ["a", "b"]}) is Decision.ALLOW
    assert decide(all_doc, APP, "kms:Encrypt", **{keys: ["a", "z"]}) is Decision.IMPLICIT_DENY
    assert decide(all_doc, APP, "kms:Encrypt") is Decision.ALLOW  # vacuously true, as in AWS


def test_several_keys_and_values() -> None:
    doc = policy({"Effect": "Allow", "Principal": {"AWS": APP.arn}, "Action": "kms:Encrypt", "Resource": "*",
                  "Condition": {"StringEquals": {"kms:CallerAccount": ACCT, "kms:ViaService": ["a", "b"]}}})
    assert decide(doc, APP, "kms:Encrypt", **{"kms:CallerAccount": [ACCT], "kms:ViaService": ["b"]}) is Decision.ALLOW
    assert decide(doc, APP, "kms:Encrypt", **{"kms:CallerAccount": [ACCT]}) is Decision.IMPLICIT_DENY


@pytest.mark.parametrize(("doc", "code"), [
    ("not json", "MalformedPolicyDocumentException"),
    ("[]", "MalformedPolicyDocumentException"),
    (policy({"Effect": "Maybe", "Principal": "*", "Action": "kms:*", "Resource": "*"}),
     "MalformedPolicyDocumentException"),
    (policy({"Effect": "Allow", "Action": "kms:*", "Resource": "*"}), "MalformedPolicyDocumentException"),
    (policy({"Effect": "Allow", "Principal": {"AWS": "not-an-arn"}, "Action": "kms:*", "Resource": "*"}),
     "MalformedPolicyDocumentException"),
    (policy({"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Sid": "SID"}).replace(
        "SID", "\u0100"), "MalformedPolicyDocumentException"),  # raw characters above U+00FF
    (policy({"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Sid": "x" * 33000}),
     "LimitExceededException"),
])
def test_bad_documents(doc: str, code: str) -> None:
    with pytest.raises(KmsError) as info:
        parse_policy(doc)
    assert info.value.code == code


def test_identity_policies_need_no_principal() -> None:
    doc = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:Encrypt",
                                                               "Resource": "*"}]})
    assert parse_policy(doc, key_policy=False).evaluate(Request(APP, "kms:Encrypt", KEY)) is Decision.ALLOW
