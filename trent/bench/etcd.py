"""etcd-backed regions in the benchmark (`trent bench --only etcd`, and ``etcd_scale`` for the 100k-key start):

- Encrypt against one region port on etcd vs the same on SQLite (reads come from memory on both), alternating pairs;
- CreateKey p50/p99 on etcd vs SQLite (a write is one etcd transaction: Raft over a 3-member cluster on loopback);
- two `trent node`s of one region behind `trent gateway` vs one, with each node's CPU (report scaling per core);
- Encrypt beside another client that names a key that does not exist (each miss asks etcd whether another node just
  made it, off the event loop), and beside one that tags a key (each write waits for etcd on the event loop), on etcd
  vs SQLite;
- a node's start with N keys in etcd (cache filled from one paged range read).

Each runs against a 3-member etcd on loopback ports, on the same shared machine as the load generator."""

from __future__ import annotations

import secrets
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from trent.bench.loadgen import Call, Target, run_load
from trent.bench.procs import TargetCluster, TrentCluster, cpu_seconds
from trent.bench.scenarios import Fixtures, _b64, _body
from trent.cluster.etcd_local import LocalEtcd, etcd_binary
from trent.cluster.launched import Launched
from trent.cluster.ports import free_port_block

REGION = "us-east-1"
MISSING = "1234abcd-12ab-34cd-56ef-1234567890ab"  # a key id no node has


def _etcd(root: Path) -> LocalEtcd:
    return LocalEtcd(root / "etcd", members=3).start()


def _strip(row: dict[str, Any]) -> dict[str, Any]:
    row.pop("latency_sample_ms", None)
    return row


def store_comparison(settings: Any, progress: Any, etcd: LocalEtcd) -> dict[str, Any]:
    from trent.bench.suite import measured

    out: dict[str, Any] = {"connections": 32, "encrypt_pairs": [], "create_key": {}}
    clusters = {"sqlite": TrentCluster(), "etcd": TrentCluster(extra=(
        "--store", "etcd", "--etcd-endpoints", ",".join(etcd.endpoints)))}
    try:
        fixtures = {name: Fixtures(c.client(REGION)) for name, c in clusters.items()}
        targets = {name: Target("127.0.0.1", c.region_port(REGION), REGION) for name, c in clusters.items()}
        for i in range(settings.rounds):
            pair = {name: _strip(measured(clusters[name], targets[name], [fixtures[name].call("Encrypt")],
                                          settings, 32)) for name in ("sqlite", "etcd")}
            out["encrypt_pairs"].append(pair)
            progress.step(f"Encrypt etcd vs sqlite, round {i + 1}",
                          f"{pair['etcd']['req_per_s']} vs {pair['sqlite']['req_per_s']} req/s")
        for name in ("sqlite", "etcd"):
            row = _strip(measured(clusters[name], targets[name], [fixtures[name].call("CreateKey")], settings, 8))
            out["create_key"][name] = {k: row[k] for k in ("req_per_s", "p50_ms", "p99_ms", "errors",
                                                           "server_cpu_ms_per_request")}
            progress.step(f"CreateKey on {name} x8", f"p50 {row['p50_ms']} p99 {row['p99_ms']} ms")
        out["beside"] = {}
        for name, connections in (("missing_key", 4), ("tag_resource", 1)):
            out["beside"][name] = {}
            for store in ("sqlite", "etcd"):
                fx = fixtures[store]
                other = (Call("Encrypt", _body({"KeyId": MISSING, "Plaintext": _b64(b"x")})) if name == "missing_key"
                         else Call("TagResource", _body({"KeyId": fx.symmetric,
                                                         "Tags": [{"TagKey": "t", "TagValue": "v"}]})))
                row = _beside(clusters[store], targets[store], fx.call("Encrypt"),
                              [(targets[store], other, connections)], settings)
                out["beside"][name][store] = row
                progress.step(f"Encrypt beside {name} on {store}",
                              f"{row['encrypt']['req_per_s']} req/s, p99 {row['encrypt']['p99_ms']} ms")
    finally:
        for cluster in clusters.values():
            cluster.stop()
    out["encrypt_etcd_vs_sqlite"] = round(statistics.median(
        p["etcd"]["req_per_s"] / p["sqlite"]["req_per_s"] for p in out["encrypt_pairs"]), 3)
    return out


def _beside(cluster: TrentCluster | TargetCluster, target: Target, encrypt: Call,
            others: list[tuple[Target, Call, int]], settings: Any) -> dict[str, Any]:
    """Encrypt on 32 connections to ``target`` while other clients send their calls, each to its target on its own
    connections; how many of those each got answered (any answer: a missing key's is an error) per second."""
    from trent.bench.suite import measured

    sides: list[dict[str, Any]] = [{} for _ in others]
    threads = [threading.Thread(target=lambda side=side, t=t, call=call, n=n: side.update(run_load(
        t, [call], connections=n, seconds=settings.seconds, processes=1).summary()))
        for side, (t, call, n) in zip(sides, others, strict=True)]
    for thread in threads:
        thread.start()
    try:
        row = _strip(measured(cluster, target, [encrypt], settings, 32))
    finally:
        for thread in threads:
            thread.join()
    answered = [round((side.get("requests", 0) + side.get("errors", 0)) / max(side.get("seconds") or 0.0, 1e-9), 1)
                for side in sides]
    out = {"encrypt": {k: row[k] for k in ("req_per_s", "p50_ms", "p99_ms", "errors")},
           "other_connections": others[0][2], "other_answered_per_s": answered[0]}
    if len(others) > 1:
        out["others"] = [{"answered_per_s": a, "succeeded_per_s": side.get("req_per_s"), "errors": side.get("errors")}
                         for a, side in zip(answered, sides, strict=True)]
    return out


class _Region:
    """Nodes of one etcd-backed region and a gateway in front of them, as processes."""

    def __init__(self, etcd: LocalEtcd, root: Path) -> None:
        self.root = root
        self.base = free_port_block(4)
        self.config = root / "trent.toml"
        endpoints = ", ".join(f'"{e}"' for e in etcd.endpoints)
        self.config.write_text(f'store = "etcd"\netcd_endpoints = [{endpoints}]\netcd_prefix = "/bench-{self.base}"\n'
                               f'root_keys = {{ "{REGION}" = "{secrets.token_hex(32)}" }}\n')
        self.config.chmod(0o600)
        self.nodes: list[Launched] = []
        self.gateway: Launched | None = None

    def node(self, n: int) -> Launched:
        port = self.base + 1 + n
        launched = Launched(f"node{n}", ["node", "--region", REGION, "--regions", REGION, "--port", str(port),
                                         "--config", str(self.config), "--data-dir", str(self.root / f"n{n}")],
                            self.root / f"n{n}.log", f"http://127.0.0.1:{port}/_trent/health").start(120)
        self.nodes.append(launched)
        return launched

    def front(self, count: int) -> Launched:
        if self.gateway is not None:
            self.gateway.stop()
        regions = [a for n in range(count) for a in ("--region", f"{REGION}=http://127.0.0.1:{self.base + 1 + n}")]
        self.gateway = Launched("gateway", ["gateway", "--port", str(self.base), *regions, "--config",
                                            str(self.config), "--data-dir", str(self.root / "gw")],
                                self.root / "gw.log", f"http://127.0.0.1:{self.base}/_trent/health").start()
        return self.gateway

    def stop(self) -> None:
        for launched in [*self.nodes, *([self.gateway] if self.gateway else [])]:
            launched.stop()


def nodes_behind_gateway(settings: Any, progress: Any, etcd: LocalEtcd) -> dict[str, Any]:
    from trent.bench.procs import kms_client
    from trent.bench.suite import measured

    root = Path(tempfile.mkdtemp(prefix="trent-bench-etcd-"))
    region = _Region(etcd, root)
    out: dict[str, Any] = {"connections": 32, "runs": {}}
    try:
        region.node(0)
        for count in (1, 2):
            if count == 2:
                region.node(1)
            region.front(count)
            fixtures = Fixtures(kms_client(f"http://127.0.0.1:{region.base}", REGION))
            before = [cpu_seconds(n.pid) for n in region.nodes[:count]]
            started = time.monotonic()
            front = TargetCluster(f"http://127.0.0.1:{region.base}")  # (node CPU is read per node below)
            row = _strip(measured(front, Target("127.0.0.1", region.base, REGION), [fixtures.call("Encrypt")],
                                  settings, 32))
            wall = time.monotonic() - started
            cores = [round((cpu_seconds(n.pid) - b) / wall, 3) for n, b in zip(region.nodes[:count], before,
                                                                              strict=True)]
            row["node_cpu_cores"] = cores
            row["req_per_s_per_node_core"] = round(row["req_per_s"] / max(sum(cores), 1e-9), 1)
            out["runs"][str(count)] = row
            progress.step(f"Encrypt via gateway, {count} node(s)",
                          f"{row['req_per_s']} req/s, node cores {cores}")
        # Both nodes tagging one key at once (every commit of one is a lost race for the other's in flight), and
        # Encrypt on the first node's own port meanwhile.
        tag = Call("TagResource", _body({"KeyId": fixtures.symmetric, "Tags": [{"TagKey": "t", "TagValue": "v"}]}))
        ports = [Target("127.0.0.1", region.base + 1 + n, REGION) for n in (0, 1)]
        contended = _beside(TargetCluster(f"http://127.0.0.1:{region.base + 1}"), ports[0], fixtures.call("Encrypt"),
                            [(port, tag, 2) for port in ports], settings)
        out["contended"] = contended
        progress.step("Encrypt on node 0 beside both nodes tagging one key",
                      f"{contended['encrypt']['req_per_s']} req/s, p99 {contended['encrypt']['p99_ms']} ms")
    finally:
        region.stop()
        shutil.rmtree(root, ignore_errors=True)
    return out


def etcd(settings: Any, progress: Any) -> dict[str, Any]:
    if etcd_binary() is None:
        progress.step("etcd", "skipped")
        return {"skipped": "etcd is not installed (Debian package etcd-server)"}
    root = Path(tempfile.mkdtemp(prefix="trent-bench-etcd-"))
    cluster = _etcd(root)
    try:
        return {"stores": store_comparison(settings, progress, cluster),
                "nodes": nodes_behind_gateway(settings, progress, cluster)}
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def etcd_scale(settings: Any, progress: Any) -> list[dict[str, Any]]:
    """A node starting over N keys of its region in etcd: seeded straight into etcd, then timed until it serves."""
    from trent.bench.seed import seed
    from trent.node.store.etcd_client import EtcdSettings

    if etcd_binary() is None:
        return [{"skipped": "etcd is not installed"}]
    root = Path(tempfile.mkdtemp(prefix="trent-bench-etcd-scale-"))
    members = _etcd(root)
    rows = []
    try:
        for count in settings.scale:
            data = root / f"data{count}"
            settings_etcd = EtcdSettings(endpoints=members.endpoints, prefix=f"/scale{count}")
            started = time.monotonic()
            seed(data, (REGION,), count, backend="etcd", etcd=settings_etcd)
            seeded = time.monotonic() - started
            config = root / f"scale{count}.toml"
            config.write_text(f'store = "etcd"\netcd_prefix = "/scale{count}"\netcd_endpoints = '
                              f'[{", ".join(repr(e) for e in members.endpoints)}]\n'.replace("'", '"'))
            cluster = TrentCluster(data, extra=("--regions", REGION, "--config", str(config)))
            try:
                rows.append({"keys": count, "seed_seconds": round(seeded, 1),
                             "startup_seconds": round(cluster.startup_seconds, 3)})
            finally:
                cluster.stop()
            progress.step(f"etcd scale {count} keys", f"start {rows[-1]['startup_seconds']} s")
    finally:
        members.stop()
        shutil.rmtree(root, ignore_errors=True)
    return rows


def markdown(results: dict[str, Any]) -> list[str]:
    e, scale = results.get("etcd"), results.get("etcd_scale")
    lines: list[str] = []
    if e and "stores" in e:
        s, n = e["stores"], e["nodes"]
        lines += ["", "## etcd-backed regions (3-member etcd on loopback, same shared machine)", "",
                  f"- Encrypt, region port, 32 connections: etcd/SQLite median of {len(s['encrypt_pairs'])} "
                  f"alternating pairs **{s['encrypt_etcd_vs_sqlite']}**", "",
                  "| CreateKey x8 | req/s | p50 ms | p99 ms | server CPU ms/req |", "|---|---|---|---|---|"]
        for name, row in s["create_key"].items():
            lines.append(f"| {name} | {row['req_per_s']} | {row['p50_ms']} | {row['p99_ms']} | "
                         f"{row['server_cpu_ms_per_request']} |")
        beside = s.get("beside") or {}
        if beside:
            lines += ["", "| Encrypt (32 connections) beside another client | SQLite req/s, p99 ms "
                      "| etcd req/s, p99 ms | its calls answered per s (SQLite / etcd) |", "|---|---|---|---|"]
            for name, label in (("missing_key", "naming a missing key"), ("tag_resource", "tagging a key")):
                rows = beside.get(name)
                if not rows:
                    continue
                sq, et = rows["sqlite"], rows["etcd"]
                lines.append(f"| {label}, {sq['other_connections']} connection(s) | {sq['encrypt']['req_per_s']}, "
                             f"{sq['encrypt']['p99_ms']} | {et['encrypt']['req_per_s']}, {et['encrypt']['p99_ms']} | "
                             f"{sq['other_answered_per_s']} / {et['other_answered_per_s']} |")
        lines += ["", "| nodes behind the gateway | Encrypt req/s | p99 ms | node CPU (cores) | req/s per node core |",
                  "|---|---|---|---|---|"]
        for count, row in n["runs"].items():
            lines.append(f"| {count} | {row['req_per_s']} | {row['p99_ms']} | {row['node_cpu_cores']} | "
                         f"{row['req_per_s_per_node_core']} |")
        c = n.get("contended")
        if c:
            tags = ", ".join(f"node {i}: {o['succeeded_per_s']}/s ({o['errors']} refused)"
                             for i, o in enumerate(c["others"]))
            lines += ["", f"- Encrypt on node 0's port beside both nodes tagging one key (2 connections each): "
                      f"{c['encrypt']['req_per_s']} req/s, p99 {c['encrypt']['p99_ms']} ms; tags {tags}"]
    if scale:
        lines += ["", "| keys in etcd | seeding s | node start s |", "|---|---|---|"]
        lines += [f"| {r.get('keys')} | {r.get('seed_seconds')} | {r.get('startup_seconds')} |" for r in scale]
    return lines
