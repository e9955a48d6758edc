"""`trent status` (text and --json) on private clusters: regions up or down, keys per region, replication cursors
and lag per peer, whether each link is connected, and whether multi-Region keys are consistent; lag that builds
while a region is down drains to zero when it comes back."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import REGIONS, RunningCluster, poll
from trent.cluster.running import TOKEN_HEADER, admin_send

Fresh = Callable[..., RunningCluster]
US, EU, AP = REGIONS


def status_json(c: RunningCluster) -> dict[str, Any]:
    out = c.trent("status", "--json")
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def status_text(c: RunningCluster) -> str:
    out = c.trent("status")
    assert out.returncode == 0, out.stderr
    return out.stdout


def _links(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(region, peer): link for region, body in doc["regions"].items()
            for peer, link in body["replication"].items()}


def _all_connected(c: RunningCluster) -> bool:
    return all(link["connected"] for link in _links(c.admin("/_trent/status")).values())


def _drained(c: RunningCluster) -> bool:
    doc = c.admin("/_trent/status")
    return bool(doc["consistency"]["consistent"] and all(link["lag_records"] == 0 and link["connected"]
                                                         for link in _links(doc).values()))


def test_status_of_a_fresh_cluster(fresh_cluster: Fresh) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    # Every region pulls every other region's log; the links come up on their own.
    poll(lambda: _all_connected(c), timeout=20)
    doc = status_json(c)
    assert doc["gateway"] == c.gateway_url
    assert list(doc["regions"]) == list(REGIONS)
    for region, body in doc["regions"].items():
        assert body["url"] == c.region_url(region)
        assert body["up"] is True
        assert (body["keys"], body["multi_region_keys"], body["outbox_head"]) == (0, 0, 0)
        assert set(body["replication"]) == set(REGIONS) - {region}
        for link in body["replication"].values():
            assert link == {"cursor": 0, "head": 0, "lag_records": 0, "lag_seconds": 0.0, "connected": True}
    assert doc["consistency"] == {"multi_region_keys": 0, "consistent": True, "divergent_keys": [], "missing": {}}
    assert doc["faults"] == {"down": [], "partitions": [], "latency_ms": {}, "errors_percent": {},
                             "throttle_per_second": {}}

    text = status_text(c)
    assert f"gateway {c.gateway_url}" in text
    for region in REGIONS:
        assert re.search(rf"^  {re.escape(region)}\s+up\s+{re.escape(c.region_url(region))}\s+keys=0 ", text, re.M)
        for peer in set(REGIONS) - {region}:
            assert re.search(rf"<- {re.escape(peer)}\s+cursor=0\s+lag=0 records, 0.0s \(connected\)", text)
    assert "multi-Region keys: 0, consistent" in text
    assert "faults: none" in text


def test_keys_per_region(fresh_cluster: Fresh) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    us, eu, ap = (c.client(r) for r in REGIONS)
    us.create_key()
    us.create_key()
    ap.create_key()
    mrk = eu.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    eu.replicate_key(KeyId=mrk, ReplicaRegion=US)
    poll(lambda: _drained(c), timeout=20)
    doc = status_json(c)
    counts = {r: (b["keys"], b["multi_region_keys"]) for r, b in doc["regions"].items()}
    assert counts == {US: (3, 1), EU: (1, 1), AP: (1, 0)}
    for region in REGIONS:
        assert doc["regions"][region]["keys"] == len(c.client(region).list_keys(Limit=1000)["Keys"])
    assert doc["consistency"]["multi_region_keys"] == 1 and doc["consistency"]["consistent"]
    # us-east-1 applied eu-west-1's record(s); cursors match heads once drained.
    links = _links(doc)
    assert links[(US, EU)]["cursor"] == links[(US, EU)]["head"] == doc["regions"][EU]["outbox_head"] >= 1
    assert links[(AP, EU)]["cursor"] == doc["regions"][EU]["outbox_head"]  # seen, though not for ap
    assert "keys=3 multi-region=1" in status_text(c)


def test_lag_builds_while_a_region_is_down_and_drains_when_it_returns(fresh_cluster: Fresh) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    us = c.client(US)
    poll(lambda: _all_connected(c), timeout=20)
    assert c.trent("fault", "down", EU).returncode == 0
    key = us.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
    us.replicate_key(KeyId=key, ReplicaRegion=EU)
    us.replicate_key(KeyId=key, ReplicaRegion=AP)
    us.rotate_key_on_demand(KeyId=key)

    def lagging() -> dict[str, Any] | None:
        doc = c.admin("/_trent/status")
        link = doc["regions"][EU]["replication"][US]
        return doc if link["lag_records"] >= 2 and link["lag_seconds"] > 0 else None

    doc = poll(lagging, timeout=20)
    assert doc["regions"][EU]["up"] is False
    assert doc["regions"][EU]["keys"] == 0
    links = _links(doc)
    for (region, peer), link in links.items():
        # Nothing flows into or out of the region that is down; the other links stay up.
        assert link["connected"] is (EU not in (region, peer)), (region, peer)
    assert links[(EU, US)]["head"] == doc["regions"][US]["outbox_head"]
    assert links[(EU, US)]["lag_records"] == links[(EU, US)]["head"] - links[(EU, US)]["cursor"]
    assert doc["consistency"]["consistent"] is False
    assert doc["consistency"]["divergent_keys"] == [key]
    assert doc["consistency"]["missing"] == {key: [EU]}
    assert doc["faults"]["down"] == [EU]

    text = status_text(c)
    assert re.search(rf"^  {EU}\s+DOWN ", text, re.M)
    assert re.search(rf"<- {US}\s+cursor=\d+\s+lag=[1-9]\d* records, [0-9.]+s \(not connected\)", text)
    assert f"DIVERGENT: {key} (not yet in {EU})" in text
    assert 'faults: {"down": ["eu-west-1"]}' in text

    assert c.trent("fault", "up", EU).returncode == 0
    poll(lambda: _drained(c), timeout=30)
    doc = status_json(c)
    assert all(link["lag_records"] == 0 and link["lag_seconds"] == 0.0 for link in _links(doc).values())
    assert doc["regions"][EU]["up"] is True and doc["regions"][EU]["keys"] == 1
    assert doc["consistency"] == {"multi_region_keys": 1, "consistent": True, "divergent_keys": [], "missing": {}}
    # The rotation that waited for eu-west-1 completed everywhere.
    current = {c.client(r).describe_key(KeyId=key)["KeyMetadata"]["CurrentKeyMaterialId"] for r in REGIONS}
    assert len(current) == 1
    assert "OnDemandRotationStartDate" not in us.get_key_rotation_status(KeyId=key)
    text = status_text(c)
    assert "DOWN" not in text and "not connected" not in text
    assert "multi-Region keys: 1, consistent" in text


def test_partition_shows_in_status(fresh_cluster: Fresh) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    poll(lambda: _all_connected(c), timeout=20)
    c.trent("fault", "partition", US, AP)
    doc = status_json(c)
    links = _links(doc)
    assert not links[(US, AP)]["connected"] and not links[(AP, US)]["connected"]
    assert links[(US, EU)]["connected"] and links[(EU, AP)]["connected"]
    assert all(body["up"] for body in doc["regions"].values())
    assert doc["faults"]["partitions"] == [[AP, US]]
    c.trent("fault", "heal", US, AP)
    poll(lambda: _all_connected(c), timeout=20)


def test_health_names_the_process_only_to_the_admin_token(cluster: RunningCluster) -> None:
    with urllib.request.urlopen(cluster.gateway_url + "/_trent/health", timeout=10) as answer:
        assert json.loads(answer.read()) == {"status": "ok"}  # liveness only: no pid, no worker number
    wrong = urllib.request.Request(cluster.gateway_url + "/_trent/health", headers={TOKEN_HEADER: "wrong"})
    with urllib.request.urlopen(wrong, timeout=10) as answer:
        assert json.loads(answer.read()) == {"status": "ok"}
    token = (cluster.data_dir / "admin.token").read_text().strip()
    assert cluster.proc is not None
    assert admin_send(cluster.gateway_url, token, "/_trent/health") == {
        "status": "ok", "worker": 0, "pid": cluster.proc.pid}


def test_status_needs_a_running_cluster(tmp_path: Path, fresh_cluster: Fresh) -> None:
    c = fresh_cluster(extra_args=("--replica-delay", "0"))
    stray = RunningCluster(tmp_path / "nothing-here", c.port)
    out = stray.trent("status", check=False)
    assert out.returncode != 0
    assert "no running cluster" in out.stderr and "Traceback" not in out.stderr
    # The admin status route needs the admin token.
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(c.gateway_url + "/_trent/status", timeout=10)
    assert exc.value.code == 403
    c.stop()
    out = c.trent("status", check=False)
    assert out.returncode != 0 and "Traceback" not in out.stderr
