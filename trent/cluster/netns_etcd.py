"""A region on etcd across network namespaces (cluster/netns.py): three etcd members and two `trent node`s of
us-east-1, each in a namespace of its own on 198.18.0.0/15 as on separate hosts, the nodes started from their
`trent init` bundles over TLS (the bundles give both the region's one root key), `trent gateway` and the client in
a sixth namespace.

    the etcd member both nodes talk to first cut off from the other two → a write through one node is seen through
    the other → heal → a burst of writes and reads through the gateway → the lease holder SIGKILLed mid-burst →
    the burst goes on through the other node, which holds the lease within the TTL → one etcd member SIGKILLed
    mid-burst → the burst goes on

The client retries as the AWS SDKs do (standard mode); the drill checks that it never saw a call fail after its
retries, and that every acknowledged key is there and every acknowledged ciphertext decrypts at the end.

    python -m trent.cluster.netns_etcd [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from trent.cluster.netns import Net, NetnsUnavailable, WriteBurst, run_drill

REGION = "us-east-1"
MEMBERS = ("etcd-1", "etcd-2", "etcd-3")
NODES = ("us-east-1", "us-east-1-b")
NODE_PORT, GATEWAY_PORT, ETCD_BASE = 4600, 4599, 2379
TTL = 2


def run(out: Path, echo: bool = False, budget: float = 120.0) -> dict[str, Any]:
    """The drill from the machine's own namespace: its result (``ok``, the checks, the timeline)."""
    return run_drill([*MEMBERS, *NODES], out, "trent.cluster.netns_etcd", budget,
                     lambda net: {"run_id": net.run_id, "out": str(out), "echo": echo})


class Drill:
    def __init__(self, spec: dict[str, Any]) -> None:
        from trent.cluster.etcd_local import LocalEtcd
        from trent.cluster.launched import Launched

        self.net = Net([*MEMBERS, *NODES], run_id=spec["run_id"])
        self.out = Path(spec["out"])
        self.echo = bool(spec.get("echo"))
        self.work = Path(tempfile.mkdtemp(prefix="trent-netns-etcd-"))
        self.start = time.monotonic()
        self.timeline: list[tuple[float, str]] = []
        self.etcd = LocalEtcd(self.work / "etcd", members=3, base_port=ETCD_BASE,
                              hosts=[self.net.address(m) for m in MEMBERS],
                              prefixes=[self.net.exec_prefix(m) for m in MEMBERS])
        self.ca = self.work / "bundles" / "cluster" / "ca.pem"
        self.nodes: dict[str, Launched] = {}
        self.gateway: Launched | None = None

    def say(self, text: str) -> None:
        at = round(time.monotonic() - self.start, 3)
        self.timeline.append((at, text))
        if self.echo:
            print(f"[{at:7.3f}s] {text}", flush=True)

    def url(self, node: str) -> str:
        return f"https://{self.net.address(node)}:{NODE_PORT}"

    def start_all(self) -> None:
        from trent.cluster.bundle import init_cluster
        from trent.cluster.launched import Launched

        self.etcd.start(60)
        self.say("3 etcd members up, one per namespace")
        init_cluster(self.work / "bundles", [f"{n}={self.net.address(n)}" for n in NODES] +
                     ["gateway=127.0.0.1,localhost"], [REGION])
        endpoints = json.dumps(list(self.etcd.endpoints))
        for node in NODES:
            config = self.work / f"{node}.toml"
            config.write_text(f'regions = ["{REGION}"]\nhost = "{self.net.address(node)}"\n'
                              f'data_dir = "{self.work / node}"\nbundle = "{self.work / "bundles" / node}"\n'
                              f'store = "etcd"\netcd_endpoints = {endpoints}\netcd_lease_ttl = {TTL}\n'
                              f'[region_ports]\n"{REGION}" = {NODE_PORT}\n')
            self.nodes[node] = Launched(node, ["node", "--region", REGION, "--config", str(config)],
                                        self.out / f"{node}.log", f"{self.url(node)}/_trent/health", self.ca,
                                        prefix=self.net.exec_prefix(node))
        gateway = self.work / "gateway.toml"
        gateway.write_text(f'regions = ["{REGION}"]\nhost = "127.0.0.1"\nport = {GATEWAY_PORT}\n'
                           f'data_dir = "{self.work / "gateway"}"\nbundle = "{self.work / "bundles" / "gateway"}"\n'
                           f'[peers]\n"{REGION}" = {json.dumps([self.url(n) for n in NODES])}\n')
        self.gateway = Launched("gateway", ["gateway", "--config", str(gateway)], self.out / "gateway.log",
                                f"https://127.0.0.1:{GATEWAY_PORT}/_trent/health", self.ca)
        self.nodes[NODES[0]].start(60)  # the first takes the lease
        self.nodes[NODES[1]].start(60)
        self.gateway.start(60)
        self.token = (self.work / "bundles" / "gateway" / "admin.token").read_text()
        self.say("2 nodes of us-east-1 and the gateway up in their namespaces over TLS")

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("kms", endpoint_url=f"https://127.0.0.1:{GATEWAY_PORT}", region_name=REGION,
                            aws_access_key_id="test", aws_secret_access_key="test", verify=str(self.ca),
                            config=Config(retries={"max_attempts": 8, "mode": "standard"}, connect_timeout=5,
                                          read_timeout=30))

    def node_status(self, node: str) -> dict[str, Any]:
        import ssl
        import urllib.request

        request = urllib.request.Request(f"{self.url(node)}/_trent/status",
                                         headers={"X-Trent-Admin-Token": self.token})
        with urllib.request.urlopen(request, timeout=5, context=ssl.create_default_context(cafile=str(self.ca))) as r:
            doc: dict[str, Any] = json.loads(r.read())
        return doc

    def direct(self, node: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("kms", endpoint_url=self.url(node), region_name=REGION, aws_access_key_id="test",
                            aws_secret_access_key="test", verify=str(self.ca),
                            config=Config(retries={"max_attempts": 8, "mode": "standard"}, connect_timeout=5,
                                          read_timeout=30))

    def cut_off_member(self) -> float:
        """The member both nodes talk to first is cut off from the other two: a write through one node still lands
        (its client retries), and the other node, whose watch was on that member, sees it (the member ends a watch
        once it has no leader). How long until the other node saw it."""
        first, second = self.direct(NODES[0]), self.direct(NODES[1])
        key_id = second.create_key(Description="partition")["KeyMetadata"]["KeyId"]
        _wait(lambda: first.describe_key(KeyId=key_id), 10)
        for other in MEMBERS[1:]:
            self.net.partition(MEMBERS[0], other)
        self.say(f"etcd member {MEMBERS[0]} cut off from the other two (100 % loss)")
        started = time.monotonic()
        second.tag_resource(KeyId=key_id, Tags=[{"TagKey": "during-partition", "TagValue": "1"}])
        _wait(lambda: any(t["TagKey"] == "during-partition"
                          for t in first.list_resource_tags(KeyId=key_id)["Tags"]), 20)
        seen = round(time.monotonic() - started, 2)
        self.say(f"a write through {NODES[1]} seen through {NODES[0]} after {seen} s")
        for other in MEMBERS[1:]:
            self.net.heal(MEMBERS[0], other)
        self.etcd.wait_healthy(30)
        self.say("partition healed")
        return seen

    def execute(self) -> dict[str, Any]:
        # One region: its hosts are as near each other as in one data centre, so no delay is applied.
        result: dict[str, Any] = {"ok": False, "delays": "none (one region)"}
        checks: dict[str, Any] = {}
        try:
            self.start_all()
            checks["partition_write_seen_seconds"] = self.cut_off_member()
            burst = _Burst(self.client())
            burst.start()
            _wait(lambda: burst.acks >= 20, 30)
            holder = _wait(lambda: next((n for n in NODES if self.node_status(n)["etcd"]["leading"]), None), 10)
            survivor = next(n for n in NODES if n != holder)
            self.nodes[holder].kill()
            killed = time.monotonic()
            self.say(f"node {holder} (the lease holder) SIGKILLed mid-burst after {burst.acks} acknowledged calls")
            _wait(lambda: self.node_status(survivor)["etcd"]["leading"], TTL + 10)
            checks["lease_moved_seconds"] = round(time.monotonic() - killed, 2)
            self.say(f"node {survivor} holds the lease after {checks['lease_moved_seconds']} s")
            before = burst.acks
            _wait(lambda: burst.acks >= before + 60, 30)
            self.etcd.kill(1)
            self.say(f"etcd member {MEMBERS[1]} SIGKILLed mid-burst")
            before = burst.acks
            _wait(lambda: burst.acks >= before + 60, 30)
            burst.stop()
            self.say(f"burst stopped: {burst.acks} acknowledged, {len(burst.failures)} failed after retries")
            kms = self.client()
            known = {k["KeyId"] for page in kms.get_paginator("list_keys").paginate() for k in page["Keys"]}
            checks.update(acknowledged=burst.acks, failures=[str(f) for f in burst.failures[:5]],
                          lost_keys=sorted(set(burst.keys) - known),
                          undecryptable=[k for k, blob, plain in burst.blobs
                                         if kms.decrypt(CiphertextBlob=blob)["Plaintext"] != plain])
            ok = not burst.failures and not checks["lost_keys"] and not checks["undecryptable"] and \
                checks["lease_moved_seconds"] <= TTL + 3
            result.update(ok=ok)
            self.say("etcd region drill " + ("OK" if ok else "FAILED"))
        except Exception as exc:
            self.say(f"drill failed: {type(exc).__name__}: {exc}")
            result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        finally:
            for launched in [self.gateway, *self.nodes.values()]:
                if launched is not None:
                    launched.stop(10)
            self.etcd.stop()
            shutil.rmtree(self.work, ignore_errors=True)
        result.update(checks=checks, timeline=self.timeline)
        return result


class _Burst(WriteBurst):
    """CreateKey, Encrypt, TagResource and Decrypt through the gateway until stopped."""

    def __init__(self, kms: Any) -> None:
        super().__init__(kms, pause=0.05, join_timeout=60)

    def step(self, n: int) -> None:
        if n % 4 == 1 or not self.keys:
            self.keys.append(self.kms.create_key(Description=f"burst {n}")["KeyMetadata"]["KeyId"])
            return
        key_id, plain = self.keys[n % len(self.keys)], f"burst {n}".encode()
        blob = self.kms.encrypt(KeyId=key_id, Plaintext=plain)["CiphertextBlob"]
        self.kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": f"n{n % 7}", "TagValue": str(n)}])
        self.blobs.append((key_id, blob, plain))


def _wait(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netns-etcd", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="drill-netns-etcd", help="where the result and the logs go")
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        spec = json.loads(args.inside)
        result = Drill(spec).execute()
        (Path(spec["out"]) / "result.json").write_text(json.dumps(result, indent=2))
        return 0 if result["ok"] else 1
    try:
        result = run(Path(args.out), echo=True)
    except NetnsUnavailable as exc:
        print(f"netns etcd drill skipped: {exc}")
        return 0
    print(json.dumps({k: result.get(k) for k in ("ok", "delays", "checks", "leftover_namespaces", "error")},
                     indent=2))
    return 0 if result.get("ok") and not result.get("leftover_namespaces") else 1


if __name__ == "__main__":
    sys.exit(main())
