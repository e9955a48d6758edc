"""Several processes over one region (node/consistency.py): read-only operations never commit (so they never race
another process's commit), the endpoint catches up before every request, and only an operation that writes is run
again when another process committed first."""

from __future__ import annotations

import base64
import json
from typing import Any

import botocore.session
import pytest

from trent.node.auth.principals import Principal
from trent.node.clock import FixedClock
from trent.node.consistency import RegionConsistency
from trent.node.crypto.rootkey import RootKey
from trent.node.endpoint import KmsEndpoint, WireRequest
from trent.node.ops import build_registry
from trent.node.ops.registry import Operation, Params, Registry, RequestContext, Response
from trent.node.service import Region, RegionIdentity
from trent.node.store.base import Batch, StaleState
from trent.node.store.memory import MemoryStore
from trent.node.wire.protocol import CONTENT_TYPE
from trent.node.wire.validation import RequestDecoder

REGION, ACCOUNT = "eu-west-1", "111122223333"
CALLER = Principal("test", "test", f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT)


class CountingStore(MemoryStore):
    """A store that remembers every batch committed to it."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[Batch] = []

    def commit(self, batch: Batch) -> None:
        super().commit(batch)
        self.batches.append(batch)


@pytest.fixture(scope="module")
def decoder() -> RequestDecoder:
    return RequestDecoder(botocore.session.get_session().get_service_model("kms"))


def make_endpoint(decoder: RequestDecoder, store: MemoryStore, registry: Registry | None = None,
                  consistency: Any = None) -> KmsEndpoint:
    region = Region(RegionIdentity(REGION, ACCOUNT), store, RootKey.from_bytes(b"\x02" * 32), FixedClock(1.8e9))
    registry = registry or build_registry(decoder.operation_names())
    endpoint = KmsEndpoint(region, registry, decoder, None, verify_signatures=False,  # type: ignore[arg-type]
                           anonymous=CALLER, consistency=consistency)
    return endpoint


def call(endpoint: KmsEndpoint, operation: str, **params: Any) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": f"TrentService.{operation}"}
    response = endpoint.handle(WireRequest("POST", "/", "", headers, json.dumps(params).encode()))
    return response.status, json.loads(response.body) if response.body else {}


def ok(endpoint: KmsEndpoint, operation: str, **params: Any) -> dict[str, Any]:
    status, body = call(endpoint, operation, **params)
    assert status == 200, (operation, body)
    return body


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_read_only_operations_never_commit(decoder: RequestDecoder) -> None:
    store = CountingStore()
    endpoint = make_endpoint(decoder, store)

    def create(**params: Any) -> str:
        return str(ok(endpoint, "CreateKey", **params)["KeyMetadata"]["KeyId"])

    sym = create()
    rsa = create(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")
    ecc = create(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")
    hmac = create(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    agree = create(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")
    kem = create(KeySpec="ML_KEM_768", KeyUsage="ENCAPSULATE_DECAPSULATE")
    external = create(Origin="EXTERNAL")
    ok(endpoint, "CreateAlias", AliasName="alias/app", TargetKeyId=sym)
    ok(endpoint, "CreateGrant", KeyId=sym, GranteePrincipal=CALLER.arn, RetiringPrincipal=CALLER.arn,
       Operations=["Decrypt"])
    ciphertext = ok(endpoint, "Encrypt", KeyId=sym, Plaintext=b64(b"data"))["CiphertextBlob"]
    signature = ok(endpoint, "Sign", KeyId=ecc, Message=b64(b"m"), SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    mac = ok(endpoint, "GenerateMac", KeyId=hmac, Message=b64(b"m"), MacAlgorithm="HMAC_SHA_256")["Mac"]
    peer = ok(endpoint, "GetPublicKey", KeyId=agree)["PublicKey"]
    encapsulated = ok(endpoint, "Encapsulate", KeyId=kem, EncapsulationAlgorithm="ML_KEM")
    # One request per read-only operation, each one that succeeds on the state made above.
    requests: dict[str, dict[str, Any]] = {
        "Decapsulate": {"KeyId": kem, "EncapsulationAlgorithm": "ML_KEM",
                        "SharedSecretCiphertextBlob": encapsulated["SharedSecretCiphertextBlob"]},
        "Decrypt": {"CiphertextBlob": ciphertext},
        "DeriveSharedSecret": {"KeyId": agree, "KeyAgreementAlgorithm": "ECDH", "PublicKey": peer},
        "DescribeCustomKeyStores": {},
        "DescribeKey": {"KeyId": "alias/app"},
        "Encapsulate": {"KeyId": kem, "EncapsulationAlgorithm": "ML_KEM"},
        "Encrypt": {"KeyId": "alias/app", "Plaintext": b64(b"data")},
        "GenerateDataKey": {"KeyId": sym, "KeySpec": "AES_256"},
        "GenerateDataKeyPair": {"KeyId": sym, "KeyPairSpec": "ECC_NIST_P256"},
        "GenerateDataKeyPairWithoutPlaintext": {"KeyId": sym, "KeyPairSpec": "ECC_NIST_P256"},
        "GenerateDataKeyWithoutPlaintext": {"KeyId": sym, "NumberOfBytes": 32},
        "GenerateMac": {"KeyId": hmac, "Message": b64(b"m"), "MacAlgorithm": "HMAC_SHA_256"},
        "GenerateRandom": {"NumberOfBytes": 16},
        "GetKeyLastUsage": {"KeyId": sym},
        "GetKeyPolicy": {"KeyId": sym},
        "GetKeyRotationStatus": {"KeyId": sym},
        "GetParametersForImport": {"KeyId": external, "WrappingAlgorithm": "RSAES_OAEP_SHA_256",
                                   "WrappingKeySpec": "RSA_2048"},
        "GetPublicKey": {"KeyId": rsa},
        "ListAliases": {},
        "ListGrants": {"KeyId": sym},
        "ListKeyPolicies": {"KeyId": sym},
        "ListKeyRotations": {"KeyId": sym},
        "ListKeys": {},
        "ListResourceTags": {"KeyId": sym},
        "ListRetirableGrants": {"RetiringPrincipal": CALLER.arn},
        "ReEncrypt": {"CiphertextBlob": ciphertext, "DestinationKeyId": sym},
        "Sign": {"KeyId": ecc, "Message": b64(b"m"), "SigningAlgorithm": "ECDSA_SHA_256"},
        "Verify": {"KeyId": ecc, "Message": b64(b"m"), "Signature": signature, "SigningAlgorithm": "ECDSA_SHA_256"},
        "VerifyMac": {"KeyId": hmac, "Message": b64(b"m"), "Mac": mac, "MacAlgorithm": "HMAC_SHA_256"},
    }
    registry = endpoint.registry
    read_only = {name for name in registry.names() if (op := registry.get(name)) is not None and op.read_only}
    assert read_only == set(requests), "every read-only operation needs a request here"
    commits = len(store.batches)
    answered = {}
    for name, params in requests.items():
        status, body = call(endpoint, name, **params)
        answered[name] = (status, body.get("__type"))
        assert store.batches[commits:] == [], f"{name} committed to {[list(b.puts) for b in store.batches[commits:]]}"
    # Not a vacuous pass: each ran to its answer.
    assert {n: a for n, a in answered.items() if a[0] != 200} == {}


class Recording:
    """Stands in for RegionConsistency: records the steps the endpoint takes."""

    def __init__(self, stale: int = 0) -> None:
        self.steps: list[str] = []
        self.stale = stale

    def before_request(self) -> None:
        self.steps.append("before")

    def run_write(self, operation: str, run: Any, recheck: Any) -> Any:
        self.steps.append(f"write {operation}")
        while self.stale:
            self.stale -= 1
            recheck()
        return run()


def test_the_endpoint_catches_up_before_every_request_and_wraps_only_writes(decoder: RequestDecoder) -> None:
    consistency = Recording()
    endpoint = make_endpoint(decoder, MemoryStore(), consistency=consistency)
    key = ok(endpoint, "CreateKey")["KeyMetadata"]["KeyId"]
    ok(endpoint, "Encrypt", KeyId=key, Plaintext=b64(b"x"))
    ok(endpoint, "DescribeKey", KeyId=key)
    ok(endpoint, "TagResource", KeyId=key, Tags=[{"TagKey": "a", "TagValue": "b"}])
    assert consistency.steps == ["before", "write CreateKey", "before", "before", "before", "write TagResource"]


def test_a_write_that_lost_every_race_is_a_retryable_error_and_each_retry_is_caught_up(
        decoder: RequestDecoder) -> None:
    runs: list[int] = []
    syncs: list[bool] = []

    def racing(region: Region, params: Params, ctx: RequestContext) -> Response:
        runs.append(1)
        raise StaleState("another process committed first")

    registry = Registry()
    registry.add(Operation(name="TagResource", handler=racing))
    store = MemoryStore()
    endpoint = make_endpoint(decoder, store, registry)
    region = endpoint.region
    region.sync = lambda force=False: syncs.append(force) or False  # type: ignore[method-assign]
    notified: list[int] = []
    endpoint.consistency = RegionConsistency(region, lambda: notified.append(1), attempts=3)
    status, body = call(endpoint, "TagResource", KeyId="1234abcd-12ab-34cd-56ef-1234567890ab",
                        Tags=[{"TagKey": "a", "TagValue": "b"}])
    assert (status, body["__type"]) == (500, "KMSInternalException")
    assert len(runs) == 3
    assert syncs == [False, True, True, True]  # before the request, then forced after each lost race
    assert notified == [1]  # the leader hears of it once the write is over
