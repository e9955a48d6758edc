"""KmsEndpoint with no network and a fake verifier: dispatch, decoding, error rendering, auth-off behaviour; and
the aiohttp adapter around it (node/app.py)."""

from __future__ import annotations

import gc
import json
import logging
import re
from typing import Any

import botocore.session
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from trent.node.app import kms_handler, make_app
from trent.node.audit.sink import AuditSink, read_events
from trent.node.audit.trail import AuditTrail
from trent.node.auth.principals import Principal, PrincipalDirectory
from trent.node.clock import FixedClock
from trent.node.crypto.rootkey import RootKey
from trent.node.endpoint import KmsEndpoint, WireRequest, WireResponse
from trent.node.model.errors import KmsError
from trent.node.ops import declare
from trent.node.ops.registry import Operation, Params, Registry, RequestContext, Response
from trent.node.ops.tables import usage_tracked
from trent.node.service import Region, RegionIdentity
from trent.node.store.base import StoreError
from trent.node.store.memory import MemoryStore
from trent.node.wire.protocol import CONTENT_TYPE, MAX_BODY_BYTES
from trent.node.wire.sigv4 import VerifiedCaller
from trent.node.wire.validation import RequestDecoder

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ALICE = Principal("AKIAALICE", "alice-secret", "arn:aws:iam::111122223333:user/alice", "111122223333")
BOB = Principal("AKIABOB", "bob-secret", "arn:aws:iam::111122223333:user/bob", "111122223333")
SECRET_TEXT = "SECRET-PLAINTEXT-IN-EXCEPTION"

USAGE_TRACKED = usage_tracked(declare(Registry()))  # as the composition gives it to a region's trail


class FakeVerifier:
    """Stands in for SigV4Verifier: records calls, answers as told."""

    def __init__(self, principal: Principal = ALICE, error: KmsError | None = None) -> None:
        self.principal = principal
        self.error = error
        self.calls: list[dict[str, Any]] = []

    def verify(self, method: str, path: str, query: str, headers: Any, body: bytes,
               expected_region: str | None = None) -> VerifiedCaller:
        self.calls.append({"method": method, "path": path, "query": query, "body": body,
                           "expected_region": expected_region})
        if self.error is not None:
            raise self.error
        return VerifiedCaller(self.principal, expected_region or "", self.principal.access_key)

    def scope_only(self, headers: Any) -> Any:
        raise KmsError("IncompleteSignatureException", "from scope_only")


@pytest.fixture(scope="module")
def decoder() -> RequestDecoder:
    return RequestDecoder(botocore.session.get_session().get_service_model("kms"))


class Handlers:
    """Handlers registered under real model operation names, so the real decoder runs before them."""

    def __init__(self) -> None:
        self.seen: list[tuple[Params, RequestContext]] = []

    def echo(self, region: Region, params: Params, ctx: RequestContext) -> Response:
        self.seen.append((params, ctx))
        return {"CiphertextBlob": params.get("Plaintext"), "KeyId": params["KeyId"], "EncryptionAlgorithm": None}

    def explode(self, region: Region, params: Params, ctx: RequestContext) -> Response:
        raise RuntimeError(f"bug while handling {SECRET_TEXT}")

    def store_down(self, region: Region, params: Params, ctx: RequestContext) -> Response:
        raise StoreError("disk on fire")

    def not_found(self, region: Region, params: Params, ctx: RequestContext) -> Response:
        return region.resolve(params["KeyId"], allow_alias=True) and {}

    def nothing(self, region: Region, params: Params, ctx: RequestContext) -> Response:
        self.seen.append((params, ctx))
        return {}


def make_endpoint(decoder: RequestDecoder, verifier: FakeVerifier | None = None, **kwargs: Any
                  ) -> tuple[KmsEndpoint, Handlers, FakeVerifier]:
    handlers = Handlers()
    registry = Registry()
    registry.add(Operation(name="Encrypt", handler=handlers.echo))
    registry.add(Operation(name="ListKeys", handler=handlers.explode))
    registry.add(Operation(name="CreateKey", handler=handlers.store_down))
    registry.add(Operation(name="DescribeKey", handler=handlers.not_found))
    registry.add(Operation(name="ListAliases", handler=handlers.nothing))
    region = Region(RegionIdentity("eu-west-1", "111122223333"), MemoryStore(), RootKey.from_bytes(b"\x01" * 32),
                    FixedClock())
    verifier = verifier or FakeVerifier()
    endpoint = KmsEndpoint(region, registry, decoder, verifier, **kwargs)  # type: ignore[arg-type]
    return endpoint, handlers, verifier


def request(target: str | None = "Encrypt", body: bytes = b"{}", method: str = "POST", path: str = "/",
            headers: dict[str, str] | None = None) -> WireRequest:
    all_headers = {"Content-Type": CONTENT_TYPE, "User-Agent": "unit-test/1.0",
                   "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAALICE/20270101/eu-west-1/kms/aws4_request, "
                                    "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64}
    if target is not None:
        all_headers["X-Amz-Target"] = f"TrentService.{target}"
    all_headers.update(headers or {})
    return WireRequest(method, path, "", all_headers, body, remote="10.1.2.3")


def check(response: WireResponse, status: int, expected: dict[str, Any]) -> None:
    assert response.status == status
    assert response.headers["Content-Type"] == CONTENT_TYPE
    assert UUID_RE.fullmatch(response.headers["x-amzn-RequestId"])
    assert json.loads(response.body) == expected


# -- dispatch --------------------------------------------------------------------------------------------------


def test_success_decodes_params_and_encodes_the_result(decoder: RequestDecoder) -> None:
    endpoint, handlers, verifier = make_endpoint(decoder)
    response = endpoint.handle(request("Encrypt", b'{"KeyId": "alias/x", "Plaintext": "aGVsbG8="}'))
    check(response, 200, {"CiphertextBlob": "aGVsbG8=", "KeyId": "alias/x"})  # None member omitted
    (params, ctx), = handlers.seen
    assert params["Plaintext"] == b"hello"  # base64 decoded before the handler
    assert (ctx.operation, ctx.principal, ctx.source_ip, ctx.user_agent) == (
        "Encrypt", ALICE, "10.1.2.3", "unit-test/1.0")
    assert ctx.request_id == response.headers["x-amzn-RequestId"]
    (call,) = verifier.calls
    assert (call["method"], call["path"], call["expected_region"]) == ("POST", "/", "eu-west-1")


def test_request_ids_are_unique(decoder: RequestDecoder) -> None:
    endpoint, _, _ = make_endpoint(decoder)
    ids = {endpoint.handle(request("ListAliases")).headers["x-amzn-RequestId"] for _ in range(20)}
    assert len(ids) == 20


@pytest.mark.parametrize("target", ["Nope", "GenerateMac", None])
def test_unknown_operation(decoder: RequestDecoder, target: str | None) -> None:
    # GenerateMac is a real KMS operation that this registry lacks: still unknown here, never a 500.
    endpoint, _, _ = make_endpoint(decoder)
    check(endpoint.handle(request(target)), 400, {"__type": "UnknownOperationException"})


@pytest.mark.parametrize("body", [b"{not json", b"\xff", b"[" * 50_000])
def test_malformed_json_is_a_serialization_exception(decoder: RequestDecoder, body: bytes) -> None:
    endpoint, handlers, _ = make_endpoint(decoder)
    response = endpoint.handle(request("Encrypt", body))
    assert response.status == 400
    doc = json.loads(response.body)
    assert set(doc) == {"__type", "message"}
    assert doc["__type"] == "SerializationException"
    assert handlers.seen == []


def test_wrong_json_types_are_a_serialization_exception(decoder: RequestDecoder) -> None:
    endpoint, _, _ = make_endpoint(decoder)
    for body in (b"[]", b'"x"', b'{"KeyId": 5, "Plaintext": "aGk="}'):
        assert json.loads(endpoint.handle(request("Encrypt", body)).body)["__type"] == "SerializationException"


def test_validation_happens_before_the_handler(decoder: RequestDecoder) -> None:
    endpoint, handlers, _ = make_endpoint(decoder)
    response = endpoint.handle(request("Encrypt", b'{"Plaintext": "aGk="}'))
    assert response.status == 400
    assert json.loads(response.body)["__type"] == "ValidationException"
    assert handlers.seen == []


def test_empty_body_is_an_empty_request(decoder: RequestDecoder) -> None:
    endpoint, handlers, _ = make_endpoint(decoder)
    check(endpoint.handle(request("ListAliases", b"")), 200, {})
    assert handlers.seen[0][0] == {}


def test_handler_kms_error_is_rendered(decoder: RequestDecoder) -> None:
    endpoint, _, _ = make_endpoint(decoder)
    check(endpoint.handle(request("DescribeKey", b'{"KeyId": "alias/none"}')), 400, {
        "__type": "NotFoundException", "message": "Alias arn:aws:kms:eu-west-1:111122223333:alias/none is not found."})


def test_handler_bug_is_an_opaque_retryable_500(decoder: RequestDecoder, caplog: pytest.LogCaptureFixture) -> None:
    endpoint, _, _ = make_endpoint(decoder)
    with caplog.at_level(logging.ERROR, logger="trent.endpoint"):
        response = endpoint.handle(request("ListKeys", b'{"Limit": 5}'))
    check(response, 500, {"__type": "KMSInternalException", "message": "An internal error occurred."})
    assert SECRET_TEXT.encode() not in response.body
    assert "RuntimeError" not in response.body.decode()
    (record,) = caplog.records
    assert response.headers["x-amzn-RequestId"] in record.getMessage()  # the log names the request
    assert record.exc_info is not None  # with its traceback, for the operator


def test_store_failure_is_a_500_without_details(decoder: RequestDecoder) -> None:
    endpoint, _, _ = make_endpoint(decoder)
    response = endpoint.handle(request("CreateKey"))
    check(response, 500, {"__type": "KMSInternalException", "message": "An internal error occurred."})
    assert b"disk" not in response.body


def test_oversize_body_is_refused_before_authentication(decoder: RequestDecoder) -> None:
    endpoint, handlers, verifier = make_endpoint(decoder)
    response = endpoint.handle(request("Encrypt", b" " * (MAX_BODY_BYTES + 1)))
    check(response, 413, {"__type": "ValidationException", "message": f"Request body exceeds {MAX_BODY_BYTES} bytes."})
    assert verifier.calls == [] and handlers.seen == []
    # exactly the limit is fine
    assert endpoint.handle(request("ListAliases", b"{}" + b" " * (MAX_BODY_BYTES - 2))).status == 200


@pytest.mark.parametrize("method, path", [("GET", "/"), ("PUT", "/"), ("POST", "/other")])
def test_only_post_to_root_is_kms(decoder: RequestDecoder, method: str, path: str) -> None:
    endpoint, handlers, _ = make_endpoint(decoder)
    response = endpoint.handle(request("ListAliases", method=method, path=path))
    check(response, 400, {"__type": "UnknownOperationException", "message": "KMS accepts only POST / requests."})
    assert handlers.seen == []


# -- authentication --------------------------------------------------------------------------------------------


def test_verifier_errors_pass_through_and_nothing_runs(decoder: RequestDecoder) -> None:
    error = KmsError("InvalidSignatureException", "The request signature we calculated does not match ...", 403)
    endpoint, handlers, _ = make_endpoint(decoder, FakeVerifier(error=error))
    check(endpoint.handle(request("ListAliases")), 403, {"__type": "InvalidSignatureException",
                                                         "message": error.message})
    assert handlers.seen == []


def test_empty_authorization_is_missing_authentication(decoder: RequestDecoder) -> None:
    endpoint, handlers, verifier = make_endpoint(decoder)
    check(endpoint.handle(request("ListAliases", headers={"Authorization": " "})), 403, {
        "__type": "MissingAuthenticationTokenException", "message": "Missing Authentication Token"})
    assert verifier.calls == [] and handlers.seen == []
    endpoint, handlers, _ = open_endpoint(decoder)  # with auth off it is just an unsigned request
    check(endpoint.handle(request("ListAliases", headers={"Authorization": ""})), 200, {})


def test_verified_principal_reaches_the_handler(decoder: RequestDecoder) -> None:
    endpoint, handlers, _ = make_endpoint(decoder, FakeVerifier(principal=BOB))
    endpoint.handle(request("ListAliases"))
    assert handlers.seen[0][1].principal == BOB


def scoped(access_key: str, region: str) -> dict[str, str]:
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/20270101/{region}/kms/aws4_request"}


def open_endpoint(decoder: RequestDecoder) -> tuple[KmsEndpoint, Handlers, FakeVerifier]:
    return make_endpoint(decoder, verify_signatures=False, anonymous=ALICE,
                         principals=PrincipalDirectory([ALICE, BOB]))


def test_auth_off_checks_no_signature(decoder: RequestDecoder) -> None:
    endpoint, handlers, verifier = open_endpoint(decoder)
    check(endpoint.handle(request("ListAliases", headers=scoped("AKIABOB", "eu-west-1"))), 200, {})
    assert verifier.calls == []
    assert handlers.seen[0][1].principal == BOB  # the principal the scope names
    endpoint.handle(request("ListAliases", headers=scoped("AKIAUNKNOWN", "eu-west-1")))
    assert handlers.seen[1][1].principal == ALICE  # unknown access key: the default principal


def test_auth_off_accepts_a_request_without_authorization(decoder: RequestDecoder) -> None:
    endpoint, handlers, _ = open_endpoint(decoder)
    req = request("ListAliases")
    del req.headers["Authorization"]  # type: ignore[attr-defined]
    check(endpoint.handle(req), 200, {})
    assert handlers.seen[0][1].principal == ALICE


def test_auth_off_still_rejects_another_regions_scope(decoder: RequestDecoder) -> None:
    endpoint, handlers, _ = open_endpoint(decoder)
    check(endpoint.handle(request("ListAliases", headers=scoped("AKIABOB", "us-east-1"))), 403, {
        "__type": "InvalidSignatureException",
        "message": "Credential should be scoped to a valid region, not 'us-east-1'."})
    assert handlers.seen == []


def test_auth_off_malformed_authorization_says_why(decoder: RequestDecoder) -> None:
    endpoint, _, _ = open_endpoint(decoder)
    response = endpoint.handle(request("ListAliases", headers={"Authorization": "Basic dXNlcjpwYXNz"}))
    check(response, 400, {"__type": "IncompleteSignatureException", "message": "from scope_only"})


def test_auth_off_needs_a_principal_to_act_as(decoder: RequestDecoder) -> None:
    with pytest.raises(ValueError):
        make_endpoint(decoder, verify_signatures=False)


# -- the aiohttp adapter ---------------------------------------------------------------------------------------


async def _admin(_request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _client(endpoint_for: Any) -> TestClient[web.Request, web.Application]:
    app = make_app(kms_handler(endpoint_for), [web.get("/_admin", _admin)])
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_adapter_moves_bytes_both_ways(decoder: RequestDecoder) -> None:
    endpoint, _, verifier = make_endpoint(decoder)
    client = await _client(lambda _r: endpoint)
    try:
        response = await client.post("/?a=1", data=b'{"KeyId": "k", "Plaintext": "aGk="}',
                                     headers={"X-Amz-Target": "TrentService.Encrypt", "Content-Type": CONTENT_TYPE})
        assert response.status == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE
        assert UUID_RE.fullmatch(response.headers["x-amzn-RequestId"])
        assert await response.json(content_type=None) == {"CiphertextBlob": "aGk=", "KeyId": "k"}
        assert (verifier.calls[0]["path"], verifier.calls[0]["query"]) == ("/", "a=1")
        assert (await client.get("/_admin")).status == 200  # admin routes are not KMS
    finally:
        await client.close()


async def test_adapter_oversize_body_is_a_kms_error_with_a_request_id(decoder: RequestDecoder) -> None:
    endpoint, _, _ = make_endpoint(decoder)
    client = await _client(lambda _r: endpoint)
    try:
        response = await client.post("/", data=b"x" * (4 * MAX_BODY_BYTES),
                                     headers={"X-Amz-Target": "TrentService.ListKeys"})
        assert response.status == 413
        assert response.headers["Content-Type"] == CONTENT_TYPE
        assert UUID_RE.fullmatch(response.headers["x-amzn-RequestId"])
        assert await response.json(content_type=None) == {
            "__type": "ValidationException", "message": f"Request body exceeds {MAX_BODY_BYTES} bytes."}
    finally:
        await client.close()


async def test_adapter_routing_failure_is_a_kms_500_not_text(caplog: pytest.LogCaptureFixture) -> None:
    def broken_router(_request: web.Request) -> KmsEndpoint:
        raise RuntimeError("router bug")

    client = await _client(broken_router)
    try:
        with caplog.at_level(logging.ERROR, logger="trent.http"):
            response = await client.post("/", data=b"{}")
        assert response.status == 500
        assert response.headers["Content-Type"] == CONTENT_TYPE
        assert UUID_RE.fullmatch(response.headers["x-amzn-RequestId"])
        assert await response.json(content_type=None) == {
            "__type": "KMSInternalException", "message": "An internal error occurred."}
        assert any("router bug" in (r.exc_text or str(r.exc_info)) for r in caplog.records)
    finally:
        await client.close()


async def test_adapter_passes_a_routers_own_answer_through() -> None:
    answer = WireResponse(403, b'{"__type":"X"}', {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": "id-1"})
    client = await _client(lambda _r: answer)
    try:
        response = await client.post("/", data=b"{}")
        assert (response.status, response.headers["x-amzn-RequestId"]) == (403, "id-1")
        assert await response.read() == b'{"__type":"X"}'
    finally:
        await client.close()


def test_an_error_answer_leaves_no_reference_cycle(decoder: RequestDecoder) -> None:
    # The error kept for the audit record once held its traceback, and so the frame holding it: every refused request
    # (its body, parsed body and answer) waited for a full collection, which the tuned collector seldom makes.
    endpoint, _, _ = make_endpoint(decoder)
    gc.collect()
    gc.disable()
    try:
        too_many_tokens = json.dumps({"KeyId": "k", "Plaintext": "aGVsbG8=", "GrantTokens": ["t"] * 50}).encode()
        for body in (b'{"KeyId": 1}', b'{"KeyId": "k", "Plaintext": "!"}', b"{", b'{"Plaintext": "AA=="}',
                     too_many_tokens):
            assert endpoint.handle(request("Encrypt", body)).status == 400
            assert gc.collect() == 0
    finally:
        gc.enable()


def test_header_bytes_that_are_not_utf8_reach_the_audit_record(decoder: RequestDecoder, tmp_path: Any) -> None:
    # aiohttp hands such bytes over as lone surrogates (surrogateescape), which the audit line's JSON refused: the
    # call had run, and its client got a 500.
    trail = AuditTrail("eu-west-1", "111122223333", AuditSink(tmp_path / "audit"), started=0.0,
                       usage_tracked=USAGE_TRACKED)
    endpoint, _, _ = make_endpoint(decoder, audit=trail)
    headers = {"User-Agent": b"fuzz/\xff\xfe".decode("utf-8", "surrogateescape"),
               "Host": b"h\xe9".decode("utf-8", "surrogateescape")}
    response = endpoint.handle(request("ListAliases", headers=headers))
    assert response.status == 200
    trail.sink.flush()
    (event,) = read_events(tmp_path / "audit")
    assert event["userAgent"] == "fuzz/\ufffd\ufffd"
    assert event["tlsDetails"]["clientProvidedHostHeader"] == "h\ufffd"
