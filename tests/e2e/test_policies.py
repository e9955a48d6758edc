"""Key policies end to end through boto3: who may call what on a key (key policy, identity policies, conditions,
cross-account use), and PutKeyPolicy / GetKeyPolicy / ListKeyPolicies with KMS's lockout safety check.

The cluster's principals (PRINCIPALS_TOML) are shared with test_grants.py and test_audit.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.harness import RunningCluster, free_port_block

ACCOUNT = "111122223333"
PARTNER_ACCOUNT = "444455556666"
ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"
APP_ARN = f"arn:aws:iam::{ACCOUNT}:role/app"
ADMIN_ARN = f"arn:aws:iam::{ACCOUNT}:user/admin"
PARTNER_ARN = f"arn:aws:iam::{PARTNER_ACCOUNT}:role/partner"
GUEST_ARN = f"arn:aws:iam::{PARTNER_ACCOUNT}:user/guest"  # another account, no IAM policy at all
WORKER_ARN = f"arn:aws:iam::{ACCOUNT}:role/worker"  # like app: no IAM policy

# name → (access key, secret key)
CREDENTIALS = {
    "root": ("test", "test"),
    "app": ("AKIAAPPEXAMPLE000001", "app-secret"),
    "admin": ("AKIAADMINEXAMPLE0001", "admin-secret"),
    "partner": ("AKIAPARTNEREXAMPLE01", "partner-secret"),
    "guest": ("AKIAGUESTEXAMPLE0001", "guest-secret"),
    "worker": ("AKIAWORKEREXAMPLE001", "worker-secret"),
}
ARNS = {"root": ROOT_ARN, "app": APP_ARN, "admin": ADMIN_ARN, "partner": PARTNER_ARN, "guest": GUEST_ARN,
        "worker": WORKER_ARN}

PRINCIPALS_TOML = f"""
account = "{ACCOUNT}"
access_control = "enforce"

[[principals]]
access_key = "test"
secret_key = "test"

[[principals]]
access_key = "{CREDENTIALS['app'][0]}"
secret_key = "{CREDENTIALS['app'][1]}"
arn = "{APP_ARN}"

[[principals]]
access_key = "{CREDENTIALS['admin'][0]}"
secret_key = "{CREDENTIALS['admin'][1]}"
arn = "{ADMIN_ARN}"
policy = {{ Version = "2012-10-17", Statement = [ {{ Effect = "Allow", Action = "kms:*", Resource = "*" }} ] }}

[[principals]]
access_key = "{CREDENTIALS['partner'][0]}"
secret_key = "{CREDENTIALS['partner'][1]}"
arn = "{PARTNER_ARN}"
policy = '{{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}]}}'

[[principals]]
access_key = "{CREDENTIALS['guest'][0]}"
secret_key = "{CREDENTIALS['guest'][1]}"
arn = "{GUEST_ARN}"

[[principals]]
access_key = "{CREDENTIALS['worker'][0]}"
secret_key = "{CREDENTIALS['worker'][1]}"
arn = "{WORKER_ARN}"
"""

LOCKOUT = "The new key policy will not allow you to update the key policy in the future."


def module_cluster(name: str, *extra: str) -> tuple[Any, Any]:
    """The module-scoped ``cluster`` and ``kms`` fixtures of a test module that needs a cluster of its own, with the
    principals above: ``cluster, kms = module_cluster("name")``."""

    @pytest.fixture(scope="module")
    def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
        root = tmp_path_factory.mktemp(name)
        config = root / "trent.toml"
        config.write_text(PRINCIPALS_TOML)
        c = RunningCluster(root / "data", free_port_block(3), regions=("us-east-1", "eu-west-1"),
                           extra_args=("--config", str(config), *extra)).start()
        yield c
        if c.proc is not None:
            c.stop()

    @pytest.fixture(scope="module")
    def kms(cluster: RunningCluster) -> Clients:
        return Clients(cluster)

    return cluster, kms


class Clients:
    """One boto3 client per (principal, region), made on first use."""

    def __init__(self, cluster: RunningCluster) -> None:
        self.cluster = cluster
        self._made: dict[tuple[str, str], Any] = {}

    def __call__(self, who: str, region: str = "us-east-1") -> Any:
        if (who, region) not in self._made:
            ak, sk = CREDENTIALS[who]
            self._made[(who, region)] = self.cluster.client(region, access_key=ak, secret_key=sk)
        return self._made[(who, region)]


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(principal: str | list[str] | dict[str, Any], actions: str | list[str], **extra: Any) -> dict[str, Any]:
    who = principal if isinstance(principal, dict) else {"AWS": principal}
    return {"Effect": "Allow", "Principal": who, "Action": actions, "Resource": "*", **extra}


def deny(principal: str | list[str], actions: str | list[str], **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Principal": {"AWS": principal}, "Action": actions, "Resource": "*", **extra}


ROOT_ALL = allow(ROOT_ARN, "kms:*")


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    response: Any = exc.value.response
    return response["Error"]["Code"], response["Error"].get("Message", "")


def not_authorized(who: str, action: str, key_arn: str, *, explicit: bool = False) -> tuple[str, str]:
    why = ("with an explicit deny in a resource-based policy" if explicit
           else f"because no resource-based policy allows the kms:{action} action")
    return ("AccessDeniedException",
            f"User: {ARNS[who]} is not authorized to perform: kms:{action} on resource: {key_arn} {why}")


def refused(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as exc:
        call(**kwargs)
    return error(exc)


cluster, kms = module_cluster("policies")


def new_key(kms: Clients, key_policy: str | None = None, **kwargs: Any) -> dict[str, Any]:
    if key_policy is not None:
        kwargs["Policy"] = key_policy
    meta: dict[str, Any] = kms("root").create_key(**kwargs)["KeyMetadata"]
    return meta


# -- the policy matrix ---------------------------------------------------------------------------------------


def test_default_policy_allows_root_and_iam_principals_only(kms: Clients) -> None:
    key = new_key(kms)
    for who in ("root", "admin"):  # root directly; admin through the account statement and its IAM policy
        blob = kms(who).encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
        assert kms(who).decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
        assert kms(who).describe_key(KeyId=key["Arn"])["KeyMetadata"]["KeyId"] == key["KeyId"]
    # The app role has no IAM policy: the account statement delegates to nothing.
    assert refused(kms("app").encrypt, KeyId=key["KeyId"], Plaintext=b"x") == (
        "AccessDeniedException",
        f"User: {APP_ARN} is not authorized to perform: kms:Encrypt on resource: {key['Arn']} "
        "because no resource-based policy allows the kms:Encrypt action")
    assert refused(kms("app").describe_key, KeyId=key["KeyId"]) == not_authorized("app", "DescribeKey", key["Arn"])
    # Another account is not this account, whatever its own IAM policy says.
    assert refused(kms("partner").encrypt, KeyId=key["Arn"], Plaintext=b"x") == (
        not_authorized("partner", "Encrypt", key["Arn"]))


def test_a_policy_naming_the_role_allows_exactly_its_actions(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow(APP_ARN, ["kms:Encrypt", "kms:Decrypt"])))
    app = kms("app")
    blob = app.encrypt(KeyId=key["KeyId"], Plaintext=b"hello")["CiphertextBlob"]
    assert app.decrypt(CiphertextBlob=blob)["Plaintext"] == b"hello"
    assert app.decrypt(CiphertextBlob=blob, KeyId=key["Arn"])["Plaintext"] == b"hello"
    for action, call, kwargs in (
        ("DescribeKey", app.describe_key, {}),
        ("GenerateDataKey", app.generate_data_key, {"KeySpec": "AES_256"}),
        ("GenerateDataKeyWithoutPlaintext", app.generate_data_key_without_plaintext, {"NumberOfBytes": 32}),
        ("DisableKey", app.disable_key, {}),
        ("GetKeyPolicy", app.get_key_policy, {}),
        ("ListGrants", app.list_grants, {}),
    ):
        assert refused(call, KeyId=key["KeyId"], **kwargs) == not_authorized("app", action, key["Arn"])
    # ReEncrypt needs ReEncryptFrom on the source (not in this policy), before anything else.
    assert refused(app.re_encrypt, CiphertextBlob=blob, DestinationKeyId=key["KeyId"]) == (
        not_authorized("app", "ReEncryptFrom", key["Arn"]))
    # The account statement still delegates to the admin's IAM policy.
    kms("admin").describe_key(KeyId=key["KeyId"])


def test_wildcard_actions_and_reencrypt(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow(APP_ARN, ["kms:encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"])))
    app = kms("app")
    blob = app.encrypt(KeyId=key["KeyId"], Plaintext=b"w")["CiphertextBlob"]  # actions are case-insensitive
    assert app.re_encrypt(CiphertextBlob=blob, DestinationKeyId=key["Arn"])["KeyId"] == key["Arn"]
    app.generate_data_key_without_plaintext(KeyId=key["KeyId"], KeySpec="AES_128")
    assert refused(app.decrypt, CiphertextBlob=blob) == not_authorized("app", "Decrypt", key["Arn"])


def test_explicit_deny_beats_every_allow(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow(APP_ARN, "kms:*"), deny(APP_ARN, "kms:Decrypt"),
                              deny("*", "kms:ScheduleKeyDeletion")))
    app = kms("app")
    blob = app.encrypt(KeyId=key["KeyId"], Plaintext=b"d")["CiphertextBlob"]
    assert refused(app.decrypt, CiphertextBlob=blob) == not_authorized("app", "Decrypt", key["Arn"], explicit=True)
    for who in ("root", "admin", "app"):
        assert refused(kms(who).schedule_key_deletion, KeyId=key["KeyId"]) == (
            not_authorized(who, "ScheduleKeyDeletion", key["Arn"], explicit=True))
    assert kms("root").describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Enabled"


def test_encryption_context_conditions(kms: Clients) -> None:
    key = new_key(kms, policy(
        ROOT_ALL,
        allow(APP_ARN, ["kms:Encrypt", "kms:Decrypt"],
              Condition={"StringEquals": {"kms:EncryptionContext:Dept": "Eng"}}),
        allow(APP_ARN, "kms:GenerateDataKey",
              Condition={"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Dept", "Project"]}}),
    ))
    app = kms("app")
    blob = app.encrypt(KeyId=key["KeyId"], Plaintext=b"e", EncryptionContext={"Dept": "Eng", "X": "1"})[
        "CiphertextBlob"]
    assert app.decrypt(CiphertextBlob=blob, EncryptionContext={"Dept": "Eng", "X": "1"})["Plaintext"] == b"e"
    for context in ({"Dept": "Ops"}, {"Dept": "eng"}, {}, {"Other": "Eng"}):
        assert refused(app.encrypt, KeyId=key["KeyId"], Plaintext=b"e", EncryptionContext=context) == (
            not_authorized("app", "Encrypt", key["Arn"]))
    root_blob = kms("root").encrypt(KeyId=key["KeyId"], Plaintext=b"e", EncryptionContext={"Dept": "Ops"})[
        "CiphertextBlob"]
    assert refused(app.decrypt, CiphertextBlob=root_blob, EncryptionContext={"Dept": "Ops"}) == (
        not_authorized("app", "Decrypt", key["Arn"]))
    # ForAllValues: every key of the context is in the list (and, as in AWS, an empty context satisfies it).
    for context in ({"Dept": "a"}, {"Dept": "a", "Project": "b"}, {}):
        app.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256", EncryptionContext=context)
    assert refused(app.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_256",
                   EncryptionContext={"Dept": "a", "Owner": "b"}) == (
        not_authorized("app", "GenerateDataKey", key["Arn"]))


def test_request_alias_condition(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow(APP_ARN, "kms:Encrypt",
                                              Condition={"StringEquals": {"kms:RequestAlias": "alias/by-alias"}})))
    kms("root").create_alias(AliasName="alias/by-alias", TargetKeyId=key["KeyId"])
    kms("root").create_alias(AliasName="alias/other-name", TargetKeyId=key["KeyId"])
    app = kms("app")
    assert app.encrypt(KeyId="alias/by-alias", Plaintext=b"a")["KeyId"] == key["Arn"]
    alias_arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/by-alias"
    assert app.encrypt(KeyId=alias_arn, Plaintext=b"a")["KeyId"] == key["Arn"]
    for named in (key["KeyId"], key["Arn"], "alias/other-name"):
        assert refused(app.encrypt, KeyId=named, Plaintext=b"a") == not_authorized("app", "Encrypt", key["Arn"])


def test_resource_aliases_condition(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow(APP_ARN, "kms:DescribeKey", Condition={
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/finance-key"}})))
    app = kms("app")
    assert refused(app.describe_key, KeyId=key["KeyId"]) == not_authorized("app", "DescribeKey", key["Arn"])
    kms("root").create_alias(AliasName="alias/finance-key", TargetKeyId=key["KeyId"])
    kms("root").create_alias(AliasName="alias/finance-other", TargetKeyId=key["KeyId"])
    assert app.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Arn"] == key["Arn"]  # by any name
    kms("root").delete_alias(AliasName="alias/finance-key")
    assert refused(app.describe_key, KeyId=key["KeyId"]) == not_authorized("app", "DescribeKey", key["Arn"])


def test_resource_tag_condition(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow(APP_ARN, "kms:Encrypt",
                                              Condition={"StringEquals": {"aws:ResourceTag/Team": "blue"}})),
                  Tags=[{"TagKey": "Team", "TagValue": "blue"}])
    app = kms("app")
    app.encrypt(KeyId=key["KeyId"], Plaintext=b"t")
    kms("root").tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "Team", "TagValue": "red"}])
    assert refused(app.encrypt, KeyId=key["KeyId"], Plaintext=b"t") == not_authorized("app", "Encrypt", key["Arn"])
    kms("root").untag_resource(KeyId=key["KeyId"], TagKeys=["Team"])
    assert refused(app.encrypt, KeyId=key["KeyId"], Plaintext=b"t") == not_authorized("app", "Encrypt", key["Arn"])


def test_key_metadata_and_caller_conditions(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow("*", "kms:DescribeKey", Condition={
        "StringEquals": {"kms:CallerAccount": ACCOUNT, "kms:KeySpec": "SYMMETRIC_DEFAULT",
                         "kms:KeyUsage": "ENCRYPT_DECRYPT", "kms:KeyOrigin": "AWS_KMS"},
        "Bool": {"kms:MultiRegion": "false"}})))
    kms("app").describe_key(KeyId=key["KeyId"])
    assert refused(kms("partner").describe_key, KeyId=key["Arn"]) == (
        not_authorized("partner", "DescribeKey", key["Arn"]))
    mrk = new_key(kms, policy(ROOT_ALL, allow(APP_ARN, "kms:DescribeKey", Condition={
        "StringEquals": {"kms:MultiRegionKeyType": "PRIMARY", "aws:PrincipalArn": APP_ARN}})), MultiRegion=True)
    kms("app").describe_key(KeyId=mrk["KeyId"])


# -- cross-account use ---------------------------------------------------------------------------------------


def test_another_account_uses_a_key_by_arn_through_its_iam_policy(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow(f"arn:aws:iam::{PARTNER_ACCOUNT}:root",
                                              ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"])))
    kms("root").create_alias(AliasName="alias/shared-with-partner", TargetKeyId=key["KeyId"])
    partner = kms("partner")
    blob = partner.encrypt(KeyId=key["Arn"], Plaintext=b"p")["CiphertextBlob"]
    assert partner.decrypt(CiphertextBlob=blob, KeyId=key["Arn"])["Plaintext"] == b"p"
    # The ciphertext names its key: KeyId is optional for symmetric ciphertext, also across accounts.
    assert partner.decrypt(CiphertextBlob=blob)["Plaintext"] == b"p"
    assert partner.describe_key(KeyId=key["Arn"])["KeyMetadata"]["KeyId"] == key["KeyId"]
    alias_arn = f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/shared-with-partner"
    assert partner.encrypt(KeyId=alias_arn, Plaintext=b"p")["KeyId"] == key["Arn"]
    # Names without an account are looked up in the caller's own account, where there is no such key.
    assert refused(partner.encrypt, KeyId=key["KeyId"], Plaintext=b"p") == (
        "NotFoundException", f"Key 'arn:aws:kms:us-east-1:{PARTNER_ACCOUNT}:key/{key['KeyId']}' does not exist")
    assert refused(partner.encrypt, KeyId="alias/shared-with-partner", Plaintext=b"p") == (
        "NotFoundException", f"Alias arn:aws:kms:us-east-1:{PARTNER_ACCOUNT}:alias/shared-with-partner is not found.")
    assert refused(partner.describe_key, KeyId=key["KeyId"])[0] == "NotFoundException"
    # What the key policy does not allow the partner account, its IAM policy cannot add.
    assert refused(partner.generate_data_key, KeyId=key["Arn"], KeySpec="AES_256") == (
        not_authorized("partner", "GenerateDataKey", key["Arn"]))
    # A principal of the other account without an IAM policy gets nothing from the account statement.
    assert refused(kms("guest").encrypt, KeyId=key["Arn"], Plaintext=b"p") == (
        not_authorized("guest", "Encrypt", key["Arn"]))


def test_cross_account_needs_the_iam_policy_even_when_the_key_policy_names_the_principal(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow([GUEST_ARN, PARTNER_ARN], ["kms:Encrypt", "kms:DescribeKey"])))
    kms("partner").encrypt(KeyId=key["Arn"], Plaintext=b"g")
    # Cross-account access needs both the key policy and an IAM policy in the caller's account.
    assert refused(kms("guest").encrypt, KeyId=key["Arn"], Plaintext=b"g") == (
        not_authorized("guest", "Encrypt", key["Arn"]))


def test_cross_account_is_refused_for_operations_that_are_not_cross_account(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow(f"arn:aws:iam::{PARTNER_ACCOUNT}:root", "kms:*")))
    partner = kms("partner")
    partner.describe_key(KeyId=key["Arn"])
    for action, call, kwargs in (
        ("ScheduleKeyDeletion", partner.schedule_key_deletion, {"PendingWindowInDays": 7}),
        ("DisableKey", partner.disable_key, {}),
        ("GetKeyPolicy", partner.get_key_policy, {"PolicyName": "default"}),
        ("PutKeyPolicy", partner.put_key_policy, {"Policy": policy(allow("*", "kms:*"))}),
    ):
        assert refused(call, KeyId=key["Arn"], **kwargs) == not_authorized("partner", action, key["Arn"])
    meta = kms("root").describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert meta["KeyState"] == "Enabled"


def test_a_key_that_does_not_allow_the_other_account(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow(APP_ARN, "kms:Encrypt")))
    blob = kms("root").encrypt(KeyId=key["KeyId"], Plaintext=b"n")["CiphertextBlob"]
    assert refused(kms("partner").encrypt, KeyId=key["Arn"], Plaintext=b"n") == (
        not_authorized("partner", "Encrypt", key["Arn"]))
    assert refused(kms("partner").decrypt, CiphertextBlob=blob) == not_authorized("partner", "Decrypt", key["Arn"])


# -- GetKeyPolicy / PutKeyPolicy / ListKeyPolicies ------------------------------------------------------------


def test_get_put_and_list_key_policies(kms: Clients) -> None:
    root = kms("root")
    key = new_key(kms)
    text = root.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"]
    assert json.loads(text)["Statement"][0]["Principal"] == {"AWS": ROOT_ARN}
    assert root.get_key_policy(KeyId=key["Arn"])["PolicyName"] == "default"
    listed = root.list_key_policies(KeyId=key["KeyId"])
    assert listed["PolicyNames"] == ["default"] and listed["Truncated"] is False
    new = policy(ROOT_ALL, allow(APP_ARN, "kms:GetKeyPolicy"))
    root.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=new)
    assert root.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"] == new
    assert kms("app").get_key_policy(KeyId=key["KeyId"])["Policy"] == new
    # The admin may replace it through the account statement and its IAM policy (which the check consults).
    delegated = policy(ROOT_ALL)
    kms("admin").put_key_policy(KeyId=key["KeyId"], Policy=delegated)
    assert root.get_key_policy(KeyId=key["KeyId"])["Policy"] == delegated
    # Only "default" exists.
    assert refused(root.get_key_policy, KeyId=key["KeyId"], PolicyName="other")[0] == "NotFoundException"
    assert refused(root.put_key_policy, KeyId=key["KeyId"], PolicyName="other", Policy=new)[0] == (
        "ValidationException")
    assert root.get_key_policy(KeyId=key["KeyId"])["Policy"] == delegated


def test_put_key_policy_needs_permission(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow(APP_ARN, "kms:GetKeyPolicy")))
    assert refused(kms("app").put_key_policy, KeyId=key["KeyId"], Policy=policy(allow("*", "kms:*")),
                   BypassPolicyLockoutSafetyCheck=True) == not_authorized("app", "PutKeyPolicy", key["Arn"])
    assert json.loads(kms("root").get_key_policy(KeyId=key["KeyId"])["Policy"])["Statement"][0] == ROOT_ALL


def test_lockout_safety_check_on_put_key_policy(kms: Clients) -> None:
    root = kms("root")
    key = new_key(kms)
    app_only = policy(allow(APP_ARN, "kms:*"))
    for doc in (app_only, policy(ROOT_ALL, deny(ROOT_ARN, "kms:PutKeyPolicy")),
                policy(allow(ROOT_ARN, "kms:Encrypt"))):
        assert refused(root.put_key_policy, KeyId=key["KeyId"], Policy=doc) == (
            "MalformedPolicyDocumentException", LOCKOUT)
    assert "Enable IAM User Permissions" in root.get_key_policy(KeyId=key["KeyId"])["Policy"]
    # The app role cannot call PutKeyPolicy on a key whose policy names only the account (no IAM policy) ...
    assert refused(kms("app").put_key_policy, KeyId=key["KeyId"], Policy=app_only) == (
        not_authorized("app", "PutKeyPolicy", key["Arn"]))
    # ... and the admin may not set a policy that would leave it, through its IAM policy, without PutKeyPolicy.
    assert refused(kms("admin").put_key_policy, KeyId=key["KeyId"], Policy=app_only) == (
        "MalformedPolicyDocumentException", LOCKOUT)
    # Told to skip the check, KMS takes the policy: the caller is then locked out.
    root.put_key_policy(KeyId=key["KeyId"], Policy=app_only, BypassPolicyLockoutSafetyCheck=True)
    assert refused(root.put_key_policy, KeyId=key["KeyId"], Policy=policy(ROOT_ALL)) == (
        not_authorized("root", "PutKeyPolicy", key["Arn"]))
    assert refused(root.describe_key, KeyId=key["KeyId"]) == not_authorized("root", "DescribeKey", key["Arn"])
    assert kms("app").get_key_policy(KeyId=key["KeyId"])["Policy"] == app_only


def test_lockout_safety_check_on_create_key(kms: Clients) -> None:
    root = kms("root")
    before = {k["KeyId"] for k in root.list_keys(Limit=1000)["Keys"]}
    app_only = policy(allow(APP_ARN, "kms:*"))
    assert refused(root.create_key, Policy=app_only) == ("MalformedPolicyDocumentException", LOCKOUT)
    assert {k["KeyId"] for k in root.list_keys(Limit=1000)["Keys"]} == before  # nothing was created
    key = root.create_key(Policy=app_only, BypassPolicyLockoutSafetyCheck=True)["KeyMetadata"]
    assert refused(root.describe_key, KeyId=key["KeyId"]) == not_authorized("root", "DescribeKey", key["Arn"])
    assert kms("app").describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Arn"] == key["Arn"]
    # The caller counts: the app may create a key it alone administers.
    mine = kms("app").create_key(Policy=app_only)["KeyMetadata"]
    assert refused(root.describe_key, KeyId=mine["KeyId"]) == not_authorized("root", "DescribeKey", mine["Arn"])


@pytest.mark.parametrize(("document", "code"), [
    ("not json", "MalformedPolicyDocumentException"),
    ('{"Version": "2012-10-17"}', "MalformedPolicyDocumentException"),
    (policy(allow("not-an-arn", "kms:*")), "MalformedPolicyDocumentException"),
    (policy({"Effect": "Maybe", "Principal": {"AWS": ROOT_ARN}, "Action": "kms:*", "Resource": "*"}),
     "MalformedPolicyDocumentException"),
    (policy(ROOT_ALL, {"Sid": "x" * 33000, **allow(APP_ARN, "kms:Encrypt")}), "LimitExceededException"),
])
def test_malformed_and_oversized_policies(kms: Clients, document: str, code: str) -> None:
    root = kms("root")
    key = new_key(kms)
    assert refused(root.put_key_policy, KeyId=key["KeyId"], Policy=document,
                   BypassPolicyLockoutSafetyCheck=True)[0] == code
    assert refused(root.create_key, Policy=document, BypassPolicyLockoutSafetyCheck=True)[0] == code
    assert "Enable IAM User Permissions" in root.get_key_policy(KeyId=key["KeyId"])["Policy"]


def test_invalid_principal_message(kms: Clients) -> None:
    assert refused(kms("root").create_key, Policy=policy(ROOT_ALL, allow("not-an-arn", "kms:*"))) == (
        "MalformedPolicyDocumentException", "Policy contains a statement with one or more invalid principals.")


def test_a_policy_of_exactly_32_kib_is_accepted(kms: Clients) -> None:
    base = policy(ROOT_ALL, {"Sid": "", **allow(APP_ARN, "kms:Encrypt")})
    padded = base.replace('"Sid": ""', '"Sid": "' + "s" * (32768 - len(base)) + '"')
    assert len(padded.encode()) == 32768
    key = new_key(kms, padded)
    assert kms("root").get_key_policy(KeyId=key["KeyId"])["Policy"] == padded
    assert refused(kms("root").put_key_policy, KeyId=key["KeyId"], Policy=padded + " ")[0] == (
        "LimitExceededException")


def test_alias_operations_need_permission_on_the_keys(kms: Clients) -> None:
    # The IAM half of alias permissions is not modelled (allowed); the key-policy half is.
    mine = new_key(kms, policy(ROOT_ALL, allow(APP_ARN, ["kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"])))
    theirs = new_key(kms)
    app, root = kms("app"), kms("root")
    app.create_alias(AliasName="alias/app-made", TargetKeyId=mine["KeyId"])
    assert refused(app.create_alias, AliasName="alias/app-other", TargetKeyId=theirs["KeyId"]) == (
        not_authorized("app", "CreateAlias", theirs["Arn"]))
    root.create_alias(AliasName="alias/root-made", TargetKeyId=theirs["KeyId"])
    # Deleting or moving an alias needs the permission on the key it points at now ...
    assert refused(app.delete_alias, AliasName="alias/root-made") == not_authorized("app", "DeleteAlias", theirs["Arn"])
    assert refused(app.update_alias, AliasName="alias/root-made", TargetKeyId=mine["KeyId"]) == (
        not_authorized("app", "UpdateAlias", theirs["Arn"]))
    # ... and moving it, on the key it is to point at.
    assert refused(app.update_alias, AliasName="alias/app-made", TargetKeyId=theirs["KeyId"]) == (
        not_authorized("app", "UpdateAlias", theirs["Arn"]))
    assert root.describe_key(KeyId="alias/root-made")["KeyMetadata"]["KeyId"] == theirs["KeyId"]
    app.delete_alias(AliasName="alias/app-made")
    # Another account has no aliases here.
    assert refused(kms("partner").delete_alias, AliasName="alias/root-made") == (
        "NotFoundException", f"Alias arn:aws:kms:us-east-1:{PARTNER_ACCOUNT}:alias/root-made is not found.")
    assert root.describe_key(KeyId="alias/root-made")["KeyMetadata"]["KeyId"] == theirs["KeyId"]


def test_another_account_lists_only_its_own_keys_and_aliases_and_cannot_create_keys_here(kms: Clients) -> None:
    key = new_key(kms, policy(ROOT_ALL, allow(PARTNER_ACCOUNT, "kms:*")))
    kms("root").create_alias(AliasName="alias/partner-visible-" + key["KeyId"][:8], TargetKeyId=key["KeyId"])
    assert key["KeyId"] in {k["KeyId"] for k in kms("root").list_keys(Limit=1000)["Keys"]}
    # The partner's own account holds no keys or aliases in this cluster, whatever it may use by ARN.
    assert kms("partner").list_keys()["Keys"] == []
    assert kms("partner").list_aliases()["Aliases"] == []
    assert kms("partner").list_aliases(KeyId=key["Arn"])["Aliases"] == []
    assert kms("partner").describe_key(KeyId=key["Arn"])["KeyMetadata"]["KeyId"] == key["KeyId"]
    code, message = refused(kms("partner").create_key)
    assert code == "UnsupportedOperationException" and PARTNER_ACCOUNT in message
