"""A fixed workload of signed requests across the data-plane operations, replayed against a composed region (the real
verifier, decoder, authorizer, quotas, audit trail and operations; no network), and its transcript: every response
and every audit record, with what is fresh by nature (ids, times, random bytes) normalised.

The transcript recorded from the code before the hot path was specialised is tests/unit/golden/hot_path.json;
``test_hot_path_golden`` replays the workload and compares. Record it anew (only for a deliberate change of
behaviour) with ``TRENT_RECORD_GOLDEN=1``.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from trent.cluster.compose import Parts, compose
from trent.node.audit.sink import CURRENT, read_events
from trent.node.auth.principals import Principal
from trent.node.config import load_config
from trent.node.endpoint import KmsEndpoint, WireRequest
from trent.node.quotas.aws_table import QUOTA_NAMES

REGION = "us-east-1"
ACCOUNT = "111122223333"
ROOT = Principal("AKIAROOT", "root-secret", f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT)
ALICE = Principal("AKIAALICE", "alice-secret", f"arn:aws:iam::{ACCOUNT}:user/alice", ACCOUNT)
BOB = Principal("AKIABOB", "bob-secret", f"arn:aws:iam::{ACCOUNT}:user/bob", ACCOUNT)
CAROL = Principal("AKIACAROL", "carol-secret", f"arn:aws:iam::{ACCOUNT}:user/carol", ACCOUNT, via_service="s3")
MALLORY = Principal("AKIAMALLORY", "mallory-secret", "arn:aws:iam::444455556666:root", "444455556666")
ALLOW_ALL = json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]})
BOB_POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
    {"Effect": "Deny", "Action": "kms:Decrypt", "Resource": "*"}]})

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_BLOBS = frozenset({"CiphertextBlob", "Plaintext", "Signature", "Mac", "PublicKey", "PrivateKeyCiphertextBlob",
                    "PrivateKeyPlaintext", "CiphertextForRecipient"})
# Response members by their names, audit members by the same names lower-camel-cased (compared capitalised).
_FRESH = frozenset({"CreationDate", "EventTime", "RequestID", "EventID", "LatencyMs", "GrantToken", "GrantId",
                    "ValidTo", "DeletionDate", "KeyMaterialId", "CurrentKeyMaterialId", "SourceKeyMaterialId",
                    "DestinationKeyMaterialId"})


def compose_region(data_dir: Path) -> Parts:
    config = load_config(None, {"data_dir": str(data_dir), "port": 4599, "regions": REGION, "account": ACCOUNT,
                                "quotas": "aws"})
    config = replace(config, principals=(ROOT, ALICE, BOB, CAROL, MALLORY),
                     identity_policies={ALICE.arn: ALLOW_ALL, BOB.arn: BOB_POLICY, CAROL.arn: ALLOW_ALL,
                                        MALLORY.arn: ALLOW_ALL},
                     # Admission runs on the path as it does with --quotas aws; no call of the workload is throttled.
                     quota_overrides=dict.fromkeys(QUOTA_NAMES, 100_000.0))
    return compose(config, CURRENT)


def signed(who: Principal, operation: str, body: dict[str, Any] | bytes, *, tamper: bool = False) -> WireRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{operation}",
               "User-Agent": "golden-workload/1.0"}
    request = AWSRequest(method="POST", url=f"http://kms.{REGION}.amazonaws.com/", data=raw, headers=headers)
    SigV4Auth(Credentials(who.access_key, who.secret_key), "kms", REGION).add_auth(request)
    out = dict(request.headers.items())
    out["Host"] = f"kms.{REGION}.amazonaws.com"
    if tamper:
        out["Authorization"] = out["Authorization"][:-4] + "0000"
    return WireRequest("POST", "/", "", out, raw, remote="192.0.2.7")


class Normaliser:
    """Key ids by order of first appearance; fresh values by their kind."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def _ids(self, text: str) -> str:
        return _UUID.sub(lambda m: self.names.setdefault(m[0], f"<key-{len(self.names) + 1}>"), text)

    def __call__(self, value: Any, name: str = "") -> Any:
        if name[:1].upper() + name[1:] in _FRESH:
            return "<fresh>"
        if isinstance(value, dict):
            return {self._ids(k): self(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v, name) for v in value]
        if isinstance(value, str):
            if name in _BLOBS:
                return f"<blob {len(base64.b64decode(value))}>"
            return self._ids(value)
        return value


def run_workload(parts: Parts) -> dict[str, Any]:
    endpoint: KmsEndpoint = parts.regions[REGION].endpoint
    normalise = Normaliser()
    responses: list[Any] = []

    def call(who: Principal, operation: str, body: dict[str, Any] | bytes, *, tamper: bool = False) -> Any:
        response = endpoint.handle(signed(who, operation, body, tamper=tamper))
        if response.durable is not None:
            response.durable.result(10)
        answer = json.loads(response.body) if response.body else None
        responses.append({"operation": operation, "caller": who.access_key, "status": response.status,
                          "headers": sorted(k for k in response.headers if k != "x-amzn-RequestId"),
                          "body": normalise(answer)})
        return answer

    build(call)
    trail = parts.regions[REGION].trail
    trail.flush()
    records = [normalise(event) for event in read_events(trail.sink.directory)]
    # Audit lines as written (member order included): re-serialised after normalising, as the log holds them.
    return {"responses": responses, "audit": [orjson.dumps(r).decode() for r in records]}


def build(call: Callable[..., Any]) -> None:
    sym = call(ROOT, "CreateKey", {"Description": "golden symmetric"})["KeyMetadata"]["KeyId"]
    other = call(ROOT, "CreateKey", {})["KeyMetadata"]["KeyId"]
    hmac_key = call(ROOT, "CreateKey", {"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}
                    )["KeyMetadata"]["KeyId"]
    rsa = call(ROOT, "CreateKey", {"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY"})["KeyMetadata"]["KeyId"]
    guarded = call(ROOT, "CreateKey", {})["KeyMetadata"]["KeyId"]
    disabled = call(ROOT, "CreateKey", {})["KeyMetadata"]["KeyId"]
    call(ROOT, "CreateAlias", {"AliasName": "alias/golden", "TargetKeyId": sym})
    call(ROOT, "DisableKey", {"KeyId": disabled})
    # A key whose policy has conditions: decided per request from its encryption context and the calling service.
    conditional = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
         "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": ["kms:Encrypt", "kms:GenerateDataKey*"],
         "Resource": "*", "Condition": {"StringNotEquals": {"kms:EncryptionContext:purpose": "golden"}}},
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "kms:Decrypt", "Resource": "*",
         "Condition": {"StringEquals": {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}}},
    ]}
    call(ROOT, "PutKeyPolicy", {"KeyId": guarded, "PolicyName": "default", "Policy": json.dumps(conditional)})
    plain = base64.b64encode(b"golden plaintext").decode()
    ctx = {"purpose": "golden"}

    for who in (ROOT, ALICE, BOB):
        blob = call(who, "Encrypt", {"KeyId": sym, "Plaintext": plain})["CiphertextBlob"]
        call(who, "Decrypt", {"CiphertextBlob": blob})
        call(who, "Decrypt", {"CiphertextBlob": blob, "KeyId": "alias/golden"})
    blob = call(ROOT, "Encrypt", {"KeyId": "alias/golden", "Plaintext": plain, "EncryptionContext": ctx}
                )["CiphertextBlob"]
    call(ROOT, "Decrypt", {"CiphertextBlob": blob, "EncryptionContext": ctx})
    call(ROOT, "Decrypt", {"CiphertextBlob": blob, "EncryptionContext": {"purpose": "other"}})  # InvalidCiphertext
    call(ROOT, "Decrypt", {"CiphertextBlob": blob, "KeyId": other})  # IncorrectKeyException
    call(ROOT, "GenerateDataKey", {"KeyId": sym, "KeySpec": "AES_256"})
    call(ALICE, "GenerateDataKey", {"KeyId": sym, "NumberOfBytes": 48, "EncryptionContext": ctx})
    call(ROOT, "GenerateDataKeyWithoutPlaintext", {"KeyId": sym, "KeySpec": "AES_128"})
    call(ROOT, "GenerateDataKeyPair", {"KeyId": sym, "KeyPairSpec": "ECC_NIST_P256"})
    call(ROOT, "GenerateDataKeyPairWithoutPlaintext", {"KeyId": sym, "KeyPairSpec": "ECC_NIST_P256"})
    call(ROOT, "ReEncrypt", {"CiphertextBlob": blob, "SourceEncryptionContext": ctx, "DestinationKeyId": other})
    call(ROOT, "ReEncrypt", {"CiphertextBlob": blob, "DestinationKeyId": other})  # wrong context
    call(BOB, "ReEncrypt", {"CiphertextBlob": blob, "SourceEncryptionContext": ctx, "DestinationKeyId": other})
    mac = call(ROOT, "GenerateMac", {"KeyId": hmac_key, "Message": plain, "MacAlgorithm": "HMAC_SHA_256"})["Mac"]
    call(ALICE, "VerifyMac", {"KeyId": hmac_key, "Message": plain, "MacAlgorithm": "HMAC_SHA_256", "Mac": mac})
    call(ROOT, "VerifyMac", {"KeyId": hmac_key, "Message": base64.b64encode(b"changed").decode(),
                             "MacAlgorithm": "HMAC_SHA_256", "Mac": mac})  # KMSInvalidMacException
    call(ROOT, "GenerateMac", {"KeyId": sym, "Message": plain, "MacAlgorithm": "HMAC_SHA_256"})  # wrong usage
    signature = call(ROOT, "Sign", {"KeyId": rsa, "Message": plain, "SigningAlgorithm": "RSASSA_PSS_SHA_256"}
                     )["Signature"]
    call(ALICE, "Verify", {"KeyId": rsa, "Message": plain, "SigningAlgorithm": "RSASSA_PSS_SHA_256",
                           "Signature": signature})
    call(ROOT, "Verify", {"KeyId": rsa, "Message": base64.b64encode(b"changed").decode(),
                          "SigningAlgorithm": "RSASSA_PSS_SHA_256", "Signature": signature})  # invalid signature
    call(ROOT, "Sign", {"KeyId": rsa, "Message": plain, "SigningAlgorithm": "ECDSA_SHA_256"})  # wrong algorithm
    call(ROOT, "Encrypt", {"KeyId": rsa, "Plaintext": plain})  # wrong key usage
    for who in (ROOT, ALICE, CAROL):
        call(who, "DescribeKey", {"KeyId": sym})
        call(who, "DescribeKey", {"KeyId": "alias/golden"})
    call(ROOT, "DescribeKey", {"KeyId": "alias/missing"})
    call(MALLORY, "DescribeKey", {"KeyId": sym})  # another account: not found by bare id
    call(MALLORY, "Encrypt", {"KeyId": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{sym}", "Plaintext": plain})  # no policy

    # Wrong key state, and a key state that changes between calls (a verdict or frame kept across it would show).
    call(ROOT, "Encrypt", {"KeyId": disabled, "Plaintext": plain})
    call(ROOT, "GenerateDataKey", {"KeyId": disabled, "KeySpec": "AES_256"})
    call(ROOT, "EnableKey", {"KeyId": disabled})
    call(ROOT, "Encrypt", {"KeyId": disabled, "Plaintext": plain})
    call(ROOT, "DisableKey", {"KeyId": disabled})
    call(ROOT, "Encrypt", {"KeyId": disabled, "Plaintext": plain})
    call(ROOT, "DescribeKey", {"KeyId": disabled})

    # Conditions on request values: decided anew for each request.
    call(ROOT, "Encrypt", {"KeyId": guarded, "Plaintext": plain, "EncryptionContext": ctx})
    call(ROOT, "Encrypt", {"KeyId": guarded, "Plaintext": plain})
    call(ROOT, "Encrypt", {"KeyId": guarded, "Plaintext": plain, "EncryptionContext": {"purpose": "x"}})
    guarded_blob = call(ALICE, "Encrypt", {"KeyId": guarded, "Plaintext": plain, "EncryptionContext": ctx}
                        )["CiphertextBlob"]
    call(ALICE, "Decrypt", {"CiphertextBlob": guarded_blob, "EncryptionContext": ctx})
    call(CAROL, "Decrypt", {"CiphertextBlob": guarded_blob, "EncryptionContext": ctx})  # denied via s3
    call(ROOT, "GenerateDataKey", {"KeyId": guarded, "KeySpec": "AES_256"})
    call(ROOT, "GenerateDataKey", {"KeyId": guarded, "KeySpec": "AES_256", "EncryptionContext": ctx})

    # Grants, and a grant token checked per request.
    grant = call(ROOT, "CreateGrant", {"KeyId": sym, "GranteePrincipal": CAROL.arn, "Operations": ["Encrypt"]})
    call(CAROL, "Encrypt", {"KeyId": sym, "Plaintext": plain, "GrantTokens": [grant["GrantToken"]]})
    call(ROOT, "Encrypt", {"KeyId": sym, "Plaintext": plain, "GrantTokens": ["not-a-token"]})
    call(ROOT, "RevokeGrant", {"KeyId": sym, "GrantId": grant["GrantId"]})
    call(CAROL, "Encrypt", {"KeyId": sym, "Plaintext": plain})

    # A changed key policy: what was allowed is denied next time.
    deny_alice = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "kms:*",
         "Resource": "*"},
        {"Effect": "Deny", "Principal": {"AWS": ALICE.arn}, "Action": "kms:*", "Resource": "*"}]}
    call(ALICE, "Encrypt", {"KeyId": other, "Plaintext": plain})
    call(ROOT, "PutKeyPolicy", {"KeyId": other, "PolicyName": "default", "Policy": json.dumps(deny_alice)})
    call(ALICE, "Encrypt", {"KeyId": other, "Plaintext": plain})
    call(ALICE, "DescribeKey", {"KeyId": other})

    # Bad input.
    call(ROOT, "Encrypt", {"KeyId": sym})  # missing Plaintext
    call(ROOT, "Encrypt", {"KeyId": "", "Plaintext": "!!!"})  # bad base64: SerializationException
    call(ROOT, "Encrypt", {"KeyId": "x" * 2049, "Plaintext": plain, "EncryptionAlgorithm": "ROT13"})
    call(ROOT, "Encrypt", {"KeyId": 5, "Plaintext": plain})
    call(ROOT, "GenerateDataKey", {"KeyId": sym, "NumberOfBytes": 2000, "KeySpec": "AES_512"})
    call(ROOT, "Sign", {"KeyId": rsa, "Message": plain})
    call(ROOT, "GenerateMac", {"GrantTokens": [""] * 12, "KeyId": "", "Message": "",
                               "MacAlgorithm": "MD5"})  # more than ten violations
    call(ROOT, "DescribeKey", {"KeyId": "not-a-key"})
    call(ROOT, "Encrypt", {"KeyId": "0123456789abcdef0123456789abcdef", "Plaintext": plain})
    call(ROOT, "Encrypt", b"{not json")
    call(ROOT, "Encrypt", {"KeyId": sym, "Plaintext": plain}, tamper=True)  # bad signature: no audit record
    call(ROOT, "NoSuchOperation", {})
