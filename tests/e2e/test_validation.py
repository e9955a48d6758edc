"""Server-side validation over the wire (KMS-REFERENCE.md §1.3, §1.6): what botocore lets through must come back
as AWS-shaped ValidationException / SerializationException / UnknownOperationException, and no operation of the
model may answer 500."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.e2e.harness import RunningCluster, error, poll

MODEL = botocore.session.get_session().get_service_model("kms")


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def raw(cluster: RunningCluster, target: str | None, body: bytes, region: str = "us-east-1",
        content_type: str = "application/x-amz-json-1.1") -> RawResponse:
    """POST arbitrary bytes, correctly SigV4-signed for ``region``, to the gateway."""
    headers = {"Content-Type": content_type}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method="POST", url=cluster.gateway_url + "/", data=body, headers=headers)
    SigV4Auth(Credentials("test", "test"), "kms", region).add_auth(request)
    prepared = request.prepare()
    http = urllib.request.Request(prepared.url, data=prepared.body, headers=dict(prepared.headers), method="POST")
    try:
        with urllib.request.urlopen(http, timeout=30) as response:
            return RawResponse(response.status, _lower(response.headers), response.read())
    except urllib.error.HTTPError as exc:
        return RawResponse(exc.code, _lower(exc.headers), exc.read())


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def new_key_id(kms: Any) -> str:
    return str(kms.create_key()["KeyMetadata"]["KeyId"])


# -- constraints botocore does not check ------------------------------------------------------------------------


def test_number_of_bytes_above_1024(kms: Any) -> None:
    expected = {"Code": "ValidationException", "Status": 400, "Message": (
        "1 validation error detected: Value '2000' at 'numberOfBytes' failed to satisfy constraint: "
        "Member must have value less than or equal to 1024")}
    assert error(kms.generate_random, NumberOfBytes=2000) == expected
    key = new_key_id(kms)
    assert error(kms.generate_data_key, KeyId=key, NumberOfBytes=2000) == expected
    assert error(kms.generate_data_key_without_plaintext, KeyId=key, NumberOfBytes=2000) == expected
    assert len(kms.generate_random(NumberOfBytes=1024)["Plaintext"]) == 1024


def test_plaintext_above_4096_bytes_omits_the_value(kms: Any) -> None:
    key = new_key_id(kms)
    secret = b"S3CR3T-" * 715  # 5005 bytes
    err = error(kms.encrypt, KeyId=key, Plaintext=secret)
    assert err == {"Code": "ValidationException", "Status": 400, "Message": (
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length less than or equal to 4096")}
    assert "S3CR3T" not in err["Message"]
    assert len(kms.decrypt(CiphertextBlob=kms.encrypt(KeyId=key, Plaintext=b"x" * 4096)["CiphertextBlob"])[
        "Plaintext"]) == 4096


def test_empty_plaintext(kms: Any) -> None:
    err = error(kms.encrypt, KeyId=new_key_id(kms), Plaintext=b"")
    assert err == {"Code": "ValidationException", "Status": 400, "Message": (
        "1 validation error detected: Value at 'plaintext' failed to satisfy constraint: "
        "Member must have length greater than or equal to 1")}


def test_unknown_enum_value_lists_the_enum(kms: Any) -> None:
    values = ", ".join(MODEL.shape_for("KeySpec").enum)
    err = error(kms.create_key, KeySpec="NOPE")
    assert err == {"Code": "ValidationException", "Status": 400, "Message": (
        "1 validation error detected: Value 'NOPE' at 'keySpec' failed to satisfy constraint: "
        f"Member must satisfy enum value set: [{values}]")}
    usages = ", ".join(MODEL.shape_for("KeyUsageType").enum)
    err = error(kms.create_key, KeyUsage="ENCRYPT")
    assert err["Message"] == ("1 validation error detected: Value 'ENCRYPT' at 'keyUsage' failed to satisfy "
                              f"constraint: Member must satisfy enum value set: [{usages}]")


def test_two_violations_are_reported_together(kms: Any) -> None:
    key = new_key_id(kms)
    err = error(kms.generate_data_key, KeyId=key, NumberOfBytes=2000, KeySpec="AES_512")
    assert (err["Code"], err["Status"]) == ("ValidationException", 400)
    message = err["Message"]
    assert message.startswith("2 validation errors detected: ")
    clauses = message[len("2 validation errors detected: "):].split("; ")
    assert sorted(clauses) == sorted([
        "Value '2000' at 'numberOfBytes' failed to satisfy constraint: Member must have value less than or equal to "
        "1024",
        "Value 'AES_512' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: "
        f"[{', '.join(MODEL.shape_for('DataKeySpec').enum)}]",
    ])


def test_other_maxima_and_patterns_reach_the_server(kms: Any) -> None:
    key = new_key_id(kms)
    err = error(kms.create_alias, AliasName="alias/bad name!", TargetKeyId=key)
    assert err["Code"] == "ValidationException" and "at 'aliasName'" in err["Message"]
    err = error(kms.list_keys, Limit=5000)
    assert err["Code"] == "ValidationException" and "at 'limit'" in err["Message"]
    err = error(kms.schedule_key_deletion, KeyId=key, PendingWindowInDays=400)
    assert err["Code"] == "ValidationException" and "at 'pendingWindowInDays'" in err["Message"]
    err = error(kms.create_key, Description="d" * 8193)
    assert err["Code"] == "ValidationException" and "at 'description'" in err["Message"]
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["KeyState"] == "Enabled"


def test_validation_comes_before_key_resolution(kms: Any) -> None:
    # The key does not exist, but the request is invalid first.
    err = error(kms.encrypt, KeyId="1234abcd-12ab-34cd-56ef-1234567890ab", Plaintext=b"x" * 5000)
    assert err["Code"] == "ValidationException"


# -- malformed requests -------------------------------------------------------------------------------------------


def test_raw_request_helper_works(cluster: RunningCluster) -> None:
    response = raw(cluster, "TrentService.ListKeys", b'{"Limit": 1}')
    assert response.status == 200
    assert response.headers.get("content-type", "").startswith("application/x-amz-json-1.1")
    assert response.headers.get("x-amzn-requestid")
    assert response.json()["Truncated"] in (True, False)
    # An empty body is the same as {}.
    assert raw(cluster, "TrentService.ListKeys", b"").status == 200
    # application/json is accepted too (curl users send it).
    assert raw(cluster, "TrentService.ListKeys", b"{}", content_type="application/json").status == 200


@pytest.mark.parametrize("body", [b"{not json", b'{"Limit": 1', b"\xff\xfe\x00", b"{'Limit': 1}", b"Limit=1"])
def test_malformed_json_body_is_a_serialization_exception(cluster: RunningCluster, body: bytes) -> None:
    response = raw(cluster, "TrentService.ListKeys", body)
    assert response.status == 400
    assert response.json()["__type"] == "SerializationException"
    assert response.headers.get("x-amzn-requestid")


@pytest.mark.parametrize(("body", "operation"), [
    (b"[]", "ListKeys"), (b'"x"', "ListKeys"), (b"42", "DescribeKey"), (b'{"Limit": "ten"}', "ListKeys"),
    (b'{"Limit": 1.5}', "ListKeys"), (b'{"KeyId": 5}', "DescribeKey"), (b'{"KeyId": ["a"]}', "DescribeKey"),
    (b'{"KeyId": "k", "Plaintext": "not base64!"}', "Encrypt"), (b'{"Tags": {"a": "b"}}', "CreateKey"),
    (b'{"MultiRegion": "yes"}', "CreateKey"),
])
def test_wrong_json_types_are_serialization_exceptions(cluster: RunningCluster, body: bytes, operation: str) -> None:
    response = raw(cluster, f"TrentService.{operation}", body)
    assert response.status == 400
    assert response.json()["__type"] == "SerializationException"


@pytest.mark.parametrize("target", ["TrentService.NoSuchOperation", "TrentService.", "KMS.ListKeys",
                                    "TrentService.listKeys", "ListKeys", None])
def test_unknown_target_is_unknown_operation(cluster: RunningCluster, target: str | None) -> None:
    response = raw(cluster, target, b"{}")
    assert response.status == 400
    assert response.json()["__type"] == "UnknownOperationException"


# -- every operation of the model answers, never with a 500 ------------------------------------------------------

GARBAGE_BODIES = [
    b"{}",
    b'{"KeyId": "nope", "Unmodelled": 1}',
    b'{"KeyId": "alias/does-not-exist", "GrantTokens": ["t"], "Limit": 1}',
    b'{"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab", "CiphertextBlob": "AAAA", "Plaintext": "AAAA"}',
    b'{"KeyId": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", "Marker": "x"}',
    b'{"KeyId": "arn:aws:kms:eu-west-1:111122223333:alias/x", "GrantId": "g", "Name": "n"}',
    b'{"CustomKeyStoreId": "cks-1234567890abcdef0", "CustomKeyStoreName": "x"}',
    b"null",
]


@pytest.mark.parametrize("operation", MODEL.operation_names)
def test_every_model_operation_answers_without_a_500(cluster: RunningCluster, operation: str) -> None:
    # ap-northeast-2: the garbage may legitimately create keys (CreateKey with {}); keep them out of the way.
    for body in GARBAGE_BODIES:
        response = raw(cluster, f"TrentService.{operation}", body, region="ap-northeast-2")
        assert response.status != 500, (operation, body, response.body)
        assert response.status in (200, 400, 409, 412), (operation, body, response.status)
        assert response.headers.get("x-amzn-requestid")
        document = response.json()
        if response.status == 200:
            assert isinstance(document, dict) and "__type" not in document
        else:
            assert isinstance(document, dict), (operation, body, response.body)
            assert document.get("__type"), (operation, body, response.body)
            assert "." not in document["__type"] and "#" not in document["__type"]
            assert document["__type"] in KNOWN_ERRORS, document
    # A body of the wrong JSON type is refused by every operation the same way.
    response = raw(cluster, f"TrentService.{operation}", b"[1]", region="ap-northeast-2")
    assert (response.status, response.json()["__type"]) == (400, "SerializationException")


KNOWN_ERRORS = {s for s in MODEL.shape_names if MODEL.shape_for(s).metadata.get("exception")} | {
    "ValidationException", "SerializationException", "UnknownOperationException", "AccessDeniedException",
    "NotAuthorizedException", "ThrottlingException",
}


def test_every_model_operation_is_known_to_the_server(cluster: RunningCluster) -> None:
    """No operation of the model is an UnknownOperationException, even with an empty body."""
    unknown = [op for op in MODEL.operation_names
               if raw(cluster, f"TrentService.{op}", b"{}", region="ap-northeast-2").json().get("__type")
               == "UnknownOperationException"]
    assert unknown == []


def test_missing_required_member_is_a_validation_error(cluster: RunningCluster) -> None:
    response = raw(cluster, "TrentService.Encrypt", b'{"KeyId": "1234abcd-12ab-34cd-56ef-1234567890ab"}')
    assert response.status == 400
    assert response.json() == {"__type": "ValidationException", "message": (
        "1 validation error detected: Value null at 'plaintext' failed to satisfy constraint: "
        "Member must not be null")}


# -- a hostile body: hundreds of thousands of violations ------------------------------------------------------


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _audit_record(cluster: RunningCluster, request_id: str) -> tuple[int, dict[str, Any]]:
    """(length of the line, the record) of one request in the audit logs (flushing is batched: wait, bounded)."""
    def found() -> tuple[int, dict[str, Any]] | None:
        for path in cluster.data_dir.glob("*/audit/*.jsonl"):
            with open(path, "rb") as f:
                for line in f:
                    if request_id.encode() in line:
                        return len(line), json.loads(line)
        return None

    return poll(found, timeout=10)


def test_huge_invalid_grant_answers_small_audits_small_and_keeps_no_memory(cluster: RunningCluster, kms: Any) -> None:
    # A signed body just under 1 MB with 260,000 invalid operations (and as many for DryRunModifiers of Decrypt):
    # once a 100 MB message, an audit line as big, and ~440 MB of memory kept per request.
    assert cluster.proc is not None
    key_id = new_key_id(kms)
    grant = json.dumps({"KeyId": key_id, "GranteePrincipal": "arn:aws:iam::111122223333:root",
                        "Operations": ["X"] * 260_000}, separators=(",", ":")).encode()
    decrypt = json.dumps({"CiphertextBlob": "AAAA", "DryRunModifiers": ["X"] * 260_000},
                         separators=(",", ":")).encode()
    assert len(grant) < 1024 * 1024 and len(decrypt) < 1024 * 1024
    rss: list[float] = []
    for attempt in range(6):
        target, body = ("TrentService.CreateGrant", grant) if attempt % 2 == 0 else ("TrentService.Decrypt", decrypt)
        answer = raw(cluster, target, body)
        assert answer.status == 400
        doc = answer.json()
        assert doc["__type"] == "ValidationException"
        assert doc["message"].startswith("10 validation errors detected: Value 'X' at '")
        assert doc["message"].count("failed to satisfy constraint") == 10
        assert len(answer.body) < 5000
        size, record = _audit_record(cluster, answer.headers["x-amzn-requestid"])
        assert record["errorCode"] == "ValidationException" and size < 8192
        rss.append(_rss_mb(cluster.proc.pid))
    # After the first two (warm-up), four more leave memory where it was, give or take.
    assert rss[-1] - rss[1] < 32, rss
    assert grants_of(kms, key_id) == []


def grants_of(kms: Any, key_id: str) -> list[Any]:
    grants: list[Any] = kms.list_grants(KeyId=key_id)["Grants"]
    return grants
