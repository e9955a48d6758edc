"""`trent audit`: the regions' audit logs merged, filtered and printed oldest first (newest last)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trent.cluster.durations import parse_duration
from trent.node.audit.events import parse_cloudtrail_time
from trent.node.audit.sink import read_events


def _since(text: str | None, now: float) -> float | None:
    """An ISO time (2026-11-23T15:00:00Z) or a duration back from now (15m, 2h, 1d)."""
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return now - parse_duration(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # CloudTrail times are UTC; so is a time given without a zone
    return when.timestamp()


def _event_time(event: dict[str, Any]) -> float:
    return parse_cloudtrail_time(str(event.get("eventTime", "")))


def audit_events(data_dir: Path, *, region: str | None = None, key: str | None = None,
                 principal: str | None = None, event: str | None = None, since: str | None = None,
                 now: float | None = None) -> list[dict[str, Any]]:
    cutoff = _since(since, now if now is not None else datetime.now(UTC).timestamp())
    found: list[tuple[float, int, dict[str, Any]]] = []
    for n, record in enumerate(_all_events(data_dir, region)):
        if event is not None and record.get("eventName") != event:
            continue
        if principal is not None and not _principal_matches(record.get("userIdentity") or {}, principal):
            continue
        if key is not None and not any(_key_matches(str(r.get("ARN", "")), key) for r in record.get("resources") or ()):
            continue
        at = _event_time(record)
        if cutoff is not None and at < cutoff:
            continue
        found.append((at, n, record))
    found.sort(key=lambda item: (item[0], item[1]))  # stable within a second: the log's own order
    return [record for _, _, record in found]


# Work KMS does by itself, recorded beside the API calls (node/scheduler.py, cluster/replication/applier.py).
SERVICE_EVENTS = ("RotateKey", "DeleteKey", "SynchronizeMultiRegionKey")


def known_region(data_dir: Path, name: str) -> str:
    """``name`` (any case) as a region with an audit trail under ``data_dir``; ValueError naming those there are."""
    regions = sorted(p.name for p in data_dir.iterdir() if (p / "audit").is_dir())
    wanted = name.strip().lower()
    if wanted in regions:
        return wanted
    raise ValueError(f"unknown region {name!r} (regions with an audit trail here: {', '.join(regions) or 'none'})")


def known_event(name: str) -> str:
    """``name`` (any case) as the event name KMS records (an operation, or work KMS does by itself); ValueError
    naming the closest one."""
    import difflib

    import botocore.session  # the list of operations; only for this check

    names: list[str] = [*botocore.session.get_session().get_service_model("kms").operation_names, *SERVICE_EVENTS]
    by_lower = {str(n).lower(): str(n) for n in names}
    found = by_lower.get(name.strip().lower())
    if found is not None:
        return found
    close = difflib.get_close_matches(name.strip().lower(), list(by_lower), n=1)
    hint = f" (did you mean {by_lower[close[0]]}?)" if close else ""
    raise ValueError(f"unknown event {name!r}{hint}: an event is a KMS operation, such as Decrypt, or one of "
                     f"{', '.join(SERVICE_EVENTS)}")


def _principal_matches(identity: dict[str, Any], wanted: str) -> bool:
    """A principal ARN, the tail of one (``role/app``, ``user/admin``), an account id or an access key id."""
    arn = str(identity.get("arn") or "")
    if wanted in (arn, identity.get("accountId"), identity.get("accessKeyId"), identity.get("invokedBy")):
        return True
    return bool(arn) and "/" in wanted and arn.endswith(":" + wanted)


def _key_matches(arn: str, wanted: str) -> bool:
    """A key ARN, or a key id (which names a multi-Region key in every region)."""
    return arn == wanted or arn.endswith(":key/" + wanted)


def _all_events(data_dir: Path, region: str | None) -> Iterator[dict[str, Any]]:
    for region_dir in sorted(p for p in data_dir.iterdir() if (p / "audit").is_dir()):
        if region is None or region_dir.name == region:
            yield from read_events(region_dir / "audit")


def format_event(record: dict[str, Any]) -> str:
    identity = record.get("userIdentity", {})
    who = identity.get("arn") or identity.get("invokedBy") or "?"
    keys = ",".join(str(r.get("ARN", "")).rsplit("/", 1)[-1] for r in record.get("resources") or ())
    outcome = record.get("errorCode") or "OK"
    return (f"{record.get('eventTime')} {record.get('awsRegion'):<15} {record.get('eventName'):<32} {outcome:<28} "
            f"{who} {keys}").rstrip()
