"""A region's KMS endpoint with no I/O: a signed request in, a response out.

The aiohttp adapters (node/app.py, cluster/gateway.py) only move bytes; everything KMS happens here, so the
gateway can hand a request to a region in the same process without a second HTTP hop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from trent.node.audit.events import event_id, scrub_message
from trent.node.audit.trail import AuditTrail
from trent.node.auth.authorizer import Authorizer
from trent.node.auth.principals import Principal, PrincipalDirectory
from trent.node.consistency import STALE_ATTEMPTS, Consistency
from trent.node.deferred import Deferred
from trent.node.metrics import NO_OPERATION, SUCCESS, RequestMetrics
from trent.node.model.errors import KmsError, NotReady, internal
from trent.node.model.grants import grant_id_of_token
from trent.node.model.managed import ManagedService
from trent.node.ops.managed import PROVISIONING_OPERATIONS, provision, wanted
from trent.node.ops.registry import Operation, Registry, RequestContext
from trent.node.service import Region
from trent.node.store.base import StoreError
from trent.node.wire.protocol import (
    CONTENT_TYPE,
    MAX_BODY_BYTES,
    encode_error,
    encode_response,
    parse_body,
    parse_target,
    too_large,
    valid_text,
)
from trent.node.wire.sigv4 import SigV4Verifier, parse_scope
from trent.node.wire.validation import RequestDecoder
from trent.node.xks.request_scope import current_request

log = logging.getLogger("trent.endpoint")


@dataclass(slots=True)
class WireRequest:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    remote: str = "127.0.0.1"


@dataclass(slots=True)
class WireResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # Set when the region's store has commits not yet durable (it syncs them in a thread of its own, off the event
    # loop): the adapter sends the response only once this is done (a failure is answered as a store failure).
    durable: Future[None] | None = None
    # Set when the answer waits on work off the event loop: the adapter awaits this for the response itself. Either
    # the operation's own work (a key store's token, node/deferred.py), or slow work it needed first (NotReady: an
    # RSA wrapping key), after which the request runs again (nothing was audited or changed the first time).
    pending: Coroutine[Any, Any, WireResponse] | None = None


@dataclass(slots=True)
class _Call:
    """What is known of a request as it is dispatched: enough to audit it however it ends."""

    request_id: str
    started: float
    principal: Principal | None = None
    operation: Operation | None = None
    params: dict[str, Any] | None = None
    raw: Mapping[str, Any] | None = None  # the body as sent (before validation): to scrub error messages with
    named: list[str] | None = None  # the keys the request named, found before the operation ran
    response: dict[str, Any] | None = None
    deferred: Deferred | None = None  # the operation's answer waits on work off the event loop
    user_agent: str | None = None  # the User-Agent header as sent, once looked up for the operation's context
    admitted: bool = False  # counted against its request quotas (once: not again when it runs again after a wait)


# Decides whether a request may run now (request quotas); raises a KmsError (ThrottlingException) if not.
Admission = Callable[[Region, Principal, str, Mapping[str, Any]], None]

new_request_id = event_id  # the same random UUIDs; a name of its own, without a call more per request


async def _within(deferred: Deferred) -> Any:
    """The work's result, or TimeoutError once its time is up (the work, if it has not started, is cancelled).
    Lighter than asyncio.wait_for, which this is on the path of every key store call."""
    loop = asyncio.get_running_loop()
    waiter = asyncio.wrap_future(deferred.future, loop=loop)
    expired: list[bool] = []

    def expire() -> None:
        expired.append(True)
        waiter.cancel()

    timer = loop.call_later(deferred.timeout, expire)
    try:
        return await waiter
    except asyncio.CancelledError:
        if expired:
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()


def error_response(error: KmsError, request_id: str | None = None) -> WireResponse:
    """A KMS error as the wire carries it; every response names its request."""
    headers = {"x-amzn-RequestId": request_id or new_request_id(), "Content-Type": CONTENT_TYPE}
    return WireResponse(error.status, encode_error(error), headers)


class KmsEndpoint:
    def __init__(
        self,
        region: Region,
        registry: Registry,
        decoder: RequestDecoder,
        verifier: SigV4Verifier,
        *,
        verify_signatures: bool = True,
        anonymous: Principal | None = None,
        principals: PrincipalDirectory | None = None,
        audit: AuditTrail | None = None,
        authorizer: Authorizer | None = None,
        consistency: Consistency | None = None,
        metrics: RequestMetrics | None = None,
        admission: Admission | None = None,
    ) -> None:
        """``consistency``: other processes serve the region too (node/consistency.py): each request first catches
        up with their commits, and an operation that writes runs again when one of them committed first."""
        if not verify_signatures and anonymous is None:
            raise ValueError("an endpoint without signature checks needs a principal to act as")
        self.region = region
        self.registry = registry
        self.decoder = decoder
        self.verifier = verifier
        self.verify_signatures = verify_signatures
        self._anonymous = anonymous
        self._principals = principals
        self.audit = audit
        self.authorizer = authorizer
        self.consistency = consistency
        self.metrics = metrics
        self.admission = admission

    def handle(self, request: WireRequest, started: float | None = None, waits: int = 0,
               admitted: bool = False) -> WireResponse:
        """The answer to ``request``; for a request run again after it waited for work off the event loop
        (NotReady): ``started``, when it first arrived, ``waits``, how often it waited, and ``admitted``, whether it
        was counted against its quotas."""
        call = _Call(new_request_id(), time.perf_counter() if started is None else started, admitted=admitted)
        request_id = call.request_id
        error: KmsError | None = None
        region = self.region
        region.requested_at = call.started
        try:
            body = self._dispatch(request, call)
            if call.deferred is not None:
                return WireResponse(200, b"", pending=self._complete(request, call))
            response = WireResponse(200, body, {"x-amzn-RequestId": request_id, "Content-Type": CONTENT_TYPE})
        except NotReady as exc:
            give_up = exc.give_up
            if give_up is None or waits < STALE_ATTEMPTS - 1:
                return WireResponse(503, b"", pending=self._again(request, exc.ready, call.started, waits + 1,
                                                                  call.admitted))
            log.warning("region %s: %s waited %d times (request %s); answering %s", region.name,
                        call.operation.name if call.operation else "a request", waits, request_id, give_up.code)
            error, response = give_up, error_response(give_up, request_id)
        except Exception as exc:
            error, response = self._failed(exc, request_id)
        finally:
            region.requested_at = None
        return self._conclude(request, call, response, error)

    def _failed(self, exc: Exception, request_id: str) -> tuple[KmsError, WireResponse]:
        """The answer to a request that failed, and the error its audit record and metrics name. Called inside the
        except block (a bug's traceback is logged from there)."""
        if isinstance(exc, KmsError):
            # A copy without the exception itself: its traceback (and that of the error it was raised from) holds
            # the handling frame, a cycle that would keep the request, its parsed body and the answer alive until a
            # full collection, which the tuned collector seldom makes (cluster/heap.py); refused megabyte requests
            # would pile up.
            return KmsError(exc.code, exc.message, exc.status), error_response(exc, request_id)
        if isinstance(exc, StoreError):
            # Nothing was written (the store's contract); the client may retry the 500.
            log.warning("region %s: store failure (request %s): %s", self.region.name, request_id, exc)
        else:
            # A bug: logged with its traceback (never the request body), answered as a retryable 500.
            log.exception("internal error in region %s (request %s)", self.region.name, request_id)
        error = internal()
        return error, error_response(error, request_id)

    def _conclude(self, request: WireRequest, call: _Call, response: WireResponse,
                  error: KmsError | None) -> WireResponse:
        if self.audit is not None and call.principal is not None and call.operation is not None:
            self._audit(request, call, error)
        metrics = self.metrics
        if metrics is not None:
            operation = call.operation
            metrics.observe(NO_OPERATION if operation is None else operation.name,
                            SUCCESS if error is None else error.code, time.perf_counter() - call.started)
        # Whatever the answer rests on (this request's commit, or an earlier one it read) is durable before it goes.
        response.durable = self.region.store.durable()
        return response

    async def _again(self, request: WireRequest, ready: Future[Any], started: float, waits: int,
                     admitted: bool) -> WireResponse:
        """The request run again once the slow work it needed is done (off the event loop)."""
        with contextlib.suppress(Exception):  # a failure shows in the second run, as that operation's own error
            await asyncio.wrap_future(ready)
        return self.handle(request, started, waits, admitted)

    async def _complete(self, request: WireRequest, call: _Call) -> WireResponse:
        """A deferred answer: its work awaited (bounded by its timeout), finished, audited like any other."""
        request_id = call.request_id
        error: KmsError | None = None
        try:
            deferred = call.deferred
            while deferred is not None:
                try:
                    result = await _within(deferred)
                except Exception as exc:
                    raise deferred.failed(exc) from None
                finished = deferred.finish(result)
                if isinstance(finished, Deferred):
                    deferred = finished
                    continue
                call.response, deferred = finished, None
            assert call.response is not None
            body = encode_response(call.response)
            response = WireResponse(200, body, {"x-amzn-RequestId": request_id, "Content-Type": CONTENT_TYPE})
        except Exception as exc:
            error, response = self._failed(exc, request_id)
        return self._conclude(request, call, response, error)

    def _audit(self, request: WireRequest, call: _Call, error: KmsError | None) -> None:
        assert self.audit is not None and call.principal is not None and call.operation is not None
        params = call.params or {}
        if error is not None and error.message and call.raw:
            # A message may quote the request (validation errors do): nothing secret may reach the log that way.
            error = KmsError(error.code, scrub_message(error.message, call.raw), error.status)
        headers = request.headers
        # Header text reaches the record as sent, and a client may send bytes that are not UTF-8.
        self.audit.call(
            operation=call.operation, principal=call.principal, at=self.region.now(), source_ip=request.remote,
            user_agent=agent if (agent := headers.get("User-Agent", "") if call.user_agent is None
                                 else call.user_agent).isascii() else valid_text(agent),
            host=host if (host := headers.get("Host", "")).isascii() else valid_text(host),
            request_id=call.request_id, params=params, response=call.response, error=error,
            resources=self._resources(call), latency_ms=(time.perf_counter() - call.started) * 1000,
        )

    def _resources(self, call: _Call) -> list[str]:
        """The key ARNs a call touched: from its answer when it has one, else the keys its request named (as they
        were found before the operation ran: a retired grant's or a deleted alias's key is still known)."""
        found: list[str] = []
        response = call.response
        if response:
            key_id = response.get("KeyId")
            if (type(key_id) is str and key_id.startswith("arn:") and "SourceKeyId" not in response
                    and "KeyMetadata" not in response and "ReplicaKeyMetadata" not in response):
                return [key_id]  # most answers (every cryptographic call's but ReEncrypt's) name one key so
            for name in ("SourceKeyId", "KeyId"):
                value = response.get(name)
                if type(value) is str and value.startswith("arn:"):
                    found.append(value)
            for name in ("KeyMetadata", "ReplicaKeyMetadata"):
                meta = response.get(name)
                if meta is not None and type(arn := meta.get("Arn")) is str:
                    found.append(arn)
        if not found:
            found = call.named if call.named is not None else self._named_keys(call.params or {})
        return found if len(found) < 2 else list(dict.fromkeys(found))

    def _named_keys(self, params: Mapping[str, Any]) -> list[str]:
        """The keys a request names, in this region: by key id, alias or ARN, by its ciphertext, by a grant token
        or by an alias name (DeleteAlias)."""
        found: list[str] = []
        region = self.region
        if params.get("KeyId", params.get("SourceKeyId")) is None:
            # Decrypt / ReEncrypt without a key id: the ciphertext names its key.
            key = region.key_of_ciphertext(params.get("CiphertextBlob"))
            if key is not None:
                found.append(key.arn)
        token = params.get("GrantToken")
        if isinstance(token, str):
            try:
                grant = region.grants.get(grant_id_of_token(token))
            except KmsError:
                grant = None
            if grant is not None and grant.key_id in region.keys:
                found.append(region.keys[grant.key_id].arn)
        alias_name = params.get("AliasName")
        if isinstance(alias_name, str) and "TargetKeyId" not in params:
            key = region.key_of_alias(alias_name)
            if key is not None:
                found.append(key.arn)
        for name in ("KeyId", "SourceKeyId", "DestinationKeyId", "TargetKeyId"):
            value = params.get(name)
            if isinstance(value, str):
                try:
                    found.append(region.resolve(value, allow_alias=True).arn)
                except KmsError:
                    continue
        return found

    def _dispatch(self, request: WireRequest, call: _Call) -> bytes:
        request_id = call.request_id
        if len(request.body) > MAX_BODY_BYTES:
            raise too_large()
        principal = self._authenticate(request)
        call.principal = principal
        if request.method != "POST" or request.path != "/":
            raise KmsError("UnknownOperationException", "KMS accepts only POST / requests.")
        name = parse_target(request.headers.get("X-Amz-Target") or request.headers.get("x-amz-target"))
        operation = self.registry.get(name)
        if operation is None:
            raise KmsError("UnknownOperationException")
        call.operation = operation
        raw = parse_body(request.body)
        call.raw = raw if type(raw) is dict else None  # what orjson makes of a JSON object
        params = self.decoder.decode(name, raw)
        call.params = params
        if self.audit is not None and operation.consumes_key_name:
            # It deletes what names its key (an alias, a grant): the audit record's key is found before it runs.
            # For every other call the request's keys are found afterwards, and only if the answer names none.
            call.named = self._named_keys(params)
        call.user_agent = user_agent = request.headers.get("User-Agent", "")
        context = RequestContext(request_id, name, principal, request.remote, user_agent, self.authorizer)
        consistency = self.consistency
        if consistency is not None:
            consistency.before_request()
        if self.admission is not None and not call.admitted:
            # Request quotas (--quotas aws): after validation, so a malformed call gets its own error first; after
            # the catch-up, so the key that decides a cryptographic call's quota is found whichever process made it.
            self.admission(self.region, principal, name, params)
            call.admitted = True
        current_request.set(context)  # for the requestMetadata of an XKS proxy call the handler makes
        authorizer, region, handler = self.authorizer, self.region, operation.handler
        if name in PROVISIONING_OPERATIONS and (services := wanted(region, principal, params)):
            self._provision_managed_keys(name, services)
        if authorizer is not None:
            # After validation and key resolution, before the key's state: the order AWS checks in.
            authorizer.check_request(region, principal, operation, params)
        if consistency is None or operation.read_only:
            answer = handler(region, params, context)
        else:
            def authorize_again() -> None:
                # Decided again on the caught-up state: a key policy or grant may have changed.
                if authorizer is not None:
                    authorizer.check_request(region, principal, operation, params)
            answer = consistency.run_write(name, lambda: handler(region, params, context), authorize_again)
        if type(answer) is Deferred:
            call.deferred = answer
            return b""
        assert not isinstance(answer, Deferred)
        call.response = answer
        return encode_response(answer)

    def _provision_managed_keys(self, name: str, services: list[ManagedService]) -> None:
        """An AWS managed key named by its predefined alias (``wanted``: the ones this region does not have yet) is
        created on first use (node/ops/managed.py), before the request is authorized against the key's policy."""
        if self.consistency is None:
            provision(self.region, services)
        else:
            self.consistency.run_write(name, lambda: provision(self.region, services), lambda: None)

    def _authenticate(self, request: WireRequest) -> Principal:
        if not self.verify_signatures:
            return self._unverified_caller(request.headers)
        authorization = request.headers.get("Authorization")
        if authorization is None:  # a plain dict of lower-case names, not aiohttp's case-insensitive headers
            authorization = request.headers.get("authorization")
        if authorization is not None and not authorization.strip():
            # An empty header is no credential at all, as the gateway (and AWS) treat it.
            raise KmsError("MissingAuthenticationTokenException", "Missing Authentication Token", 403)
        caller = self.verifier.verify(
            request.method, request.path, request.query, request.headers, request.body,
            expected_region=self.region.name,
        )
        return caller.principal

    def _unverified_caller(self, headers: Mapping[str, str]) -> Principal:
        """--auth off: no signature is checked, but a credential scope still has to name this region.

        An unsigned request (no Authorization at all, e.g. curl at a region port) acts as the default principal;
        a request whose scope names a known access key acts as that principal, so later policy checks see the
        caller the client claims to be.
        """
        assert self._anonymous is not None
        authorization = headers.get("Authorization") or headers.get("authorization")
        if not authorization or not authorization.strip():
            return self._anonymous
        scope = parse_scope(authorization)
        if scope is None:
            scope = self.verifier.scope_only(headers)  # raises IncompleteSignatureException with the reason
        if scope.region != self.region.name:
            raise KmsError("InvalidSignatureException",
                           f"Credential should be scoped to a valid region, not '{scope.region}'.", 403)
        known = self._principals.lookup(scope.access_key) if self._principals is not None else None
        return known or self._anonymous
