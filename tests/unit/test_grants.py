"""Grants: the record (constraints, tokens, encoding) and the operations (who may create, retire, revoke)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from trent.node.auth.authorizer import AccessSettings, Authorizer
from trent.node.auth.principals import Principal
from trent.node.clock import FixedClock
from trent.node.crypto.rootkey import RootKey
from trent.node.model.errors import KmsError
from trent.node.model.grants import (
    Constraints,
    GrantRecord,
    decode_grant,
    encode_grant,
    grant_id_of_token,
    new_grant_id,
    new_token,
)
from trent.node.ops import declare
from trent.node.ops import grants as grant_ops
from trent.node.ops import keys as key_ops
from trent.node.ops.registry import Registry, RequestContext
from trent.node.service import Region, RegionIdentity
from trent.node.store.memory import MemoryStore

ACCT = "111122223333"
ROOT = Principal("test", "test", f"arn:aws:iam::{ACCT}:root", ACCT)
APP = Principal("AKIAAPP", "s", f"arn:aws:iam::{ACCT}:role/app", ACCT)
WORKER = Principal("AKIAWORK", "s", f"arn:aws:iam::{ACCT}:role/worker", ACCT)
ADMIN = Principal("AKIAADMIN", "s", f"arn:aws:iam::{ACCT}:user/admin", ACCT)
PARTNER = Principal("AKIAPARTNER", "s", "arn:aws:iam::444455556666:role/partner", "444455556666")
GRANT_OPERATIONS = declare(Registry()).grant_scopes()
ALL_KMS = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})
NO_RETIRE = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
    {"Effect": "Deny", "Action": "kms:RetireGrant", "Resource": "*"}]})


# -- the record -----------------------------------------------------------------------------------------------


def test_constraints() -> None:
    equals = Constraints(ec_equals={"a": "1"})
    assert equals.allows({"a": "1"}) and not equals.allows({"a": "1", "b": "2"}) and not equals.allows(None)
    subset = Constraints(ec_subset={"a": "1"})
    assert subset.allows({"a": "1", "b": "2"}) and not subset.allows({"a": "2"}) and not subset.allows({})
    assert Constraints().allows(None) and Constraints().allows({"x": "y"})


def test_stricter_constraints() -> None:
    parent = Constraints(ec_subset={"a": "1"})
    assert Constraints(ec_subset={"a": "1", "b": "2"}).at_least_as_strict_as(parent)
    assert Constraints(ec_equals={"a": "1", "b": "2"}).at_least_as_strict_as(parent)
    assert not Constraints().at_least_as_strict_as(parent)
    assert not Constraints(ec_subset={"a": "2"}).at_least_as_strict_as(parent)
    equals = Constraints(ec_equals={"a": "1"})
    assert Constraints(ec_equals={"a": "1"}).at_least_as_strict_as(equals)
    assert not Constraints(ec_subset={"a": "1"}).at_least_as_strict_as(equals)
    assert Constraints(ec_subset={"z": "9"}).at_least_as_strict_as(Constraints())


def test_wire_form() -> None:
    c = Constraints.from_wire({"EncryptionContextSubset": {"a": "1"}})
    assert c.to_wire() == {"EncryptionContextSubset": {"a": "1"}}
    assert Constraints.from_wire(None).to_wire() is None


def test_tokens_name_their_grant_and_are_fresh_each_time() -> None:
    grant_id = new_grant_id()
    assert len(grant_id) == 64 and int(grant_id, 16) >= 0
    first, second = new_token(grant_id), new_token(grant_id)
    assert first != second
    assert grant_id_of_token(first) == grant_id == grant_id_of_token(second)
    assert "=" not in first and "+" not in first and "/" not in first


SHORT = base64.urlsafe_b64encode(b"\x01TG" + b"x" * 10).decode()


@pytest.mark.parametrize("token", ["", "garbled!", "AQpA" * 10, SHORT])
def test_garbled_tokens(token: str) -> None:
    with pytest.raises(KmsError) as exc:
        grant_id_of_token(token)
    assert exc.value.code == "InvalidGrantTokenException"


def test_encoding_round_trip_and_permits() -> None:
    grant = GrantRecord(new_grant_id(), "k", 12.5, ("Encrypt", "DescribeKey"), f"arn:aws:iam::{ACCT}:root", APP.arn,
                        None, ADMIN.arn, None, "name", Constraints(ec_equals={"a": "1"}))
    assert decode_grant(encode_grant(grant)) == grant
    assert grant.permits(APP.arn, "Encrypt", {"a": "1"}, constrained=True)
    assert not grant.permits(APP.arn, "Encrypt", {"a": "2"}, constrained=True)
    assert not grant.permits(APP.arn, "Encrypt", None, constrained=True)  # constrained, so a context is needed
    assert grant.permits(APP.arn, "DescribeKey", None, constrained=False)  # no context: constraints do not apply
    assert not grant.permits(APP.arn, "Decrypt", {"a": "1"}, constrained=True)
    assert not grant.permits(WORKER.arn, "Encrypt", {"a": "1"}, constrained=True)


# -- the operations ---------------------------------------------------------------------------------------------


@pytest.fixture
def authz() -> Authorizer:
    return Authorizer(AccessSettings(True, {ADMIN.arn: ALL_KMS, WORKER.arn: NO_RETIRE}))


@pytest.fixture
def region() -> Region:
    return Region(RegionIdentity("us-east-1", ACCT), MemoryStore(), RootKey.from_bytes(bytes(range(32))),
                  FixedClock())


def ctx(principal: Principal, authz: Authorizer) -> RequestContext:
    return RequestContext("req", "Test", principal, "127.0.0.1", "unit", authz)


def key_id(region: Region, authz: Authorizer, **params: Any) -> str:
    out: str = key_ops.create_key(region, params, ctx(ROOT, authz))["KeyMetadata"]["KeyId"]
    return out


def create(region: Region, authz: Authorizer, who: Principal = ROOT, **params: Any) -> dict[str, Any]:
    params.setdefault("GranteePrincipal", APP.arn)
    params.setdefault("Operations", ["Encrypt"])
    out: dict[str, Any] = grant_ops.create_grant(region, params, ctx(who, authz), GRANT_OPERATIONS)
    return out


def code(call: Any, *args: Any) -> str | None:
    with pytest.raises(KmsError) as exc:
        call(*args)
    return exc.value.code


def test_operations_must_suit_the_key(region: Region, authz: Authorizer) -> None:
    symmetric = key_id(region, authz)
    rsa = key_id(region, authz, KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")
    hmac = key_id(region, authz, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    for key, ops in ((symmetric, ["Sign"]), (symmetric, ["GetPublicKey"]), (rsa, ["GenerateDataKey"]),
                     (hmac, ["Encrypt"]), (hmac, ["GenerateDataKeyPair"])):
        assert code(lambda k=key, o=ops: create(region, authz, KeyId=k, Operations=o)) == "ValidationException"
    for key, ops in ((symmetric, ["GenerateDataKeyPair", "ReEncryptFrom", "RetireGrant", "CreateGrant"]),
                     (rsa, ["Encrypt", "Decrypt", "GetPublicKey"]), (hmac, ["GenerateMac", "VerifyMac"])):
        create(region, authz, KeyId=key, Operations=ops)


def test_name_idempotency_is_per_key(region: Region, authz: Authorizer) -> None:
    k1, k2 = key_id(region, authz), key_id(region, authz)
    a = create(region, authz, KeyId=k1, Name="n")
    b = create(region, authz, KeyId=k1, Name="n")
    assert a["GrantId"] == b["GrantId"] and a["GrantToken"] != b["GrantToken"]
    assert create(region, authz, KeyId=k2, Name="n")["GrantId"] != a["GrantId"]
    assert create(region, authz, KeyId=k1, Name="n", Operations=["Decrypt"])["GrantId"] != a["GrantId"]
    assert len(region.grants_of(k1)) == 2


def test_dry_run(region: Region, authz: Authorizer) -> None:
    k = key_id(region, authz)
    assert code(lambda: create(region, authz, KeyId=k, DryRun=True)) == "DryRunOperationException"
    assert region.grants_of(k) == []
    # A dry run that would be refused says so, not "would have succeeded".
    parent = create(region, authz, KeyId=k, Operations=["Encrypt", "CreateGrant"])
    assert parent["GrantId"]
    assert code(lambda: create(region, authz, APP, KeyId=k, GranteePrincipal=WORKER.arn, Operations=["Decrypt"],
                               DryRun=True)) == "AccessDeniedException"


def test_grants_made_through_a_grant(region: Region, authz: Authorizer) -> None:
    k = key_id(region, authz)
    create(region, authz, KeyId=k, Operations=["Encrypt", "Decrypt", "CreateGrant"],
           Constraints={"EncryptionContextEquals": {"t": "1"}})
    create(region, authz, APP, KeyId=k, GranteePrincipal=WORKER.arn, Operations=["Decrypt"],
           Constraints={"EncryptionContextEquals": {"t": "1"}})
    for params in ({"Operations": ["GenerateDataKey"]}, {"Operations": ["Decrypt"]},
                   {"Operations": ["Decrypt"], "Constraints": {"EncryptionContextSubset": {"t": "1"}}},
                   {"Operations": ["Decrypt"], "Constraints": {"EncryptionContextEquals": {"t": "2"}}}):
        assert code(lambda p=params: create(region, authz, APP, KeyId=k, GranteePrincipal=WORKER.arn, **p)) == (
            "AccessDeniedException")
    # The admin's permission comes from policies: no such limits.
    create(region, authz, ADMIN, KeyId=k, GranteePrincipal=WORKER.arn, Operations=["GenerateDataKey"])


def retire(region: Region, authz: Authorizer, who: Principal, **params: Any) -> None:
    grant_ops.retire_grant(region, params, ctx(who, authz))


def test_who_may_retire(region: Region, authz: Authorizer) -> None:
    k = key_id(region, authz)
    arn = region.keys[k].arn
    # The retiring principal; the grantee with RetireGrant; the account's root; an IAM delegate of the account.
    for who, params in ((APP, {"GranteePrincipal": WORKER.arn, "RetiringPrincipal": APP.arn}),
                        (APP, {"Operations": ["Encrypt", "RetireGrant"]}),
                        (ROOT, {}),
                        (ADMIN, {})):
        out = create(region, authz, KeyId=k, **params)
        retire(region, authz, who, GrantToken=out["GrantToken"])
        assert out["GrantId"] not in region.grants
    # A retiring principal that is an account: its root.
    out = create(region, authz, KeyId=k, RetiringPrincipal=f"arn:aws:iam::{ACCT}:root")
    retire(region, authz, ROOT, KeyId=arn, GrantId=out["GrantId"])
    # Not: the grantee without RetireGrant, another principal, an IAM policy that denies RetireGrant.
    out = create(region, authz, KeyId=k, RetiringPrincipal=WORKER.arn)
    for who in (APP, PARTNER):
        with pytest.raises(KmsError) as exc:
            retire(region, authz, who, GrantToken=out["GrantToken"])
        assert exc.value.code == "AccessDeniedException"
        assert exc.value.message == (f"User: {who.arn} is not authorized to perform: kms:RetireGrant on resource: "
                                     f"{arn} because no resource-based policy allows the kms:RetireGrant action")
    with pytest.raises(KmsError) as exc:
        retire(region, authz, WORKER, GrantToken=out["GrantToken"])
    assert exc.value.message is not None and "explicit deny in an identity-based policy" in exc.value.message
    assert out["GrantId"] in region.grants


def test_retire_and_revoke_errors(region: Region, authz: Authorizer) -> None:
    k = key_id(region, authz)
    arn = region.keys[k].arn
    assert code(retire, region, authz, ROOT) == "ValidationException"
    assert code(lambda: retire(region, authz, ROOT, KeyId=arn, GrantId="zz")) == "InvalidGrantIdException"
    assert code(lambda: retire(region, authz, ROOT, KeyId=arn, GrantId="0" * 64)) == "NotFoundException"
    assert code(lambda: retire(region, authz, ROOT, GrantToken=new_token("0" * 64))) == "NotFoundException"
    revoke = grant_ops.revoke_grant
    assert code(revoke, region, {"KeyId": k, "GrantId": "0" * 64}, ctx(ROOT, authz)) == "NotFoundException"
    assert code(revoke, region, {"KeyId": k, "GrantId": "G" * 64}, ctx(ROOT, authz)) == "InvalidGrantIdException"
    out = create(region, authz, KeyId=k)
    revoke(region, {"KeyId": k, "GrantId": out["GrantId"]}, ctx(ROOT, authz))
    assert region.grants_of(k) == []


def test_list_grants_and_retirable(region: Region, authz: Authorizer) -> None:
    k1, k2 = key_id(region, authz), key_id(region, authz)
    ids = [create(region, authz, KeyId=k1, RetiringPrincipal=WORKER.arn)["GrantId"] for _ in range(3)]
    other = create(region, authz, KeyId=k2, RetiringPrincipal=WORKER.arn)["GrantId"]
    page = grant_ops.list_grants(region, {"KeyId": k1, "Limit": 2}, ctx(ROOT, authz))
    assert page["Truncated"] is True and len(page["Grants"]) == 2
    rest = grant_ops.list_grants(region, {"KeyId": k1, "Limit": 2, "Marker": page["NextMarker"]}, ctx(ROOT, authz))
    assert [g["GrantId"] for g in page["Grants"] + rest["Grants"]] == sorted(
        ids, key=lambda g: (region.grants[g].created, g))
    entry = rest["Grants"][0]
    assert entry["KeyId"] == region.keys[k1].arn and entry["IssuingAccount"] == f"arn:aws:iam::{ACCT}:root"
    retirable = grant_ops.list_retirable_grants(region, {"RetiringPrincipal": WORKER.arn}, ctx(ROOT, authz))
    assert {g["GrantId"] for g in retirable["Grants"]} == {*ids, other}
    assert code(grant_ops.list_grants, region, {"KeyId": k1, "GrantId": "x"}, ctx(ROOT, authz)) == (
        "InvalidGrantIdException")


def test_grants_die_with_their_key(region: Region, authz: Authorizer) -> None:
    k1, k2 = key_id(region, authz), key_id(region, authz)
    gone = create(region, authz, KeyId=k1)["GrantId"]
    kept = create(region, authz, KeyId=k2)["GrantId"]
    region.commit(delete_keys=[k1])
    assert gone not in region.grants and kept in region.grants
