"""The XKS proxy (node/xks/proxy) in process, its keys in a real SoftHSM2 token: every call of the spec with the
shapes, errors and statuses it defines, SigV4 (ours and botocore's signer), faults, and logs without secrets. The
same ground the public curl test client covers (tests/e2e/test_xks_proxy_client.py runs that client too)."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from trent.node.hsm.pool import SessionPool
from trent.node.hsm.softhsm import find_library
from trent.node.xks import proxy_keys
from trent.node.xks.proxy import XksProxy
from trent.node.xks.proxy_config import ProxyConfig, ProxyKey, parse_proxy_config
from trent.node.xks.proxy_faults import FaultFile, ProxyFaults
from trent.node.xks.signing import sign
from trent.node.xks.wire import cdiv

pytestmark = pytest.mark.skipif(find_library() is None, reason="SoftHSM2 is not installed (Debian: softhsm2)")

AK, SECRET = "AKIAXKSPROXYTESTKEY2", "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH"
PREFIX = "tenant/a"
KEYS = (ProxyKey("foo"), ProxyKey("enc_only", ("ENCRYPT",)), ProxyKey("dec_only", ("DECRYPT",)),
        ProxyKey("impotent", ()), ProxyKey("off", enabled=False))
META = {"awsPrincipalArn": "arn:aws:iam::123456789012:user/Alice",
        "kmsKeyArn": "arn:aws:kms:us-east-2:123456789012:/key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "kmsOperation": "Encrypt", "kmsRequestId": "4112f4d6-db54-4af4-ae30-c55a22a8dfae"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SessionPool, str]]:
    pool, label = proxy_keys.open_token(tmp_path_factory.mktemp("xks"), None, 4)
    pool.call(lambda s: proxy_keys.ensure_keys(s, [k.key_id for k in KEYS] + [proxy_keys.HEALTH_KEY]), 60)
    yield pool, label
    pool.close()


class Proxy:
    def __init__(self, server: TestServer, session: ClientSession, faults: FaultFile) -> None:
        self.server, self.session, self.faults = server, session, faults

    async def post(self, path: str, body: Any, *, ak: str = AK, secret: str = SECRET, now: float | None = None,
                   method: str = "POST", raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
        payload = raw if raw is not None else json.dumps(body).encode()
        host = f"127.0.0.1:{self.server.port}"
        headers = sign(method, path, host, payload, ak, secret, "us-east-1", now or time.time())
        headers["Content-Type"] = "application/json"
        async with self.session.request(method, f"http://{host}{path}", data=payload, headers=headers) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, {"raw": text}

    async def call(self, op: str, key: str | None = None, **fields: Any) -> tuple[int, dict[str, Any]]:
        path = f"/{PREFIX}/kms/xks/v1/" + ("health" if op == "health" else f"keys/{key}/{op}")
        return await self.post(path, {"requestMetadata": META, **fields})


@pytest.fixture
async def proxy(token: tuple[SessionPool, str], tmp_path: Path) -> AsyncIterator[Proxy]:
    config = ProxyConfig(uri_prefix=PREFIX, credentials={AK: SECRET}, keys=KEYS)
    faults = FaultFile(tmp_path)
    server = TestServer(XksProxy(config, token[0], token[1], faults=faults).app(), host="127.0.0.1")
    await server.start_server()
    async with ClientSession() as session:
        yield Proxy(server, session, faults)
    await server.close()


async def test_health_reports_a_deep_check_of_the_token(proxy: Proxy) -> None:
    status, body = await proxy.call("health")
    assert status == 200
    assert body["xksProxyFleetSize"] == 1 and body["xksProxyVendor"] and body["ekmVendor"]
    assert body["ekmFleetDetails"][0]["healthStatus"] == "ACTIVE"


async def test_metadata_shows_usage_and_status(proxy: Proxy) -> None:
    assert await proxy.call("metadata", "foo") == (200, {"keySpec": "AES_256", "keyUsage": ["ENCRYPT", "DECRYPT"],
                                                         "keyStatus": "ENABLED"})
    assert (await proxy.call("metadata", "impotent"))[1]["keyUsage"] == []
    assert (await proxy.call("metadata", "off"))[1]["keyStatus"] == "DISABLED"
    assert await proxy.call("metadata", "nope") == (404, {"errorName": "KeyNotFoundException",
                                                          "errorMessage": "no external key nope"})


async def test_encrypt_then_decrypt_with_aad(proxy: Proxy) -> None:
    aad = b"project=nile"
    status, enc = await proxy.call("encrypt", "foo", plaintext=b64(b"Hello World!"), encryptionAlgorithm="AES_GCM",
                                   additionalAuthenticatedData=b64(aad))
    assert status == 200
    assert len(base64.b64decode(enc["ciphertext"])) == 12 and len(base64.b64decode(enc["authenticationTag"])) == 16
    assert len(base64.b64decode(enc["initializationVector"])) == 12
    fields = {k: enc[k] for k in ("ciphertext", "initializationVector", "authenticationTag")}
    assert await proxy.call("decrypt", "foo", encryptionAlgorithm="AES_GCM", additionalAuthenticatedData=b64(aad),
                            **fields) == (200, {"plaintext": b64(b"Hello World!")})
    for wrong in ({}, {"additionalAuthenticatedData": b64(b"project=blue")},
                  {"additionalAuthenticatedData": b64(aad), "ciphertextMetadata": b64(b"v1")}):
        status, body = await proxy.call("decrypt", "foo", encryptionAlgorithm="AES_GCM", **fields, **wrong)
        assert (status, body["errorName"]) == (400, "InvalidCiphertextException")
    flipped = bytearray(base64.b64decode(enc["ciphertext"]))
    flipped[0] ^= 1
    fields["ciphertext"] = b64(bytes(flipped))
    status, body = await proxy.call("decrypt", "foo", encryptionAlgorithm="AES_GCM",
                                    additionalAuthenticatedData=b64(aad), **fields)
    assert (status, body["errorName"]) == (400, "InvalidCiphertextException")


async def test_cdiv_is_the_sha256_of_aad_iv_ciphertext_and_tag(proxy: Proxy) -> None:
    for aad in (b"", b"ctx"):
        extra = {"additionalAuthenticatedData": b64(aad)} if aad else {}
        status, enc = await proxy.call("encrypt", "foo", plaintext=b64(b"x" * 33), encryptionAlgorithm="AES_GCM",
                                       ciphertextDataIntegrityValueAlgorithm="SHA_256", **extra)
        assert status == 200
        raw = {k: base64.b64decode(enc[k]) for k in ("initializationVector", "ciphertext", "authenticationTag")}
        assert base64.b64decode(enc["ciphertextDataIntegrityValue"]) == hashlib.sha256(
            aad + raw["initializationVector"] + raw["ciphertext"] + raw["authenticationTag"]).digest()
    status, body = await proxy.call("encrypt", "foo", plaintext=b64(b"x"), encryptionAlgorithm="AES_GCM",
                                    ciphertextDataIntegrityValueAlgorithm="MD5")
    assert (status, body["errorName"]) == (400, "ValidationException")


def test_cdiv_matches_the_spec_example() -> None:
    aad, meta = b"project=nile,department=marketing", b"key_version=1"
    iv, ct, tag = (base64.b64decode(v) for v in ("HMrlRw85cAJUd5Ax", "ghxkK1txeDNn3q8Y", "vBxN2ncH1oEkR8WVXpmyYQ=="))
    assert b64(cdiv(aad, meta, iv, ct, tag)) == "qHA/ImC9h5HsLRXqCyPmWgYx7tzyoTplzILbP0fPXsc="


async def test_large_plaintext_and_aad_at_the_spec_minimums_and_beyond_the_limits(proxy: Proxy) -> None:
    status, enc = await proxy.call("encrypt", "foo", plaintext=b64(b"p" * 4300), encryptionAlgorithm="AES_GCM",
                                   additionalAuthenticatedData=b64(b"a" * 8192))
    assert status == 200 and len(base64.b64decode(enc["ciphertext"])) == 4300
    status, body = await proxy.call("encrypt", "foo", plaintext=b64(b"p" * 9000), encryptionAlgorithm="AES_GCM")
    assert (status, body["errorName"]) == (501, "UnsupportedOperationException")
    status, body = await proxy.post(f"/{PREFIX}/kms/xks/v1/keys/foo/encrypt", None, raw=b"{" + b" " * 70000 + b"}")
    assert (status, body["errorName"]) == (501, "UnsupportedOperationException")


async def test_key_usage_and_disabled_keys(proxy: Proxy) -> None:
    enc = {"plaintext": b64(b"x"), "encryptionAlgorithm": "AES_GCM"}
    assert (await proxy.call("encrypt", "enc_only", **enc))[0] == 200
    for key in ("dec_only", "impotent"):
        assert (await proxy.call("encrypt", key, **enc))[1]["errorName"] == "InvalidKeyUsageException"
    # A CDIV is promised by decrypting: an encrypt-only key cannot give one.
    status, body = await proxy.call("encrypt", "enc_only", ciphertextDataIntegrityValueAlgorithm="SHA_256", **enc)
    assert (status, body["errorName"]) == (400, "InvalidKeyUsageException")
    _, made = await proxy.call("encrypt", "enc_only", **enc)
    fields = {k: made[k] for k in ("ciphertext", "initializationVector", "authenticationTag")}
    status, body = await proxy.call("decrypt", "enc_only", encryptionAlgorithm="AES_GCM", **fields)
    assert (status, body["errorName"]) == (400, "InvalidKeyUsageException")
    status, body = await proxy.call("encrypt", "off", **enc)
    assert (status, body["errorName"]) == (400, "InvalidStateException")


@pytest.mark.parametrize("fields", [
    {}, {"plaintext": "not base64!!", "encryptionAlgorithm": "AES_GCM"}, {"plaintext": b64(b"x")},
    {"plaintext": b64(b"x"), "encryptionAlgorithm": "AES_CBC"}, {"plaintext": 5, "encryptionAlgorithm": "AES_GCM"},
])
async def test_bad_encrypt_input_is_a_validation_exception(proxy: Proxy, fields: dict[str, Any]) -> None:
    status, body = await proxy.call("encrypt", "foo", **fields)
    assert (status, body["errorName"]) == (400, "ValidationException")


@pytest.mark.parametrize("body", [{}, {"requestMetadata": {}}, {"requestMetadata": "x"}, [1, 2],
                                  {"requestMetadata": {**META, "kmsRequestId": 7}}])
async def test_missing_request_metadata_is_a_validation_exception(proxy: Proxy, body: Any) -> None:
    for path in ("health", "keys/foo/metadata"):
        status, answer = await proxy.post(f"/{PREFIX}/kms/xks/v1/{path}", body)
        assert (status, answer["errorName"]) == (400, "ValidationException")
    for raw in (b"not json", b"[" * 20_000 + b"]" * 20_000, b"\xff\xfe"):
        status, answer = await proxy.post(f"/{PREFIX}/kms/xks/v1/health", None, raw=raw)
        assert (status, answer["errorName"]) == (400, "ValidationException")


async def test_unknown_kms_operations_are_accepted(proxy: Proxy) -> None:
    status, _ = await proxy.post(f"/{PREFIX}/kms/xks/v1/keys/foo/metadata",
                                 {"requestMetadata": {**META, "kmsOperation": "BulkDescribe", "newField": 1}})
    assert status == 200


@pytest.mark.parametrize("path", ["/tenant/b/kms/xks/v1/health", f"/{PREFIX}/kms/xks/v2/health",
                                  f"/{PREFIX}/kms/xks/v1/keys/foo/sign", f"/{PREFIX}/kms/xks/v1/keys/a%20b/encrypt",
                                  "/", f"/{PREFIX}/kms/xks/v1/keys/foo"])
async def test_invalid_uri_paths(proxy: Proxy, path: str) -> None:
    status, body = await proxy.post(path, {"requestMetadata": META})
    assert (status, body["errorName"]) == (404, "InvalidUriPathException")


async def test_only_post_is_allowed(proxy: Proxy) -> None:
    for method in ("GET", "PUT", "DELETE"):
        status, _ = await proxy.post(f"/{PREFIX}/kms/xks/v1/health", {"requestMetadata": META}, method=method)
        assert status == 405
    async with proxy.session.get(f"http://127.0.0.1:{proxy.server.port}/ping") as r:
        assert r.status == 200  # the load balancer's plain health check


async def test_authentication_failures(proxy: Proxy) -> None:
    path = f"/{PREFIX}/kms/xks/v1/health"
    body = {"requestMetadata": META}
    for kwargs in ({"ak": "AKIAUNKNOWNKEY222222"}, {"secret": SECRET[:-1] + "X"}, {"now": time.time() - 400},
                   {"now": time.time() + 400}):
        status, answer = await proxy.post(path, body, **kwargs)
        assert (status, answer["errorName"]) == (401, "AuthenticationFailedException"), kwargs
    assert (await proxy.post(path, body, now=time.time() - 200))[0] == 200  # within the 5-minute window
    async with proxy.session.post(f"http://127.0.0.1:{proxy.server.port}{path}", json=body) as r:
        assert r.status == 401 and (await r.json())["errorName"] == "AuthenticationFailedException"


async def test_a_body_changed_after_signing_fails(proxy: Proxy) -> None:
    host = f"127.0.0.1:{proxy.server.port}"
    path = f"/{PREFIX}/kms/xks/v1/keys/foo/metadata"
    headers = sign("POST", path, host, json.dumps({"requestMetadata": META}).encode(), AK, SECRET, "us-east-1",
                   time.time())
    async with proxy.session.post(f"http://{host}{path}", json={"requestMetadata": {**META, "x": "y"}},
                                  headers=headers) as r:
        assert r.status == 401


async def test_botocore_signatures_verify(proxy: Proxy) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"http://127.0.0.1:{proxy.server.port}/{PREFIX}/kms/xks/v1/keys/foo/metadata"
    request = AWSRequest("POST", url, data=json.dumps({"requestMetadata": META}).encode(),
                         headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(AK, SECRET), "kms-xks-proxy", "eu-west-1").add_auth(request)
    async with proxy.session.post(url, data=request.body, headers=dict(request.headers.items())) as r:
        assert r.status == 200 and (await r.json())["keyStatus"] == "ENABLED"


async def test_faults_garbage_errors_and_reject(proxy: Proxy) -> None:
    proxy.faults.write(ProxyFaults(garbage=True))
    status, body = await proxy.call("health")
    assert status == 200 and "raw" in body
    proxy.faults.write(ProxyFaults(errors_percent=100))
    status, body = await proxy.call("metadata", "foo")
    assert (status, body["errorName"]) == (500, "InternalException")
    proxy.faults.write(ProxyFaults(reject=True))
    assert (await proxy.call("health"))[0] == 401
    proxy.faults.write(ProxyFaults(latency_ms=150))
    started = time.monotonic()
    assert (await proxy.call("health"))[0] == 200
    assert time.monotonic() - started >= 0.15
    proxy.faults.write(ProxyFaults())
    assert (await proxy.call("health"))[0] == 200


async def test_requests_are_logged_without_plaintext(proxy: Proxy, caplog: pytest.LogCaptureFixture) -> None:
    secret_text = b"do-not-log-this-plaintext"
    with caplog.at_level(logging.INFO, logger="trent.xks-proxy"):
        _, enc = await proxy.call("encrypt", "foo", plaintext=b64(secret_text), encryptionAlgorithm="AES_GCM")
        fields = {k: enc[k] for k in ("ciphertext", "initializationVector", "authenticationTag")}
        await proxy.call("decrypt", "foo", encryptionAlgorithm="AES_GCM", **fields)
    text = caplog.text
    assert "Encrypt key=foo status=200" in text and "Decrypt key=foo status=200" in text
    assert META["kmsRequestId"] in text and "latency_ms=" in text
    for secret in (secret_text.decode(), b64(secret_text), SECRET):
        assert secret not in text


def test_config_checks() -> None:
    base = {"credentials": [{"access_key_id": AK, "secret_access_key": SECRET}]}
    config = parse_proxy_config({**base, "uri_prefix": "/a/b/", "keys": [{"id": "k", "usage": []}]})
    assert config.base_path == "/a/b/kms/xks/v1" and config.keys[0].usage == () and config.scheme == "http"
    for bad in ({}, {"credentials": [{"access_key_id": "short", "secret_access_key": SECRET}]},
                {**base, "keys": [{"id": "bad id"}]}, {**base, "keys": [{"id": "k", "usage": ["SIGN"]}]},
                {**base, "keys": [{"id": "k"}, {"id": "k"}]}, {**base, "tls_cert": "a.pem"}, {**base, "port": -1},
                {**base, "uri_prefix": "a b"}, {**base, "pkcs11": {"module": "/x.so"}}, {**base, "colour": 1}):
        with pytest.raises(ValueError) as info:
            parse_proxy_config(bad)
        assert SECRET not in str(info.value)


def test_local_tls_is_made_once(tmp_path: Path) -> None:
    from trent.cluster.xks_proxy import _with_local_tls, tls_context

    base = parse_proxy_config({"credentials": [{"access_key_id": AK, "secret_access_key": SECRET}]})
    first = _with_local_tls(base, tmp_path / "d")
    again = _with_local_tls(base, tmp_path / "d")
    assert first.tls_cert == again.tls_cert and first.scheme == "https"
    assert first.tls_cert is not None and first.tls_key is not None
    assert (first.tls_key.stat().st_mode & 0o077) == 0 and (tmp_path / "d" / "tls" / "ca.crt").exists()
    assert tls_context(first) is not None


def test_fault_actions_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from trent.cluster.cli import main

    faults = ProxyFaults().apply("latency", 0.3).apply("errors", 0.2).apply("down")
    assert faults.describe() == {"down": True, "latency_ms": 300.0, "errors_percent": 20.0, "garbage": False,
                                 "reject": False}
    assert not faults.apply("clear") and faults.apply("up").down is False
    for action, value in (("latency", 700.0), ("errors", 1.5), ("explode", None)):
        with pytest.raises(ValueError):
            ProxyFaults().apply(action, value)
    assert main(["fault", "xks", "latency", "250ms", "--proxy-dir", str(tmp_path)]) == 0
    assert main(["fault", "xks", "garbage", "--proxy-dir", str(tmp_path)]) == 0
    assert FaultFile(tmp_path).refresh() == ProxyFaults(latency_ms=250.0, garbage=True)
    for words in (["latency"], ["errors", "lots"], ["melt"], ["down", "now"]):
        assert main(["fault", "xks", *words, "--proxy-dir", str(tmp_path)]) == 2
    assert main(["fault", "xks", "down", "--proxy-dir", str(tmp_path / "none")]) == 2
    assert main(["fault", "xks", "clear", "--proxy-dir", str(tmp_path)]) == 0
    assert not FaultFile(tmp_path).refresh()


def test_a_listening_fault_waits_for_a_running_proxy_to_act_on_it(tmp_path: Path) -> None:
    import os
    import subprocess
    import threading

    from trent.node.xks.proxy_faults import ListeningFile

    listening = ListeningFile(tmp_path)
    assert listening.wait_for(False, timeout=0.1)  # no proxy runs: nothing to wait on
    dead = subprocess.Popen(["true"])
    dead.wait()
    listening.path.write_text(json.dumps({"pid": dead.pid, "listening": True}))
    assert listening.running_pid() is None and listening.wait_for(False, timeout=0.1)  # a proxy that died
    listening.record(True)  # this process plays the running proxy
    assert listening.running_pid() == os.getpid()
    assert not listening.wait_for(False, timeout=0.2)  # the proxy has not closed its socket yet
    later = threading.Timer(0.1, listening.record, args=(False,))
    later.start()
    try:
        assert listening.wait_for(False, timeout=5)
    finally:
        later.join()
    listening.clear()
    assert not listening.path.exists()
