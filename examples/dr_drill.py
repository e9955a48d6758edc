"""A disaster-recovery drill, timed: create keys, replicate, fail the primary's region, move the primary,
keep working, heal, and watch replication drain to zero and every region converge.

    .venv/bin/python examples/dr_drill.py        (or: make demo-drill)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples._cluster import Timeline, demo_cluster
from trent.cluster.running import RunningCluster, admin_request, poll

PRIMARY, STANDBY, THIRD = "us-east-1", "eu-west-1", "ap-northeast-2"


def converged(cluster: RunningCluster) -> bool:
    status = admin_request(cluster.data_dir, "/_trent/status")
    lag = sum(link["lag_records"] for r in status["regions"].values() for link in r["replication"].values())
    return lag == 0 and bool(status["consistency"]["consistent"])


def _handed_over(new: object, old: object, key_id: str) -> bool:
    meta = new.describe_key(KeyId=key_id)["KeyMetadata"]  # type: ignore[attr-defined]
    before = old.describe_key(KeyId=key_id)["KeyMetadata"]  # type: ignore[attr-defined]
    return bool(meta["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"
                and meta["KeyState"] == "Enabled" and before["KeyState"] == "Enabled")


def main() -> int:
    t = Timeline()
    with demo_cluster(replica_delay="0.5") as cluster:
        home, standby = cluster.client(PRIMARY), cluster.client(STANDBY)
        t.say(f"cluster up at {cluster.gateway_url}")
        keys = [home.create_key(MultiRegion=True, Description=f"drill {i}")["KeyMetadata"]["KeyId"] for i in range(3)]
        for key_id in keys:
            for region in (STANDBY, THIRD):
                home.replicate_key(KeyId=key_id, ReplicaRegion=region)
        t.say(f"created {len(keys)} multi-Region keys in {PRIMARY}, replicated to {STANDBY} and {THIRD}")
        poll(lambda: converged(cluster) and all(standby.describe_key(KeyId=k)["KeyMetadata"]["KeyState"] == "Enabled"
                                                for k in keys))
        t.say("replicas Enabled everywhere; replication lag 0")
        blobs = {k: home.encrypt(KeyId=k, Plaintext=b"ledger entry " + k.encode())["CiphertextBlob"] for k in keys}

        cluster.trent("fault", "down", PRIMARY)
        t.say(f"{PRIMARY} is DOWN")
        for key_id, blob in blobs.items():
            assert standby.decrypt(CiphertextBlob=blob)["Plaintext"].endswith(key_id.encode())
        t.say(f"{STANDBY} decrypts every ciphertext made in {PRIMARY}")
        cluster.trent("fault", "up", PRIMARY)
        for key_id in keys:
            home.update_primary_region(KeyId=key_id, PrimaryRegion=STANDBY)
        poll(lambda: all(_handed_over(standby, home, k) for k in keys))
        t.say(f"primary moved to {STANDBY} for every key (both sides back from Updating)")
        cluster.trent("fault", "partition", STANDBY, THIRD)
        t.say(f"{STANDBY} and {THIRD} partitioned")
        for key_id in keys:
            standby.rotate_key_on_demand(KeyId=key_id)
        t.say(f"rotated every key on the new primary; rotation waits for {THIRD}")
        cluster.trent("fault", "clear")
        t.say("partition healed")
        poll(lambda: converged(cluster) and all(
            "OnDemandRotationStartDate" not in standby.get_key_rotation_status(KeyId=k) for k in keys), timeout=30)
        t.say("rotations complete; replication lag 0; every region holds the same key material")
        third = cluster.client(THIRD)
        for key_id in keys:
            fresh = standby.encrypt(KeyId=key_id, Plaintext=b"after the drill")["CiphertextBlob"]
            assert third.decrypt(CiphertextBlob=fresh)["Plaintext"] == b"after the drill"
            assert third.decrypt(CiphertextBlob=blobs[key_id])["Plaintext"].endswith(key_id.encode())
        t.say(f"{THIRD} decrypts old and new ciphertexts")
        print(cluster.trent("status").stdout)
        t.say("DR drill OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
