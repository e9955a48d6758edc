"""The DR drill across network namespaces (cluster/netns.py): each region's `trent node` in a namespace of its own,
started from `trent init` bundles over TLS as on separate hosts, a `trent gateway` and the client in a fourth.

    MRKs created and replicated → the primary's process SIGKILLed in the middle of a burst of writes → the
    replicas decrypt what it acknowledged → it restarts on the same data → the primary moves → two regions are
    partitioned by 100 % loss while the new primary rotates → heal → every region converges

and checks that no acknowledged write was lost and that every ciphertext decrypts in every region. It also times
how long an on-demand rotation at the primary takes to become visible in each replica. Everything it made (the
namespaces, the processes in them) is removed at the end, also when it fails.

    python -m trent.cluster.netns_drill [--fast] [--out DIR]        (make drill-netns: the full drill)

The orchestration runs inside the client's namespace (``--inside``): only from there are the regions' addresses
reachable at all."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from trent.bench.key_poll import KeyPoller, rotation_visible_ms
from trent.bench.loadgen import Target
from trent.cluster.latency import matrix_for, rtt_ms
from trent.cluster.netns import Net, NetnsUnavailable, WriteBurst, describe_delays, run_drill

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-2")
NODE_PORT, GATEWAY_PORT = 4600, 4599


@dataclass(frozen=True)
class Plan:
    name: str
    keys: int  # multi-Region keys of the drill
    burst_acks: int  # acknowledged writes before the primary is killed
    partition_seconds: float  # how long the partition stands
    visibility_samples: int  # on-demand rotations timed
    replica_delay: float
    budget: float  # seconds for the whole drill inside the namespaces


FAST = Plan("fast", keys=1, burst_acks=12, partition_seconds=1.0, visibility_samples=3, replica_delay=0.2,
            budget=90.0)
FULL = Plan("full", keys=3, burst_acks=80, partition_seconds=5.0, visibility_samples=24, replica_delay=0.5,
            budget=400.0)


@dataclass
class Timeline:
    start: float = field(default_factory=time.monotonic)
    events: list[tuple[float, str]] = field(default_factory=list)
    lag: list[dict[str, Any]] = field(default_factory=list)
    echo: bool = True

    def now(self) -> float:
        return time.monotonic() - self.start

    def say(self, text: str) -> None:
        self.events.append((round(self.now(), 3), text))
        if self.echo:
            print(f"[{self.now():7.3f}s] {text}", flush=True)


def poll(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


# -- the deploy recipe's configuration files ------------------------------------------------------------------


def node_toml(region: str, regions: list[str], urls: dict[str, str], host: str, bundle: Path, data: Path,
              latency: str = "none", replica_delay: float = 2.0) -> str:
    """/etc/trent/REGION.toml of deploy/README.md: what `trent node --region REGION --config` reads on its host."""
    peers = "\n".join(f'"{r}" = "{urls[r]}"' for r in regions if r != region)
    return (f'regions = {json.dumps(regions)}\nhost = "{host}"\ndata_dir = "{data}"\nbundle = "{bundle}"\n'
            f'latency_profile = "{latency}"\nreplica_creating_seconds = {replica_delay}\n\n'
            f'[region_ports]\n"{region}" = {NODE_PORT}\n\n[peers]\n{peers}\n')


def gateway_toml(urls: dict[str, str], host: str, bundle: Path, data: Path) -> str:
    """/etc/trent/gateway.toml of deploy/README.md: every region's node(s) by URL."""
    peers = "\n".join(f'"{r}" = ["{url}"]' for r, url in urls.items())
    return (f'regions = {json.dumps(list(urls))}\nhost = "{host}"\nport = {GATEWAY_PORT}\ndata_dir = "{data}"\n'
            f'bundle = "{bundle}"\n\n[peers]\n{peers}\n')


# -- the outside: namespaces made, checked, removed ---------------------------------------------------------------


def run(plan: Plan, out: Path, regions: tuple[str, ...] = REGIONS, echo: bool = True) -> dict[str, Any]:
    """The whole drill from the machine's own namespace: its result (``ok``, the checks, the timeline)."""
    def prepare(net: Net) -> dict[str, Any]:
        return {"regions": list(regions), "run_id": net.run_id, "delays": net.shape(), "plan": asdict(plan),
                "out": str(out), "echo": echo}

    return run_drill(list(regions), out, "trent.cluster.netns_drill", plan.budget + 60, prepare)


# -- the inside: the drill itself ------------------------------------------------------------------------------


class Drill:
    def __init__(self, spec: dict[str, Any]) -> None:
        from trent.cluster.launched import Launched

        self.regions: list[str] = spec["regions"]
        self.plan = Plan(**spec["plan"])
        self.net = Net(self.regions, run_id=spec["run_id"], delays=spec["delays"])
        self.out = Path(spec["out"])
        self.run = Path(tempfile.mkdtemp(prefix="trent-drill-"))
        self.timeline = Timeline(echo=spec.get("echo", True))
        self.checks: dict[str, Any] = {"lost_keys": [], "undecryptable": [], "acked_writes": 0,
                                       "acked_ciphertexts": 0}
        self.ca = self.run / "bundles" / "cluster" / "ca.pem"
        self.nodes: dict[str, Launched] = {}
        self.gateway: Launched | None = None
        self.blobs: list[tuple[str, bytes, bytes]] = []  # key, blob, plaintext
        self._sampling = threading.Event()

    # -- set-up ------------------------------------------------------------------------------------------

    def node_url(self, region: str) -> str:
        return f"https://{self.net.address(region)}:{NODE_PORT}"

    def start_cluster(self) -> None:
        from trent.cluster.bundle import init_cluster
        from trent.cluster.launched import Launched

        nodes = [f"{r}={self.net.address(r)}" for r in self.regions] + ["gateway=127.0.0.1,localhost"]
        init_cluster(self.run / "bundles", nodes, self.regions)  # the deploy recipe's first step
        # The network delays already (netem or NFQUEUE): the nodes must not add the matrix a second time.
        latency = "none" if self.net.delays else "aws"
        self.checks["node_latency_profile"] = latency
        for region in self.regions:
            # The deploy recipe's node configuration (deploy/README.md), one file per host.
            config = self.run / f"{region}.toml"
            config.write_text(node_toml(region, self.regions, {r: self.node_url(r) for r in self.regions},
                                        self.net.address(region), self.run / "bundles" / region, self.run / region,
                                        latency, self.plan.replica_delay))
            self.nodes[region] = Launched(
                region, ["node", "--region", region, "--config", str(config)], self.out / f"{region}.log",
                f"{self.node_url(region)}/_trent/health", self.ca, prefix=self.net.exec_prefix(region))
        gateway_config = self.run / "gateway.toml"
        gateway_config.write_text(gateway_toml({r: self.node_url(r) for r in self.regions}, "127.0.0.1",
                                               self.run / "bundles" / "gateway", self.run / "gateway"))
        self.gateway = Launched("gateway", ["gateway", "--config", str(gateway_config)], self.out / "gateway.log",
                                f"https://127.0.0.1:{GATEWAY_PORT}/_trent/health", self.ca)
        for launched in [*self.nodes.values(), self.gateway]:
            launched.launch()
        for launched in [*self.nodes.values(), self.gateway]:
            launched.wait(60)
        self.token = (self.run / "bundles" / "gateway" / "admin.token").read_text()
        self.timeline.say(f"{len(self.regions)} nodes up in their namespaces over TLS, delays by "
                          f"{describe_delays(self.net.delays)}")

    def client(self, region: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client("kms", endpoint_url=f"https://127.0.0.1:{GATEWAY_PORT}", region_name=region,
                            aws_access_key_id="test", aws_secret_access_key="test", verify=str(self.ca),
                            config=Config(retries={"max_attempts": 0}, connect_timeout=5, read_timeout=30))

    def _tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def status(self) -> dict[str, Any]:
        import urllib.request

        request = urllib.request.Request(f"https://127.0.0.1:{GATEWAY_PORT}/_trent/status",
                                         headers={"X-Trent-Admin-Token": self.token})
        with urllib.request.urlopen(request, timeout=10, context=self._tls()) as r:
            doc: dict[str, Any] = json.loads(r.read())
        return doc

    def _sample(self) -> None:
        while not self._sampling.is_set():
            try:
                doc = self.status()
                links = {f"{peer}->{name}": link["lag_records"] for name, region in doc["regions"].items()
                         for peer, link in region["replication"].items()}
                self.timeline.lag.append({"t": round(self.timeline.now(), 3), "links": links,
                                          "consistent": doc["consistency"]["consistent"],
                                          "up": {n: r["up"] for n, r in doc["regions"].items()}})
            except Exception:
                pass
            self._sampling.wait(0.25)

    def converged(self) -> bool:
        doc = self.status()
        lag = sum(link["lag_records"] for r in doc["regions"].values() for link in r["replication"].values())
        connected = all(link["connected"] for r in doc["regions"].values() for link in r["replication"].values())
        return lag == 0 and connected and bool(doc["consistency"]["consistent"])

    # -- the drill ---------------------------------------------------------------------------------------

    def drive(self) -> None:
        primary, standby, third = self.regions[0], self.regions[1], self.regions[2]
        t, kms = self.timeline, {r: self.client(r) for r in self.regions}
        keys = [kms[primary].create_key(MultiRegion=True, Description=f"drill {i}")["KeyMetadata"]["KeyId"]
                for i in range(self.plan.keys)]
        for key_id in keys:
            for region in self.regions[1:]:
                kms[primary].replicate_key(KeyId=key_id, ReplicaRegion=region)
        poll(lambda: all(kms[r].describe_key(KeyId=k)["KeyMetadata"]["KeyState"] == "Enabled"
                         for r in self.regions for k in keys), 30)
        t.say(f"{len(keys)} MRK(s) created in {primary}, replicated and Enabled in every region")

        burst = _Burst(self.client(primary), keys)
        burst.start()
        poll(lambda: burst.acks >= self.plan.burst_acks, 60, 0.01)
        victim = self.nodes[primary].pid
        self.nodes[primary].kill()
        burst.stop()
        t.say(f"{primary}'s node (pid {victim}) SIGKILLed mid-burst: {burst.acks} writes acknowledged, "
              f"{len(burst.failures)} refused")
        self.blobs += burst.blobs
        self.checks["acked_writes"] = burst.acks
        for region in (standby, third):
            self._decrypt_all(kms[region], region)
        t.say(f"{standby} and {third} decrypt every ciphertext {primary} acknowledged before it died")

        self.nodes[primary].start(60)
        t.say(f"{primary} restarted on the same data")
        for key_id in burst.keys:
            try:
                kms[primary].describe_key(KeyId=key_id)
            except Exception:
                self.checks["lost_keys"].append(key_id)
        self._decrypt_all(kms[primary], primary)
        t.say(f"{primary}: {len(burst.keys)} acknowledged keys present, {len(self.blobs)} ciphertexts decrypt")

        for key_id in keys:
            kms[primary].update_primary_region(KeyId=key_id, PrimaryRegion=standby)
        poll(lambda: all(kms[standby].describe_key(KeyId=k)["KeyMetadata"]["MultiRegionConfiguration"]
                         ["MultiRegionKeyType"] == "PRIMARY" and kms[standby].describe_key(KeyId=k)
                         ["KeyMetadata"]["KeyState"] == "Enabled" for k in keys), 30)
        t.say(f"primary moved to {standby}")

        self.net.partition(standby, third)
        t.say(f"{standby} and {third} partitioned (100 % loss)")
        for key_id in keys:
            kms[standby].rotate_key_on_demand(KeyId=key_id)
            self.blobs.append((key_id, kms[standby].encrypt(KeyId=key_id, Plaintext=b"during the partition")
                               ["CiphertextBlob"], b"during the partition"))
        time.sleep(self.plan.partition_seconds)
        # The rotation cannot finish while the third region cannot confirm it holds the new material.
        self.checks["partition_held"] = all(
            "OnDemandRotationStartDate" in kms[standby].get_key_rotation_status(KeyId=k) for k in keys)
        self.net.heal(standby, third)
        t.say("partition healed")
        poll(lambda: self.converged() and all(
            "OnDemandRotationStartDate" not in kms[standby].get_key_rotation_status(KeyId=k) for k in keys), 60, 0.1)
        t.say("converged: replication lag 0, every region consistent, rotations complete")
        for key_id in keys:
            self.blobs.append((key_id, kms[standby].encrypt(KeyId=key_id, Plaintext=b"after")["CiphertextBlob"],
                               b"after"))
        for region in self.regions:
            self._decrypt_all(kms[region], region)
        self.checks["acked_ciphertexts"] = len(self.blobs)
        t.say(f"every one of {len(self.blobs)} ciphertexts decrypts in every region")
        # The operator's view, as the recipe has it: `trent status` on the gateway's host.
        status = subprocess.run([sys.executable, "-m", "trent.cluster.cli", "status", "--data-dir",
                                 str(self.run / "gateway")], capture_output=True, text=True, timeout=60,
                                cwd=Path(__file__).resolve().parents[2])
        self.checks["trent_status"] = status.returncode == 0 and "consistent" in status.stdout
        t.say("trent status on the gateway's host: " + (status.stdout.strip().splitlines() or ["?"])[-2])
        self.checks["rotation_visibility_ms"] = self.visibility(kms, standby)

    def visibility(self, kms: dict[str, Any], primary: str) -> dict[str, Any]:
        """An on-demand rotation at the primary of a key replicated to one region, timed from its acknowledgement
        until that replica names the new material current: the pair's own figure (with more replicas, a rotation
        waits for the farthest)."""
        samples: dict[str, list[float]] = {r: [] for r in self.regions if r != primary}
        per_key = 8  # on-demand rotations of one key stay well under the service's limit
        for region, values in samples.items():
            key_id = ""
            for i in range(self.plan.visibility_samples):
                if i % per_key == 0:
                    key_id = kms[primary].create_key(MultiRegion=True)["KeyMetadata"]["KeyId"]
                    kms[primary].replicate_key(KeyId=key_id, ReplicaRegion=region)
                    poll(partial(self._enabled, kms, key_id, [region]), 30)
                # Idle links, as the figure is defined: right after the last rotation the replica's next
                # long-poll would still be on its way (one more one-way delay).
                time.sleep(rtt_ms(primary, region) / 1000 + 0.05)
                with KeyPoller(Target("127.0.0.1", GATEWAY_PORT, region), key_id, tls=self._tls()) as replica, \
                        contextlib.suppress(TimeoutError):  # a rotation never seen leaves no sample
                    values.append(rotation_visible_ms(kms[primary], key_id, replica, 30))
                poll(partial(self._rotated, kms[primary], key_id), 30)
        out: dict[str, Any] = {}
        for region, values in samples.items():
            ordered = sorted(values)
            p99 = ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)] if ordered else None
            rtt = rtt_ms(primary, region)
            out[region] = {"samples": values, "p50": ordered[len(ordered) // 2] if ordered else None, "p99": p99,
                           "rtt_ms": rtt, "target_ms": 1.5 * rtt + 20}
        self.timeline.say("rotation visibility: " + ", ".join(
            f"{primary}->{r} p99 {v['p99']} ms (RTT {v['rtt_ms']} ms)" for r, v in out.items()))
        return out

    @staticmethod
    def _enabled(kms: dict[str, Any], key_id: str, regions: list[str]) -> bool:
        return all(kms[r].describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled" for r in regions)

    @staticmethod
    def _rotated(kms: Any, key_id: str) -> bool:
        return "OnDemandRotationStartDate" not in kms.get_key_rotation_status(KeyId=key_id)

    def _decrypt_all(self, kms: Any, region: str) -> None:
        for key_id, blob, plain in self.blobs:
            try:
                if kms.decrypt(CiphertextBlob=blob, KeyId=key_id)["Plaintext"] != plain:
                    self.checks["undecryptable"].append([region, key_id, "wrong plaintext"])
            except Exception as exc:
                self.checks["undecryptable"].append([region, key_id, type(exc).__name__])

    # -- the whole run ----------------------------------------------------------------------------------

    def execute(self) -> dict[str, Any]:
        result: dict[str, Any] = {"plan": self.plan.name, "regions": self.regions,
                                  "rtt_matrix_ms": matrix_for(self.regions),
                                  "delays": describe_delays(self.net.delays),
                                  "partition": "neighbour entries to an unused MAC: 100 % loss"}
        sampler = threading.Thread(target=self._sample, daemon=True)
        try:
            self.start_cluster()
            sampler.start()
            self.drive()
            ok = (not self.checks["lost_keys"] and not self.checks["undecryptable"]
                  and bool(self.checks.get("partition_held")) and bool(self.checks.get("trent_status")))
            result.update(ok=ok)
            self.timeline.say("DR drill " + ("OK" if ok else "FAILED"))
        except Exception as exc:
            self.timeline.say(f"drill failed: {type(exc).__name__}: {exc}")
            result.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._sampling.set()
            for launched in [self.gateway, *self.nodes.values()]:
                if launched is not None:
                    launched.stop(10)
            shutil.rmtree(self.run, ignore_errors=True)
        result.update(checks=self.checks, timeline=self.timeline.events, lag=self.timeline.lag)
        return result


class _Burst(WriteBurst):
    """Writes at the primary until stopped: MRK ciphertexts and new keys."""

    def __init__(self, kms: Any, mrks: list[str]) -> None:
        super().__init__(kms, pause=0.02, join_timeout=30)
        self.mrks = mrks

    def step(self, n: int) -> None:
        if n % 3 == 0:
            self.keys.append(self.kms.create_key(Description=f"burst {n}")["KeyMetadata"]["KeyId"])
        else:
            key_id, plain = self.mrks[n % len(self.mrks)], f"burst {n}".encode()
            blob = self.kms.encrypt(KeyId=key_id, Plaintext=plain)["CiphertextBlob"]
            self.blobs.append((key_id, blob, plain))


# -- reports ----------------------------------------------------------------------------------------------


def write_report(result: dict[str, Any], out: Path) -> list[Path]:
    """timeline.txt always; lag.png when matplotlib is installed (the bench extra)."""
    made = [out / "timeline.txt"]
    lines = [f"{n:2d} [{at:8.3f}s] {text}" for n, (at, text) in enumerate(result.get("timeline", []), 1)]
    lines.append(f"result: {'OK' if result.get('ok') else 'FAILED'}; leftover namespaces: "
                 f"{result.get('leftover_namespaces')}")
    (out / "timeline.txt").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return made
    samples = result.get("lag", [])
    links = sorted({name for s in samples for name in s["links"]})
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name in links:
        ax.step([s["t"] for s in samples], [s["links"].get(name, 0) for s in samples], where="post", label=name)
    top = max([1, *(v for s in samples for v in s["links"].values())])
    for n, (at, _text) in enumerate(result.get("timeline", []), 1):
        ax.axvline(at, color="grey", alpha=0.3, linewidth=0.8)
        ax.annotate(str(n), (at, top * 1.02), fontsize=7, ha="center", va="bottom", color="dimgrey")
    ax.set_xlabel("seconds into the drill (numbered lines: the events of timeline.txt)")
    ax.set_ylabel("replication lag (records)")
    ax.set_title(f"DR drill across network namespaces ({result.get('delays')})")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "lag.png", dpi=120)
    made.append(out / "lag.png")
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netns-drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fast", action="store_true", help="the short drill of `make test`")
    parser.add_argument("--out", default="drill-netns", help="where the timeline, result and plot go")
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inside:
        spec = json.loads(args.inside)
        result = Drill(spec).execute()
        (Path(spec["out"]) / "result.json").write_text(json.dumps(result, indent=2))
        return 0 if result["ok"] else 1
    out = Path(args.out)
    try:
        result = run(FAST if args.fast else FULL, out)
    except NetnsUnavailable as exc:
        print(f"netns drill skipped: {exc}")
        return 0
    for path in write_report(result, out):
        print(f"wrote {path}")
    print(json.dumps({k: result.get(k) for k in ("ok", "delays", "delay_counts", "checks", "leftover_namespaces",
                                                 "error")},
                     indent=2, default=str)[:4000])
    return 0 if result.get("ok") and not result.get("leftover_namespaces") else 1


if __name__ == "__main__":
    sys.exit(main())
