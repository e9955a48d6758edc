"""What the cluster's keys and calls would cost in AWS KMS (`trent cost`, GET /_trent/cost): key-months from the key
inventory (and, for keys since deleted, from the audit trail), requests by pricing class from the audit trail, after
the monthly free tier, with the prices of cluster/kms_prices.py. Times are the cluster's clock (the audit trail's
event times), so a moved clock bills the time it skipped."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trent.cluster.durations import parse_duration
from trent.cluster.kms_prices import (
    ASYMMETRIC,
    AWS_KMS_PRICES,
    ECC_DATA_KEY_PAIR,
    RSA_2048,
    RSA_DATA_KEY_PAIR,
    SYMMETRIC,
    PriceTable,
)
from trent.node.audit.events import cloudtrail_time, parse_cloudtrail_time
from trent.node.audit.sink import read_events
from trent.node.audit.trail import AuditTrail
from trent.node.model.key import KeyRecord
from trent.node.model.managed import KEY_MANAGER_AWS
from trent.node.model.states import KeyState

DAY = 86400.0
LAST_SECOND = 253402300800.0  # 10000-01-01T00:00:00Z
# The calls whose price depends on the key's spec (the pricing page's "requests that involve asymmetric keys").
KEYED_CRYPTO = frozenset({"Encrypt", "Decrypt", "ReEncrypt", "Sign", "Verify", "GetPublicKey", "DeriveSharedSecret",
                          "Encapsulate", "Decapsulate"})
DATA_KEY_PAIRS = frozenset({"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext"})


@dataclass(frozen=True)
class KeyInfo:
    """What billing needs of one key in one region."""

    arn: str
    region: str
    spec: str
    origin: str
    manager: str
    created: float
    rotations: tuple[float, ...] = ()  # when each rotation (a material version after the first) was made
    billed_until: float | None = None  # scheduled for deletion then (or deleted): no charge from then on
    deleted: bool = False


def inventory(keys: Iterable[KeyRecord], schedules: Mapping[str, float] | None = None) -> list[KeyInfo]:
    """The keys of a region as billing sees them; ``schedules``: key ARN → when its deletion was last scheduled
    (from the audit trail), for keys whose record does not say."""
    out = []
    for key in keys:
        until = None
        if key.state is KeyState.PENDING_DELETION and key.deletion_date is not None and key.pending_window_days:
            until = key.deletion_date - key.pending_window_days * DAY
        elif key.state is KeyState.PENDING_REPLICA_DELETION:
            until = (schedules or {}).get(key.arn)
        rotations = tuple(sorted(v.created for v in key.materials if v.rotation_type is not None))
        out.append(KeyInfo(key.arn, key.region, key.key_spec, key.origin, key.key_manager, key.created, rotations,
                           until))
    return out


def deleted_keys(events: Iterable[Mapping[str, Any]], known: set[str]) -> list[KeyInfo]:
    """Keys the audit trail shows created and deleted (no longer in the inventory): billed from their creation until
    their deletion was scheduled."""
    created: dict[str, tuple[float, str, str]] = {}
    rotations: dict[str, list[float]] = defaultdict(list)
    scheduled: dict[str, float] = {}
    deleted: set[str] = set()
    for event in events:
        arn = _first_arn(event)
        if arn is None or arn in known or "errorCode" in event:
            continue
        name, at = event.get("eventName"), parse_cloudtrail_time(str(event.get("eventTime", "")))
        if name == "CreateKey":
            meta = (event.get("responseElements") or {}).get("keyMetadata") or {}
            created[arn] = (at, str(meta.get("keySpec") or "SYMMETRIC_DEFAULT"), str(meta.get("origin") or "AWS_KMS"))
        elif name in ("RotateKey", "RotateKeyOnDemand"):
            rotations[arn].append(at)
        elif name == "ScheduleKeyDeletion":
            scheduled[arn] = at
        elif name == "DeleteKey":
            deleted.add(arn)
    return [KeyInfo(arn, arn.split(":")[3], spec, origin, "CUSTOMER", at, tuple(sorted(rotations[arn])),
                    scheduled.get(arn), deleted=True)
            for arn, (at, spec, origin) in created.items() if arn in deleted]


def schedules_of(events: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Key ARN → when its deletion was last scheduled successfully (a cancellation forgets it)."""
    out: dict[str, float] = {}
    for event in events:
        arn = _first_arn(event)
        if arn is None or "errorCode" in event:
            continue
        if event.get("eventName") == "ScheduleKeyDeletion":
            out[arn] = parse_cloudtrail_time(str(event.get("eventTime", "")))
        elif event.get("eventName") == "CancelKeyDeletion":
            out.pop(arn, None)
    return out


def _first_arn(event: Mapping[str, Any]) -> str | None:
    resources = event.get("resources") or ()
    return str(resources[0].get("ARN")) if resources and isinstance(resources[0], Mapping) else None


def request_class(event: Mapping[str, Any], spec_of: Mapping[str, str]) -> str:
    name = event.get("eventName")
    if name in DATA_KEY_PAIRS:
        pair = str((event.get("requestParameters") or {}).get("keyPairSpec", ""))
        return RSA_DATA_KEY_PAIR if pair.startswith("RSA") else ECC_DATA_KEY_PAIR
    if name not in KEYED_CRYPTO:
        return SYMMETRIC
    arn = _first_arn(event)
    spec = spec_of.get(arn, "SYMMETRIC_DEFAULT") if arn is not None else "SYMMETRIC_DEFAULT"
    if spec == "SYMMETRIC_DEFAULT" or spec.startswith("HMAC_"):
        return SYMMETRIC
    return RSA_2048 if spec == "RSA_2048" else ASYMMETRIC


def parse_time(text: str | None, now: float) -> float | None:
    """An ISO time (2026-11-23T15:00:00Z), epoch seconds, or a duration back from ``now`` (30d, 12h)."""
    if text is None or not text.strip():
        return None
    try:
        return _in_range(float(text), text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            return _in_range(now - parse_duration(text), text)
        except (ValueError, OverflowError):
            raise ValueError(f"not a time or a duration: {text!r}") from None
    return _in_range((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp(), text)


def _in_range(at: float, text: str) -> float:
    if not 0 <= at < LAST_SECOND:  # also NaN and infinities
        raise ValueError(f"not a time between 1970 and 9999: {text!r}")
    return at


def _month(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m")


def estimate(keys: list[KeyInfo], events: Iterable[Mapping[str, Any]], since: float, until: float,
             prices: PriceTable = AWS_KMS_PRICES, regions: Collection[str] | None = None) -> dict[str, Any]:
    """The estimate for [since, until) of ``regions`` (None: all): storage per key, requests per class, per
    operation and per key. ``keys`` and ``events`` are the whole account's: the free tier is the account's, in
    every region, and a month's requests before ``since`` or in other regions have used their part of it."""
    if until < since:
        raise ValueError("--until is before --since")
    hour_month = 3600.0 * prices.hours_per_month
    by_key = {info.arn: _storage(info, since, until, prices) for info in keys
              if regions is None or info.region in regions}
    requests = _Requests(prices, {info.arn: info.spec for info in keys}, by_key)
    calls = sorted(((parse_cloudtrail_time(str(e.get("eventTime", ""))), e) for e in events
                    if e.get("eventType") == "AwsApiCall" and "errorCode" not in e),
                   key=lambda item: item[0])
    for at, event in calls:
        requests.add(at, event, since <= at < until and (regions is None or event.get("awsRegion") in regions))
    storage = sum(line["storage_usd"] for line in by_key.values())
    return {
        "since": since, "until": until, "since_iso": cloudtrail_time(since), "until_iso": cloudtrail_time(until),
        "months": (until - since) / hour_month, "prices": prices.describe(),
        "key_months": sum(line["key_months"] for line in by_key.values()), "key_storage_usd": storage,
        "requests": requests.count, "free_tier_used": requests.free_used, "requests_usd": requests.usd,
        "total_usd": storage + requests.usd,
        "by_class": requests.classes,
        "by_operation": dict(sorted(requests.operations.items(), key=lambda item: (-item[1]["usd"], item[0]))),
        "by_key": by_key,
    }


def _storage(info: KeyInfo, since: float, until: float, prices: PriceTable) -> dict[str, Any]:
    """One key's storage over the window: $1 a key-month while not scheduled for deletion, and $1 more from each
    of the first (billed) rotations; AWS managed keys are stored free."""
    hour_month = 3600.0 * prices.hours_per_month
    end = min(until, info.billed_until) if info.billed_until is not None else until
    start = max(since, info.created)
    months = rotation_months = 0.0
    if info.manager != KEY_MANAGER_AWS and end > start:
        months = (end - start) / hour_month
        rotation_months = sum(max(0.0, end - max(start, at)) / hour_month
                              for at in info.rotations[:prices.billed_rotations])
    return {"region": info.region, "spec": info.spec, "origin": info.origin, "manager": info.manager,
            "deleted": info.deleted, "key_months": months, "rotation_months": rotation_months,
            "storage_usd": months * prices.key_month_usd + rotation_months * prices.rotation_month_usd,
            "requests": 0, "requests_usd": 0.0}


class _Requests:
    """Requests priced one by one, oldest first: the free tier of a calendar month goes to its first eligible ones."""

    def __init__(self, prices: PriceTable, spec_of: Mapping[str, str], by_key: dict[str, dict[str, Any]]) -> None:
        self.prices = prices
        self.spec_of = spec_of
        self.by_key = by_key
        self.free_left: dict[str, int] = {}
        self.classes: dict[str, dict[str, Any]] = {name: {"requests": 0, "billed": 0, "usd": 0.0}
                                                   for name in prices.requests}
        self.operations: dict[str, dict[str, Any]] = {}
        self.count = self.free_used = 0
        self.usd = 0.0

    def add(self, at: float, event: Mapping[str, Any], counted: bool) -> None:
        """Every request of the account, oldest first: each takes its place in its month's free tier; those
        ``counted`` (in the window and the regions asked about) are billed here."""
        kind = request_class(event, self.spec_of)
        price = self.prices.requests[kind]
        month = _month(at)
        left = self.free_left.setdefault(month, self.prices.free_tier_requests)
        free = price.free_tier and left > 0
        if free:
            self.free_left[month] = left - 1
        if not counted:
            return
        self.free_used += free
        usd = 0.0 if free else price.usd_per_10k / 10_000
        self.count += 1
        self.usd += usd
        line = self.classes[kind]
        line["requests"] += 1
        line["billed"] += 0 if free else 1
        line["usd"] += usd
        op = self.operations.setdefault(str(event.get("eventName")), {"requests": 0, "usd": 0.0})
        op["requests"] += 1
        op["usd"] += usd
        arn = _first_arn(event)
        if arn is not None and arn in self.by_key:
            self.by_key[arn]["requests"] += 1
            self.by_key[arn]["requests_usd"] += usd


def cost_report(keys: Mapping[str, list[KeyRecord]], trails: Mapping[str, AuditTrail], query: Mapping[str, str],
                now: float) -> dict[str, Any]:
    """GET /_trent/cost: ``since`` and ``until`` (ISO times, epoch seconds or durations back from now; by default
    the regions' whole history until now) over the regions' key records and audit logs (flushed first); ``region``:
    one region's share (the free tier counted over every region, as AWS counts it)."""
    region = query.get("region")
    if region is not None and region not in keys:
        raise ValueError(f"unknown region {region!r}")
    regions = sorted(keys) if region is None else [region]
    until = parse_time(query.get("until"), now)
    if until is None:  # (not "or now": --until 0 is the epoch, not now)
        until = now
    events: list[dict[str, Any]] = []
    for trail in trails.values():
        trail.flush()
        events.extend(read_events(trail.sink.directory))
    schedules = schedules_of(events)
    infos = [info for region_keys in keys.values() for info in inventory(region_keys, schedules)]
    infos += deleted_keys(events, {info.arn for info in infos})
    since = parse_time(query.get("since"), now)
    if since is None:
        starts = [info.created for info in infos] + [parse_cloudtrail_time(str(e.get("eventTime", "")))
                                                     for e in events]
        since = min(starts, default=until)
    return {"regions": regions, **estimate(infos, events, since, until, regions=regions)}
