"""The authorizer: which request member names which key for which action (each operation's declaration), key
policy together with identity policies and grants, cross-account rules, the condition context, and the lockout
check."""

from __future__ import annotations

import json
import re
from typing import Any

import botocore.session
import pytest

from trent.node.auth.authorizer import (
    AccessSettings,
    Authorizer,
    Verdict,
    request_condition_keys,
)
from trent.node.auth.principals import Principal
from trent.node.clock import FixedClock
from trent.node.crypto.rootkey import RootKey
from trent.node.model.errors import KmsError
from trent.node.model.grants import Constraints, GrantRecord, new_token
from trent.node.model.key import AliasRecord
from trent.node.ops import build_registry, encryption
from trent.node.ops import keys as key_ops
from trent.node.ops.registry import RequestContext
from trent.node.ops.tables import cross_account, key_actions
from trent.node.service import Region, RegionIdentity
from trent.node.store.memory import MemoryStore

ACCT = "111122223333"
OTHER = "444455556666"
ROOT = Principal("test", "test", f"arn:aws:iam::{ACCT}:root", ACCT)
APP = Principal("AKIAAPP", "s", f"arn:aws:iam::{ACCT}:role/app", ACCT)
ADMIN = Principal("AKIAADMIN", "s", f"arn:aws:iam::{ACCT}:user/admin", ACCT)
AUDITOR = Principal("AKIAAUDIT", "s", f"arn:aws:iam::{ACCT}:user/auditor", ACCT)
PARTNER = Principal("AKIAPARTNER", "s", f"arn:aws:iam::{OTHER}:role/partner", OTHER)
GUEST = Principal("AKIAGUEST", "s", f"arn:aws:iam::{OTHER}:user/guest", OTHER)
PARTNER_ROOT = Principal("AKIAPROOT", "s", f"arn:aws:iam::{OTHER}:root", OTHER)
ALL_KMS = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})
AUDITOR_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
    {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"},
]})
IDENTITY = {ADMIN.arn: ALL_KMS, PARTNER.arn: ALL_KMS, AUDITOR.arn: AUDITOR_POLICY}


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(principal: Any, actions: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": actions, "Resource": "*", **extra}


ROOT_ALL = allow(ROOT.arn, "kms:*")


def ctx(principal: Principal, authorizer: Authorizer) -> RequestContext:
    return RequestContext("req", "Test", principal, "127.0.0.1", "unit", authorizer)


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer(AccessSettings(True, IDENTITY))


@pytest.fixture
def region() -> Region:
    return Region(RegionIdentity("us-east-1", ACCT), MemoryStore(), RootKey.from_bytes(bytes(range(32))),
                  FixedClock())


def make_key(region: Region, authz: Authorizer, key_policy: str | None = None, **params: Any) -> Any:
    if key_policy is not None:
        params.update(Policy=key_policy, BypassPolicyLockoutSafetyCheck=True)
    key_id = key_ops.create_key(region, params, ctx(ROOT, authz))["KeyMetadata"]["KeyId"]
    return region.keys[key_id]


def denial(exc: pytest.ExceptionInfo[KmsError]) -> tuple[str, str | None]:
    return exc.value.code, exc.value.message


def msg(principal: Principal, action: str, arn: str, why: str = "") -> tuple[str, str]:
    why = why or f"because no resource-based policy allows the kms:{action} action"
    return ("AccessDeniedException",
            f"User: {principal.arn} is not authorized to perform: kms:{action} on resource: {arn} {why}")


# -- the tables agree with the service model ------------------------------------------------------------------

MODEL = botocore.session.get_session().get_service_model("kms")
OPS = build_registry(MODEL.operation_names)
KEY_ACTIONS = key_actions(OPS)
CROSS_ACCOUNT_OPERATIONS = cross_account(OPS)


def test_key_actions_name_real_operations_and_members() -> None:
    for operation, entries in KEY_ACTIONS.items():
        members = MODEL.operation_model(operation).input_shape.members
        for member, action, ec_member in entries:
            assert member in members, (operation, member)
            assert ec_member is None or ec_member in members, (operation, ec_member)
            assert action == operation or operation == "ReEncrypt"


def test_every_operation_that_names_a_key_is_authorized_on_it() -> None:
    # IAM-only (no key resource in AWS) or decided by the grant itself (RetireGrant).
    not_key_policy = {"ListAliases", "RetireGrant", "CreateKey", "ListKeys", "GenerateRandom", "ListRetirableGrants",
                      "DeleteAlias"}  # DeleteAlias: its key is the alias's target (checked separately)
    for operation in MODEL.operation_names:
        members = set(MODEL.operation_model(operation).input_shape.members)
        if members & {"KeyId", "TargetKeyId", "SourceKeyId", "DestinationKeyId"} and operation not in not_key_policy:
            assert operation in KEY_ACTIONS, operation
    assert "ListAliases" not in KEY_ACTIONS


def test_cross_account_operations_are_those_the_api_reference_names() -> None:
    documented = set()
    for operation in MODEL.operation_names:
        text = re.sub("<[^>]+>", "", MODEL.operation_model(operation).documentation)
        if re.search(r"Cross-account use\s*:\s*Yes", text):
            documented.add(operation)
    assert documented == CROSS_ACCOUNT_OPERATIONS


# -- key policy, identity policy, grants ------------------------------------------------------------------------


def test_default_policy(region: Region, authz: Authorizer) -> None:
    key = make_key(region, authz)
    authz.check_request(region, ROOT, OPS["Encrypt"], {"KeyId": key.key_id, "Plaintext": b"x"})
    authz.check_request(region, ADMIN, OPS["Encrypt"], {"KeyId": key.key_id, "Plaintext": b"x"})
    with pytest.raises(KmsError) as exc:
        authz.check_request(region, APP, OPS["Encrypt"], {"KeyId": key.key_id, "Plaintext": b"x"})
    assert denial(exc) == msg(APP, "Encrypt", key.arn)


def test_identity_policy_deny_wins(region: Region, authz: Authorizer) -> None:
    key = make_key(region, authz)
    authz.check_request(region, AUDITOR, OPS["DescribeKey"], {"KeyId": key.key_id})
    with pytest.raises(KmsError) as exc:
        authz.check_request(region, AUDITOR, OPS["Decrypt"], {"KeyId": key.key_id, "CiphertextBlob": b"x"})
    assert denial(exc) == msg(AUDITOR, "Decrypt", key.arn, "with an explicit deny in an identity-based policy")


def test_key_policy_deny_is_reported_as_resource_based(region: Region, authz: Authorizer) -> None:
    key = make_key(region, authz, policy(ROOT_ALL, {"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt",
                                                    "Resource": "*"}))
    with pytest.raises(KmsError) as exc:
        authz.check_request(region, ROOT, OPS["Encrypt"], {"KeyId": key.key_id, "Plaintext": b"x"})
    assert denial(exc) == msg(ROOT, "Encrypt", key.arn, "with an explicit deny in a resource-based policy")


def test_decrypt_without_key_id_is_authorized_on_the_ciphertexts_key(region: Region, authz: Authorizer) -> None:
    key = make_key(region, authz, policy(ROOT_ALL, allow(APP.arn, "kms:Encrypt")))
    blob = encryption.encrypt(region, {"KeyId": key.key_id, "Plaintext": b"p"}, ctx(ROOT, authz))["CiphertextBlob"]
    with pytest.raises(KmsError) as exc:
        authz.check_request(region, APP, OPS["Decrypt"], {"CiphertextBlob": blob})
    assert denial(exc) == msg(APP, "Decrypt", key.arn)
    # ReEncrypt: ReEncryptFrom on the source (from the blob), ReEncryptTo on the destination.
    with pytest.raises(KmsError) as exc:
        authz.check_request(region, APP, OPS["ReEncrypt"], {"CiphertextBlob": blob, "DestinationKeyId": key.key_id})
    assert denial(exc) == msg(APP, "ReEncryptFrom", key.arn)
    authz.check_request(region, APP, OPS["Decrypt"], {"CiphertextBlob": b"garbage"})  # the operation answers this


def test_grants_allow_their_grantee(region: Region, authz: Authorizer) -> None:
    key = make_key(region, authz)
    grant = GrantRecord("a" * 64, key.key_id, 1.0, ("Encrypt",), f"arn:aws:iam::{ACCT}:root", APP.arn,
                        constraints=Constraints(ec_subset={"t": "1"}))
    region.commit(grants=[grant])
    authz.check_request(region, APP, OPS["Encrypt"], {"KeyId": key.key_id, "EncryptionContext": {"t": "1", "u": "2"}})
    for params in ({"KeyId": key.key_id}, {"KeyId": key.key_id, "EncryptionContext": {"t": "2"}}):
        with pytest.raises(KmsError):
            authz.check_request(region, APP, OPS["Encrypt"], params)
    with pytest.raises(KmsError):
        authz.check_request(region, APP, OPS["Decrypt"], {"KeyId": key.key_id, "EncryptionContext": {"t": "1"}})
    # Grant tokens: well-formed ones pass, garbled ones are refused before anything else.
    authz.check_request(region, APP, OPS["Encrypt"], {"KeyId": key.key_id, "EncryptionContext": {"t": "1"},
                                                 "GrantTokens": [new_token(grant.grant_id)]})
    with pytest.raises(KmsError) as exc:
        authz.check_request(region, ROOT, OPS["Encrypt"], {"KeyId": key.key_id, "GrantTokens": ["garbled"]})
    assert exc.value.code == "InvalidGrantTokenException"


def test_enforcement_off(region: Region) -> None:
    off = Authorizer(AccessSettings(False, {}))
    key = make_key(region, off, policy(ROOT_ALL))
    off.check_request(region, APP, OPS["Encrypt"], {"KeyId": key.key_id})
    off.check_request(region, PARTNER, OPS["ScheduleKeyDeletion"], {"KeyId": key.key_id})
    with pytest.raises(KmsError):
        off.check_request(region, APP, OPS["Encrypt"], {"KeyId": key.key_id, "GrantTokens": ["garbled"]})


# -- across accounts ----------------------------------------------------------------------------------------------


def test_cross_account_needs_key_policy_and_iam(region: Region, authz: Authorizer) -> None:
    key = make_key(region, authz, policy(ROOT_ALL, allow(f"arn:aws:iam::{OTHER}:root", "kms:Encrypt"),
                                         allow(GUEST.arn, "kms:Encrypt")))
    authz.check_request(region, PARTNER, OPS["Encrypt"], {"KeyId": key.arn})
    authz.check_request(region, PARTNER_ROOT, OPS["Encrypt"], {"KeyId": key.arn})  # an account's root needs no IAM
    with pytest.raises(KmsError) as exc:  # named in the key policy, but no IAM policy in its own account
        authz.check_request(region, GUEST, OPS["Encrypt"], {"KeyId": key.arn})
    assert denial(exc) == msg(GUEST, "Encrypt", key.arn)
    with pytest.raises(KmsError) as exc:
        authz.check_request(region, PARTNER, OPS["GenerateDataKey"], {"KeyId": key.arn})
    assert denial(exc) == msg(PARTNER, "GenerateDataKey", key.arn)


def test_cross_account_names_and_operations(region: Region, authz: Authorizer) -> None:
    key = make_key(region, authz, policy(ROOT_ALL, allow(f"arn:aws:iam::{OTHER}:root", "kms:*")))
    region.commit(aliases=[AliasRecord("alias/shared", key.key_id, 1.0, 1.0)])
    authz.check_request(region, PARTNER, OPS["DescribeKey"], {"KeyId": f"arn:aws:kms:us-east-1:{ACCT}:alias/shared"})
    with pytest.raises(KmsError) as exc:
        authz.check_request(region, PARTNER, OPS["DescribeKey"], {"KeyId": key.key_id})
    assert denial(exc) == ("NotFoundException", f"Key 'arn:aws:kms:us-east-1:{OTHER}:key/{key.key_id}' does not exist")
    with pytest.raises(KmsError) as exc:
        authz.check_request(region, PARTNER, OPS["DescribeKey"], {"KeyId": "alias/shared"})
    assert denial(exc) == ("NotFoundException", f"Alias arn:aws:kms:us-east-1:{OTHER}:alias/shared is not found.")
    for operation in ("DisableKey", "PutKeyPolicy", "TagResource", "GetKeyLastUsage"):
        with pytest.raises(KmsError) as exc:
            authz.check_request(region, PARTNER, OPS[operation], {"KeyId": key.arn})
        assert denial(exc) == msg(PARTNER, operation, key.arn)
    with pytest.raises(KmsError) as exc:
        authz.check_request(region, PARTNER, OPS["DeleteAlias"], {"AliasName": "alias/shared"})
    assert exc.value.code == "NotFoundException"


# -- condition context --------------------------------------------------------------------------------------------


def test_request_condition_keys() -> None:
    keys = request_condition_keys("CreateGrant", {
        "KeyId": "k", "GranteePrincipal": APP.arn, "RetiringPrincipal": ADMIN.arn, "Operations": ["Encrypt", "Decrypt"],
        "Constraints": {"EncryptionContextSubset": {"a": "b"}}})
    assert keys == {"kms:GrantOperations": ["Encrypt", "Decrypt"], "kms:GrantIsForAWSResource": ["false"],
                    "kms:GranteePrincipal": [APP.arn], "kms:RetiringPrincipal": [ADMIN.arn],
                    "kms:GrantConstraintType": ["EncryptionContextSubset"]}
    assert request_condition_keys("Sign", {"SigningAlgorithm": "ECDSA_SHA_256", "MessageType": "RAW"}) == {
        "kms:SigningAlgorithm": ["ECDSA_SHA_256"], "kms:MessageType": ["RAW"]}
    assert request_condition_keys("PutKeyPolicy", {"BypassPolicyLockoutSafetyCheck": True}) == {
        "kms:BypassPolicyLockoutSafetyCheck": ["true"], "kms:PolicyName": ["default"]}
    assert request_condition_keys("TagResource", {"Tags": [{"TagKey": "Team", "TagValue": "x"}]}) == {
        "aws:TagKeys": ["Team"], "aws:RequestTag/Team": ["x"]}


def test_grant_condition_keys_limit_create_grant(region: Region, authz: Authorizer) -> None:
    key = make_key(region, authz, policy(ROOT_ALL, allow(APP.arn, "kms:CreateGrant", Condition={
        "ForAllValues:StringEquals": {"kms:GrantOperations": ["Encrypt", "Decrypt"]},
        "StringEquals": {"kms:GranteePrincipal": ADMIN.arn}})))
    ok = {"KeyId": key.key_id, "GranteePrincipal": ADMIN.arn, "Operations": ["Decrypt"]}
    authz.check_request(region, APP, OPS["CreateGrant"], ok)
    for bad in ({**ok, "Operations": ["Decrypt", "DescribeKey"]}, {**ok, "GranteePrincipal": APP.arn}):
        with pytest.raises(KmsError):
            authz.check_request(region, APP, OPS["CreateGrant"], bad)


def test_context_keys(region: Region, authz: Authorizer) -> None:
    key = make_key(region, authz, Tags=[{"TagKey": "Team", "TagValue": "blue"}], MultiRegion=True)
    region.commit(aliases=[AliasRecord("alias/b", key.key_id, 1.0, 1.0), AliasRecord("alias/a", key.key_id, 1.0, 1.0)])
    context = authz._context(region, APP, key, {"Dept": "Eng"}, f"arn:aws:kms:us-east-1:{ACCT}:alias/a", None)
    assert context["kms:calleraccount"] == [ACCT] and context["aws:principalarn"] == [APP.arn]
    assert context["kms:resourcealiases"] == ["alias/a", "alias/b"]
    assert context["kms:requestalias"] == ["alias/a"]
    assert context["aws:resourcetag/team"] == ["blue"]
    assert context["kms:encryptioncontext:dept"] == ["Eng"] and context["kms:encryptioncontextkeys"] == ["Dept"]
    assert context["kms:multiregion"] == ["true"] and context["kms:multiregionkeytype"] == ["PRIMARY"]
    assert context["kms:keyspec"] == ["SYMMETRIC_DEFAULT"] and context["kms:keyorigin"] == ["AWS_KMS"]


# -- the lockout check --------------------------------------------------------------------------------------------


def test_lockout_check_consults_identity_policies(region: Region, authz: Authorizer) -> None:
    key = make_key(region, authz)
    delegating = policy(ROOT_ALL)
    assert authz.allows(delegating, ROOT, key, "PutKeyPolicy", region)
    assert authz.allows(delegating, ADMIN, key, "PutKeyPolicy", region)
    assert not authz.allows(delegating, APP, key, "PutKeyPolicy", region)
    assert authz.allows(policy(allow(APP.arn, "kms:PutKeyPolicy")), APP, key, "PutKeyPolicy", region)
    assert not authz.allows(policy(allow(APP.arn, "kms:Encrypt")), APP, key, "PutKeyPolicy", region)
    assert authz.policy_verdict(region, APP, key, "DescribeKey") is Verdict.NOT_ALLOWED
    assert authz.policy_verdict(region, ADMIN, key, "DescribeKey") is Verdict.ALLOWED
