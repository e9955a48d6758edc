"""Audit events: CloudTrail's shape, nothing secret, batched durable sink, last usage rebuilt from the log."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from trent.node.audit.events import (
    MAX_ERROR_MESSAGE_CHARS,
    MAX_PARAMETERS_BYTES,
    CallLineEncoder,
    api_call_event,
    event_id,
    request_parameters,
    response_elements,
    scrub_message,
    service_event,
)
from trent.node.audit.sink import AuditSink, read_events
from trent.node.audit.trail import AuditTrail
from trent.node.auth.principals import Principal
from trent.node.model.errors import KmsError
from trent.node.ops import declare
from trent.node.ops.registry import Registry
from trent.node.ops.tables import usage_tracked

ACCT = "111122223333"
KEY_ARN = f"arn:aws:kms:eu-west-1:{ACCT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
APP = Principal("AKIAAPP", "secret-app", f"arn:aws:iam::{ACCT}:role/app", ACCT)
SECRET = b"top secret plaintext \x00\x01"

OPS = declare(Registry())  # every operation's declaration, its logged facts included
USAGE_TRACKED = usage_tracked(OPS)  # as the composition gives it to a region's trail

def test_secrets_never_reach_request_parameters() -> None:
    params = {"KeyId": "alias/app", "Plaintext": SECRET, "EncryptionContext": {"Dept": "Eng"},
              "GrantTokens": ["token-abc"], "Recipient": {"AttestationDocument": b"doc"}}
    logged = request_parameters("Encrypt", params)
    assert logged == {"keyId": "alias/app", "encryptionContext": {"Dept": "Eng"},
                      "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}


def test_encrypt_and_decrypt_always_log_their_algorithm() -> None:
    assert request_parameters("Decrypt", {"CiphertextBlob": SECRET}) == {"encryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    assert request_parameters("Encrypt", {"KeyId": "k", "Plaintext": SECRET}) == {
        "keyId": "k", "encryptionAlgorithm": "SYMMETRIC_DEFAULT"}
    assert request_parameters("Encrypt", {"KeyId": "k", "EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}) == {
        "keyId": "k", "encryptionAlgorithm": "RSAES_OAEP_SHA_256"}


def test_response_elements_only_for_the_operations_cloudtrail_records() -> None:
    assert response_elements(OPS["Encrypt"], {"CiphertextBlob": SECRET, "KeyId": KEY_ARN}) is None
    created = response_elements(OPS["CreateKey"], {"KeyMetadata": {"KeyId": "k", "Arn": KEY_ARN, "Enabled": True}})
    assert created == {"keyMetadata": {"keyId": "k", "arn": KEY_ARN, "enabled": True}}
    assert response_elements(OPS["CreateGrant"], {"GrantId": "g", "GrantToken": "tok"}) == {"grantId": "g"}


def test_api_call_event_shape() -> None:
    event = api_call_event(
        operation=OPS["Encrypt"], region="eu-west-1", account=ACCT, principal_arn=APP.arn, principal_account=ACCT,
        access_key="AKIAAPP", at=1_800_000_000.5, source_ip="127.0.0.1", user_agent="Boto3/1.44.5",
        host="127.0.0.1:4599", request_id="req-1", params={"KeyId": KEY_ARN, "Plaintext": SECRET},
        response={"CiphertextBlob": SECRET, "KeyId": KEY_ARN}, error_code="AccessDeniedException",
        error_message="User: x is not authorized", resources=[KEY_ARN], latency_ms=1.25,
    )
    assert event["eventTime"] == "2027-01-15T08:00:00Z"
    assert event["eventSource"] == "kms.amazonaws.com" and event["eventName"] == "Encrypt"
    assert event["userIdentity"]["type"] == "AssumedRole" and event["userIdentity"]["arn"] == APP.arn
    assert event["errorCode"] == "AccessDeniedException" and event["responseElements"] is None
    assert event["readOnly"] is True and event["eventType"] == "AwsApiCall"
    assert event["resources"] == [{"accountId": ACCT, "type": "AWS::KMS::Key", "ARN": KEY_ARN}]
    text = json.dumps(event)
    for form in (SECRET.decode("latin-1"), base64.b64encode(SECRET).decode(), SECRET.hex()):
        assert form not in text


CALLS = [
    dict(operation=OPS["Encrypt"], principal_arn=APP.arn, principal_account=ACCT, access_key="AKIAAPP",
         at=1_800_000_000.5,
         source_ip="127.0.0.1", user_agent="Boto3/1.44.5", host="127.0.0.1:4599", request_id="req-1",
         params={"KeyId": KEY_ARN, "Plaintext": SECRET, "EncryptionContext": {"Dept": "ü\"x"}},
         response={"CiphertextBlob": SECRET, "KeyId": KEY_ARN}, resources=[KEY_ARN], latency_ms=1.25),
    dict(operation=OPS["CreateKey"], principal_arn=f"arn:aws:iam::{ACCT}:root", principal_account=ACCT,
         access_key="AKIAROOT", at=1_800_000_001.0, source_ip="10.0.0.1", user_agent='agent "quoted" \\ ☃',
         host="kms.local", request_id="req-2", params={"Description": "d", "Tags": [{"TagKey": "a", "TagValue": "b"}]},
         response={"KeyMetadata": {"KeyId": "k", "Arn": KEY_ARN, "Enabled": True, "CreationDate": 1.5}},
         resources=[KEY_ARN, KEY_ARN + "0"], latency_ms=0.0004),
    dict(operation=OPS["ListKeys"], principal_arn=APP.arn, principal_account=ACCT, access_key="AKIAAPP", at=0.0,
         source_ip="", user_agent="", host="", request_id="req-3", params={}, response={"Keys": []}, resources=[],
         latency_ms=12345.6789),
]


@pytest.mark.parametrize("call", CALLS, ids=[c["operation"].name for c in CALLS])
@pytest.mark.parametrize(("code", "message"), [(None, None), ("AccessDeniedException", f"User: {APP.arn} is not")])
def test_encoded_call_line_is_the_event_serialised(call: dict, code: str | None,  # type: ignore[type-arg]
                                                   message: str | None) -> None:
    encoder = CallLineEncoder("eu-west-1", ACCT)
    call = dict(call, error_code=code, error_message=message)
    expected = orjson.dumps(api_call_event(region="eu-west-1", account=ACCT, event_id_="ev-1", **call))
    assert encoder.line(event_id_="ev-1", **call) == expected
    assert encoder.line(event_id_="ev-1", **call) == expected  # again, from the cached parts
    later = dict(call, at=call["at"] + 3600, request_id="req-later", latency_ms=2.0)
    assert encoder.line(event_id_="ev-2", **later) == orjson.dumps(api_call_event(
        region="eu-west-1", account=ACCT, event_id_="ev-2", **later))


# -- huge requests make bounded records ------------------------------------------------------------------------


def _line(encoder: CallLineEncoder, **changes: Any) -> bytes:
    call: dict[str, Any] = dict(CALLS[1], error_code=None, error_message=None)
    call.update(changes)
    line = encoder.line(event_id_="ev-1", **call)
    assert line == orjson.dumps(api_call_event(region="eu-west-1", account=ACCT, event_id_="ev-1", **call))
    return line


def test_huge_request_parameters_are_omitted_as_cloudtrail_does() -> None:
    encoder = CallLineEncoder("eu-west-1", ACCT)
    huge = {"KeyId": KEY_ARN, "GranteePrincipal": APP.arn, "Operations": ["Decrypt"] * 100_000}
    for code, message in ((None, None), ("LimitExceededException", "too many")):
        line = _line(encoder, operation=OPS["CreateGrant"], params=huge, error_code=code, error_message=message)
        event = orjson.loads(line)
        assert len(line) < 4096
        assert event["requestParameters"] is None and event["omitted"] is True
    # Parameters just under the limit are kept, and nothing says "omitted".
    fits = {"Description": "d" * (MAX_PARAMETERS_BYTES - 100)}
    event = orjson.loads(_line(encoder, params=fits))
    assert event["requestParameters"] == {"description": fits["Description"]} and "omitted" not in event


def test_huge_error_message_is_cut() -> None:
    encoder = CallLineEncoder("eu-west-1", ACCT)
    message = "10 validation errors detected: " + "Value 'x' at 'operations.1.member' failed; " * 10_000
    event = orjson.loads(_line(encoder, error_code="ValidationException", error_message=message))
    assert event["errorMessage"] == message[:MAX_ERROR_MESSAGE_CHARS] and event["omitted"] is True
    event = orjson.loads(_line(encoder, error_code="ValidationException", error_message="short"))
    assert event["errorMessage"] == "short" and "omitted" not in event


def test_scrubbing_many_secrets_is_cheap_and_withholds_them() -> None:
    tokens = [f"grant-token-{i:06d}" for i in range(200_000)]
    message = "2 validation errors detected: Value '[" + ", ".join(tokens[:5000]) + "]' at 'grantTokens' failed"
    started = time.perf_counter()
    scrubbed = scrub_message(message, {"GrantTokens": tokens})
    assert time.perf_counter() - started < 0.5
    assert scrubbed == "2 validation errors detected: HIDDEN_DUE_TO_SECURITY_REASONS"
    # A few secrets are still cut out one by one, the rest of the message kept.
    assert scrub_message("Value '[grant-token-000001, abc]' at 'grantTokens'", {"GrantTokens": tokens[:10]}) == (
        "Value '[HIDDEN_DUE_TO_SECURITY_REASONS, abc]' at 'grantTokens'")


def test_service_event_shape() -> None:
    event = service_event(name="RotateKey", region="eu-west-1", account=ACCT, at=1.0, key_arn=KEY_ARN)
    assert event["userIdentity"] == {"accountId": ACCT, "invokedBy": "AWS Internal"}
    assert event["eventType"] == "AwsServiceEvent" and event["serviceEventDetails"]["keyId"] in KEY_ARN
    assert event["sourceIPAddress"] == "AWS Internal"


class _RefusingFile:
    """A log file whose writes fail, as a full disk makes them."""

    def __init__(self, real: object) -> None:
        self.real = real

    def write(self, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def test_a_refused_write_is_logged_once_and_never_raised_to_the_caller(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    sink = AuditSink(tmp_path / "audit")
    sink.emit({"n": 0})
    real = sink._file
    sink._file = _RefusingFile(real)  # type: ignore[assignment]
    for i in range(1, 4):
        sink.emit({"n": i})  # the call this records was answered already: no exception reaches it
    assert [r.message for r in caplog.records].count(f"cannot write the audit log {sink.path}: "
                                                     "[Errno 28] No space left on device") == 1
    sink._file = real
    sink.emit({"n": 4})
    assert sink.flush() == 2  # what was accepted: the first line and the one after the disk came back
    assert [e["n"] for e in read_events(tmp_path / "audit")] == [0, 4]
    sink.close()


class _UnflushableFile(_RefusingFile):
    def write(self, data: bytes) -> int:
        return self.real.write(data)  # type: ignore[attr-defined,no-any-return]

    def flush(self) -> None:
        raise OSError(28, "No space left on device")


def test_a_refused_flush_leaves_its_lines_for_the_next_one(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "audit")
    sink.emit({"n": 0})
    real = sink._file
    sink._file = _UnflushableFile(real)  # type: ignore[assignment]
    with pytest.raises(OSError):
        sink.flush()
    sink._file = real
    assert sink.flush() == 1  # the line the refused flush held back
    assert [e["n"] for e in read_events(tmp_path / "audit")] == [0]
    sink.close()


def test_a_line_torn_by_a_crash_does_not_swallow_the_first_line_after_the_restart(tmp_path: Path) -> None:
    """A process killed in the middle of writing its buffer leaves a cut last line; the next process's first event
    must start on a line of its own, not be glued onto the torn one (both then unreadable)."""
    sink = AuditSink(tmp_path / "audit")
    sink.emit({"n": 0})
    sink.close()
    with open(tmp_path / "audit" / "audit.jsonl", "ab") as f:
        f.write(b'{"n": 1, "cut": "he')  # SIGKILL here
    sink = AuditSink(tmp_path / "audit")
    sink.emit({"n": 2})
    sink.close()
    assert [e["n"] for e in read_events(tmp_path / "audit")] == [0, 2]


def test_sink_batches_rotates_and_reads_back_in_order(tmp_path: Path) -> None:
    sink = AuditSink(tmp_path / "audit", max_bytes=2000)
    for i in range(40):
        sink.emit({"n": i, "pad": "x" * 50})
        if i % 7 == 0:
            sink.flush()
    assert list(read_events(tmp_path / "audit")) != []  # flushed batches are on disk
    sink.close()
    assert [e["n"] for e in read_events(tmp_path / "audit")] == list(range(40))
    assert len(list((tmp_path / "audit").glob("audit-*.jsonl"))) >= 1


def test_last_usage_tracked_and_rebuilt_after_restart(tmp_path: Path) -> None:
    def record(op: str, error: KmsError | None = None) -> dict[str, Any]:
        return dict(operation=OPS[op], principal=APP, at=1_800_000_000.0, source_ip="127.0.0.1", user_agent="t",
                    host="h", request_id=f"req-{op}", params={"KeyId": KEY_ARN}, response=None, error=error,
                    resources=[KEY_ARN], latency_ms=0.1)

    trail = AuditTrail("eu-west-1", ACCT, AuditSink(tmp_path / "a"), started=0.0, usage_tracked=USAGE_TRACKED)
    trail.call(**record("DescribeKey"))
    assert trail.last_usage == {}  # describing a key is not using it
    trail.call(**record("Encrypt"))
    trail.call(**record("Decrypt", KmsError("InvalidCiphertextException")))  # failures are not usage
    key_id = KEY_ARN.rsplit("/", 1)[-1]
    assert trail.last_usage[key_id].operation == "Encrypt"
    trail.close()
    again = AuditTrail("eu-west-1", ACCT, AuditSink(tmp_path / "a"), started=0.0, usage_tracked=USAGE_TRACKED)
    assert again.last_usage[key_id].operation == "Encrypt"
    assert again.last_usage[key_id].request_id == "req-Encrypt"


def test_event_ids_are_distinct_version_4_uuids_also_in_a_forked_process() -> None:
    ids = [event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for value in ids[:200]:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a worker forked from a process that already made ids makes different ones
        os.write(write, event_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child != event_id() and uuid.UUID(child).version == 4
