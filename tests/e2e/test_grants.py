"""Grants end to end through boto3: what a grant lets its grantee do, constraints, tokens, Name idempotency,
listing, retiring and revoking (who may), validation, and that grants are per region and die with their key."""

from __future__ import annotations

import re
from typing import Any

from tests.e2e.harness import RunningCluster, poll
from tests.e2e.test_multi_region import wait_state
from tests.e2e.test_policies import (
    ACCOUNT,
    ADMIN_ARN,
    APP_ARN,
    PARTNER_ARN,
    ROOT_ALL,
    ROOT_ARN,
    WORKER_ARN,
    Clients,
    allow,
    module_cluster,
    not_authorized,
    policy,
    refused,
)

GRANT_ID_RE = re.compile(r"[0-9a-f]{64}")


cluster, kms = module_cluster("grants", "--replica-delay", "0.2")


def new_key(kms: Clients, region: str = "us-east-1", **kwargs: Any) -> dict[str, Any]:
    meta: dict[str, Any] = kms("root", region).create_key(**kwargs)["KeyMetadata"]
    return meta


def grant(kms: Clients, key: dict[str, Any], grantee: str = APP_ARN, operations: tuple[str, ...] = ("Encrypt",),
          who: str = "root", region: str = "us-east-1", **kwargs: Any) -> dict[str, Any]:
    out: dict[str, Any] = kms(who, region).create_grant(KeyId=key["KeyId"], GranteePrincipal=grantee,
                                                        Operations=list(operations), **kwargs)
    return out


# -- what a grant allows -------------------------------------------------------------------------------------


def test_a_grant_allows_its_operations_and_nothing_else(kms: Clients) -> None:
    key = new_key(kms)
    app = kms("app")
    assert refused(app.encrypt, KeyId=key["KeyId"], Plaintext=b"g") == not_authorized("app", "Encrypt", key["Arn"])
    out = grant(kms, key, operations=("Encrypt", "Decrypt"))
    assert GRANT_ID_RE.fullmatch(out["GrantId"])
    assert isinstance(out["GrantToken"], str) and out["GrantToken"]
    blob = app.encrypt(KeyId=key["KeyId"], Plaintext=b"g")["CiphertextBlob"]
    assert app.decrypt(CiphertextBlob=blob)["Plaintext"] == b"g"
    for action, call, kwargs in (
        ("GenerateDataKey", app.generate_data_key, {"KeySpec": "AES_256"}),
        ("DescribeKey", app.describe_key, {}),
        ("CreateGrant", app.create_grant, {"GranteePrincipal": APP_ARN, "Operations": ["Decrypt"]}),
    ):
        assert refused(call, KeyId=key["KeyId"], **kwargs) == not_authorized("app", action, key["Arn"])
    # A grant is for its grantee only.
    assert refused(kms("worker").encrypt, KeyId=key["KeyId"], Plaintext=b"g") == (
        not_authorized("worker", "Encrypt", key["Arn"]))


def test_encryption_context_equals_constraint(kms: Clients) -> None:
    key = new_key(kms)
    grant(kms, key, operations=("Encrypt", "Decrypt", "DescribeKey"),
          Constraints={"EncryptionContextEquals": {"tenant": "a"}})
    app = kms("app")
    blob = app.encrypt(KeyId=key["KeyId"], Plaintext=b"c", EncryptionContext={"tenant": "a"})["CiphertextBlob"]
    assert app.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "a"})["Plaintext"] == b"c"
    for context in ({}, {"tenant": "b"}, {"tenant": "a", "extra": "x"}, {"TENANT": "a"}):
        assert refused(app.encrypt, KeyId=key["KeyId"], Plaintext=b"c", EncryptionContext=context) == (
            not_authorized("app", "Encrypt", key["Arn"]))
    app.describe_key(KeyId=key["KeyId"])  # constraints mean nothing to operations without a context


def test_encryption_context_subset_constraint(kms: Clients) -> None:
    key = new_key(kms)
    grant(kms, key, operations=("Encrypt", "GenerateDataKey"), Constraints={"EncryptionContextSubset": {"tenant": "a"}})
    app = kms("app")
    app.encrypt(KeyId=key["KeyId"], Plaintext=b"s", EncryptionContext={"tenant": "a"})
    app.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256", EncryptionContext={"tenant": "a", "extra": "x"})
    for context in ({}, {"tenant": "b"}, {"extra": "x"}):
        assert refused(app.encrypt, KeyId=key["KeyId"], Plaintext=b"s", EncryptionContext=context) == (
            not_authorized("app", "Encrypt", key["Arn"]))


def test_grant_tokens(kms: Clients) -> None:
    key = new_key(kms)
    token = grant(kms, key, operations=("Encrypt",))["GrantToken"]
    kms("app").encrypt(KeyId=key["KeyId"], Plaintext=b"t", GrantTokens=[token])
    for garbled in ("not a token!", "AQpAeHh4eHh4", token[:-8], "x" * 100):
        for who in ("app", "root"):
            assert refused(kms(who).encrypt, KeyId=key["KeyId"], Plaintext=b"t", GrantTokens=[garbled])[0] == (
                "InvalidGrantTokenException")
    assert refused(kms("root").create_grant, KeyId=key["KeyId"], GranteePrincipal=APP_ARN, Operations=["Decrypt"],
                   GrantTokens=[token, "garbled"])[0] == "InvalidGrantTokenException"


def test_name_makes_create_grant_idempotent_per_key(kms: Clients) -> None:
    key, other = new_key(kms), new_key(kms)
    first = grant(kms, key, operations=("Encrypt", "Decrypt"), Name="app-encrypt")
    again = grant(kms, key, operations=("Encrypt", "Decrypt"), Name="app-encrypt")
    assert again["GrantId"] == first["GrantId"]
    assert again["GrantToken"] != first["GrantToken"]  # every answer carries a fresh token
    for token in (first["GrantToken"], again["GrantToken"]):
        kms("app").encrypt(KeyId=key["KeyId"], Plaintext=b"n", GrantTokens=[token])
    assert [g["GrantId"] for g in kms("root").list_grants(KeyId=key["KeyId"])["Grants"]] == [first["GrantId"]]
    elsewhere = grant(kms, other, operations=("Encrypt", "Decrypt"), Name="app-encrypt")
    assert elsewhere["GrantId"] != first["GrantId"]
    assert [g["GrantId"] for g in kms("root").list_grants(KeyId=other["KeyId"])["Grants"]] == [elsewhere["GrantId"]]
    # Different parameters under the same name: a new grant.
    broader = grant(kms, key, operations=("Encrypt", "Decrypt", "DescribeKey"), Name="app-encrypt")
    assert broader["GrantId"] != first["GrantId"]


def test_list_grants_fields_pagination_and_filters(kms: Clients) -> None:
    root = kms("root")
    key = new_key(kms)
    ids = [
        grant(kms, key, operations=("Encrypt", "Decrypt"), RetiringPrincipal=ADMIN_ARN, Name="first",
              Constraints={"EncryptionContextSubset": {"tenant": "a"}})["GrantId"],
        grant(kms, key, grantee=WORKER_ARN, operations=("DescribeKey",))["GrantId"],
        grant(kms, key, operations=("GenerateDataKey",),
              Constraints={"EncryptionContextEquals": {"k": "v"}})["GrantId"],
    ]
    listed = root.list_grants(KeyId=key["Arn"])
    assert listed["Truncated"] is False and "NextMarker" not in listed
    assert [g["GrantId"] for g in listed["Grants"]] == ids
    first = listed["Grants"][0]
    created = first.pop("CreationDate")
    assert first == {
        "KeyId": key["Arn"], "GrantId": ids[0], "Name": "first", "GranteePrincipal": APP_ARN,
        "RetiringPrincipal": ADMIN_ARN, "IssuingAccount": ROOT_ARN, "Operations": ["Encrypt", "Decrypt"],
        "Constraints": {"EncryptionContextSubset": {"tenant": "a"}},
    }
    assert abs(created.timestamp() - key["CreationDate"].timestamp()) < 60
    assert "Name" not in listed["Grants"][1] and "Constraints" not in listed["Grants"][1]
    assert listed["Grants"][2]["Constraints"] == {"EncryptionContextEquals": {"k": "v"}}
    # Pages of one, two.
    page = root.list_grants(KeyId=key["KeyId"], Limit=2)
    assert page["Truncated"] is True and [g["GrantId"] for g in page["Grants"]] == ids[:2]
    rest = root.list_grants(KeyId=key["KeyId"], Limit=2, Marker=page["NextMarker"])
    assert rest["Truncated"] is False and [g["GrantId"] for g in rest["Grants"]] == ids[2:]
    # Filters.
    assert [g["GrantId"] for g in root.list_grants(KeyId=key["KeyId"], GrantId=ids[1])["Grants"]] == [ids[1]]
    assert [g["GrantId"] for g in root.list_grants(KeyId=key["KeyId"], GranteePrincipal=WORKER_ARN)["Grants"]] == [
        ids[1]]
    assert root.list_grants(KeyId=key["KeyId"], GrantId="0" * 64)["Grants"] == []
    assert refused(root.list_grants, KeyId=key["KeyId"], GrantId="not-a-grant-id")[0] == "InvalidGrantIdException"
    # Listing needs kms:ListGrants on the key.
    assert refused(kms("app").list_grants, KeyId=key["KeyId"]) == not_authorized("app", "ListGrants", key["Arn"])


def test_list_retirable_grants(kms: Clients) -> None:
    key, other = new_key(kms), new_key(kms)
    mine = [grant(kms, key, RetiringPrincipal=WORKER_ARN)["GrantId"],
            grant(kms, other, grantee=ADMIN_ARN, operations=("Decrypt",), RetiringPrincipal=WORKER_ARN)["GrantId"]]
    grant(kms, key, RetiringPrincipal=ADMIN_ARN)
    listed = kms("root").list_retirable_grants(RetiringPrincipal=WORKER_ARN)
    by_id = {g["GrantId"]: g for g in listed["Grants"]}
    assert set(by_id) == set(mine)
    assert by_id[mine[1]]["KeyId"] == other["Arn"] and by_id[mine[1]]["GranteePrincipal"] == ADMIN_ARN
    assert all(g["RetiringPrincipal"] == WORKER_ARN for g in listed["Grants"])
    page = kms("root").list_retirable_grants(RetiringPrincipal=WORKER_ARN, Limit=1)
    assert page["Truncated"] is True and len(page["Grants"]) == 1


# -- retiring and revoking -----------------------------------------------------------------------------------


def test_retire_grant_by_token_and_by_id(kms: Clients) -> None:
    key = new_key(kms)
    app = kms("app")
    # The grantee, when the grant includes RetireGrant, by token.
    own = grant(kms, key, operations=("Encrypt", "RetireGrant"))
    app.encrypt(KeyId=key["KeyId"], Plaintext=b"r")
    app.retire_grant(GrantToken=own["GrantToken"])
    assert refused(app.encrypt, KeyId=key["KeyId"], Plaintext=b"r") == not_authorized("app", "Encrypt", key["Arn"])
    assert refused(app.retire_grant, GrantToken=own["GrantToken"])[0] == "NotFoundException"
    # The retiring principal, by key ARN and grant id (it has no other permission on the key at all).
    theirs = grant(kms, key, grantee=ADMIN_ARN, RetiringPrincipal=APP_ARN)
    app.retire_grant(KeyId=key["Arn"], GrantId=theirs["GrantId"])
    # The key's account (its root user).
    anyone = grant(kms, key)
    kms("root").retire_grant(KeyId=key["Arn"], GrantId=anyone["GrantId"])
    assert kms("root").list_grants(KeyId=key["KeyId"])["Grants"] == []


def test_who_may_not_retire_a_grant(kms: Clients) -> None:
    # A key policy that gives the worker everything, kms:RetireGrant included: not effective for RetireGrant.
    key = new_key(kms, Policy=policy(ROOT_ALL, allow(WORKER_ARN, "kms:*")))
    plain = grant(kms, key, operations=("Encrypt",), RetiringPrincipal=ADMIN_ARN)
    for who in ("app", "worker"):  # the grantee without RetireGrant; a principal the grant does not name
        assert refused(kms(who).retire_grant, GrantToken=plain["GrantToken"]) == (
            not_authorized(who, "RetireGrant", key["Arn"]))
        assert refused(kms(who).retire_grant, KeyId=key["Arn"], GrantId=plain["GrantId"]) == (
            not_authorized(who, "RetireGrant", key["Arn"]))
    kms("app").encrypt(KeyId=key["KeyId"], Plaintext=b"still")
    # The admin: the retiring principal (and an IAM principal of the key's account with kms:RetireGrant).
    kms("admin").retire_grant(GrantToken=plain["GrantToken"])
    assert kms("root").list_grants(KeyId=key["KeyId"])["Grants"] == []


def test_revoke_grant(kms: Clients) -> None:
    key = new_key(kms)
    out = grant(kms, key, operations=("Encrypt", "RetireGrant"))
    kms("app").encrypt(KeyId=key["KeyId"], Plaintext=b"v")
    assert refused(kms("app").revoke_grant, KeyId=key["KeyId"], GrantId=out["GrantId"]) == (
        not_authorized("app", "RevokeGrant", key["Arn"]))
    kms("admin").revoke_grant(KeyId=key["KeyId"], GrantId=out["GrantId"])
    assert refused(kms("app").encrypt, KeyId=key["KeyId"], Plaintext=b"v") == (
        not_authorized("app", "Encrypt", key["Arn"]))
    assert kms("root").list_grants(KeyId=key["KeyId"])["Grants"] == []
    assert refused(kms("root").revoke_grant, KeyId=key["KeyId"], GrantId=out["GrantId"])[0] == "NotFoundException"


def test_unknown_and_malformed_grant_ids(kms: Clients) -> None:
    key = new_key(kms)
    root = kms("root")
    unknown = "ab" * 32
    assert refused(root.revoke_grant, KeyId=key["KeyId"], GrantId=unknown)[0] == "NotFoundException"
    assert refused(root.retire_grant, KeyId=key["Arn"], GrantId=unknown)[0] == "NotFoundException"
    for bad in ("not-a-grant", "AB" * 32, "ab" * 31):
        assert refused(root.revoke_grant, KeyId=key["KeyId"], GrantId=bad)[0] == "InvalidGrantIdException"
        assert refused(root.retire_grant, KeyId=key["Arn"], GrantId=bad)[0] == "InvalidGrantIdException"
    # A grant of another key is not found through this one.
    other = new_key(kms)
    theirs = grant(kms, other)["GrantId"]
    assert refused(root.revoke_grant, KeyId=key["KeyId"], GrantId=theirs)[0] == "NotFoundException"


# -- validation ------------------------------------------------------------------------------------------------


def test_grant_operations_must_suit_the_key(kms: Clients) -> None:
    symmetric = new_key(kms)
    signing = new_key(kms, KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    hmac = new_key(kms, KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    for key, operations in ((symmetric, ["Sign"]), (symmetric, ["Encrypt", "GenerateMac"]),
                            (signing, ["Encrypt"]), (signing, ["GenerateDataKey"]), (hmac, ["Decrypt"])):
        assert refused(kms("root").create_grant, KeyId=key["KeyId"], GranteePrincipal=APP_ARN,
                       Operations=operations)[0] == "ValidationException"
        assert kms("root").list_grants(KeyId=key["KeyId"])["Grants"] == []
    grant(kms, signing, operations=("Sign", "Verify", "GetPublicKey", "DescribeKey"))
    grant(kms, hmac, operations=("GenerateMac", "VerifyMac"))
    assert refused(kms("root").create_grant, KeyId=symmetric["KeyId"], GranteePrincipal="app",
                   Operations=["Encrypt"])[0] == "ValidationException"


def test_grants_through_a_grant_are_no_broader(kms: Clients) -> None:
    key = new_key(kms)
    grant(kms, key, operations=("Encrypt", "Decrypt", "CreateGrant"),
          Constraints={"EncryptionContextSubset": {"tenant": "a"}})
    app = kms("app")
    derived = app.create_grant(KeyId=key["KeyId"], GranteePrincipal=WORKER_ARN, Operations=["Encrypt"],
                               Constraints={"EncryptionContextSubset": {"tenant": "a", "team": "x"}})
    assert GRANT_ID_RE.fullmatch(derived["GrantId"])
    kms("worker").encrypt(KeyId=key["KeyId"], Plaintext=b"d", EncryptionContext={"tenant": "a", "team": "x"})
    for operations, constraints in ((["Encrypt", "GenerateDataKey"], {"EncryptionContextSubset": {"tenant": "a"}}),
                                    (["Encrypt"], {}),
                                    (["Encrypt"], {"EncryptionContextSubset": {"tenant": "b"}})):
        assert refused(app.create_grant, KeyId=key["KeyId"], GranteePrincipal=WORKER_ARN, Operations=operations,
                       Constraints=constraints) == not_authorized("app", "CreateGrant", key["Arn"])


def test_cross_account_grant(kms: Clients) -> None:
    key = new_key(kms)
    grant(kms, key, grantee=PARTNER_ARN, operations=("Encrypt", "DescribeKey"))
    partner = kms("partner")
    assert partner.encrypt(KeyId=key["Arn"], Plaintext=b"x")["KeyId"] == key["Arn"]
    assert refused(partner.encrypt, KeyId=key["KeyId"], Plaintext=b"x")[0] == "NotFoundException"
    assert refused(partner.generate_data_key, KeyId=key["Arn"], KeySpec="AES_256") == (
        not_authorized("partner", "GenerateDataKey", key["Arn"]))


# -- regions and the key's life ----------------------------------------------------------------------------------


def test_grants_are_per_region(kms: Clients) -> None:
    primary = new_key(kms, MultiRegion=True)
    kms("root").replicate_key(KeyId=primary["KeyId"], ReplicaRegion="eu-west-1")
    eu = kms("root", "eu-west-1")
    wait_state(eu, primary["KeyId"], "Enabled", timeout=20)  # the replica reaches its region through the log
    replica_arn = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{primary['KeyId']}"
    us_grant = grant(kms, primary, operations=("Encrypt", "Decrypt"))
    blob = kms("app").encrypt(KeyId=primary["KeyId"], Plaintext=b"mrk")["CiphertextBlob"]
    assert eu.list_grants(KeyId=primary["KeyId"])["Grants"] == []
    assert refused(kms("app", "eu-west-1").decrypt, CiphertextBlob=blob) == (
        not_authorized("app", "Decrypt", replica_arn))
    assert refused(eu.revoke_grant, KeyId=primary["KeyId"], GrantId=us_grant["GrantId"])[0] == "NotFoundException"
    eu_grant = grant(kms, {"KeyId": primary["KeyId"]}, operations=("Decrypt",), region="eu-west-1")
    assert kms("app", "eu-west-1").decrypt(CiphertextBlob=blob)["Plaintext"] == b"mrk"
    assert [g["GrantId"] for g in eu.list_grants(KeyId=primary["KeyId"])["Grants"]] == [eu_grant["GrantId"]]
    assert eu.list_grants(KeyId=primary["KeyId"])["Grants"][0]["KeyId"] == replica_arn
    assert [g["GrantId"] for g in kms("root").list_grants(KeyId=primary["KeyId"])["Grants"]] == [
        us_grant["GrantId"]]


def test_grants_die_with_their_key(cluster: RunningCluster, kms: Clients) -> None:
    # Last in this module: it moves the cluster's clock.
    key, keeper = new_key(kms), new_key(kms)
    doomed = grant(kms, key, operations=("Encrypt", "RetireGrant"), RetiringPrincipal=WORKER_ARN)
    kept = grant(kms, keeper, RetiringPrincipal=WORKER_ARN)
    root = kms("root")
    root.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    # Pending deletion: the grant is still there (and listed), but the key is unusable.
    assert [g["GrantId"] for g in root.list_grants(KeyId=key["KeyId"])["Grants"]] == [doomed["GrantId"]]
    assert refused(kms("app").encrypt, KeyId=key["KeyId"], Plaintext=b"x")[0] == "KMSInvalidStateException"
    cluster.advance_clock("8d")

    def gone() -> bool:
        grants = kms("root").list_retirable_grants(RetiringPrincipal=WORKER_ARN)["Grants"]
        return doomed["GrantId"] not in {g["GrantId"] for g in grants}

    poll(gone, timeout=20)
    retirable = {g["GrantId"] for g in root.list_retirable_grants(RetiringPrincipal=WORKER_ARN)["Grants"]}
    assert kept["GrantId"] in retirable
    assert refused(root.describe_key, KeyId=key["KeyId"])[0] == "NotFoundException"
    assert refused(root.list_grants, KeyId=key["KeyId"])[0] == "NotFoundException"
    assert refused(kms("app").retire_grant, GrantToken=doomed["GrantToken"])[0] == "NotFoundException"
