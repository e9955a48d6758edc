"""A region's KMS endpoint with no I/O: a signed request in, a response out.

The aiohttp adapters (node/app.py, cluster/gateway.py) only move bytes; everything KMS happens here, so the
gateway can hand a request to a region in the same process without a second HTTP hop.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from node.auth.principals import Principal
from node.model.errors import KmsError, internal
from node.ops.registry import Registry, RequestContext
from node.service import Region
from node.wire.protocol import CONTENT_TYPE, MAX_BODY_BYTES, encode_error, encode_response, parse_body, parse_target
from node.wire.sigv4 import SigV4Verifier
from node.wire.validation import RequestDecoder

log = logging.getLogger("trent.endpoint")


@dataclass
class WireRequest:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    remote: str = "127.0.0.1"


@dataclass
class WireResponse:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


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
    ) -> None:
        self.region = region
        self.registry = registry
        self.decoder = decoder
        self.verifier = verifier
        self.verify_signatures = verify_signatures
        self._anonymous = anonymous

    def handle(self, request: WireRequest) -> WireResponse:
        request_id = str(uuid.uuid4())
        headers = {"x-amzn-RequestId": request_id, "Content-Type": CONTENT_TYPE}
        try:
            body = self._dispatch(request, request_id)
            return WireResponse(200, body, headers)
        except KmsError as error:
            return WireResponse(error.status, encode_error(error), headers)
        except Exception:
            # A bug: logged with its traceback (never the request body), answered as a retryable 500.
            log.exception("internal error in region %s (request %s)", self.region.name, request_id)
            return WireResponse(500, encode_error(internal()), headers)

    def _dispatch(self, request: WireRequest, request_id: str) -> bytes:
        if len(request.body) > MAX_BODY_BYTES:
            raise KmsError("ValidationException", f"Request body exceeds {MAX_BODY_BYTES} bytes.", 413)
        principal = self._authenticate(request)
        if request.method != "POST" or request.path != "/":
            raise KmsError("UnknownOperationException", "KMS accepts only POST / requests.")
        name = parse_target(request.headers.get("X-Amz-Target") or request.headers.get("x-amz-target"))
        operation = self.registry.get(name)
        if operation is None:
            raise KmsError("UnknownOperationException")
        params = self.decoder.decode(name, parse_body(request.body))
        context = RequestContext(
            request_id=request_id,
            operation=name,
            principal=principal,
            source_ip=request.remote,
            user_agent=request.headers.get("User-Agent", ""),
        )
        return encode_response(operation.handler(self.region, params, context))

    def _authenticate(self, request: WireRequest) -> Principal:
        if self.verify_signatures:
            caller = self.verifier.verify(
                request.method, request.path, request.query, request.headers, request.body,
                expected_region=self.region.name,
            )
            return caller.principal
        scope = self.verifier.scope_only(request.headers)
        if scope.region != self.region.name:
            raise KmsError("InvalidSignatureException",
                           f"Credential should be scoped to a valid region, not '{scope.region}'.", 403)
        assert self._anonymous is not None
        return self._anonymous
