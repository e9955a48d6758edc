"""External key stores (EXTERNAL_KEY_STORE) in a region: their proxy settings checked as AWS checks them, the health
check Create/Update/ConnectCustomKeyStore make, KMS keys bound to an external key (GetKeyMetadata at CreateKey), and
the double encryption of their data: Trent's own per-key material inside (the TRENT-V1 blob), then the external key
through the proxy outside. Every proxy call is a Deferred the endpoint awaits; failures map as node/xks/errors says.

The ciphertext blob of an XKS key: the TRENT-V1 header (key-store flag, key id, inner material id, random salt and
iv) then ``0x58 || len(iv) || iv || len(metadata) || metadata || tag || outer ciphertext``. The proxy's AAD is the
header and the SHA-256 of the encryption context's canonical encoding, so a wrong context fails at the proxy."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from trent.node.crypto.blob import (
    FLAG_KEY_STORE,
    HEADER_LEN,
    IV_LEN,
    KEY_ID_LEN,
    MARKER,
    SALT_LEN,
    encode_encryption_context,
    open_blob,
    parse_header,
    seal,
)
from trent.node.deferred import Deferred
from trent.node.keystores.records import CONNECTED, EXTERNAL, KeyStoreRecord, XksProxySettings
from trent.node.model.errors import KmsError, invalid_ciphertext, unsupported, validation
from trent.node.model.key import KeyRecord
from trent.node.xks import errors
from trent.node.xks.client import XksCallFailure, XksClient, XksTarget
from trent.node.xks.request_scope import current_request
from trent.node.xks.wire import (
    CDIV_ALGORITHM,
    CIPHERTEXT_METADATA_MAX,
    ENCRYPTION_ALGORITHM,
    IV_LENGTHS,
    TAG_LEN,
    b64,
    cdiv,
)

log = logging.getLogger("trent.xks")
T = TypeVar("T")
XKS_KEY_ID = "xks_key_id"  # KeyRecord.extra: the external key's id in its proxy
PUBLIC, VPC = "PUBLIC_ENDPOINT", "VPC_ENDPOINT_SERVICE"
_ENDPOINT_RE = re.compile(r"(https?)://([A-Za-z0-9.-]+)(?::([0-9]{1,5}))?")
_PATH_RE = re.compile(r"(/[a-zA-Z0-9/_-]+)?/kms/xks/v[0-9]{1,2}")
_FORMAT = 0x58
DEFERRED_SLACK = 5.0  # the endpoint's own bound on a proxy call, beyond the client's timeout (never the one hit)


@dataclass
class Health:
    """The last word on an external store's proxy (for `trent status`)."""

    ok: bool
    checked: float
    detail: str
    latency_ms: float


@dataclass
class XksStores:
    """The XKS side of a region's key store service: the client calling proxies and what it last saw of each."""

    client: XksClient
    region_name: str
    health: dict[str, Health] = field(default_factory=dict)

    def target(self, record: KeyStoreRecord) -> XksTarget:
        assert record.xks is not None
        return XksTarget(record.xks.uri_endpoint, record.xks.uri_path, record.xks.access_key_id,
                         record.password.reveal().decode(), self.region_name)

    def note(self, store_id: str, ok: bool, detail: str, started: float) -> None:
        self.health[store_id] = Health(ok, time.time(), detail, (time.perf_counter() - started) * 1000)

    async def call(self, record: KeyStoreRecord, call: str, key_id: str | None, body: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            answer = await self.client.call(self.target(record), call, key_id, body)
        except XksCallFailure as exc:
            self.note(record.store_id, False, str(exc), started)
            log.warning("region %s: XKS proxy of key store %s: %s %s failed: %s", self.region_name, record.store_id,
                        call, key_id or "", exc)
            raise
        self.note(record.store_id, True, "ok", started)
        return answer

    async def health_check(self, record: KeyStoreRecord, operation: str) -> None:
        """GetHealthStatus as KMS makes it; XksCallFailure unless at least one key manager can serve."""
        answer = await self.call(record, "health", None, {"requestMetadata": {
            "kmsRequestId": _request_id(), "kmsOperation": operation}})
        fleet, size = answer.get("ekmFleetDetails"), answer.get("xksProxyFleetSize")
        if (not isinstance(fleet, list) or not 1 <= len(fleet) <= 10 or not all(isinstance(e, dict) for e in fleet)
                or isinstance(size, bool) or not isinstance(size, int) or size < 1):
            self.health[record.store_id].ok = False
            self.health[record.store_id].detail = "not the spec's GetHealthStatus answer"
            raise XksCallFailure("malformed", detail="ekmFleetDetails or xksProxyFleetSize missing or invalid")
        if not any(e.get("healthStatus") in ("ACTIVE", "DEGRADED") for e in fleet):
            self.health[record.store_id].ok = False
            self.health[record.store_id].detail = "every external key manager is UNAVAILABLE"
            raise XksCallFailure("unreachable", detail="every external key manager is UNAVAILABLE")


def xks_status(record: KeyStoreRecord, xks: XksStores | None) -> dict[str, Any]:
    """What `trent status` shows of an external key store: its proxy and the outcome of the last call to it."""
    assert record.xks is not None
    health = xks.health.get(record.store_id) if xks is not None else None
    return {"type": EXTERNAL, "proxy": record.xks.uri_endpoint + record.xks.uri_path, "health": None if health is None
            else {"ok": health.ok, "detail": health.detail, "latency_ms": round(health.latency_ms, 1),
                  "age_s": round(time.time() - health.checked, 1)}}


async def watch_health(owner: Any, xks: XksStores, interval: float) -> None:
    """The periodic GetHealthStatus AWS makes (kmsOperation KmsHealthCheck) of every connected external store of
    ``owner`` (a KeyStoreService: its ``stores`` by id)."""
    while True:
        await asyncio.sleep(interval)
        for record in list(owner.stores.values()):
            if record.xks is not None and record.state == CONNECTED:
                try:
                    await xks.health_check(record, "KmsHealthCheck")
                except XksCallFailure:
                    pass  # noted in xks.health (and logged) by the call
                except Exception:  # the watch goes on whatever one store's check did
                    log.exception("region %s: health check of key store %s failed", xks.region_name,
                                  record.store_id)


def _request_id() -> str:
    ctx = current_request.get()
    return str(ctx.request_id) if ctx is not None else str(uuid.uuid4())


def _principal_arn() -> str:
    ctx = current_request.get()
    return str(ctx.principal.arn) if ctx is not None else "AWS Internal"


def _operation(default: str) -> str:
    ctx = current_request.get()
    return str(ctx.operation) if ctx is not None else default


def run_async(work: Coroutine[Any, Any, T]) -> Future[T]:
    """``work`` as a task of this (the running) event loop, seen as the concurrent Future a Deferred awaits."""
    future: Future[T] = Future()
    future.set_running_or_notify_cancel()

    def done(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            future.set_exception(TimeoutError())
        elif (exc := task.exception()) is not None:
            future.set_exception(exc)
        else:
            future.set_result(task.result())
    asyncio.get_running_loop().create_task(work).add_done_callback(done)
    return future


def deferred(work: Coroutine[Any, Any, T], finish: Callable[[T], Any], failure: Callable[[XksCallFailure], KmsError],
             client: XksClient) -> Deferred:
    def failed(exc: BaseException) -> KmsError:
        if isinstance(exc, KmsError):
            return exc
        if isinstance(exc, XksCallFailure):
            return failure(exc)
        if isinstance(exc, TimeoutError):
            return failure(XksCallFailure("timeout"))
        log.error("XKS call failed unexpectedly: %s", type(exc).__name__)
        return KmsError("KMSInternalException", "An internal error occurred.", 500)
    return Deferred(run_async(work), finish, failed, client.timeout * 4 + DEFERRED_SLACK)


# -- the key store's settings ----------------------------------------------------------------------------------

def check_endpoint(endpoint: str, allow_http: bool) -> str:
    m = _ENDPOINT_RE.fullmatch(endpoint)
    if m is None or len(endpoint) > 128:
        raise validation("XksProxyUriEndpoint must be https:// followed by a host name (and optionally :port), at "
                         "most 128 characters.")
    if m[1] == "http" and not allow_http:
        raise validation("XksProxyUriEndpoint must begin with https://. (Plain HTTP is allowed only where the cluster "
                         "sets xks_allow_http = true.)")
    if m[3] is not None and not 0 < int(m[3]) < 65536:
        raise validation("The port of XksProxyUriEndpoint must be between 1 and 65535.")
    return endpoint


def check_path(path: str) -> str:
    if _PATH_RE.fullmatch(path) is None or len(path) > 128 or "//" in path:
        raise validation("XksProxyUriPath must be /kms/xks/v1 or /{prefix}/kms/xks/v1, with letters, digits, '/', '-' "
                         "and '_' only, at most 128 characters.")
    return path


def check_connectivity(params: Mapping[str, Any], required: bool) -> str | None:
    connectivity = params.get("XksProxyConnectivity")
    if connectivity is None:
        if required:
            raise validation("XksProxyConnectivity must be specified for a custom key store of type "
                             f"{EXTERNAL}.")
        return None
    if connectivity == VPC or params.get("XksProxyVpcEndpointServiceName") is not None:
        raise unsupported("XksProxyConnectivity VPC_ENDPOINT_SERVICE is not supported by this cluster: it has no "
                          "Amazon VPC endpoint services to reach a proxy through. Use PUBLIC_ENDPOINT.")
    return str(connectivity)


def credential(params: Mapping[str, Any]) -> tuple[str, str] | None:
    cred = params.get("XksProxyAuthenticationCredential")
    if cred is None:
        return None
    return str(cred["AccessKeyId"]), str(cred["RawSecretAccessKey"])


def check_unique_uri(stores: Mapping[str, KeyStoreRecord], endpoint: str, path: str, exclude: str | None) -> None:
    for other in stores.values():
        if other.store_id == exclude or other.xks is None:
            continue
        if other.xks.uri_endpoint == endpoint and other.xks.uri_path == path:
            raise KmsError("XksProxyUriInUseException",
                           f"The XksProxyUriEndpoint {endpoint} and XksProxyUriPath {path} are already associated "
                           f"with custom key store {other.store_id}. Each external key store in an account and "
                           "Region must use a unique external key store proxy API address.")


def settings(params: Mapping[str, Any], allow_http: bool) -> tuple[XksProxySettings, str]:
    """The settings and secret access key of a new external key store (ValidationException for what is missing)."""
    missing = [m for m in ("XksProxyUriEndpoint", "XksProxyUriPath", "XksProxyAuthenticationCredential")
               if params.get(m) is None]
    if missing:
        raise validation(f"{', '.join(missing)} must be specified for a custom key store of type {EXTERNAL}.")
    extra = [m for m in ("CloudHsmClusterId", "TrustAnchorCertificate", "KeyStorePassword") if m in params]
    if extra:
        raise validation(f"{', '.join(extra)} is not valid for a custom key store of type {EXTERNAL}.")
    connectivity = check_connectivity(params, required=True)
    assert connectivity is not None
    cred = credential(params)
    assert cred is not None
    return XksProxySettings(check_endpoint(params["XksProxyUriEndpoint"], allow_http),
                            check_path(params["XksProxyUriPath"]), connectivity, cred[0]), cred[1]


def entry(record: KeyStoreRecord) -> dict[str, Any]:
    assert record.xks is not None
    out: dict[str, Any] = {
        "CustomKeyStoreId": record.store_id, "CustomKeyStoreName": record.name, "ConnectionState": record.state,
        "CreationDate": record.created, "CustomKeyStoreType": EXTERNAL,
        "XksProxyConfiguration": {"Connectivity": record.xks.connectivity, "AccessKeyId": record.xks.access_key_id,
                                  "UriEndpoint": record.xks.uri_endpoint, "UriPath": record.xks.uri_path}}
    if record.error_code and record.state == "FAILED":
        out["ConnectionErrorCode"] = record.error_code
    return out


def checked_then(xks: XksStores, record: KeyStoreRecord, operation: str, finish: Callable[[None], Any]) -> Deferred:
    """The health check ``operation`` (Create/UpdateCustomKeyStore) makes before ``finish`` commits."""
    return deferred(xks.health_check(record, operation), finish, errors.for_key_store, xks.client)


# -- keys ------------------------------------------------------------------------------------------------------

def xks_key_id(key: KeyRecord) -> str:
    return str(key.extra[XKS_KEY_ID])


def create_key(xks: XksStores, record: KeyStoreRecord, external_id: str, keys_in_store: list[KeyRecord],
               finish: Callable[[None], Any]) -> Deferred:
    """GetKeyMetadata (kmsOperation CreateKey) decides whether the external key may back a KMS key."""
    if record.state != CONNECTED:
        raise KmsError("CustomKeyStoreInvalidStateException",
                       f"Custom key store {record.store_id} is {record.state}: KMS keys can be created only in a "
                       "CONNECTED custom key store.")
    for other in keys_in_store:
        if other.extra.get(XKS_KEY_ID) == external_id:
            raise KmsError("XksKeyAlreadyInUseException",
                           f"The external key {external_id} is already associated with KMS key {other.arn} in this "
                           "external key store. Each KMS key in an external key store must use a different "
                           "external key.")

    async def check() -> None:
        answer = await xks.call(record, "metadata", external_id, {"requestMetadata": {
            "awsPrincipalArn": _principal_arn(), "kmsOperation": _operation("CreateKey"),
            "kmsRequestId": _request_id()}})
        spec, usage, status = answer.get("keySpec"), answer.get("keyUsage"), answer.get("keyStatus")
        if not isinstance(spec, str) or not isinstance(usage, list) or not isinstance(status, str) or len(usage) > 10:
            raise XksCallFailure("malformed", detail="GetKeyMetadata answer lacks keySpec, keyUsage or keyStatus")
        problems = []
        if spec != "AES_256":
            problems.append(f"its key spec is {spec[:32]}, not AES_256")
        if "ENCRYPT" not in usage or "DECRYPT" not in usage:
            problems.append("its key usage does not include both ENCRYPT and DECRYPT")
        if status != "ENABLED":
            problems.append(f"its status is {status[:32]}, not ENABLED")
        if problems:
            raise KmsError("XksKeyInvalidConfigurationException",
                           f"The external key {external_id} cannot back a KMS key: {'; '.join(problems)}.")
    return deferred(check(), finish, errors.for_create_key, xks.client)


def _header(key: KeyRecord) -> bytes:
    return (bytes((MARKER, FLAG_KEY_STORE, KEY_ID_LEN)) + key.key_id.encode("ascii") + key.current_material_id
            + os.urandom(SALT_LEN + IV_LEN))


def _proxy_aad(header: bytes, context: Mapping[str, str] | None) -> bytes:
    return header + hashlib.sha256(encode_encryption_context(context)).digest()


def _field(answer: Mapping[str, Any], name: str, required: bool = True) -> bytes | None:
    value = answer.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise XksCallFailure("malformed", detail=f"{name} missing")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise XksCallFailure("malformed", detail=f"{name} is not Base64") from None


async def _outer_seal(xks: XksStores, record: KeyStoreRecord, key: KeyRecord, inner: bytes,
                      context: Mapping[str, str] | None, integrity: bool) -> bytes:
    """The proxy's encryption of ``inner``; with ``integrity`` (a data key, whose plaintext the caller may throw away
    at once) the proxy is asked for the ciphertext data integrity value too, and it is checked."""
    header = _header(key)
    aad = _proxy_aad(header, context)
    body: dict[str, Any] = {
        "requestMetadata": {"awsPrincipalArn": _principal_arn(), "kmsKeyArn": key.arn,
                            "kmsOperation": _operation("Encrypt"), "kmsRequestId": _request_id()},
        "additionalAuthenticatedData": b64(aad), "plaintext": b64(inner), "encryptionAlgorithm": ENCRYPTION_ALGORITHM}
    if integrity:
        body["ciphertextDataIntegrityValueAlgorithm"] = CDIV_ALGORITHM
    answer = await xks.call(record, "encrypt", xks_key_id(key), body)
    ciphertext, iv, tag = _field(answer, "ciphertext"), _field(answer, "initializationVector"), _field(
        answer, "authenticationTag")
    metadata = _field(answer, "ciphertextMetadata", False)
    assert ciphertext is not None and iv is not None and tag is not None
    if (len(ciphertext) != len(inner) or len(iv) not in IV_LENGTHS or len(tag) != TAG_LEN
            or (metadata is not None and len(metadata) > CIPHERTEXT_METADATA_MAX)):
        raise XksCallFailure("malformed", detail="encrypt answer has fields of the wrong size")
    if integrity and _field(answer, "ciphertextDataIntegrityValue") != cdiv(aad, metadata, iv, ciphertext, tag):
        raise XksCallFailure("malformed", detail="ciphertextDataIntegrityValue is missing or does not match")
    meta = metadata or b""
    return header + bytes((_FORMAT, len(iv))) + iv + bytes((len(meta),)) + meta + tag + ciphertext


def _parse_outer(blob: bytes) -> tuple[bytes, bytes, bytes | None, bytes, bytes]:
    """(header, iv, metadata, tag, outer ciphertext); InvalidCiphertextException for anything else."""
    try:
        header = blob[:HEADER_LEN]
        at = HEADER_LEN
        if blob[at] != _FORMAT:
            raise invalid_ciphertext()
        iv_len = blob[at + 1]
        if iv_len not in IV_LENGTHS:
            raise invalid_ciphertext()
        iv = blob[at + 2:at + 2 + iv_len]
        at += 2 + iv_len
        meta_len = blob[at]
        if meta_len > CIPHERTEXT_METADATA_MAX:
            raise invalid_ciphertext()
        metadata = blob[at + 1:at + 1 + meta_len] or None
        at += 1 + meta_len
        tag, ciphertext = blob[at:at + TAG_LEN], blob[at + TAG_LEN:]
    except IndexError:
        raise invalid_ciphertext() from None
    if len(iv) != iv_len or len(tag) != TAG_LEN or not ciphertext:
        raise invalid_ciphertext()
    return header, iv, metadata, tag, ciphertext


def encrypt(xks: XksStores, record: KeyStoreRecord, key: KeyRecord, plaintext: bytes,
            context: Mapping[str, str] | None, finish: Callable[[bytes], Any]) -> Deferred:
    version = key.current_material()
    inner = seal(key.key_id, version.material, plaintext, context)
    return deferred(_outer_seal(xks, record, key, inner, context, False), finish, errors.for_crypto, xks.client)


def data_key(xks: XksStores, record: KeyStoreRecord, key: KeyRecord, length: int,
             context: Mapping[str, str] | None, finish: Callable[[tuple[bytes, bytes]], Any]) -> Deferred:
    plaintext = os.urandom(length)
    inner = seal(key.key_id, key.current_material().material, plaintext, context)

    async def work() -> tuple[bytes, bytes]:
        return plaintext, await _outer_seal(xks, record, key, inner, context, True)
    return deferred(work(), finish, errors.for_crypto, xks.client)


def decrypt(xks: XksStores, record: KeyStoreRecord, key: KeyRecord, blob: bytes,
            context: Mapping[str, str] | None, finish: Callable[[bytes], Any]) -> Deferred:
    header = parse_header(blob)
    if header.key_id != key.key_id or key.material(header.material_id) is None:
        raise invalid_ciphertext()
    head, iv, metadata, tag, ciphertext = _parse_outer(blob)
    version = key.material(header.material_id)
    assert version is not None

    async def work() -> bytes:
        body: dict[str, Any] = {
            "requestMetadata": {"awsPrincipalArn": _principal_arn(), "kmsKeyArn": key.arn,
                                "kmsOperation": _operation("Decrypt"), "kmsRequestId": _request_id()},
            "additionalAuthenticatedData": b64(_proxy_aad(head, context)), "ciphertext": b64(ciphertext),
            "initializationVector": b64(iv), "authenticationTag": b64(tag),
            "encryptionAlgorithm": ENCRYPTION_ALGORITHM}
        if metadata is not None:
            body["ciphertextMetadata"] = b64(metadata)
        answer = await xks.call(record, "decrypt", xks_key_id(key), body)
        inner = _field(answer, "plaintext")
        assert inner is not None
        try:
            return open_blob(inner, version.material, context)
        except KmsError:
            raise KmsError("KMSInvalidStateException", errors.BAD_INNER_CIPHERTEXT) from None
    return deferred(work(), finish, errors.for_crypto, xks.client)
