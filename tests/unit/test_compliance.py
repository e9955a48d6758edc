"""Compliance findings from constructed key records: age against the threshold, rotation off, keys that cannot
rotate, imported material expiring, replicas behind their primary."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from trent.cluster.compliance_watch import ComplianceNotifier, Sinks
from trent.node.clock import FixedClock
from trent.node.compliance import ComplianceSettings, Finding, counts, evaluate, material_expiry
from trent.node.crypto.handles import new_material
from trent.node.crypto.rootkey import RootKey
from trent.node.model.imported import DOES_NOT_EXPIRE, EXPIRES, EXTERNAL, ImportRequest, apply_import, delete_material
from trent.node.model.key import KeyRecord, MaterialVersion, RotationSettings
from trent.node.model.mrk import MultiRegionState
from trent.node.model.states import KeyState
from trent.node.service import Region, RegionIdentity
from trent.node.store.memory import MemoryStore

DAY = 86400.0
NOW = 1_800_000_000.0
SETTINGS = ComplianceSettings(max_age_days=90, expiry_days=30)


def key(key_id: str = "k1", *, age_days: float = 10, region: str = "us-east-1", **changes: object) -> KeyRecord:
    version = MaterialVersion(new_material(key_id), NOW - age_days * DAY)
    record = KeyRecord(key_id=key_id, region=region, account="111122223333", created=version.created,
                       state=KeyState.ENABLED, materials=(version,), current_material_id=version.material_id,
                       rotation=RotationSettings(enabled=True, next_rotation=NOW + DAY))
    return record.with_changes(**changes)


def kinds(findings: list[Finding], key_id: str = "k1") -> set[str]:
    return {f.kind for f in findings if f.key_id == key_id}


def test_age_is_measured_on_the_current_material_against_the_threshold() -> None:
    assert kinds(evaluate({"us-east-1": [key(age_days=89.9)]}, NOW, SETTINGS)) == set()
    (finding,) = evaluate({"us-east-1": [key(age_days=100)]}, NOW, SETTINGS)
    assert (finding.kind, finding.age_days, finding.region) == ("age", 100.0, "us-east-1")
    old = key(age_days=400)
    fresh = MaterialVersion(new_material("k1"), NOW - 5 * DAY, "AUTOMATIC")
    rotated = old.with_changes(materials=(*old.materials, fresh), current_material_id=fresh.material_id)
    assert kinds(evaluate({"us-east-1": [rotated]}, NOW, SETTINGS)) == set()
    # The default threshold is a year.
    assert kinds(evaluate({"us-east-1": [key(age_days=100)]}, NOW)) == set()


def test_rotation_off_cannot_rotate_and_what_is_left_out() -> None:
    off = key("off", rotation=RotationSettings())
    hmac = key("hmac", key_spec="HMAC_256", key_usage="GENERATE_VERIFY_MAC", rotation=RotationSettings())
    ecc = key("ecc", key_spec="ECC_NIST_P256", key_usage="SIGN_VERIFY", rotation=RotationSettings())
    imported = key("imp", origin="EXTERNAL", rotation=RotationSettings())
    managed = key("aws", age_days=200, extra={"key_manager": "AWS"})  # older than the threshold, and left out
    leaving = key("gone", age_days=500, state=KeyState.PENDING_DELETION, rotation=RotationSettings())
    found = evaluate({"us-east-1": [off, hmac, ecc, imported, managed, leaving]}, NOW, SETTINGS)
    assert kinds(found, "off") == {"rotation-off"}
    assert kinds(found, "hmac") == kinds(found, "ecc") == kinds(found, "imp") == {"cannot-rotate"}
    assert kinds(found, "aws") == kinds(found, "gone") == set()
    assert counts(found) == {("us-east-1", "rotation-off"): 1, ("us-east-1", "cannot-rotate"): 3}


def imported(key_id: str, model: str, valid_to: float | None) -> KeyRecord:
    """An EXTERNAL key after ImportKeyMaterial, as the import flow records it (node/model/imported.py)."""
    pending = key(key_id, origin=EXTERNAL, materials=(), current_material_id=b"", state=KeyState.PENDING_IMPORT,
                  rotation=RotationSettings())
    return apply_import(pending, ImportRequest(new_material(key_id), None, None, model, valid_to, None, NOW - DAY,
                                               False))


def test_imported_material_expiry_is_the_earliest_valid_to_of_what_the_key_holds() -> None:
    soon = imported("a", EXPIRES, NOW + 10 * DAY)
    later = imported("b", EXPIRES, NOW + 40 * DAY)
    past = imported("c", EXPIRES, NOW - DAY)  # (the scheduler deletes it at the next tick)
    never = imported("d", DOES_NOT_EXPIRE, None)
    generated = key("e")
    assert material_expiry(soon) == NOW + 10 * DAY and material_expiry(later) == NOW + 40 * DAY
    assert material_expiry(past) == NOW - DAY and material_expiry(never) is None is material_expiry(generated)
    assert material_expiry(delete_material(soon, soon.current_material_id)) is None  # deleted: nothing expires
    found = evaluate({"us-east-1": [soon, later, past, never, generated]}, NOW, SETTINGS)
    expiring = {f.key_id: f for f in found if f.kind == "expiring"}
    assert set(expiring) == {"a", "c"}
    assert expiring["a"].detail == "imported key material expires in 10.0 days"
    assert expiring["c"].detail == "imported key material expired 1 days ago"


def test_a_replica_behind_its_primary_rotation_is_reported() -> None:
    state = MultiRegionState("us-east-1", ("eu-west-1",), epoch=1, version=2)
    primary = key("mrk-1", mrk=state, multi_region=True)
    replica = primary.with_changes(region="eu-west-1")
    assert evaluate({"us-east-1": [primary], "eu-west-1": [replica]}, NOW, SETTINGS) == []
    fresh = MaterialVersion(new_material("mrk-1"), NOW, "ON_DEMAND")
    rotated = primary.with_changes(materials=(*primary.materials, fresh), current_material_id=fresh.material_id)
    (lag,) = evaluate({"us-east-1": [rotated], "eu-west-1": [replica]}, NOW, SETTINGS)
    assert (lag.kind, lag.region, lag.key_id) == ("replica-lag", "eu-west-1", "mrk-1")
    assert "us-east-1" in lag.detail and "1 material version(s)" in lag.detail


def test_the_notifier_sends_each_crossing_once_and_remembers_across_restarts(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    region = Region(RegionIdentity("us-east-1", "111122223333"), MemoryStore(), RootKey.from_bytes(bytes(32)),
                    clock)
    old = key(age_days=120)
    region.commit(keys=[old])
    sink = tmp_path / "notes.jsonl"

    def notifier() -> ComplianceNotifier:
        return ComplianceNotifier({"us-east-1": region}, clock, SETTINGS, Sinks(file=sink), tmp_path)

    assert asyncio.run(notifier().tick()) == 1
    first = notifier()
    assert asyncio.run(first.tick()) == 0  # remembered in the data directory
    (line,) = sink.read_text().splitlines()
    assert json.loads(line)["event"] == "RotationAgeExceeded"
    # A rotation and another crossing of the new material: a new notification.
    fresh = MaterialVersion(new_material("k1"), NOW, "AUTOMATIC")
    region.commit(keys=[old.with_changes(materials=(*old.materials, fresh), current_material_id=fresh.material_id)])
    clock.advance(91 * DAY)
    assert asyncio.run(first.tick()) == 1
    # A deleted key's entries are forgotten.
    region.commit(delete_keys=["k1"])
    assert asyncio.run(first.tick()) == 0
    assert json.loads((tmp_path / "compliance-notified.json").read_text()) == []


def test_compliance_config_keys(tmp_path: Path) -> None:
    from trent.node.config import ConfigError, load_config

    config = tmp_path / "trent.toml"
    config.write_text('compliance_max_age_days = 90\ncompliance_expiry_days = 7\n'
                      'compliance_webhook = "https://hooks.example/kms"\ncompliance_file = "notes.jsonl"\n')
    loaded = load_config(config)
    assert (loaded.compliance_max_age_days, loaded.compliance_expiry_days, loaded.compliance_webhook,
            loaded.compliance_file) == (90.0, 7.0, "https://hooks.example/kms", "notes.jsonl")
    assert load_config(None).compliance_max_age_days == 365.0
    for bad, message in (("compliance_max_age_days = 0", "positive"), ("compliance_expiry_days = -1", "negative"),
                         ('compliance_webhook = "file:///etc/passwd"', "http"), ("compliance_max_age = 90",
                                                                                 "did you mean")):
        config.write_text(bad + "\n")
        with pytest.raises(ConfigError, match=message):
            load_config(config)


def test_a_failing_sink_is_retried_and_does_not_hold_up_the_other(tmp_path: Path) -> None:
    clock = FixedClock(NOW)
    region = Region(RegionIdentity("us-east-1", "111122223333"), MemoryStore(), RootKey.from_bytes(bytes(32)),
                    clock)
    region.commit(keys=[key("a", age_days=120), key("b", age_days=150)])
    blocked = tmp_path / "no-such-dir" / "notes.jsonl"
    notifier = ComplianceNotifier({"us-east-1": region}, clock, SETTINGS,
                                  Sinks(webhook="http://127.0.0.1:9/unreachable", file=tmp_path / "ok.jsonl"),
                                  tmp_path)

    async def run() -> tuple[int, int]:
        await notifier.start()
        try:
            first = await notifier.tick()
            return first, await notifier.tick()
        finally:
            await notifier.stop()

    assert asyncio.run(run()) == (2, 0)  # the file got both; the webhook, refused, is retried each tick
    assert len((tmp_path / "ok.jsonl").read_text().splitlines()) == 2
    broken = ComplianceNotifier({"us-east-1": region}, clock, SETTINGS, Sinks(file=blocked), tmp_path / "other")
    (tmp_path / "other").mkdir()
    assert asyncio.run(broken.tick()) == 0
    blocked.parent.mkdir()
    assert asyncio.run(broken.tick()) == 2


def test_a_webhook_that_never_answers_delays_no_line_of_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    from trent.cluster import compliance_watch

    monkeypatch.setattr(compliance_watch, "WEBHOOK_TIMEOUT", 0.5)
    clock = FixedClock(NOW)
    region = Region(RegionIdentity("us-east-1", "111122223333"), MemoryStore(), RootKey.from_bytes(bytes(32)),
                    clock)
    region.commit(keys=[key("a", age_days=120), key("b", age_days=150), key("c", age_days=200)])
    notes = tmp_path / "notes.jsonl"

    async def run() -> int:
        entered = asyncio.Event()
        lines_then: list[int] = []

        async def hang(request: web.Request) -> web.Response:
            lines_then.append(len(notes.read_text().splitlines()) if notes.exists() else 0)
            entered.set()
            await asyncio.Event().wait()  # never answers
            return web.Response()

        runner, port = await _webhook("/hook", hang)
        notifier = ComplianceNotifier({"us-east-1": region}, clock, SETTINGS,
                                      Sinks(webhook=f"http://127.0.0.1:{port}/hook", file=notes), tmp_path)
        await notifier.start()  # its first tick runs at once
        try:
            await asyncio.wait_for(entered.wait(), 30)
            await asyncio.sleep(1)  # the webhook's timeout passes
            return lines_then[0]
        finally:
            await notifier.stop()
            await runner.cleanup()

    with caplog.at_level("WARNING", logger="trent.compliance"):
        assert asyncio.run(run()) == 3  # every line was in the file before the webhook was first tried
    assert "did not answer within 0.5 s" in caplog.text


def test_the_notifier_watches_regions_added_while_it_runs(tmp_path: Path) -> None:
    from trent.cluster.metrics import LiveMapping

    clock = FixedClock(NOW)
    regions: dict[str, Region] = {}
    notifier = ComplianceNotifier(LiveMapping(lambda: regions), clock, SETTINGS, Sinks(file=tmp_path / "n.jsonl"),
                                  tmp_path)
    assert asyncio.run(notifier.tick()) == 0
    oregon = Region(RegionIdentity("us-west-2", "111122223333"), MemoryStore(), RootKey.from_bytes(bytes(32)), clock)
    oregon.commit(keys=[key("w", age_days=120, region="us-west-2")])
    regions["us-west-2"] = oregon  # as --any-region adds one
    assert asyncio.run(notifier.tick()) == 1
    assert json.loads((tmp_path / "n.jsonl").read_text())["region"] == "us-west-2"


def test_a_failing_webhook_is_logged_without_its_secret_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FixedClock(NOW)
    region = Region(RegionIdentity("us-east-1", "111122223333"), MemoryStore(), RootKey.from_bytes(bytes(32)),
                    clock)
    region.commit(keys=[key("a", age_days=120)])

    async def run() -> None:
        async def loop(request: web.Request) -> web.Response:
            raise web.HTTPTemporaryRedirect(request.path + "?sig=s3cr3t-sig")  # forever

        runner, port = await _webhook("/hooks/s3cr3t-path", loop)
        notifier = ComplianceNotifier({"us-east-1": region}, clock, SETTINGS,
                                      Sinks(webhook=f"http://127.0.0.1:{port}/hooks/s3cr3t-path"), tmp_path)
        await notifier.start()
        try:
            assert await notifier.tick() == 0
        finally:
            await notifier.stop()
            await runner.cleanup()

    with caplog.at_level("WARNING", logger="trent.compliance"):
        asyncio.run(run())
    assert "compliance webhook is not reachable" in caplog.text
    assert "s3cr3t" not in caplog.text


async def _webhook(path: str, handler: Any) -> tuple[web.AppRunner, int]:
    """A webhook receiver on a free loopback port: its runner (to clean up) and the port."""
    app = web.Application()
    app.router.add_post(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
