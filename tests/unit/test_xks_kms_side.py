"""The KMS side of XKS without a cluster: the spec's error mapping table, the client's classification of every way a
proxy can fail (a real aiohttp server that refuses, stalls, sends garbage or errors), SigV4 signing as AWS KMS signs,
the settings AWS checks, the XKS blob layout, and the cluster's XKS config keys."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from trent.node.config import ConfigError, load_config
from trent.node.model.errors import KmsError
from trent.node.xks import errors
from trent.node.xks.client import DEFAULT_TIMEOUT, XksCallFailure, XksClient, XksTarget
from trent.node.xks.signing import SignatureRejected, SigningKeys, sign, verify
from trent.node.xks.stores import _parse_outer, check_connectivity, check_endpoint, check_path, settings

AK, SECRET = "AKIAXKSCLIENTTEST222", "client-secret-client-secret-client-secret-xx"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def failure(name: str) -> XksCallFailure:
    return XksCallFailure("proxy", name)


@pytest.mark.parametrize(("cause", "store", "create_key", "code"), [
    (failure("ValidationException"), "XksProxyInvalidResponseException", "CustomKeyStoreInvalidStateException",
     "XKS_PROXY_INVALID_RESPONSE"),
    (failure("InvalidStateException"), "XksProxyInvalidResponseException", "XksKeyInvalidConfigurationException",
     "XKS_PROXY_INVALID_RESPONSE"),
    (failure("InvalidKeyUsageException"), "XksProxyInvalidResponseException", "XksKeyInvalidConfigurationException",
     "XKS_PROXY_INVALID_RESPONSE"),
    (failure("AuthenticationFailedException"), "XksProxyIncorrectAuthenticationCredentialException",
     "CustomKeyStoreInvalidStateException", "INVALID_CREDENTIALS"),
    (failure("AccessDeniedException"), "XksProxyInvalidResponseException", "KMSInvalidStateException",
     "XKS_PROXY_ACCESS_DENIED"),
    (failure("KeyNotFoundException"), "XksProxyInvalidResponseException", "XksKeyNotFoundException",
     "XKS_PROXY_INVALID_RESPONSE"),
    (failure("InvalidUriPathException"), "XksProxyInvalidConfigurationException",
     "CustomKeyStoreInvalidStateException", "XKS_PROXY_INVALID_CONFIGURATION"),
    (failure("DependencyTimeoutException"), "XksProxyUriUnreachableException", "CustomKeyStoreInvalidStateException",
     "XKS_PROXY_TIMED_OUT"),
    (failure("ThrottlingException"), "XksProxyUriUnreachableException", "CustomKeyStoreInvalidStateException",
     "XKS_PROXY_NOT_REACHABLE"),
    (failure("InternalException"), "XksProxyInvalidResponseException", "CustomKeyStoreInvalidStateException",
     "XKS_PROXY_INVALID_RESPONSE"),
    (XksCallFailure("unreachable"), "XksProxyUriUnreachableException", "CustomKeyStoreInvalidStateException",
     "XKS_PROXY_NOT_REACHABLE"),
    (XksCallFailure("tls"), "XksProxyUriUnreachableException", "CustomKeyStoreInvalidStateException",
     "XKS_PROXY_INVALID_TLS_CONFIGURATION"),
    (XksCallFailure("timeout"), "XksProxyUriUnreachableException", "CustomKeyStoreInvalidStateException",
     "XKS_PROXY_TIMED_OUT"),
    (XksCallFailure("malformed"), "XksProxyInvalidResponseException", "CustomKeyStoreInvalidStateException",
     "XKS_PROXY_INVALID_RESPONSE"),
])
def test_the_spec_error_mapping(cause: XksCallFailure, store: str, create_key: str, code: str) -> None:
    assert errors.for_key_store(cause).code == store
    assert errors.for_create_key(cause).code == create_key
    crypto = errors.for_crypto(cause)
    assert (crypto.code, crypto.status) == ("KMSInvalidStateException", 400)
    assert errors.connection_error_code(cause) == code
    # One message per failure whatever the operation; never the proxy's own errorMessage.
    assert errors.for_key_store(cause).message == crypto.message == errors.message(cause)


def test_the_default_timeout_is_awss_250_ms() -> None:
    assert DEFAULT_TIMEOUT == 0.25
    assert XksClient().timeout == 0.25


@pytest.fixture
async def server() -> AsyncIterator[Callable[[Handler], Awaitable[XksTarget]]]:
    servers: list[TestServer] = []

    async def start(handler: Handler) -> XksTarget:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        s = TestServer(app, host="127.0.0.1")
        await s.start_server()
        servers.append(s)
        return XksTarget(f"http://127.0.0.1:{s.port}", "/p/kms/xks/v1", AK, SECRET, "us-east-1")
    yield start
    for s in servers:
        await s.close()


async def test_calls_are_signed_as_aws_kms_signs_them(server: Callable[[Handler], Awaitable[XksTarget]]) -> None:
    seen: dict[str, str] = {}

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen["ak"] = verify(request.method, request.path, "", request.headers, body, {AK: SECRET}.get, time.time())
        seen["auth"] = request.headers["Authorization"]
        seen["path"], seen["body"] = request.path, body.decode()
        return web.json_response({"keySpec": "AES_256"})
    target = await server(handler)
    client = XksClient(allow_http=True, timeout=2)
    answer = await client.call(target, "metadata", "k1", {"requestMetadata": {"kmsOperation": "CreateKey"}})
    await client.close()
    assert answer == {"keySpec": "AES_256"} and seen["ak"] == AK and seen["path"] == "/p/kms/xks/v1/keys/k1/metadata"
    assert "/us-east-1/kms-xks-proxy/aws4_request, SignedHeaders=host;x-amz-date," in seen["auth"]
    assert json.loads(seen["body"]) == {"requestMetadata": {"kmsOperation": "CreateKey"}}


@pytest.mark.parametrize(("respond", "kind", "name"), [
    (lambda: web.json_response({"errorName": "KeyNotFoundException"}, status=404), "proxy", "KeyNotFoundException"),
    (lambda: web.json_response({"errorName": "MadeUpException"}, status=400), "malformed", None),
    (lambda: web.Response(text="<html>oops</html>", status=200), "malformed", None),
    (lambda: web.Response(text="[1, 2]", status=200, content_type="application/json"), "malformed", None),
    (lambda: web.Response(status=502), "malformed", None),
])
async def test_answers_that_are_not_the_specs(server: Callable[[Handler], Awaitable[XksTarget]], respond: Callable[
        [], web.Response], kind: str, name: str | None) -> None:
    async def handler(request: web.Request) -> web.Response:
        return respond()
    target = await server(handler)
    client = XksClient(allow_http=True, timeout=2)
    with pytest.raises(XksCallFailure) as info:
        await client.call(target, "health", None, {})
    await client.close()
    assert (info.value.kind, info.value.error_name) == (kind, name)


async def test_a_stalled_proxy_times_out_at_the_bound(server: Callable[[Handler], Awaitable[XksTarget]]) -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({})
    target = await server(handler)
    client = XksClient(allow_http=True)  # 250 ms
    started = time.monotonic()
    with pytest.raises(XksCallFailure) as info:
        await client.call(target, "health", None, {})
    await client.close()
    assert info.value.kind == "timeout" and 0.2 < time.monotonic() - started < 1.5


async def test_nobody_listening_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = XksClient(allow_http=True, timeout=2)
    with pytest.raises(XksCallFailure) as info:
        await client.call(XksTarget(f"http://127.0.0.1:{port}", "/kms/xks/v1", AK, SECRET, "us-east-1"), "health",
                          None, {})
    await client.close()
    assert info.value.kind == "unreachable"


async def test_connections_are_reused(server: Callable[[Handler], Awaitable[XksTarget]]) -> None:
    peers: set[object] = set()

    async def handler(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response({})
    target = await server(handler)
    client = XksClient(allow_http=True, timeout=2)
    for _ in range(5):
        await client.call(target, "health", None, {})
    await client.close()
    assert len(peers) == 1


def test_signatures_fail_when_anything_signed_changes() -> None:
    body = b'{"a": 1}'
    headers = sign("POST", "/kms/xks/v1/health", "proxy:443", body, AK, SECRET, "eu-west-1", 1_800_000_000.0,
                   SigningKeys())
    secrets = {AK: SECRET}.get
    assert verify("POST", "/kms/xks/v1/health", "", headers, body, secrets, 1_800_000_000.0) == AK
    for change in ({"body": b'{"a": 2}'}, {"path": "/kms/xks/v1/keys/x/encrypt"},
                   {"headers": {**headers, "Host": "other:443"}}, {"now": 1_800_000_400.0}):
        with pytest.raises(SignatureRejected):
            verify("POST", str(change.get("path", "/kms/xks/v1/health")), "", change.get("headers", headers),
                   change.get("body", body), secrets, float(change.get("now", 1_800_000_000.0)))
    kms_scoped = dict(headers, Authorization=headers["Authorization"].replace("kms-xks-proxy", "kms"))
    with pytest.raises(SignatureRejected):
        verify("POST", "/kms/xks/v1/health", "", kms_scoped, body, secrets, 1_800_000_000.0)


def test_settings_as_aws_checks_them() -> None:
    assert check_endpoint("https://xks.example.com", False) == "https://xks.example.com"
    assert check_endpoint("https://localhost:8443", False)
    assert check_endpoint("http://localhost:8443", True)
    for bad, allow in (("http://localhost:8443", False), ("https://a/b", True), ("ftp://x", True),
                       ("https://host:99999", True)):
        with pytest.raises(KmsError) as info:
            check_endpoint(bad, allow)
        assert info.value.code == "ValidationException"
    assert check_path("/kms/xks/v1") and check_path("/a/b-c_d/kms/xks/v1")
    for bad in ("/kms/xks/v1/", "kms/xks/v1", "/a//kms/xks/v1", "/a/kms/xks", "/a b/kms/xks/v1"):
        with pytest.raises(KmsError):
            check_path(bad)
    with pytest.raises(KmsError) as info:
        check_connectivity({"XksProxyConnectivity": "VPC_ENDPOINT_SERVICE"}, True)
    assert info.value.code == "UnsupportedOperationException" and "PUBLIC_ENDPOINT" in info.value.message
    made, secret = settings({"XksProxyUriEndpoint": "https://p.example", "XksProxyUriPath": "/kms/xks/v1",
                             "XksProxyConnectivity": "PUBLIC_ENDPOINT",
                             "XksProxyAuthenticationCredential": {"AccessKeyId": AK, "RawSecretAccessKey": SECRET}},
                            False)
    assert (made.access_key_id, secret) == (AK, SECRET) and SECRET not in repr(made)


def test_malformed_xks_blobs_are_invalid_ciphertext() -> None:
    header = bytes(99)
    good = header + bytes((0x58, 12)) + bytes(12) + bytes((0,)) + bytes(16) + b"c" * 20
    assert _parse_outer(good)[4] == b"c" * 20
    for bad in (header + bytes((0x59, 12)) + bytes(60), header + bytes((0x58, 13)) + bytes(60),
                header + bytes((0x58, 12)) + bytes(12) + bytes((21,)) + bytes(60), good[:99 + 2 + 12 + 1 + 16],
                header[:50]):
        with pytest.raises(KmsError) as info:
            _parse_outer(bad)
        assert info.value.code == "InvalidCiphertextException"


def test_cluster_config_keys(tmp_path: Path) -> None:
    path = tmp_path / "trent.toml"
    path.write_text('xks_trusted_ca = "ca.pem"\nxks_allow_http = true\nxks_timeout_ms = 500\n')
    config = load_config(path)
    assert (config.xks_trusted_ca, config.xks_allow_http, config.xks_timeout_ms) == (Path("ca.pem"), True, 500.0)
    assert load_config(None).xks_timeout_ms == 250.0 and load_config(None).xks_allow_http is False
    for bad in ("xks_allow_http = 1\n", "xks_timeout_ms = 0\n", "xks_trusted_ca = 5\n"):
        path.write_text(bad)
        with pytest.raises(ConfigError):
            load_config(path)


async def raw_server(answers: list[bytes], close_after: bool = False) -> tuple[asyncio.Server, XksTarget, list[int]]:
    """A server that reads one request head and body per answer and writes the next canned answer."""
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        while answers:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            writer.write(answers.pop(0))
            await writer.drain()
            if close_after:
                break
        writer.close()
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, XksTarget(f"http://127.0.0.1:{port}", "/kms/xks/v1", AK, SECRET, "us-east-1"), connections


async def test_chunked_answers_and_a_server_that_closes_kept_alive_connections() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n2\r\n1}\r\n0\r\n\r\n")
    plain = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n{\"b\":2}"
    server, target, connections = await raw_server([chunked, plain], close_after=True)
    client = XksClient(allow_http=True, timeout=2)
    assert await client.call(target, "health", None, {}) == {"a": 1}
    await asyncio.sleep(0.05)  # the server has closed the connection the client keeps: it opens another
    assert await client.call(target, "health", None, {}) == {"b": 2}
    await client.close()
    server.close()
    assert len(connections) == 2


@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n{}", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
async def test_answers_that_are_not_http_are_malformed(answer: bytes) -> None:
    server, target, _ = await raw_server([answer])
    client = XksClient(allow_http=True, timeout=2)
    with pytest.raises(XksCallFailure) as info:
        await client.call(target, "health", None, {})
    await client.close()
    server.close()
    assert info.value.kind == "malformed"


async def test_a_connection_dropped_mid_answer_is_unreachable() -> None:
    server, target, _ = await raw_server([b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"a\""], close_after=True)
    client = XksClient(allow_http=True, timeout=2)
    with pytest.raises(XksCallFailure) as info:
        await client.call(target, "health", None, {})
    await client.close()
    server.close()
    assert info.value.kind == "unreachable"


def test_an_external_keys_inner_layer_never_opens_without_the_proxy() -> None:
    """The inner blob (what the proxy is given to encrypt) names the key and its material: alone, it must not
    decrypt, or whoever saw it at the proxy could skip the external key. Nor may a data key pair skip it."""
    from tests.unit.test_service import CTX, K1, make_key, make_region
    from trent.node.crypto.blob import seal
    from trent.node.ops import data_key_pairs, encryption

    region = make_region()
    key = make_key(region, K1)
    key = key.with_changes(origin="EXTERNAL_KEY_STORE", extra={"custom_key_store_id": "cks-0123456789abcdef0",
                                                                "xks_key_id": "foo"})
    region.commit(keys=[key])
    inner = seal(K1, key.current_material().material, b"secret", None)
    for operation, params in ((encryption.decrypt, {"CiphertextBlob": inner}),
                              (encryption.re_encrypt, {"CiphertextBlob": inner, "DestinationKeyId": K1})):
        with pytest.raises(KmsError) as info:
            operation(region, params, CTX)
        assert info.value.code == "InvalidCiphertextException"
    with pytest.raises(KmsError) as info:
        data_key_pairs.generate_data_key_pair(region, {"KeyId": K1, "KeyPairSpec": "ECC_NIST_P256"}, CTX)
    assert info.value.code == "UnsupportedOperationException"


@pytest.mark.parametrize(("answer", "kind"), [
    ({"xksProxyFleetSize": 1, "ekmFleetDetails": [{"id": "a", "model": "m", "healthStatus": "ACTIVE"}]}, None),
    ({"xksProxyFleetSize": 2, "ekmFleetDetails": [{"id": "a", "healthStatus": "UNAVAILABLE"},
                                                  {"id": "b", "healthStatus": "DEGRADED"}]}, None),
    ({"xksProxyFleetSize": 1, "ekmFleetDetails": [{"id": "a", "healthStatus": "UNAVAILABLE"}]}, "unreachable"),
    ({"xksProxyFleetSize": 1, "ekmFleetDetails": []}, "malformed"),
    ({"xksProxyFleetSize": 0, "ekmFleetDetails": [{"healthStatus": "ACTIVE"}]}, "malformed"),
    ({"ekmFleetDetails": [{"healthStatus": "ACTIVE"}] * 11, "xksProxyFleetSize": 1}, "malformed"),
    ({"xksProxyFleetSize": 1}, "malformed"),
])
async def test_the_health_check_reads_the_answer_as_kms_does(
        server: Callable[[Handler], Awaitable[XksTarget]], answer: dict[str, object], kind: str | None) -> None:
    from trent.node.crypto.handles import SecretBytes
    from trent.node.keystores.records import CONNECTED, KeyStoreRecord, XksProxySettings
    from trent.node.xks.stores import XksStores

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(answer)
    target = await server(handler)
    record = KeyStoreRecord("cks-0123456789abcdef0", "s", "", "", SecretBytes(SECRET.encode(), label="t"), 0.0,
                            CONNECTED, xks=XksProxySettings(target.uri_endpoint, target.uri_path, "PUBLIC_ENDPOINT",
                                                            AK))
    xks = XksStores(XksClient(allow_http=True, timeout=2), "us-east-1")
    if kind is None:
        await xks.health_check(record, "ConnectCustomKeyStore")
        assert xks.health[record.store_id].ok
    else:
        with pytest.raises(XksCallFailure) as info:
            await xks.health_check(record, "ConnectCustomKeyStore")
        assert info.value.kind == kind and not xks.health[record.store_id].ok
    await xks.client.close()
