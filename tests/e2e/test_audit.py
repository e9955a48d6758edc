"""The audit trail end to end: one CloudTrail-shaped record per call in the region's log, the fields CloudTrail
fills, nothing secret in any form, GetKeyLastUsage (also after a restart), and the merged `trent audit` view."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.e2e.harness import RunningCluster, poll
from tests.e2e.test_policies import (
    ACCOUNT,
    ADMIN_ARN,
    APP_ARN,
    CREDENTIALS,
    ROOT_ALL,
    ROOT_ARN,
    Clients,
    allow,
    module_cluster,
    not_authorized,
    policy,
    refused,
)
from trent.cluster.audit_view import audit_events, format_event

cluster, kms = module_cluster("audit")


def audit_files(cluster: RunningCluster) -> list[Path]:
    return sorted(cluster.data_dir.glob("*/audit/*.jsonl"))


def all_records(cluster: RunningCluster) -> list[dict[str, Any]]:
    out = []
    for path in audit_files(cluster):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line))
    return out


def records_for(cluster: RunningCluster, request_ids: list[str], timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """The one record of each request (flushing is batched: wait, bounded); fails if any has two."""
    def found() -> dict[str, list[dict[str, Any]]] | None:
        by_id: dict[str, list[dict[str, Any]]] = {}
        for record in all_records(cluster):
            if record.get("requestID") in request_ids:
                by_id.setdefault(record["requestID"], []).append(record)
        return by_id if set(by_id) == set(request_ids) else None

    by_id = poll(found, timeout=timeout)
    assert {rid: len(recs) for rid, recs in by_id.items()} == dict.fromkeys(request_ids, 1)
    return {rid: recs[0] for rid, recs in by_id.items()}


def rid(response: dict[str, Any]) -> str:
    value: str = response["ResponseMetadata"]["RequestId"]
    return value


def failed_rid(exc: pytest.ExceptionInfo[ClientError]) -> str:
    value: str = exc.value.response["ResponseMetadata"]["RequestId"]
    return value


def resource_arns(record: dict[str, Any]) -> list[str]:
    return [r["ARN"] for r in record["resources"]]


# -- one record per call, and what it says -------------------------------------------------------------------


def test_one_record_per_call_with_cloudtrail_fields(cluster: RunningCluster, kms: Clients) -> None:
    root, app = kms("root"), kms("app")
    calls: dict[str, str] = {}
    created = root.create_key(Description="audited key", Tags=[{"TagKey": "team", "TagValue": "audit"}])
    key = created["KeyMetadata"]
    calls["create"] = rid(created)
    calls["alias"] = rid(root.create_alias(AliasName="alias/audited", TargetKeyId=key["KeyId"]))
    encrypted = root.encrypt(KeyId="alias/audited", Plaintext=b"audit me", EncryptionContext={"Dept": "Eng"})
    calls["encrypt"] = rid(encrypted)
    calls["decrypt"] = rid(root.decrypt(CiphertextBlob=encrypted["CiphertextBlob"], EncryptionContext={"Dept": "Eng"}))
    calls["gdk"] = rid(root.generate_data_key(KeyId=key["Arn"], KeySpec="AES_256"))
    with pytest.raises(ClientError) as denied:
        app.encrypt(KeyId=key["KeyId"], Plaintext=b"no")
    calls["denied"] = failed_rid(denied)
    with pytest.raises(ClientError) as missing:
        root.describe_key(KeyId="alias/does-not-exist")
    calls["missing"] = failed_rid(missing)
    granted = root.create_grant(KeyId=key["KeyId"], GranteePrincipal=APP_ARN, Operations=["Encrypt"],
                                Name="audit-grant")
    calls["grant"] = rid(granted)
    calls["granted"] = rid(app.encrypt(KeyId=key["KeyId"], Plaintext=b"via grant",
                                       GrantTokens=[granted["GrantToken"]]))
    calls["list"] = rid(root.list_keys())
    new_policy = policy(ROOT_ALL, allow(APP_ARN, "kms:DescribeKey"))
    calls["put"] = rid(root.put_key_policy(KeyId=key["KeyId"], Policy=new_policy))
    calls["admin"] = rid(kms("admin").describe_key(KeyId=key["KeyId"]))
    calls["retire"] = rid(root.retire_grant(GrantToken=granted["GrantToken"]))
    calls["unalias"] = rid(root.delete_alias(AliasName="alias/audited"))
    eu_created = kms("root", "eu-west-1").create_key(Description="in eu")
    calls["eu"] = rid(eu_created)

    got = records_for(cluster, list(calls.values()))
    r = {name: got[request_id] for name, request_id in calls.items()}
    for name, record in r.items():
        assert record["eventSource"] == "kms.amazonaws.com" and record["eventType"] == "AwsApiCall"
        assert record["eventVersion"] == "1.08" and record["recipientAccountId"] == ACCOUNT
        assert record["awsRegion"] == ("eu-west-1" if name == "eu" else "us-east-1"), name
        assert record["eventTime"].endswith("Z") and len(record["eventTime"]) == 20
        assert record["userIdentity"]["accountId"] == ACCOUNT
    # The record sits in its own region's log.
    eu_log = (cluster.data_dir / "eu-west-1" / "audit" / "audit.jsonl").read_text()
    assert calls["eu"] in eu_log and calls["create"] not in eu_log

    ck = r["create"]
    assert ck["eventName"] == "CreateKey" and ck["readOnly"] is False
    assert ck["userIdentity"]["arn"] == ROOT_ARN and ck["userIdentity"]["type"] == "Root"
    assert ck["userIdentity"]["accessKeyId"] == "test"
    assert ck["requestParameters"]["description"] == "audited key"
    assert ck["requestParameters"]["tags"] == [{"tagKey": "team", "tagValue": "audit"}]
    assert ck["responseElements"]["keyMetadata"]["keyId"] == key["KeyId"]
    assert ck["responseElements"]["keyMetadata"]["arn"] == key["Arn"]
    assert resource_arns(ck) == [key["Arn"]]
    assert ck["resources"][0] == {"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": key["Arn"]}

    enc = r["encrypt"]
    assert enc["eventName"] == "Encrypt" and enc["readOnly"] is True and enc["responseElements"] is None
    assert enc["requestParameters"]["keyId"] == "alias/audited"  # as sent; resources hold the key
    assert enc["requestParameters"]["encryptionContext"] == {"Dept": "Eng"}
    assert enc["requestParameters"]["encryptionAlgorithm"] == "SYMMETRIC_DEFAULT"  # logged even when omitted
    assert resource_arns(enc) == [key["Arn"]]
    assert "errorCode" not in enc

    dec = r["decrypt"]
    assert dec["eventName"] == "Decrypt" and dec["responseElements"] is None
    assert dec["requestParameters"] == {"encryptionContext": {"Dept": "Eng"},
                                        "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    assert resource_arns(dec) == [key["Arn"]]

    assert r["gdk"]["requestParameters"] == {"keyId": key["Arn"], "keySpec": "AES_256"}
    assert r["gdk"]["responseElements"] is None and r["gdk"]["readOnly"] is True

    den = r["denied"]
    assert den["userIdentity"]["arn"] == APP_ARN and den["userIdentity"]["accessKeyId"] == CREDENTIALS["app"][0]
    assert (den["errorCode"], den["errorMessage"]) == not_authorized("app", "Encrypt", key["Arn"])
    assert den["responseElements"] is None and resource_arns(den) == [key["Arn"]]

    assert r["missing"]["errorCode"] == "NotFoundException" and r["missing"]["errorMessage"]
    assert r["missing"]["resources"] == []

    cg = r["grant"]
    assert cg["eventName"] == "CreateGrant" and cg["readOnly"] is False
    assert cg["responseElements"] == {"grantId": granted["GrantId"]}
    assert cg["requestParameters"] == {"keyId": key["KeyId"], "granteePrincipal": APP_ARN, "operations": ["Encrypt"],
                                       "name": "audit-grant"}
    assert r["granted"]["userIdentity"]["arn"] == APP_ARN and "errorCode" not in r["granted"]
    assert "grantTokens" not in r["granted"]["requestParameters"]

    assert r["list"]["eventName"] == "ListKeys" and r["list"]["readOnly"] is True and r["list"]["resources"] == []
    assert r["put"]["readOnly"] is False and r["put"]["requestParameters"]["policy"] == new_policy
    assert r["admin"]["userIdentity"]["arn"] == ADMIN_ARN and r["admin"]["userIdentity"]["type"] == "IAMUser"
    assert r["admin"]["userIdentity"]["userName"] == "admin"
    # Calls that name their key only through a grant token or an alias that they remove.
    assert granted["GrantToken"] not in json.dumps(r["retire"]) and resource_arns(r["retire"]) == [key["Arn"]]
    assert r["unalias"]["requestParameters"] == {"aliasName": "alias/audited"}
    assert resource_arns(r["unalias"]) == [key["Arn"]]
    assert r["eu"]["responseElements"]["keyMetadata"]["arn"] == eu_created["KeyMetadata"]["Arn"]


def test_cross_account_calls_are_recorded_in_the_key_owners_log(cluster: RunningCluster, kms: Clients) -> None:
    key = kms("root").create_key(Policy=policy(ROOT_ALL, allow("arn:aws:iam::444455556666:root", "kms:Encrypt")))[
        "KeyMetadata"]
    out = kms("partner").encrypt(KeyId=key["Arn"], Plaintext=b"x")
    record = records_for(cluster, [rid(out)])[rid(out)]
    assert record["userIdentity"]["accountId"] == "444455556666"
    assert record["recipientAccountId"] == ACCOUNT and resource_arns(record) == [key["Arn"]]


# -- nothing secret, in any form -------------------------------------------------------------------------------


def forms(secret: bytes | str) -> list[bytes]:
    if isinstance(secret, str):
        return [secret.encode()]
    b64 = base64.b64encode(secret)
    return [secret, b64, b64.rstrip(b"="), base64.urlsafe_b64encode(secret).rstrip(b"="), secret.hex().encode(),
            secret.hex().upper().encode()]


def test_no_secret_reaches_any_audit_file(cluster: RunningCluster, kms: Clients) -> None:
    root, app = kms("root"), kms("app")
    secrets: list[bytes | str] = []
    ids: list[str] = []

    def call(method: Any, **kwargs: Any) -> dict[str, Any]:
        out: dict[str, Any] = method(**kwargs)
        ids.append(rid(out))
        return out

    key = root.create_key()["KeyMetadata"]
    plaintext = b"PLAINTEXT-" + os.urandom(24)
    secrets.append(plaintext)
    blob = call(root.encrypt, KeyId=key["KeyId"], Plaintext=plaintext, EncryptionContext={"ctx": "v"})[
        "CiphertextBlob"]
    secrets.append(blob)
    call(root.decrypt, CiphertextBlob=blob, EncryptionContext={"ctx": "v"})
    other = root.create_key()["KeyMetadata"]
    reencrypted = call(root.re_encrypt, CiphertextBlob=blob, SourceEncryptionContext={"ctx": "v"},
                       DestinationKeyId=other["KeyId"])["CiphertextBlob"]
    secrets.append(reencrypted)
    data_key = call(root.generate_data_key, KeyId=key["KeyId"], KeySpec="AES_256")
    secrets += [data_key["Plaintext"], data_key["CiphertextBlob"]]
    secrets.append(call(root.generate_data_key_without_plaintext, KeyId=key["KeyId"], NumberOfBytes=48)[
        "CiphertextBlob"])
    pair = call(root.generate_data_key_pair, KeyId=key["KeyId"], KeyPairSpec="ECC_NIST_P256")
    secrets += [pair["PrivateKeyPlaintext"], pair["PrivateKeyCiphertextBlob"]]
    secrets.append(call(root.generate_random, NumberOfBytes=32)["Plaintext"])
    signer = root.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    message = b"MESSAGE-" + os.urandom(24)
    signature = call(root.sign, KeyId=signer["KeyId"], Message=message, SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    call(root.verify, KeyId=signer["KeyId"], Message=message, Signature=signature, SigningAlgorithm="ECDSA_SHA_256")
    secrets += [message, signature]
    mac_key = root.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]
    mac = call(root.generate_mac, KeyId=mac_key["KeyId"], Message=message, MacAlgorithm="HMAC_SHA_256")["Mac"]
    secrets.append(mac)
    granted = call(root.create_grant, KeyId=key["KeyId"], GranteePrincipal=APP_ARN, Operations=["Encrypt", "Decrypt"])
    again = call(root.create_grant, KeyId=key["KeyId"], GranteePrincipal=APP_ARN, Operations=["Decrypt"],
                 Name="secret-check")
    secrets += [granted["GrantToken"], again["GrantToken"]]
    call(app.decrypt, CiphertextBlob=blob, EncryptionContext={"ctx": "v"}, GrantTokens=[granted["GrantToken"]])
    # Failed calls whose messages could quote what they carried.
    too_many = [granted["GrantToken"]] * 10 + [again["GrantToken"]]
    with pytest.raises(ClientError) as exc:
        app.encrypt(KeyId=key["KeyId"], Plaintext=plaintext, GrantTokens=too_many)
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    ids.append(failed_rid(exc))
    password = "KSPASSWORD-" + os.urandom(8).hex()
    secrets.append(password)
    with pytest.raises(ClientError) as exc:
        root.create_custom_key_store(CustomKeyStoreName="store", CloudHsmClusterId="cluster-234567abcdef",
                                     TrustAnchorCertificate="cert", KeyStorePassword=password)
    # Validated, then refused: no such HSM cluster (or, without SoftHSM2, no custom key stores at all).
    assert exc.value.response["Error"]["Code"] in ("CloudHsmClusterNotFoundException", "UnsupportedOperationException")
    ids.append(failed_rid(exc))
    with pytest.raises(ClientError) as exc:
        root.decrypt(CiphertextBlob=blob, EncryptionContext={"ctx": "wrong"})
    ids.append(failed_rid(exc))
    call(root.retire_grant, GrantToken=again["GrantToken"])

    records_for(cluster, ids)  # every call recorded (so every line that could leak is on disk)
    files = audit_files(cluster)
    assert files
    contents = b"".join(path.read_bytes() for path in files)
    for secret in secrets:
        for form in forms(secret):
            assert form not in contents, f"a secret ({form[:16]!r}...) is in the audit log"
    # The token-quoting validation error is still recorded, with the tokens cut out.
    failed = records_for(cluster, [ids[-4]])[ids[-4]]
    assert failed["errorCode"] == "ValidationException" and "grantTokens" in failed["errorMessage"]


def test_audit_view_of_a_live_cluster(cluster: RunningCluster, kms: Clients) -> None:
    key = kms("root", "eu-west-1").create_key()["KeyMetadata"]
    out = kms("root", "eu-west-1").describe_key(KeyId=key["KeyId"])
    records_for(cluster, [rid(out)])
    mine = audit_events(cluster.data_dir, key=key["KeyId"])
    assert [e["eventName"] for e in mine] == ["CreateKey", "DescribeKey"]
    assert all(e["awsRegion"] == "eu-west-1" for e in mine)
    assert mine[-1]["requestID"] == rid(out)


# -- GetKeyLastUsage -------------------------------------------------------------------------------------------


def test_get_key_last_usage_follows_crypto_calls_and_survives_a_restart(cluster: RunningCluster,
                                                                       kms: Clients) -> None:
    # Last in this module: it restarts the cluster.
    root = kms("root")
    key = root.create_key(Policy=policy(ROOT_ALL, allow(APP_ARN, "kms:DescribeKey")))["KeyMetadata"]
    dest = root.create_key()["KeyMetadata"]
    fresh = root.get_key_last_usage(KeyId=key["KeyId"])
    assert fresh["KeyId"] == key["Arn"] and fresh["KeyLastUsage"] == {}
    assert fresh["KeyCreationDate"] == key["CreationDate"]
    assert fresh["TrackingStartDate"] <= fresh["KeyCreationDate"]

    encrypted = root.encrypt(KeyId=key["KeyId"], Plaintext=b"u")
    usage = root.get_key_last_usage(KeyId=key["KeyId"])["KeyLastUsage"]
    assert usage["Operation"] == "Encrypt" and usage["KmsRequestId"] == rid(encrypted)
    decrypted = root.decrypt(CiphertextBlob=encrypted["CiphertextBlob"])
    usage = root.get_key_last_usage(KeyId=key["KeyId"])["KeyLastUsage"]
    assert usage["Operation"] == "Decrypt" and usage["KmsRequestId"] == rid(decrypted)
    # Neither failures nor non-cryptographic calls count.
    assert refused(kms("app").encrypt, KeyId=key["KeyId"], Plaintext=b"u") == (
        not_authorized("app", "Encrypt", key["Arn"]))
    kms("app").describe_key(KeyId=key["KeyId"])
    root.get_key_policy(KeyId=key["KeyId"])
    with pytest.raises(ClientError):
        root.decrypt(CiphertextBlob=encrypted["CiphertextBlob"], EncryptionContext={"wrong": "context"})
    assert root.get_key_last_usage(KeyId=key["KeyId"])["KeyLastUsage"]["KmsRequestId"] == rid(decrypted)
    # ReEncrypt uses both keys.
    reencrypted = root.re_encrypt(CiphertextBlob=encrypted["CiphertextBlob"], DestinationKeyId=dest["KeyId"])
    for k in (key, dest):
        usage = root.get_key_last_usage(KeyId=k["KeyId"])["KeyLastUsage"]
        assert usage["Operation"] == "ReEncrypt" and usage["KmsRequestId"] == rid(reencrypted)
    # GetPublicKey is not a use of the key; Sign is.
    signer = root.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]
    root.get_public_key(KeyId=signer["KeyId"])
    assert root.get_key_last_usage(KeyId=signer["KeyId"])["KeyLastUsage"] == {}
    signed = root.sign(KeyId=signer["KeyId"], Message=b"m", SigningAlgorithm="ECDSA_SHA_256")
    root.get_public_key(KeyId=signer["KeyId"])
    assert root.get_key_last_usage(KeyId=signer["KeyId"])["KeyLastUsage"]["KmsRequestId"] == rid(signed)

    # The event id is the audit record's.
    record = records_for(cluster, [rid(reencrypted)])[rid(reencrypted)]
    before = {k["KeyId"]: root.get_key_last_usage(KeyId=k["KeyId"]) for k in (key, dest, signer)}
    assert before[key["KeyId"]]["KeyLastUsage"]["CloudTrailEventId"] == record["eventID"]
    cluster.restart()  # same ports: the module's clients keep working
    for key_id, old in before.items():
        new = root.get_key_last_usage(KeyId=key_id)
        assert new["KeyLastUsage"] == old["KeyLastUsage"]
        assert new["TrackingStartDate"] == old["TrackingStartDate"]
    # Tracking goes on after the restart.
    again = root.encrypt(KeyId=key["KeyId"], Plaintext=b"u")
    assert root.get_key_last_usage(KeyId=key["KeyId"])["KeyLastUsage"]["KmsRequestId"] == rid(again)


# -- the merged view (`trent audit`) ---------------------------------------------------------------------------


def event(name: str, region: str, at: str, arn: str = ROOT_ARN, key_id: str | None = None,
          access_key: str = "test") -> dict[str, Any]:
    resources = [] if key_id is None else [
        {"accountId": ACCOUNT, "type": "AWS::KMS::Key", "ARN": f"arn:aws:kms:{region}:{ACCOUNT}:key/{key_id}"}]
    return {"eventTime": at, "eventName": name, "awsRegion": region, "resources": resources,
            "userIdentity": {"arn": arn, "accountId": arn.split(":")[4], "accessKeyId": access_key}}


def write_log(data_dir: Path, region: str, events: list[dict[str, Any]], name: str = "audit.jsonl") -> None:
    directory = data_dir / region / "audit"
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / name, "a", encoding="utf-8") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")


K1, K2 = "11111111-1111-1111-1111-111111111111", "mrk-22222222222222222222222222222222"


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    write_log(tmp_path, "us-east-1", [
        event("CreateKey", "us-east-1", "2026-11-23T15:00:00Z", key_id=K1),
        event("Encrypt", "us-east-1", "2026-11-23T15:00:05Z", arn=APP_ARN, key_id=K1, access_key="AKIAAPP"),
        event("Decrypt", "us-east-1", "2026-11-23T15:00:05Z", key_id=K2),  # same second: log order kept
        event("Encrypt", "us-east-1", "2026-11-23T16:00:00Z", arn=ADMIN_ARN, key_id=K2),
    ])
    write_log(tmp_path, "eu-west-1", [
        event("ReplicateKey", "eu-west-1", "2026-11-23T15:00:02Z", key_id=K2),
        event("Decrypt", "eu-west-1", "2026-11-23T15:30:00Z", arn=APP_ARN, key_id=K2, access_key="AKIAAPP"),
    ])
    (tmp_path / "eu-west-1" / "audit" / "audit.jsonl").open("a").write('{"torn line')  # a crash mid-write
    (tmp_path / "not-a-region").mkdir()
    return tmp_path


def names(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["awsRegion"], e["eventName"]) for e in events]


def test_audit_view_merges_regions_oldest_first(logs: Path) -> None:
    assert names(audit_events(logs)) == [
        ("us-east-1", "CreateKey"), ("eu-west-1", "ReplicateKey"), ("us-east-1", "Encrypt"),
        ("us-east-1", "Decrypt"), ("eu-west-1", "Decrypt"), ("us-east-1", "Encrypt")]
    assert names(audit_events(logs, region="eu-west-1")) == [("eu-west-1", "ReplicateKey"), ("eu-west-1", "Decrypt")]
    assert audit_events(logs, region="ap-south-1") == []


def test_audit_view_filters(logs: Path) -> None:
    assert names(audit_events(logs, event="Decrypt")) == [("us-east-1", "Decrypt"), ("eu-west-1", "Decrypt")]
    # A key by id (every region of a multi-Region key) or by ARN (one region).
    assert names(audit_events(logs, key=K2)) == [("eu-west-1", "ReplicateKey"), ("us-east-1", "Decrypt"),
                                                 ("eu-west-1", "Decrypt"), ("us-east-1", "Encrypt")]
    assert names(audit_events(logs, key=f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/{K2}")) == [
        ("eu-west-1", "ReplicateKey"), ("eu-west-1", "Decrypt")]
    assert audit_events(logs, key="2222") == []  # not a substring search
    # A principal by ARN, by its tail, or by access key id.
    for who in (APP_ARN, "role/app", "AKIAAPP"):
        assert names(audit_events(logs, principal=who)) == [("us-east-1", "Encrypt"), ("eu-west-1", "Decrypt")]
    assert audit_events(logs, principal="app") == []
    assert names(audit_events(logs, principal=ADMIN_ARN, event="Encrypt", region="us-east-1")) == [
        ("us-east-1", "Encrypt")]


def test_audit_view_since(logs: Path) -> None:
    assert names(audit_events(logs, since="2026-11-23T15:00:05Z")) == [
        ("us-east-1", "Encrypt"), ("us-east-1", "Decrypt"), ("eu-west-1", "Decrypt"), ("us-east-1", "Encrypt")]
    # A time without a zone is UTC, as CloudTrail's are.
    assert len(audit_events(logs, since="2026-11-23T15:30:00")) == 2
    now = 1795449600.0  # 2026-11-23T16:00:00Z
    assert names(audit_events(logs, since="45m", now=now)) == [("eu-west-1", "Decrypt"), ("us-east-1", "Encrypt")]
    assert len(audit_events(logs, since="2h", now=now)) == 6
    with pytest.raises(ValueError):
        audit_events(logs, since="yesterday-ish")


def test_audit_view_reads_rotated_files_and_formats(logs: Path) -> None:
    write_log(logs, "us-east-1", [event("ListKeys", "us-east-1", "2026-11-23T14:00:00Z")], "audit-1-000001.jsonl")
    assert names(audit_events(logs))[0] == ("us-east-1", "ListKeys")
    line = format_event(audit_events(logs, event="Encrypt", principal="role/app")[0])
    assert line.startswith("2026-11-23T15:00:05Z us-east-1") and "Encrypt" in line and APP_ARN in line
    assert K1 in line
