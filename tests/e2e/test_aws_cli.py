"""The real AWS CLI against the gateway: the everyday key, alias, tag and crypto commands, and how errors show."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import RunningCluster

ACCOUNT = "111122223333"
REGION = "eu-west-1"


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, f"aws failed ({result.returncode}): {result.stderr}"
    return json.loads(result.stdout) if result.stdout.strip() else None


def create_key(cluster: RunningCluster, *args: str) -> dict[str, Any]:
    meta: dict[str, Any] = ok(cluster.aws(REGION, "kms", "create-key", *args))["KeyMetadata"]
    return meta


def test_create_and_describe_key(cluster: RunningCluster) -> None:
    meta = create_key(cluster, "--description", "made by the cli", "--tags", "TagKey=team,TagValue=cli")
    assert meta["Arn"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{meta['KeyId']}"
    assert (meta["KeyState"], meta["Enabled"], meta["Description"]) == ("Enabled", True, "made by the cli")
    assert (meta["KeySpec"], meta["KeyUsage"], meta["Origin"]) == ("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT", "AWS_KMS")
    described = ok(cluster.aws(REGION, "kms", "describe-key", "--key-id", meta["Arn"]))["KeyMetadata"]
    assert described["KeyId"] == meta["KeyId"]
    # The key is where the CLI's --region says, and only there.
    other = cluster.aws("us-east-1", "kms", "describe-key", "--key-id", meta["KeyId"])
    assert other.returncode != 0 and "NotFoundException" in other.stderr
    # --query / --output text work on our responses.
    text = cluster.aws(REGION, "kms", "describe-key", "--key-id", meta["KeyId"], "--query", "KeyMetadata.KeyState",
                       "--output", "text")
    assert (text.returncode, text.stdout.strip()) == (0, "Enabled")


def test_encrypt_and_decrypt_binary_files(cluster: RunningCluster, tmp_path: Path) -> None:
    meta = create_key(cluster)
    plaintext = bytes(range(256)) + os.urandom(100)
    source = tmp_path / "plain.bin"
    source.write_bytes(plaintext)
    enc = ok(cluster.aws(REGION, "kms", "encrypt", "--key-id", meta["KeyId"], "--plaintext", f"fileb://{source}",
                         "--encryption-context", "purpose=cli-test"))
    assert (enc["KeyId"], enc["EncryptionAlgorithm"]) == (meta["Arn"], "SYMMETRIC_DEFAULT")
    blob = tmp_path / "cipher.bin"
    blob.write_bytes(base64.b64decode(enc["CiphertextBlob"]))
    dec = ok(cluster.aws(REGION, "kms", "decrypt", "--ciphertext-blob", f"fileb://{blob}",
                         "--encryption-context", "purpose=cli-test"))
    assert base64.b64decode(dec["Plaintext"]) == plaintext
    assert dec["KeyId"] == meta["Arn"]
    # The wrong encryption context is refused, opaquely.
    bad = cluster.aws(REGION, "kms", "decrypt", "--ciphertext-blob", f"fileb://{blob}",
                      "--encryption-context", "purpose=other")
    assert bad.returncode != 0 and "(InvalidCiphertextException)" in bad.stderr
    # Through an alias, with the text output the usual shell recipe uses.
    alias = f"alias/cli-crypto-{uuid.uuid4().hex}"
    ok(cluster.aws(REGION, "kms", "create-alias", "--alias-name", alias, "--target-key-id", meta["KeyId"]))
    enc2 = ok(cluster.aws(REGION, "kms", "encrypt", "--key-id", alias, "--plaintext", f"fileb://{source}"))
    blob.write_bytes(base64.b64decode(enc2["CiphertextBlob"]))
    text = cluster.aws(REGION, "kms", "decrypt", "--ciphertext-blob", f"fileb://{blob}", "--query", "Plaintext",
                       "--output", "text")
    assert text.returncode == 0, text.stderr
    assert base64.b64decode(text.stdout.strip()) == plaintext


def test_aliases(cluster: RunningCluster) -> None:
    a, b = create_key(cluster), create_key(cluster)
    alias = f"alias/cli-{uuid.uuid4().hex}"
    assert ok(cluster.aws(REGION, "kms", "create-alias", "--alias-name", alias, "--target-key-id", a["Arn"])) is None
    listed = ok(cluster.aws(REGION, "kms", "list-aliases", "--key-id", a["KeyId"]))["Aliases"]
    assert [(x["AliasName"], x["TargetKeyId"], x["AliasArn"]) for x in listed] == [
        (alias, a["KeyId"], f"arn:aws:kms:{REGION}:{ACCOUNT}:{alias}")]
    everything = ok(cluster.aws(REGION, "kms", "list-aliases", "--page-size", "2"))["Aliases"]
    assert [x["AliasName"] for x in everything].count(alias) == 1
    ok(cluster.aws(REGION, "kms", "update-alias", "--alias-name", alias, "--target-key-id", b["KeyId"]))
    assert ok(cluster.aws(REGION, "kms", "describe-key", "--key-id", alias))["KeyMetadata"]["KeyId"] == b["KeyId"]
    ok(cluster.aws(REGION, "kms", "delete-alias", "--alias-name", alias))
    assert ok(cluster.aws(REGION, "kms", "list-aliases", "--key-id", b["KeyId"]))["Aliases"] == []
    dup = cluster.aws(REGION, "kms", "create-alias", "--alias-name", "alias/aws/cli", "--target-key-id", a["KeyId"])
    assert dup.returncode != 0 and "(NotAuthorizedException)" in dup.stderr


def test_list_keys_follows_every_page(cluster: RunningCluster) -> None:
    mine = {create_key(cluster)["KeyId"] for _ in range(3)}
    listed = ok(cluster.aws(REGION, "kms", "list-keys", "--page-size", "2"))["Keys"]
    ids = [k["KeyId"] for k in listed]
    assert len(ids) == len(set(ids))
    assert mine <= set(ids)
    assert "NextMarker" not in ok(cluster.aws(REGION, "kms", "list-keys"))
    # --max-items hands back the CLI's own NextToken, built from our marker; resuming with it continues.
    first = ok(cluster.aws(REGION, "kms", "list-keys", "--max-items", "1", "--page-size", "1"))
    assert len(first["Keys"]) == 1 and first.get("NextToken")
    rest = ok(cluster.aws(REGION, "kms", "list-keys", "--page-size", "1", "--starting-token", first["NextToken"]))
    resumed = [first["Keys"][0]["KeyId"]] + [k["KeyId"] for k in rest["Keys"]]
    assert len(resumed) == len(set(resumed))  # nothing repeated
    assert set(resumed) == set(ids)  # nothing lost


def test_tags(cluster: RunningCluster) -> None:
    meta = create_key(cluster)
    ok(cluster.aws(REGION, "kms", "tag-resource", "--key-id", meta["KeyId"], "--tags",
                   "TagKey=env,TagValue=prod", "TagKey=team,TagValue=payments"))
    ok(cluster.aws(REGION, "kms", "tag-resource", "--key-id", meta["Arn"], "--tags", "TagKey=env,TagValue=dev"))
    tags = ok(cluster.aws(REGION, "kms", "list-resource-tags", "--key-id", meta["KeyId"]))
    assert {t["TagKey"]: t["TagValue"] for t in tags["Tags"]} == {"env": "dev", "team": "payments"}
    ok(cluster.aws(REGION, "kms", "untag-resource", "--key-id", meta["KeyId"], "--tag-keys", "env", "missing"))
    tags = ok(cluster.aws(REGION, "kms", "list-resource-tags", "--key-id", meta["KeyId"]))
    assert tags["Tags"] == [{"TagKey": "team", "TagValue": "payments"}]
    bad = cluster.aws(REGION, "kms", "tag-resource", "--key-id", meta["KeyId"], "--tags", "TagKey=aws:x,TagValue=v")
    assert bad.returncode != 0 and "(TagException)" in bad.stderr


def test_schedule_and_cancel_key_deletion(cluster: RunningCluster) -> None:
    meta = create_key(cluster)
    out = ok(cluster.aws(REGION, "kms", "schedule-key-deletion", "--key-id", meta["KeyId"],
                         "--pending-window-in-days", "7"))
    assert (out["KeyId"], out["KeyState"], out["PendingWindowInDays"]) == (meta["Arn"], "PendingDeletion", 7)
    assert out["DeletionDate"]
    described = ok(cluster.aws(REGION, "kms", "describe-key", "--key-id", meta["KeyId"]))["KeyMetadata"]
    assert described["KeyState"] == "PendingDeletion" and "DeletionDate" in described
    refused = cluster.aws(REGION, "kms", "encrypt", "--key-id", meta["KeyId"], "--plaintext", "fileb:///dev/null")
    assert refused.returncode != 0
    ok(cluster.aws(REGION, "kms", "cancel-key-deletion", "--key-id", meta["KeyId"]))
    described = ok(cluster.aws(REGION, "kms", "describe-key", "--key-id", meta["KeyId"]))["KeyMetadata"]
    assert described["KeyState"] == "Disabled" and "DeletionDate" not in described


@pytest.mark.parametrize(("args", "code", "message"), [
    (("describe-key", "--key-id", "nope"), "NotFoundException", "Invalid keyId nope"),
    (("schedule-key-deletion", "--key-id", "1234abcd-12ab-34cd-56ef-1234567890ab"), "NotFoundException",
     f"Key 'arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab' does not exist"),
    (("generate-random", "--number-of-bytes", "2000"), "ValidationException",
     "1 validation error detected: Value '2000' at 'numberOfBytes' failed to satisfy constraint: "
     "Member must have value less than or equal to 1024"),
    # A CLI pagination token carrying a marker the server never issued.
    (("list-keys", "--starting-token", base64.b64encode(b'{"Marker": "garbage"}').decode(), "--max-items", "1"),
     "InvalidMarkerException", "ListKeys"),
])
def test_errors_show_the_kms_code_and_exit_non_zero(cluster: RunningCluster, args: tuple[str, ...], code: str,
                                                   message: str) -> None:
    result = cluster.aws(REGION, "kms", *args)
    assert result.returncode != 0
    assert result.stdout.strip() == ""
    assert f"An error occurred ({code}) when calling the " in result.stderr
    assert message in result.stderr


def test_window_out_of_range_from_the_cli(cluster: RunningCluster) -> None:
    meta = create_key(cluster)
    result = cluster.aws(REGION, "kms", "schedule-key-deletion", "--key-id", meta["KeyId"],
                         "--pending-window-in-days", "3")
    assert result.returncode != 0
    assert "(ValidationException)" in result.stderr and "pendingWindowInDays" in result.stderr
    assert ok(cluster.aws(REGION, "kms", "describe-key", "--key-id", meta["KeyId"]))["KeyMetadata"][
        "KeyState"] == "Enabled"
