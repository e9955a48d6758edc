"""The gateway: one port for every region, routed by the SigV4 credential scope (the only region signal a
client sends when it is given one endpoint URL)."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from node.endpoint import KmsEndpoint, WireResponse, error_response
from node.model.errors import KmsError
from node.wire.sigv4 import parse_scope


class Gateway:
    def __init__(self, local: Mapping[str, KmsEndpoint]) -> None:
        if not local:
            raise ValueError("a gateway needs at least one region")
        # Regions hosted in this process are called directly: no second HTTP hop.
        self._local = dict(local)

    def route(self, request: web.Request) -> KmsEndpoint | WireResponse:
        authorization = request.headers.get("Authorization")
        if not authorization or not authorization.strip():
            return error_response(KmsError("MissingAuthenticationTokenException", "Missing Authentication Token", 403))
        scope = parse_scope(authorization)
        if scope is None:
            # Not the usual shape: the strict parser either finds the scope anyway or says exactly what is
            # wrong, with the same IncompleteSignatureException a region port gives for this header.
            try:
                scope = next(iter(self._local.values())).verifier.scope_only(request.headers)
            except KmsError as error:
                return error_response(error)
        endpoint = self._local.get(scope.region)
        if endpoint is None:
            return error_response(KmsError(
                "InvalidSignatureException", f"Credential should be scoped to a valid region, not '{scope.region}'.",
                403))
        return endpoint
