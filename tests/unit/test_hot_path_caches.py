"""What the data-plane path prepares once and reuses (the authorizer's verdicts, the audit line's fixed parts, the
verifier's per-scope slots) is never reused past a change that matters: the key, its policy, a grant, the caller's
credential, the key's state; and what depends on the request (its encryption context, the calling service) is
decided for each request."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.unit.hot_path_workload import ACCOUNT, ALICE, CAROL, REGION, ROOT, compose_region, signed
from trent.cluster.compose import Parts
from trent.node.audit.events import CallLineEncoder, api_call_event
from trent.node.auth.principals import Principal
from trent.node.model.errors import KmsError
from trent.node.wire.sigv4 import ScopeRegions, scope_region

DAVE = Principal("AKIADAVE", "dave-secret", f"arn:aws:iam::{ACCOUNT}:user/dave", ACCOUNT)  # no IAM policy
PLAIN = base64.b64encode(b"cached?").decode()


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parts]:
    composed = compose_region(Path(tmp_path_factory.mktemp("caches")) / "data")
    # Dave signs with a credential the directory knows, but no identity policy gives him anything.
    composed.regions[REGION].endpoint.verifier._principals._by_key[DAVE.access_key] = DAVE
    yield composed
    composed.close()


def call(parts: Parts, who: Principal, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = parts.regions[REGION].endpoint.handle(signed(who, operation, body))
    if response.durable is not None:
        response.durable.result(10)
    return response.status, json.loads(response.body)


def error(parts: Parts, who: Principal, operation: str, body: dict[str, Any]) -> str | None:
    status, answer = call(parts, who, operation, body)
    return None if status == 200 else str(answer["__type"])


def new_key(parts: Parts) -> str:
    status, answer = call(parts, ROOT, "CreateKey", {})
    assert status == 200
    return str(answer["KeyMetadata"]["KeyId"])


def key_policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
         "Resource": "*"}, *statements]})


def test_an_allowed_verdict_is_not_kept_past_a_key_policy_change(parts: Parts) -> None:
    key = new_key(parts)
    for _ in range(3):  # allowed, and by now decided from the cache
        assert error(parts, ALICE, "Encrypt", {"KeyId": key, "Plaintext": PLAIN}) is None
    deny = key_policy({"Effect": "Deny", "Principal": {"AWS": ALICE.arn}, "Action": "kms:Encrypt", "Resource": "*"})
    assert error(parts, ROOT, "PutKeyPolicy", {"KeyId": key, "PolicyName": "default", "Policy": deny}) is None
    assert error(parts, ALICE, "Encrypt", {"KeyId": key, "Plaintext": PLAIN}) == "AccessDeniedException"
    assert error(parts, ROOT, "PutKeyPolicy", {"KeyId": key, "PolicyName": "default", "Policy": key_policy()}) is None
    assert error(parts, ALICE, "Encrypt", {"KeyId": key, "Plaintext": PLAIN}) is None


def test_a_refusal_kept_from_the_policies_still_asks_the_grants_each_time(parts: Parts) -> None:
    key = new_key(parts)
    assert error(parts, DAVE, "Encrypt", {"KeyId": key, "Plaintext": PLAIN}) == "AccessDeniedException"
    status, grant = call(parts, ROOT, "CreateGrant", {"KeyId": key, "GranteePrincipal": DAVE.arn,
                                                      "Operations": ["Encrypt"]})
    assert status == 200
    assert error(parts, DAVE, "Encrypt", {"KeyId": key, "Plaintext": PLAIN}) is None
    assert error(parts, ROOT, "RevokeGrant", {"KeyId": key, "GrantId": grant["GrantId"]}) is None
    assert error(parts, DAVE, "Encrypt", {"KeyId": key, "Plaintext": PLAIN}) == "AccessDeniedException"


def test_a_key_state_change_is_seen_by_the_next_request(parts: Parts) -> None:
    key = new_key(parts)
    assert error(parts, ROOT, "Encrypt", {"KeyId": key, "Plaintext": PLAIN}) is None
    assert error(parts, ROOT, "DisableKey", {"KeyId": key}) is None
    assert error(parts, ROOT, "Encrypt", {"KeyId": key, "Plaintext": PLAIN}) == "DisabledException"
    assert error(parts, ROOT, "EnableKey", {"KeyId": key}) is None
    assert error(parts, ROOT, "Encrypt", {"KeyId": key, "Plaintext": PLAIN}) is None
    assert error(parts, ROOT, "ScheduleKeyDeletion", {"KeyId": key, "PendingWindowInDays": 7}) is None
    assert error(parts, ROOT, "Encrypt", {"KeyId": key, "Plaintext": PLAIN}) == "KMSInvalidStateException"


def test_conditions_on_the_request_are_decided_per_request(parts: Parts) -> None:
    key = new_key(parts)
    guarded = key_policy(
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Encrypt", "Resource": "*",
         "Condition": {"StringNotEquals": {"kms:EncryptionContext:app": "a"}}},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:DescribeKey", "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}})
    assert error(parts, ROOT, "PutKeyPolicy", {"KeyId": key, "PolicyName": "default", "Policy": guarded}) is None
    for _ in range(2):
        assert error(parts, ALICE, "Encrypt", {"KeyId": key, "Plaintext": PLAIN,
                                               "EncryptionContext": {"app": "a"}}) is None
        assert error(parts, ALICE, "Encrypt", {"KeyId": key, "Plaintext": PLAIN,
                                               "EncryptionContext": {"app": "b"}}) == "AccessDeniedException"
        assert error(parts, ALICE, "DescribeKey", {"KeyId": key}) is None
        assert error(parts, CAROL, "DescribeKey", {"KeyId": key}) == "AccessDeniedException"  # via s3


def test_a_changed_credential_gets_its_own_verdict(parts: Parts) -> None:
    """The same access key, now another principal (its ARN or account changed): nothing decided for the old one
    applies."""
    region = parts.regions[REGION].region
    endpoint = parts.regions[REGION].endpoint
    assert endpoint.authorizer is not None
    key = new_key(parts)
    operation = endpoint.registry.get("Encrypt")
    assert operation is not None
    params = {"KeyId": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key}", "Plaintext": b"x"}
    for _ in range(2):
        endpoint.authorizer.check_request(region, ALICE, operation, params)
    moved = Principal(ALICE.access_key, ALICE.secret_key, "arn:aws:iam::444455556666:user/alice", "444455556666")
    with pytest.raises(KmsError) as err:
        endpoint.authorizer.check_request(region, moved, operation, params)
    assert err.value.code == "AccessDeniedException" and moved.arn in str(err.value.message)
    renamed = Principal(ALICE.access_key, ALICE.secret_key, f"arn:aws:iam::{ACCOUNT}:user/alice2", ACCOUNT)
    with pytest.raises(KmsError):  # no identity policy for the new ARN
        endpoint.authorizer.check_request(region, renamed, operation, params)


def test_the_audit_lines_fixed_parts_follow_the_caller_and_the_key(parts: Parts) -> None:
    endpoint = parts.regions[REGION].endpoint
    operation = endpoint.registry.get("Encrypt")
    assert operation is not None
    encoder = CallLineEncoder(REGION, ACCOUNT)
    arn = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    other_arn = arn.replace("1234abcd", "9999abcd")
    renamed = Principal(ALICE.access_key, ALICE.secret_key, f"arn:aws:iam::{ACCOUNT}:user/alice2", ACCOUNT)
    for who, resource, ip in ((ALICE, arn, "192.0.2.1"), (ALICE, arn, "192.0.2.1"), (renamed, arn, "192.0.2.1"),
                              (ALICE, other_arn, "192.0.2.1"), (ALICE, arn, "192.0.2.2")):
        fields: dict[str, Any] = {
            "principal_arn": who.arn, "principal_account": who.account, "access_key": who.access_key,
            "at": 1_800_000_000.5, "source_ip": ip, "user_agent": "ua/1", "host": "kms", "request_id": "r",
            "params": {"KeyId": "k", "Plaintext": b"secret"}, "response": {"KeyId": resource},
            "error_code": None, "error_message": None, "resources": [resource], "latency_ms": 1.25,
        }
        line = encoder.line(operation, **fields, event_id_="e")
        # Byte for byte the event built from scratch, whichever frame was reused.
        assert line == orjson.dumps(api_call_event(operation=operation, region=REGION, account=ACCOUNT, **fields,
                                                   event_id_="e"))
        event = json.loads(line)
        assert event["userIdentity"]["arn"] == who.arn and event["resources"][0]["ARN"] == resource
        assert event["sourceIPAddress"] == ip


SCOPE = "AWS4-HMAC-SHA256 Credential=AKIAX/20260101/{region}/kms/aws4_request, SignedHeaders=host;x-amz-date, "
LATE = "Credential=AKIAY/20260101/eu-west-1/kms/aws4_request"  # a scope after the signature


@pytest.mark.parametrize("header", [
    SCOPE.format(region="us-east-1") + "Signature=" + "a" * 64,
    SCOPE.format(region="eu-west-1") + "Signature=" + "b" * 64,
    SCOPE.format(region="us-east-1") + "Signature=" + "c" * 64 + f", {LATE}",
    "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=" + "a" * 64 + f", {LATE}",
    "AWS4-HMAC-SHA256 Credential=K/20260101/sa-east-1/kms/aws4_requestSignature=" + "a" * 64,
    "AWS4-HMAC-SHA256 Credential=K/20260101/sa-east-1/kms/aws4_request,Signature=x",
    "AWS4-HMAC-SHA256 Credential=K/20260101/sa-east-1/kms/aws4_request",
    "AWS4-HMAC-SHA256 Credential=K/2026/sa-east-1/kms/aws4_request, Signature=" + "a" * 64,
    "Bearer token", "", None,
])
def test_a_gateway_s_region_per_authorization_head_is_what_the_header_names(header: str | None) -> None:
    """The gateway's regions by Authorization head (ScopeRegions) answer as scope_region does for the whole header,
    the first time and every time after, whatever signature follows a head already seen."""
    scopes = ScopeRegions()
    for _ in range(2):
        assert scopes.region(header) == scope_region(header)
    if header is not None and "Signature=" in header:
        head = header.rpartition("Signature=")[0]
        for tail in ("d" * 64, "", "d" * 64 + ", Credential=AKIAZ/20260101/me-south-1/kms/aws4_request"):
            assert scopes.region(head + "Signature=" + tail) == scope_region(head + "Signature=" + tail)


def test_a_gateway_keeps_a_bounded_number_of_heads() -> None:
    scopes = ScopeRegions(size=4)
    for n in range(10):
        assert scopes.region(SCOPE.format(region=f"r{n}") + "Signature=" + "a" * 64) == f"r{n}"
    assert len(scopes._regions) <= 4
