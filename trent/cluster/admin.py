"""The admin surface under /_trent/ (health, status, clock). Needs the cluster's admin token, never KMS credentials."""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from trent.cluster.durations import parse_duration
from trent.cluster.links import SIGNATURE_HEADER, LinkVerifier

TOKEN_HEADER = "X-Trent-Admin-Token"


class AdminApi:
    def __init__(
        self,
        token: str,
        status: Callable[[], dict[str, Any]],
        clock_state: Callable[[], dict[str, Any]],
        advance_clock: Callable[[float], dict[str, Any]],
        fault_action: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
        identity: dict[str, Any] | None = None,
        reports: Mapping[str, Callable[[Mapping[str, str]], Awaitable[dict[str, Any]]]] | None = None,
        reset: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
        signed: LinkVerifier | None = None,
        signed_for: str | None = None,
    ) -> None:
        """``reports``: further read-only answers, GET /_trent/<name> with the query string as their parameters
        (compliance, cost); a ValueError they raise is a 400."""
        self._token = token
        # A node also takes calls signed with the admin token (the gateway's, cluster/links.py): the token itself
        # then never crosses the network between hosts.
        self._signed = signed
        # The region a signed call must name (in its signed query): one captured on its way to another node of the
        # cluster cannot be replayed here.
        self._signed_for = signed_for
        self._status = status
        self._clock_state = clock_state
        self._advance = advance_clock
        self._fault_action = fault_action
        self._reset = reset  # `trent reset` (cluster/reset.py)
        # Which process answers (several may serve one port): in the health answer, for the token's holders only
        # (a process id is nobody else's business).
        self._identity = identity or {}
        self._reports = dict(reports or {})

    def routes(self) -> list[web.RouteDef]:
        return [
            health_route(self._token, self._identity),
            web.get("/_trent/status", self._guard(self._get_status)),
            web.get("/_trent/clock", self._guard(self._get_clock)),
            web.post("/_trent/clock", self._guard(self._post_clock)),
            web.post("/_trent/faults", self._guard(self._post_faults)),
            *(web.get(f"/_trent/{name}", self._guard(_report_handler(report)))
              for name, report in self._reports.items()),
            web.post("/_trent/reset", self._guard(self._post_reset)),
        ]

    def _authorized(self, request: web.Request) -> bool:
        return _authorized(request, self._token)

    def _guard(self, fn: Callable[[web.Request], Any]) -> Callable[[web.Request], Any]:
        async def guarded(request: web.Request) -> web.Response:
            if not self._authorized(request) and not await self._signed_by_peer(request):
                return _json({"error": "admin token required"}, 403)
            result: web.Response = await fn(request)
            return result
        return guarded

    async def _signed_by_peer(self, request: web.Request) -> bool:
        header = request.headers.get(SIGNATURE_HEADER)
        if self._signed is None or header is None or request.query.get("region") != self._signed_for:
            return False
        return self._signed.verify(request.method, request.path, request.query.items(), header,
                                   await request.read())

    async def _post_faults(self, request: web.Request) -> web.Response:
        return await _post_faults_impl(self._fault_action, request)

    async def _post_reset(self, request: web.Request) -> web.Response:
        if self._reset is None:
            return _json({"error": "reset is not available here"}, 404)
        return await _post_faults_impl(self._reset, request)  # the same JSON-object body handling

    async def _get_status(self, request: web.Request) -> web.Response:
        return _json(self._status())

    async def _get_clock(self, request: web.Request) -> web.Response:
        return _json(self._clock_state())

    async def _post_clock(self, request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.read() or b"{}")
            advance = doc.get("advance")
            seconds = parse_duration(str(advance)) if advance is not None else 0.0
            if seconds < 0:
                raise ValueError("the clock only moves forward")
        except (ValueError, AttributeError) as exc:
            return _json({"error": str(exc)}, 400)
        except RecursionError:  # JSON nested deeper than the parser goes
            return _json({"error": "the JSON body is nested too deeply"}, 400)
        return _json(self._advance(seconds))


def _report_handler(report: Callable[[Mapping[str, str]], Awaitable[dict[str, Any]]]
                    ) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        try:
            return _json(await report(dict(request.query)))
        except ValueError as exc:
            return _json({"error": str(exc)}, 400)
    return handle


def health_route(token: str, identity: dict[str, Any]) -> web.RouteDef:
    """Liveness for anyone (load balancers, the harness); which process answered only with the token."""
    async def health(request: web.Request) -> web.Response:
        if _authorized(request, token):
            return _json({"status": "ok", **identity})
        return _json({"status": "ok"})
    return web.get("/_trent/health", health)


def _authorized(request: web.Request, token: str) -> bool:
    # surrogateescape: a header that is not UTF-8 (aiohttp keeps its bytes that way) is a wrong token, not a 500.
    return hmac.compare_digest(request.headers.get(TOKEN_HEADER, "").encode("utf-8", "surrogateescape"),
                               token.encode())


async def _post_faults_impl(action: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]] | None,
                            request: web.Request) -> web.Response:
    if action is None:
        return _json({"error": "fault injection is not available here"}, 404)
    try:
        doc = json.loads(await request.read() or b"{}")
        if not isinstance(doc, dict):
            raise ValueError("a JSON object is expected")
        return _json(await action(doc))
    except (ValueError, TypeError, KeyError) as exc:
        return _json({"error": str(exc)}, 400)
    except RecursionError:  # JSON nested deeper than the parser goes
        return _json({"error": "the JSON body is nested too deeply"}, 400)


def _json(doc: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(doc, status=status)
