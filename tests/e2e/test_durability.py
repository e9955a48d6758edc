"""Every acknowledged write survives SIGKILL: the process is killed the moment the calls return, restarted on the
same data directory, and everything a client was told is done is still there."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.e2e.harness import RunningCluster

Fresh = Callable[..., RunningCluster]


def _strip(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


def _snapshot(c: RunningCluster, key_ids: dict[str, list[str]]) -> dict[str, Any]:
    """What a client can see of the given keys (per region), through every read API that covers them."""
    out: dict[str, Any] = {}
    for region, ids in key_ids.items():
        kms = c.client(region)
        out[region] = {
            "aliases": sorted((a["AliasName"], a.get("TargetKeyId")) for a in kms.list_aliases(Limit=100)["Aliases"]),
            "keys": sorted(k["KeyId"] for k in kms.list_keys(Limit=1000)["Keys"]),
        }
        for key_id in ids:
            meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
            entry: dict[str, Any] = {"meta": meta}
            if meta["KeyState"] != "PendingDeletion":
                entry["tags"] = _strip(kms.list_resource_tags(KeyId=key_id))
                entry["rotation"] = _strip(kms.get_key_rotation_status(KeyId=key_id))
                entry["rotations"] = _strip(kms.list_key_rotations(KeyId=key_id))
            out[region][key_id] = entry
    return out


def test_acknowledged_writes_survive_sigkill(fresh_cluster: Fresh) -> None:
    c = fresh_cluster()
    us, eu = c.client("us-east-1"), c.client("eu-west-1")

    a = us.create_key(Description="rotating", Tags=[{"TagKey": "team", "TagValue": "blue"},
                                                   {"TagKey": "drop", "TagValue": "me"}])["KeyMetadata"]["KeyId"]
    b = us.create_key(Description="to disable")["KeyMetadata"]["KeyId"]
    d = us.create_key(Description="to delete")["KeyMetadata"]["KeyId"]
    e = eu.create_key(Description="european")["KeyMetadata"]["KeyId"]
    plaintext = b"written before the crash"
    blobs = [(us, us.encrypt(KeyId=a, Plaintext=plaintext, EncryptionContext={"n": "0"})["CiphertextBlob"], "0")]
    us.create_alias(AliasName="alias/dur-a", TargetKeyId=a)
    us.create_alias(AliasName="alias/dur-moved", TargetKeyId=a)
    us.update_alias(AliasName="alias/dur-moved", TargetKeyId=b)
    us.create_alias(AliasName="alias/dur-gone", TargetKeyId=b)
    us.delete_alias(AliasName="alias/dur-gone")
    eu.create_alias(AliasName="alias/dur-a", TargetKeyId=e)
    us.tag_resource(KeyId=a, Tags=[{"TagKey": "owner", "TagValue": "ops"}])
    us.untag_resource(KeyId=a, TagKeys=["drop"])
    us.rotate_key_on_demand(KeyId=a)
    blobs.append((us, us.encrypt(KeyId=a, Plaintext=plaintext, EncryptionContext={"n": "1"})["CiphertextBlob"], "1"))
    us.enable_key_rotation(KeyId=a, RotationPeriodInDays=90)
    us.update_key_description(KeyId=a, Description="rotating, described")
    blobs.append((eu, eu.encrypt(KeyId="alias/dur-a", Plaintext=plaintext)["CiphertextBlob"], ""))
    us.disable_key(KeyId=b)
    deletion = us.schedule_key_deletion(KeyId=d, PendingWindowInDays=7)
    before = _snapshot(c, {"us-east-1": [a, b, d], "eu-west-1": [e]})
    c.kill()  # right after the last acknowledged write: no clean shutdown, no checkpoint

    c.start()
    after = _snapshot(c, {"us-east-1": [a, b, d], "eu-west-1": [e]})
    assert after == before

    # Spot-check the facts the snapshot covers, so a regression reads clearly.
    us, eu = c.client("us-east-1"), c.client("eu-west-1")
    meta = us.describe_key(KeyId="alias/dur-a")["KeyMetadata"]
    assert (meta["KeyId"], meta["Description"], meta["KeyState"]) == (a, "rotating, described", "Enabled")
    assert us.describe_key(KeyId="alias/dur-moved")["KeyMetadata"]["KeyId"] == b
    assert "alias/dur-gone" not in [x["AliasName"] for x in us.list_aliases()["Aliases"]]
    assert {t["TagKey"]: t["TagValue"] for t in us.list_resource_tags(KeyId=a)["Tags"]} == {"team": "blue",
                                                                                            "owner": "ops"}
    status = us.get_key_rotation_status(KeyId=a)
    assert (status["KeyRotationEnabled"], status["RotationPeriodInDays"]) == (True, 90)
    assert [r["RotationType"] for r in us.list_key_rotations(KeyId=a)["Rotations"]] == ["ON_DEMAND"]
    assert us.describe_key(KeyId=b)["KeyMetadata"]["KeyState"] == "Disabled"
    meta_d = us.describe_key(KeyId=d)["KeyMetadata"]
    assert (meta_d["KeyState"], meta_d["DeletionDate"]) == ("PendingDeletion", deletion["DeletionDate"])
    assert eu.describe_key(KeyId="alias/dur-a")["KeyMetadata"]["KeyId"] == e
    for client, blob, n in blobs:  # ciphertexts from before the crash, under both material versions
        context = {"n": n} if n else {}
        out = client.decrypt(CiphertextBlob=blob, EncryptionContext=context)
        assert out["Plaintext"] == plaintext


def test_concurrent_acknowledged_creates_survive_sigkill(fresh_cluster: Fresh) -> None:
    c = fresh_cluster(regions=("us-east-1", "eu-west-1"))
    created: list[tuple[str, str]] = []  # (region, key id) whose CreateKey returned
    aliased: list[tuple[str, str, str]] = []  # (region, alias, key id) whose CreateAlias returned
    unexpected: list[BaseException] = []
    killed = threading.Event()
    lock = threading.Lock()

    def worker(region: str, client: Any) -> None:
        while not killed.is_set():
            try:
                key_id = client.create_key()["KeyMetadata"]["KeyId"]
                with lock:
                    created.append((region, key_id))
                alias = f"alias/crash-{uuid.uuid4().hex[:12]}"
                client.create_alias(AliasName=alias, TargetKeyId=key_id)
                with lock:
                    aliased.append((region, alias, key_id))
            except Exception as exc:  # the server going away mid-call is expected; anything before is not
                if not killed.is_set():
                    time.sleep(0.05)  # the kill may be landing right now
                    if not killed.is_set():
                        unexpected.append(exc)
                return

    regions = ["us-east-1", "eu-west-1"] * 6
    clients = [(r, c.client(r)) for r in regions]
    with ThreadPoolExecutor(len(clients)) as pool:
        futures = [pool.submit(worker, r, client) for r, client in clients]
        deadline = time.monotonic() + 20
        while len(aliased) < 120 and time.monotonic() < deadline and not unexpected:
            time.sleep(0.02)
        killed.set()
        c.kill()
        for future in futures:
            future.result(timeout=60)
    assert not unexpected, unexpected
    assert len(aliased) >= 40, "too few writes happened before the kill to test anything"

    c.start()
    for region in ("us-east-1", "eu-west-1"):
        kms = c.client(region)
        keys = {k["KeyId"] for page in kms.get_paginator("list_keys").paginate() for k in page["Keys"]}
        aliases = {a["AliasName"]: a.get("TargetKeyId")
                   for page in kms.get_paginator("list_aliases").paginate() for a in page["Aliases"]}
        missing_keys = [k for r, k in created if r == region and k not in keys]
        assert not missing_keys, f"{region}: acknowledged CreateKey lost: {missing_keys}"
        for r, alias, key_id in aliased:
            if r == region:
                assert aliases.get(alias) == key_id, f"{region}: acknowledged CreateAlias {alias} lost"
        # Every surviving key is whole: it describes and encrypts.
        for r, key_id in created[:10]:
            if r == region:
                blob = kms.encrypt(KeyId=key_id, Plaintext=b"after")["CiphertextBlob"]
                assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"after"
