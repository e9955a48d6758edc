"""The gateway: one port for every region, routed by the SigV4 credential scope (the only region signal a
client sends when it is given one endpoint URL)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from trent.node.endpoint import KmsEndpoint, WireResponse, error_response
from trent.node.fast_path import KmsRequest
from trent.node.model.errors import KmsError
from trent.node.wire.sigv4 import ScopeRegions, scope_of


class Gateway:
    def __init__(self, local: Mapping[str, KmsEndpoint],
                 create: Callable[[str, str], KmsEndpoint | None] | None = None) -> None:
        # Regions hosted in this process are called directly: no second HTTP hop.
        self._local = dict(local)
        # --any-region: makes a region on its first request, given its name and the access key the request names
        # (None: not made).
        self._create = create
        self._scopes = ScopeRegions()  # the region each Authorization head names

    def route(self, request: KmsRequest) -> KmsEndpoint | WireResponse:
        region = self._scopes.region(request.headers.get("Authorization"))
        if region is None:
            # Absent, blank or not the usual shape: the strict parser either finds the scope anyway or says exactly
            # what is wrong, with the error a region port gives for this header.
            try:
                region = scope_of(request.headers).region
            except KmsError as error:
                return error_response(error)
        endpoint = self._local.get(region)
        if endpoint is None and self._create is not None:
            try:
                endpoint = self._create(region, scope_of(request.headers).access_key)
            except KmsError as error:
                return error_response(error)
            if endpoint is not None:
                self._local[region] = endpoint
        if endpoint is None:
            return error_response(KmsError(
                "InvalidSignatureException", f"Credential should be scoped to a valid region, not '{region}'.", 403))
        return endpoint
