"""The XKS proxy's HTTP API (aiohttp): every request is matched to one of the four calls, authenticated (SigV4,
service kms-xks-proxy), validated as the specification asks and answered from the token; failures carry the spec's
errorName and status. Each request is logged with its call, key, status, latency and kmsRequestId; never a
plaintext, a key or a secret."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import pkcs11
from aiohttp import web

from trent.node.hsm.pool import HsmError, SessionPool
from trent.node.xks import proxy_keys
from trent.node.xks.proxy_config import ProxyConfig, ProxyKey
from trent.node.xks.proxy_faults import FaultFile, ProxyFaults
from trent.node.xks.signing import SignatureRejected, SigningKeys, verify
from trent.node.xks.wire import (
    AAD_MAX,
    BODY_MAX,
    CDIV_ALGORITHM,
    CIPHERTEXT_METADATA_MAX,
    ENCRYPTION_ALGORITHM,
    IV_LENGTHS,
    KEY_ID_RE,
    OPERATION_NAMES,
    PLAINTEXT_MAX,
    TAG_LEN,
    XksError,
    b64,
    b64_field,
    cdiv,
    check_request_metadata,
    gcm_aad,
    validation,
)

log = logging.getLogger("trent.xks-proxy")
T = TypeVar("T")
VENDOR = "Trent"
MODEL = "Trent XKS Proxy 1.0"
TOKEN_TIMEOUT = 5.0  # a token call that takes longer is DependencyTimeoutException
LB_HEALTH_PATH = "/ping"  # for load balancers: a plain GET, no signature


class XksProxy:
    def __init__(self, config: ProxyConfig, pool: SessionPool, token_label: str, *,
                 now: Callable[[], float] = time.time, faults: FaultFile | None = None,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.pool = pool
        self.token_label = token_label
        self.now = now
        self.faults = faults
        self.rng = rng or random.Random()
        self._base = config.base_path
        self._ekm: tuple[str, str] | None = None
        self._handles = proxy_keys.KeyHandles()
        self._signing_keys = SigningKeys()

    def app(self) -> web.Application:
        app = web.Application(client_max_size=BODY_MAX)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    def current_faults(self) -> ProxyFaults:
        return self.faults.refresh() if self.faults is not None else ProxyFaults()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        seen: dict[str, Any] = {"call": "-", "key": "-", "meta": {}}
        try:
            response = await self._answer(request, seen)
        except XksError as exc:
            response = web.json_response(exc.body(), status=exc.status)
        except Exception:
            log.exception("unexpected failure")
            response = web.json_response(XksError("InternalException", "internal error").body(), status=500)
        meta = seen["meta"]
        log.info("%s key=%s status=%s latency_ms=%.1f kmsRequestId=%s kmsOperation=%s principal=%s",
                 OPERATION_NAMES.get(seen["call"], f"{request.method} {request.path[:80]}"), seen["key"],
                 response.status, (time.perf_counter() - started) * 1000, meta.get("kmsRequestId", "-"),
                 meta.get("kmsOperation", "-"), meta.get("awsPrincipalArn", "-"))
        return response

    async def _answer(self, request: web.Request, seen: dict[str, Any]) -> web.StreamResponse:
        if request.path == LB_HEALTH_PATH and request.method in ("GET", "HEAD"):
            return web.json_response({"status": "ok"})
        call, key_id = self._route(request.path)
        seen["call"], seen["key"] = call, key_id
        faults = self.current_faults()
        if faults.down:  # a connection kept alive from before: dropped, as a proxy that went away drops it
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=503)
        if faults.latency_ms > 0:
            await asyncio.sleep(faults.latency_ms / 1000)
        if request.method != "POST":
            return web.json_response({"errorName": "ValidationException",
                                      "errorMessage": "the XKS proxy API accepts POST only"},
                                     status=405, headers={"Allow": "POST"})
        try:
            body_bytes = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise XksError("UnsupportedOperationException",
                           f"the request body is larger than {BODY_MAX} bytes") from None
        self._authenticate(request, body_bytes, faults)
        if faults.errors_percent > 0 and self.rng.random() * 100 < faults.errors_percent:
            raise XksError("InternalException", "the external key manager failed the request (injected)")
        if faults.garbage:
            return web.Response(status=200, text="<html>upstream sent garbage</html>", content_type="text/html")
        body = _json_body(body_bytes)
        seen["meta"] = check_request_metadata(body, call)
        return web.json_response(await self._dispatch(call, key_id, body))

    def _route(self, path: str) -> tuple[str, str]:
        """(call, key id) of a path under the proxy's base path; InvalidUriPathException otherwise."""
        if not path.startswith(self._base + "/"):
            raise XksError("InvalidUriPathException", "the URI path is not valid for this proxy")
        rest = path[len(self._base) + 1:]
        if rest == "health":
            return "health", "-"
        parts = rest.split("/")
        if len(parts) == 3 and parts[0] == "keys" and parts[2] in ("metadata", "encrypt", "decrypt"):
            if KEY_ID_RE.fullmatch(parts[1]) is None:
                raise XksError("InvalidUriPathException", "the external key id in the URI path is not valid")
            return parts[2], parts[1]
        raise XksError("InvalidUriPathException", "the URI path is not valid for this proxy")

    def _authenticate(self, request: web.Request, body: bytes, faults: ProxyFaults) -> None:
        try:
            if faults.reject:
                raise SignatureRejected("every signature is refused (injected)")
            verify(request.method, request.raw_path.split("?", 1)[0], request.query_string, request.headers, body,
                   self.config.credentials.get, self.now(), self.config.max_skew_seconds, self._signing_keys)
        except SignatureRejected as exc:
            log.warning("authentication failed: %s", exc)
            raise XksError("AuthenticationFailedException", "the request signature could not be verified") from None

    async def _dispatch(self, call: str, key_id: str, body: dict[str, Any]) -> dict[str, Any]:
        if call == "health":
            return await self._health()
        key = self.config.key(key_id)
        if key is None:
            raise XksError("KeyNotFoundException", f"no external key {key_id}")
        if call == "metadata":
            return {"keySpec": "AES_256", "keyUsage": list(key.usage),
                    "keyStatus": "ENABLED" if key.enabled else "DISABLED"}
        if call == "encrypt":
            return await self._encrypt(key, body)
        return await self._decrypt(key, body)

    async def _token(self, work: Callable[[pkcs11.Session], T]) -> T:
        try:
            future: Future[T] = self.pool.submit(work)
            async with asyncio.timeout(TOKEN_TIMEOUT):  # not wait_for: no task of its own per call
                return await asyncio.wrap_future(future)
        except TimeoutError:
            raise XksError("DependencyTimeoutException", "the key manager did not answer in time") from None
        except HsmError as exc:
            log.warning("token %s: %s", self.token_label, exc)
            raise XksError("InternalException", "the external key manager failed the request") from None

    async def _health(self) -> dict[str, Any]:
        try:
            healthy = await self._token(proxy_keys.health_round_trip)
            if self._ekm is None:
                self._ekm = await self._token(proxy_keys.token_info)
        except XksError:
            healthy = False
        vendor, model = self._ekm or ("PKCS#11", "token")
        return {"xksProxyFleetSize": 1, "xksProxyVendor": VENDOR, "xksProxyModel": MODEL, "ekmVendor": vendor,
                "ekmFleetDetails": [{"id": self.token_label, "model": model,
                                     "healthStatus": "ACTIVE" if healthy else "UNAVAILABLE"}]}

    @staticmethod
    def _usable(key: ProxyKey, usage: str) -> None:
        if not key.enabled:
            raise XksError("InvalidStateException", f"external key {key.key_id} is disabled")
        if usage not in key.usage:
            raise XksError("InvalidKeyUsageException", f"external key {key.key_id} does not allow {usage}")

    async def _encrypt(self, key: ProxyKey, body: dict[str, Any]) -> dict[str, Any]:
        plaintext = b64_field(body, "plaintext", required=True, max_len=PLAINTEXT_MAX)
        aad = b64_field(body, "additionalAuthenticatedData", required=False, max_len=AAD_MAX)
        _algorithm(body)
        cdiv_algorithm = body.get("ciphertextDataIntegrityValueAlgorithm")
        if cdiv_algorithm is not None and cdiv_algorithm != CDIV_ALGORITHM:
            raise validation(f"ciphertextDataIntegrityValueAlgorithm must be {CDIV_ALGORITHM}")
        assert plaintext is not None
        self._usable(key, "ENCRYPT")
        if cdiv_algorithm is not None:
            self._usable(key, "DECRYPT")  # the CDIV promise is checked by decrypting (the spec's Appendix C)
        token_aad = gcm_aad(aad, None)
        iv, ciphertext, tag = await self._token(
            lambda s: proxy_keys.encrypt(s, key.key_id, plaintext, token_aad, self._handles))
        out: dict[str, Any] = {"ciphertext": b64(ciphertext), "initializationVector": b64(iv),
                               "authenticationTag": b64(tag)}
        if cdiv_algorithm is not None:
            # Computed before the check decryption: a corruption after it would otherwise go unseen.
            out["ciphertextDataIntegrityValue"] = b64(cdiv(aad, None, iv, ciphertext, tag))
            try:
                back = await self._token(lambda s: proxy_keys.decrypt(s, key.key_id, iv, ciphertext, tag, token_aad,
                                                                      self._handles))
            except proxy_keys.BadCiphertext:
                back = None
            if back != plaintext:
                raise XksError("InternalException", "the encryption could not be verified")
        return out

    async def _decrypt(self, key: ProxyKey, body: dict[str, Any]) -> dict[str, Any]:
        ciphertext = b64_field(body, "ciphertext", required=True, max_len=PLAINTEXT_MAX)
        iv = b64_field(body, "initializationVector", required=True, max_len=16, too_long="InvalidCiphertextException")
        tag = b64_field(body, "authenticationTag", required=True, max_len=TAG_LEN,
                        too_long="InvalidCiphertextException")
        aad = b64_field(body, "additionalAuthenticatedData", required=False, max_len=AAD_MAX)
        metadata = b64_field(body, "ciphertextMetadata", required=False, max_len=CIPHERTEXT_METADATA_MAX,
                             too_long="ValidationException")
        _algorithm(body)
        assert ciphertext is not None and iv is not None and tag is not None
        self._usable(key, "DECRYPT")
        if len(iv) not in IV_LENGTHS or len(tag) != TAG_LEN:
            raise XksError("InvalidCiphertextException", "the initialization vector or tag has the wrong length")
        token_aad = gcm_aad(aad, metadata)
        try:
            plaintext = await self._token(
                lambda s: proxy_keys.decrypt(s, key.key_id, iv, ciphertext, tag, token_aad, self._handles))
        except proxy_keys.BadCiphertext:
            raise XksError("InvalidCiphertextException", "the ciphertext, initialization vector, additional "
                           "authenticated data or tag is not valid") from None
        return {"plaintext": b64(plaintext)}


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise validation("the request body is not JSON") from None
    if not isinstance(body, dict):
        raise validation("the request body must be a JSON object")
    return body


def _algorithm(body: dict[str, Any]) -> None:
    algorithm = body.get("encryptionAlgorithm")
    if algorithm is None:
        raise validation("encryptionAlgorithm is required")
    if algorithm != ENCRYPTION_ALGORITHM:
        raise validation(f"encryptionAlgorithm must be {ENCRYPTION_ALGORITHM}")

