"""`trent up --store etcd`: the one-command demo starts a local etcd of its own under the data directory, every
region keeps its state there (across restarts), `trent status` shows the etcd side, and the etcd never outlives the
cluster (a clean stop or a SIGKILL)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from trent.cluster.etcd_local import etcd_binary
from trent.cluster.ports import free_port_block
from trent.cluster.running import ROOT, TOKEN_HEADER, RunningCluster, poll


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(etcd_binary() is None, reason="etcd is not installed (Debian package etcd-server)")
def test_trent_up_store_etcd_keeps_regions_in_a_local_etcd(tmp_path: Path) -> None:
    cluster = RunningCluster(tmp_path / "data", free_port_block(60), extra_args=("--store", "etcd",
                                                                                     "--replica-delay", "0.2"))
    cluster.start(timeout=60)
    etcd_port = cluster.port + 1 + len(cluster.regions) + 50
    try:
        assert port_open(etcd_port) and (tmp_path / "data" / "etcd" / "m0" / "member").is_dir()
        kms = cluster.client("eu-west-1")
        key_id = kms.create_key(Description="kept in etcd")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/in-etcd", TargetKeyId=key_id)
        blob = kms.encrypt(KeyId="alias/in-etcd", Plaintext=b"demo")["CiphertextBlob"]
        # Replication between etcd-backed regions: the lease holder of each region pulls its peers' outboxes.
        home, away = cluster.client("us-east-1"), cluster.client("eu-west-1")
        mrk = home.create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
        home.replicate_key(KeyId=mrk, ReplicaRegion="eu-west-1")
        poll(lambda: away.describe_key(KeyId=mrk)["KeyMetadata"]["KeyState"] == "Enabled", 20)
        sealed = home.encrypt(KeyId=mrk, Plaintext=b"across regions")["CiphertextBlob"]
        assert away.decrypt(CiphertextBlob=sealed)["Plaintext"] == b"across regions"
        out = subprocess.run([sys.executable, "-m", "trent.cluster.cli", "status", "--json", "--data-dir",
                              str(cluster.data_dir)], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
        region = json.loads(out.stdout)["regions"]["eu-west-1"]
        assert region["keys"] == 2  # the key and the multi-Region replica
        assert region["etcd"]["leading"] and region["etcd"]["etcd"][0]["healthy"]
        args = [sys.executable, "-m", "trent.cluster.cli", "status", "--data-dir", str(cluster.data_dir)]
        text = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
        assert "lease holder" in text and "etcd members 1/1 healthy" in text
        # A lookup that misses reads etcd once (off the event loop), and /metrics counts it for the region.
        missing = "1234abcd-12ab-34cd-56ef-1234567890ab"
        with pytest.raises(ClientError, match="NotFoundException"):
            kms.describe_key(KeyId=missing)
        token = (cluster.data_dir / "admin.token").read_text().strip()
        scrape = urllib.request.Request(cluster.gateway_url + "/metrics", headers={TOKEN_HEADER: token})
        with urllib.request.urlopen(scrape, timeout=10) as answer:
            samples = {s.name + json.dumps(s.labels, sort_keys=True): s.value
                       for f in text_string_to_metric_families(answer.read().decode()) for s in f.samples}
        assert samples['trent_etcd_catch_up_reads_total{"region": "eu-west-1"}'] >= 1
        assert 'trent_etcd_lost_races_total{"region": "us-east-1"}' in samples
        cluster.stop()
        poll(lambda: not port_open(etcd_port), 15)  # stopped with the cluster
        cluster.start(timeout=60)
        kms = cluster.client("eu-west-1")
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"demo"
        assert kms.describe_key(KeyId="alias/in-etcd")["KeyMetadata"]["Description"] == "kept in etcd"
        cluster.kill()
        poll(lambda: not port_open(etcd_port), 15)  # a SIGKILLed cluster takes its etcd with it
    finally:
        if cluster.proc is not None:
            cluster.kill()
