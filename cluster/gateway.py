"""The gateway: one port for every region, routed by the SigV4 credential scope (the only region signal a
client sends when it is given one endpoint URL)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from aiohttp import web

from node.endpoint import KmsEndpoint, WireResponse
from node.model.errors import KmsError
from node.wire.protocol import CONTENT_TYPE, encode_error
from node.wire.sigv4 import parse_scope


class Gateway:
    def __init__(self, local: Mapping[str, KmsEndpoint]) -> None:
        # Regions hosted in this process are called directly: no second HTTP hop.
        self._local = dict(local)

    def route(self, request: web.Request) -> KmsEndpoint | WireResponse:
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return _error(KmsError("MissingAuthenticationTokenException", "Missing Authentication Token", 403))
        scope = parse_scope(authorization)
        if scope is None:
            return _error(KmsError("IncompleteSignatureException",
                                   "Authorization header requires a valid 'Credential' parameter."))
        endpoint = self._local.get(scope.region)
        if endpoint is None:
            return _error(KmsError("InvalidSignatureException",
                                   f"Credential should be scoped to a valid region, not '{scope.region}'.", 403))
        return endpoint


def _error(error: KmsError) -> WireResponse:
    headers = {"Content-Type": CONTENT_TYPE, "x-amzn-RequestId": str(uuid.uuid4())}
    return WireResponse(error.status, encode_error(error), headers)
