"""The cost meter on constructed keys and audit records: proration, the rotation cap, deletion, the free tier by
calendar month, pricing classes, keys known only from the trail, imported keys."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from trent.cluster.cost_meter import KeyInfo, deleted_keys, estimate, inventory, parse_time, request_class, schedules_of
from trent.cluster.kms_prices import AWS_KMS_PRICES
from trent.node.audit.events import cloudtrail_time
from trent.node.crypto.handles import new_material
from trent.node.model.key import KeyRecord, MaterialVersion
from trent.node.model.states import KeyState

MONTH = 730 * 3600.0
DAY = 86400.0
T0 = datetime(2026, 1, 10, tzinfo=UTC).timestamp()
ARN = "arn:aws:kms:us-east-1:111122223333:key/"


def call(name: str, at: float, key: str | None = None, error: str | None = None, region: str = "us-east-1",
         **params: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"eventName": name, "eventTime": cloudtrail_time(at), "eventType": "AwsApiCall",
                             "awsRegion": region, "requestParameters": params or None,
                             "resources": [{"ARN": ARN.replace("us-east-1", region) + key}] if key else []}
    if error:
        event["errorCode"] = error
    return event


def service(name: str, at: float, key: str) -> dict[str, Any]:
    return {"eventName": name, "eventTime": cloudtrail_time(at), "eventType": "AwsServiceEvent",
            "resources": [{"ARN": ARN + key}]}


def test_storage_is_prorated_and_only_two_rotations_are_billed() -> None:
    rotated = KeyInfo(ARN + "a", "us-east-1", "SYMMETRIC_DEFAULT", "AWS_KMS", "CUSTOMER", T0,
                      rotations=(T0 + MONTH, T0 + 2 * MONTH, T0 + 2.5 * MONTH))
    imported = KeyInfo(ARN + "b", "us-east-1", "SYMMETRIC_DEFAULT", "EXTERNAL", "CUSTOMER", T0 + MONTH)
    leaving = KeyInfo(ARN + "c", "us-east-1", "RSA_2048", "AWS_KMS", "CUSTOMER", T0, billed_until=T0 + 0.5 * MONTH)
    managed = KeyInfo(ARN + "d", "us-east-1", "SYMMETRIC_DEFAULT", "AWS_KMS", "AWS", T0)
    report = estimate([rotated, imported, leaving, managed], [], T0, T0 + 3 * MONTH)
    keys = report["by_key"]
    assert keys[rotated.arn]["storage_usd"] == pytest.approx(3 + 2 + 1)  # $1 x 3 months + 2 rotated versions
    assert keys[imported.arn]["storage_usd"] == pytest.approx(2)
    assert keys[leaving.arn]["storage_usd"] == pytest.approx(0.5)
    assert keys[managed.arn]["storage_usd"] == 0
    assert report["key_months"] == pytest.approx(3 + 2 + 0.5)
    # A window that starts later bills only what falls inside it.
    assert estimate([rotated], [], T0 + 2 * MONTH, T0 + 3 * MONTH)["key_storage_usd"] == pytest.approx(3)


def test_the_free_tier_is_per_calendar_month_and_excludes_asymmetric_requests() -> None:
    feb = datetime(2026, 2, 1, tzinfo=UTC).timestamp()
    events = [call("Encrypt", T0 + n % 1000, "a") for n in range(25_000)]
    events += [call("Decrypt", feb + n, "a") for n in range(10)]
    events += [call("Sign", T0, "ecc"), call("Decrypt", T0, "rsa"), call("Encrypt", T0, "a", "NotFoundException")]
    events.append(service("RotateKey", T0, "a"))  # KMS's own work: not a request
    keys = [KeyInfo(ARN + k, "us-east-1", spec, "AWS_KMS", "CUSTOMER", T0) for k, spec in
            (("a", "SYMMETRIC_DEFAULT"), ("ecc", "ECC_NIST_P256"), ("rsa", "RSA_2048"))]
    report = estimate(keys, events, T0, feb + MONTH)
    assert report["requests"] == 25_012 and report["free_tier_used"] == 20_010
    assert report["by_class"]["symmetric"]["billed"] == 5_000
    assert report["by_class"]["asymmetric"]["usd"] == pytest.approx(0.15 / 10_000)
    assert report["by_class"]["rsa_2048"]["usd"] == pytest.approx(0.03 / 10_000)
    assert report["requests_usd"] == pytest.approx(5_000 * 0.03 / 10_000 + 0.18 / 10_000)


def test_the_free_tier_is_the_accounts_across_regions_and_the_whole_month() -> None:
    """A region's share and a window that starts mid-month are billed as AWS bills them: the month's free requests
    went to the account's first ones, whichever region served them, and those before the window count too."""
    eu_arn = ARN.replace("us-east-1", "eu-west-1")
    keys = [KeyInfo(ARN + "a", "us-east-1", "SYMMETRIC_DEFAULT", "AWS_KMS", "CUSTOMER", T0),
            KeyInfo(eu_arn + "b", "eu-west-1", "SYMMETRIC_DEFAULT", "AWS_KMS", "CUSTOMER", T0)]
    events = [call("Encrypt", T0 + 1, "a") for _ in range(15_000)]
    events += [call("Encrypt", T0 + 2 * DAY, "b", region="eu-west-1") for _ in range(10_000)]
    end = T0 + 10 * DAY
    whole = estimate(keys, events, T0, end)
    us = estimate(keys, events, T0, end, regions=["us-east-1"])
    eu = estimate(keys, events, T0, end, regions=["eu-west-1"])
    assert (whole["requests"], whole["free_tier_used"], whole["by_class"]["symmetric"]["billed"]) == (25_000, 20_000,
                                                                                                     5_000)
    assert (us["requests"], us["free_tier_used"], us["requests_usd"]) == (15_000, 15_000, 0)
    assert (eu["requests"], eu["free_tier_used"]) == (10_000, 5_000)
    assert eu["requests_usd"] == pytest.approx(5_000 * 0.03 / 10_000)
    assert us["requests_usd"] + eu["requests_usd"] == pytest.approx(whole["requests_usd"])
    assert list(us["by_key"]) == [ARN + "a"] and list(eu["by_key"]) == [eu_arn + "b"]
    assert eu["by_key"][eu_arn + "b"]["requests"] == 10_000
    later = estimate(keys, events, T0 + DAY, end)  # the month's free tier was all but used before the window
    assert (later["requests"], later["free_tier_used"]) == (10_000, 5_000)


def test_pricing_classes() -> None:
    specs = {ARN + "h": "HMAC_256", ARN + "m": "ML_DSA_65", ARN + "r": "RSA_4096"}
    assert request_class(call("GenerateMac", T0, "h"), specs) == "symmetric"
    assert request_class(call("Sign", T0, "m"), specs) == "asymmetric"
    assert request_class(call("Decrypt", T0, "r"), specs) == "asymmetric"
    assert request_class(call("DescribeKey", T0, "r"), specs) == "symmetric"
    assert request_class(call("ListKeys", T0), specs) == "symmetric"
    assert request_class(call("GenerateDataKeyPair", T0, "r", KeyPairSpec="x", keyPairSpec="RSA_3072"),
                         specs) == "rsa_data_key_pair"
    assert request_class(call("GenerateDataKeyPair", T0, "r", keyPairSpec="ECC_SECG_P256K1"),
                         specs) == "ecc_data_key_pair"
    assert set(AWS_KMS_PRICES.requests) == {"symmetric", "rsa_2048", "asymmetric", "ecc_data_key_pair",
                                            "rsa_data_key_pair"}


def test_deleted_keys_are_billed_from_the_trail_until_their_deletion_was_scheduled() -> None:
    created = call("CreateKey", T0, "gone")
    created["responseElements"] = {"keyMetadata": {"keySpec": "SYMMETRIC_DEFAULT", "origin": "EXTERNAL"}}
    events = [created, service("RotateKey", T0 + MONTH, "gone"),
              call("ScheduleKeyDeletion", T0 + 2 * MONTH, "gone"), service("DeleteKey", T0 + 3 * MONTH, "gone"),
              call("CreateKey", T0, "kept")]
    (gone,) = deleted_keys(events, {ARN + "kept"})
    assert (gone.created, gone.billed_until, gone.rotations, gone.origin, gone.deleted) == (
        T0, T0 + 2 * MONTH, (T0 + MONTH,), "EXTERNAL", True)
    assert estimate([gone], [], T0, T0 + 4 * MONTH)["key_storage_usd"] == pytest.approx(2 + 1)
    cancelled = [call("ScheduleKeyDeletion", T0, "x"), call("CancelKeyDeletion", T0 + 1, "x"),
                 call("ScheduleKeyDeletion", T0 + 5, "y")]
    assert schedules_of(cancelled) == {ARN + "y": T0 + 5}


def test_inventory_reads_rotations_and_scheduled_deletion_from_the_record() -> None:
    first = MaterialVersion(new_material("k"), T0)
    second = MaterialVersion(new_material("k"), T0 + MONTH, "ON_DEMAND")
    record = KeyRecord(key_id="k", region="us-east-1", account="111122223333", created=T0,
                       state=KeyState.PENDING_DELETION, materials=(first, second),
                       current_material_id=second.material_id, deletion_date=T0 + 2 * MONTH + 7 * 86400,
                       pending_window_days=7)
    (info,) = inventory([record])
    assert (info.rotations, info.billed_until, info.manager) == ((T0 + MONTH,), T0 + 2 * MONTH, "CUSTOMER")


def test_times_are_iso_epoch_or_a_duration_back() -> None:
    now = T0 + 10 * 86400
    assert parse_time("2026-01-10T00:00:00Z", now) == T0
    assert parse_time(str(T0), now) == T0
    assert parse_time("10d", now) == T0
    assert parse_time(None, now) is None
    for bad in ("soon", "nan", "inf", "-5", "1e400", "99999999999999d", "0001-01-01T00:00:00Z"):
        with pytest.raises(ValueError, match="not a time"):
            parse_time(bad, now)
    with pytest.raises(ValueError, match="before"):
        estimate([], [], now, T0)


def test_until_the_epoch_is_the_epoch_not_now() -> None:
    from trent.cluster.cost_meter import cost_report

    assert cost_report({}, {}, {"until": "0"}, T0)["until"] == 0.0
    assert cost_report({}, {}, {}, T0)["until"] == T0
