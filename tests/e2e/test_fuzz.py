"""Hostile requests (tests/fuzz_strategies.py) at every operation of the KMS model, signed and not, through the
gateway and a region port of a real cluster: every answer is a KMS-shaped 4xx (or a 2xx for a correctly signed
request), never a 5xx, never late; afterwards the server's memory has not run away, its log holds no traceback,
and it still encrypts and decrypts.

TRENT_FUZZ_EXAMPLES sets the examples per operation (`make fuzz` runs many more than `make test`).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.model import ServiceModel
from hypothesis import HealthCheck, Phase, example, given, settings

from tests.e2e.harness import RunningCluster
from tests.fuzz_strategies import FuzzRequest, ShapeStrategies, b64, fuzz_requests, plain_request
from trent.node.wire.protocol import CONTENT_TYPE, MAX_BODY_BYTES, TARGET_PREFIX

EXAMPLES = int(os.environ.get("TRENT_FUZZ_EXAMPLES", "40"))
TIMEOUT = 10.0  # seconds for one answer: anything slower is a hang
# Memory the server may gain over the whole run (allocator arenas and caches warming up, the keys the fuzzed
# CreateKey calls made); a leak of what hostile requests carry would exceed it many times over.
RSS_GROWTH_BYTES = 128 * 1024 * 1024
# An error answer may quote the request (validation messages do), but not amplify it.
MAX_ERROR_BYTES = 64 * 1024

# Operations that take seeded keys and aliases out of service: fuzzed last, so the others still reach them.
DISRUPTIVE = frozenset({"DisableKey", "ScheduleKeyDeletion", "PutKeyPolicy", "DeleteAlias", "UpdateAlias",
                        "UpdatePrimaryRegion", "RevokeGrant", "RetireGrant", "DeleteImportedKeyMaterial"})


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float


class Sender:
    """Keep-alive connections to the gateway and one region port; signs each request as its mode says."""

    def __init__(self, cluster: RunningCluster) -> None:
        self.cluster = cluster
        self.region = cluster.regions[0]
        self.ports = {"gateway": cluster.port, "region": cluster.region_port(self.region)}
        self._connections: dict[str, http.client.HTTPConnection] = {}

    def _connection(self, via: str) -> http.client.HTTPConnection:
        conn = self._connections.get(via)
        if conn is None:
            conn = self._connections[via] = http.client.HTTPConnection("127.0.0.1", self.ports[via], timeout=TIMEOUT)
        return conn

    def _drop(self, via: str) -> None:
        conn = self._connections.pop(via, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for via in list(self._connections):
            self._drop(via)

    def signed_headers(self, req: FuzzRequest) -> list[tuple[str, str]]:
        if req.auth in ("unsigned", "empty-authorization"):
            headers = list(req.headers)
        else:
            url = f"http://127.0.0.1:{self.ports[req.via]}{req.path}"
            signed_body = req.body + b" " if req.auth == "tampered-body" else req.body
            aws = AWSRequest(method=req.method, url=url, data=signed_body, headers=dict(req.headers))
            access, secret = {"wrong-secret": ("test", "not-the-secret"),
                              "unknown-access-key": ("AKIAFUZZUNKNOWN", "test")}.get(req.auth, ("test", "test"))
            SigV4Auth(Credentials(access, secret), "kms", req.sign_region).add_auth(aws)
            headers = [(k, v) for k, v in aws.headers.items()]
        if req.authorization is not None:
            headers = [(k, v) for k, v in headers if k.lower() != "authorization"]
            headers.append(("Authorization", req.authorization))
        return headers

    def send(self, req: FuzzRequest) -> Answer:
        conn = self._connection(req.via)
        conn.timeout = TIMEOUT
        if conn.sock is not None:
            conn.sock.settimeout(conn.timeout)
        started = time.monotonic()
        try:
            conn.putrequest(req.method, req.path, skip_accept_encoding=True)
            for name, value in [*self.signed_headers(req), *req.extra_headers]:
                # http.client sends text as Latin-1; anything beyond it goes out as UTF-8 bytes.
                conn.putheader(name, value if isinstance(value, bytes) or _latin1(value) else value.encode())
            conn.putheader("Content-Length", str(len(req.body)))
            conn.endheaders()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                conn.send(req.body)  # the server may answer (413) before it has read all of a large body
            response = conn.getresponse()
            body = response.read()
        except Exception:
            self._drop(req.via)
            raise
        answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, body,
                        time.monotonic() - started)
        if response.will_close:
            self._drop(req.via)
        return answer


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def tracebacks(log: str) -> list[str]:
    """The log records of a server log that carry a traceback."""
    blocks = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log)
    return [b for b in blocks if "Traceback" in b]


def problems(req: FuzzRequest, answer: Answer) -> list[tuple[str, str]]:
    """What is wrong with an answer, as (kind, description) pairs."""
    found: list[tuple[str, str]] = []
    status = answer.status
    if answer.seconds > TIMEOUT:
        found.append(("slow", f"answered after {answer.seconds:.1f}s"))
    if status >= 500:
        found.append(("5xx", f"status {status}: {answer.body[:300]!r}"))
        return found
    if req.http_layer:
        # aiohttp's own plain-text 400, before any handler: not a KMS request at all (as at any HTTP front door).
        return [*found, ("status", f"status {status} for a request HTTP refuses")] if status != 400 else found
    # An oversize body is refused for its size, whoever sends it; only the gateway, which cannot see how large a
    # compressed body inflates before it routes by credentials, may refuse a badly signed one for those first. A body
    # that does not decode as its Content-Encoding says is refused for that as soon as decoding fails, at any size.
    if (req.oversize and not req.mislabelled and status != 413
            and (req.may_succeed or not req.encoded or req.via == "region")):
        found.append(("oversize", f"status {status} for a body over {MAX_BODY_BYTES} bytes"))
    if 200 <= status < 300:
        if not req.may_succeed:
            found.append(("served", f"status {status} for a request with auth mode {req.auth!r}"))
        return found
    if not 400 <= status < 500:
        return [*found, ("status", f"status {status}")]
    try:
        doc = json.loads(answer.body)
    except ValueError:
        return [*found, ("not-kms", f"status {status}, body not JSON: {answer.body[:300]!r}")]
    if not isinstance(doc, dict) or not isinstance(doc.get("__type"), str) or not doc["__type"]:
        found.append(("not-kms", f"status {status}, no __type: {answer.body[:300]!r}"))
    if answer.headers.get("content-type") != CONTENT_TYPE or not answer.headers.get("x-amzn-requestid"):
        found.append(("not-kms", f"status {status}, headers {answer.headers}"))
    if len(answer.body) > MAX_ERROR_BYTES + 4 * len(req.body):
        found.append(("error-size", f"{len(answer.body)}-byte error for a {len(req.body)}-byte request: "
                                    f"{answer.body[:200]!r}"))
    return found


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def seed_values(kms: Any, regions: tuple[str, ...]) -> dict[str, list[Any]]:
    """Real key ids, aliases, ciphertexts, grants and the like, for valid requests to name."""
    keys = {spec_usage: kms.create_key(KeySpec=spec_usage[0], KeyUsage=spec_usage[1])["KeyMetadata"]
            for spec_usage in [("SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"), ("RSA_2048", "ENCRYPT_DECRYPT"),
                               ("ECC_NIST_P256", "SIGN_VERIFY"), ("HMAC_256", "GENERATE_VERIFY_MAC"),
                               ("ECC_NIST_P256", "KEY_AGREEMENT")]}
    mrk = kms.create_key(MultiRegion=True)["KeyMetadata"]
    symmetric = keys["SYMMETRIC_DEFAULT", "ENCRYPT_DECRYPT"]["KeyId"]
    kms.create_alias(AliasName="alias/fuzz", TargetKeyId=symmetric)
    grant = kms.create_grant(KeyId=symmetric, GranteePrincipal="arn:aws:iam::111122223333:root",
                             Operations=["Encrypt", "Decrypt"])
    signer = keys["ECC_NIST_P256", "SIGN_VERIFY"]["KeyId"]
    hmac = keys["HMAC_256", "GENERATE_VERIFY_MAC"]["KeyId"]
    agreement = keys["ECC_NIST_P256", "KEY_AGREEMENT"]["KeyId"]
    key_ids = [m["KeyId"] for m in keys.values()] + [mrk["KeyId"]]
    return {
        **{name: [*key_ids, mrk["Arn"], "alias/fuzz", f"arn:aws:kms:{regions[0]}:111122223333:alias/fuzz"]
           for name in ("KeyId", "SourceKeyId", "DestinationKeyId", "TargetKeyId")},
        "AliasName": ["alias/fuzz", "alias/fuzz-2", "alias/aws/kms"],
        "CiphertextBlob": [b64(kms.encrypt(KeyId=symmetric, Plaintext=b"fuzz")["CiphertextBlob"])],
        "Signature": [b64(kms.sign(KeyId=signer, Message=b"fuzz", SigningAlgorithm="ECDSA_SHA_256")["Signature"])],
        "Mac": [b64(kms.generate_mac(KeyId=hmac, Message=b"fuzz", MacAlgorithm="HMAC_SHA_256")["Mac"])],
        "PublicKey": [b64(kms.get_public_key(KeyId=agreement)["PublicKey"])],
        "GrantId": [grant["GrantId"]],
        "GrantToken": [grant["GrantToken"]],
        "GranteePrincipal": ["arn:aws:iam::111122223333:root"],
        "RetiringPrincipal": ["arn:aws:iam::111122223333:root"],
        "ReplicaRegion": list(regions[1:]),
        "PrimaryRegion": list(regions),
    }


def pinned_cases(region: str) -> list[FuzzRequest]:
    """Sent on every run, whatever hypothesis draws: the hostile probe's findings and the bugs this fuzzer found."""
    def encoded(operation: str, encoding: str) -> dict[str, Any]:
        headers = (("X-Amz-Target", TARGET_PREFIX + operation), ("Content-Type", CONTENT_TYPE),
                   ("Content-Encoding", encoding))
        return {"headers": headers, "encoding": encoding}

    scope = (b"AWS4-HMAC-SHA256 Credential=test/20200101/\xfc/kms/aws4_request, SignedHeaders=host, Signature="
             + b"a" * 64)
    return [
        # A body declared gzip or deflate but not so encoded: once a 500, or (deflate) no answer at all.
        plain_request("Encrypt", {"KeyId": "alias/fuzz", "Plaintext": "AA=="}, region, **encoded("Encrypt", "gzip")),
        plain_request("ListKeys", {}, region, via="region", **encoded("ListKeys", "deflate")),
        # A huge list of invalid members: once a validation message with a clause per element.
        plain_request("CreateGrant", {"KeyId": "alias/fuzz", "Operations": ["x"] * 100_000}, region),
        plain_request("Decrypt", {"CiphertextBlob": "AAAA", "DryRunModifiers": ["x"] * 100_000}, region),
        # Found here: header bytes that are not UTF-8, in the audit record and in an error message (500s); an
        # oversize body refused for its credentials at the gateway, not for its size.
        plain_request("ListKeys", {}, region, extra_headers=(("User-Agent", b"fuzz/\xff\xfe"),)),
        plain_request("ListKeys", {}, region, auth="unsigned", extra_headers=(("Authorization", scope),)),
        plain_request("ListKeys", {}, region, auth="unsigned", body=b" " * (MAX_BODY_BYTES + 1)),
    ]


def fuzz_operation(shapes: ShapeStrategies, sender: Sender, operation: str, regions: tuple[str, ...],
                   statuses: Counter[int]) -> None:
    def run(req: FuzzRequest) -> None:
        found: list[tuple[str, str]]
        try:
            answer = sender.send(req)
        except TimeoutError:
            found = [("hang", f"no answer within {TIMEOUT}s")]
        except (http.client.HTTPException, OSError) as exc:
            found = [("connection", f"connection failed: {exc!r}")]
        else:
            statuses[answer.status] += 1
            found = problems(req, answer)
        left = [f"{kind}: {description}" for kind, description in found]
        assert not left, f"{'; '.join(left)} -- {req!r}"

    for case in pinned_cases(regions[0]):
        if case.operation == operation:
            run = example(req=case)(run)
    fuzz = given(req=fuzz_requests(shapes, operation, regions))(run)
    # No shrinking: a failure is reported as drawn (each costs a request, and a failing run would take minutes).
    settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
             phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))(fuzz)()


@pytest.fixture
def fuzzed(fresh_cluster: Callable[..., RunningCluster]) -> Iterator[RunningCluster]:
    yield fresh_cluster()


def test_every_operation_answers_hostile_requests_with_kms_errors(fuzzed: RunningCluster) -> None:
    cluster = fuzzed
    assert cluster.proc is not None
    pid = cluster.proc.pid
    model: ServiceModel = botocore.session.get_session().get_service_model("kms")
    kms = cluster.client(cluster.regions[0])
    shapes = ShapeStrategies(model, seed_values(kms, cluster.regions))
    log_start = cluster.log_path.stat().st_size
    rss_before = rss_bytes(pid)
    sender = Sender(cluster)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    started = time.monotonic()
    operations = sorted(model.operation_names, key=lambda name: (name in DISRUPTIVE, name))
    try:
        for operation in operations:
            try:
                fuzz_operation(shapes, sender, operation, cluster.regions, statuses)
            except Exception as exc:
                failures.append(f"{operation}: " + "".join(traceback.format_exception_only(exc)))
    finally:
        sender.close()
    elapsed = time.monotonic() - started
    rss_after = rss_bytes(pid)
    print(f"fuzzed {len(operations)} operations, {sum(statuses.values())} requests in {elapsed:.1f}s; "
          f"statuses {dict(sorted(statuses.items()))}; "
          f"RSS {rss_before >> 20} -> {rss_after >> 20} MiB")
    assert not failures, "\n".join(failures)
    assert rss_after - rss_before <= RSS_GROWTH_BYTES, f"RSS grew from {rss_before >> 20} to {rss_after >> 20} MiB"
    found = tracebacks(cluster.log_path.read_bytes()[log_start:].decode(errors="replace"))
    assert not found, f"{len(found)} tracebacks in the server log, the first:\n{found[0]}"
    # Still serving, with a key made after the storm.
    key = cluster.client(cluster.regions[0]).create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key, Plaintext=b"still here")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"still here"
