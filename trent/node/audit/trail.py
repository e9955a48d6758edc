"""A region's audit trail: one CloudTrail-shaped record per KMS call (allowed or denied) and per background
event, plus the per-key last-usage view GetKeyLastUsage answers from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from trent.node.audit.events import CallLineEncoder, event_id, parse_cloudtrail_time, service_event
from trent.node.audit.sink import AuditSink, read_events
from trent.node.auth.principals import Principal
from trent.node.model.errors import KmsError
from trent.node.model.operations import Operation


class KeyUsage(NamedTuple):
    operation: str
    at: float
    event_id: str
    request_id: str


class AuditTrail:
    def __init__(self, region: str, account: str, sink: AuditSink, started: float, *,
                 usage_tracked: frozenset[str]) -> None:
        """``usage_tracked``: the operations that count as using a key (GetKeyLastUsage), by name, for the records
        read back from the log (node/ops/tables.py derives them from the declarations; a call being recorded
        carries its own)."""
        self.region = region
        self._usage_tracked = usage_tracked
        self.account = account
        self.sink = sink
        self.tracking_start = started
        self.last_usage: dict[str, KeyUsage] = {}
        self._lines = CallLineEncoder(region, account)
        self._rebuild()

    def _rebuild(self) -> None:
        """Last usage survives restarts: it is read back from the log itself."""
        for event in read_events(self.sink.directory):
            self._track(event)

    def call(  # by name: most of its fields are strings, and a swapped pair would still type-check
        self, *, operation: Operation, principal: Principal, at: float, source_ip: str, user_agent: str, host: str,
        request_id: str, params: Mapping[str, Any], response: Mapping[str, Any] | None, error: KmsError | None,
        resources: list[str], latency_ms: float,
    ) -> None:
        eid = event_id()
        self.sink.emit_line(self._lines.line(
            operation, principal.arn, principal.account, principal.access_key, at, source_ip, user_agent, host,
            request_id, params, response, None if error is None else error.code,
            None if error is None else error.message, resources, latency_ms, eid,
            None if principal.via_service is None else f"{principal.via_service}.amazonaws.com",
        ))
        if error is None and operation.usage_tracked:
            # The event's own time (CloudTrail's whole seconds), so the answer is the same after a restart.
            usage = KeyUsage(operation.name, float(int(at)), eid, request_id)
            for arn in resources:
                self.last_usage[arn.rsplit("/", 1)[-1]] = usage

    def usage_of(self, key_id: str) -> KeyUsage | None:
        """The key's last cryptographic use in this region, as GetKeyLastUsage reports it."""
        return self.last_usage.get(key_id)

    def service(self, name: str, key_arn: str, at: float, event_type: str = "AwsServiceEvent") -> None:
        self.sink.emit(service_event(name=name, region=self.region, account=self.account, at=at, key_arn=key_arn,
                                     event_type=event_type))

    def _track(self, event: Mapping[str, Any]) -> None:
        if event.get("eventName") not in self._usage_tracked or "errorCode" in event:
            return
        when = parse_cloudtrail_time(str(event.get("eventTime", "")))
        for resource in event.get("resources") or ():
            key_id = str(resource.get("ARN", "")).rsplit("/", 1)[-1]
            self.last_usage[key_id] = KeyUsage(str(event["eventName"]), when, str(event.get("eventID")),
                                               str(event.get("requestID")))

    def flush(self) -> int:
        return self.sink.flush()

    def close(self) -> None:
        self.sink.close()
