"""`trent`: run a cluster (`trent up`) and drive a running one (`trent clock ...`, `trent status`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import re
import sys
import urllib.error
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trent.cluster.cli_output import Style, quiet_broken_pipe, span, table, utc
from trent.cluster.datadir import DataDirLock
from trent.cluster.durations import parse_duration
from trent.cluster.etcd_status import etcd_lines
from trent.cluster.fair_loop import run_server
from trent.cluster.keystore_cli import hsm_fault_command, key_store_banner, print_key_stores
from trent.cluster.lifecycle import start_role, stop_signal
from trent.cluster.report_commands import add_report_commands
from trent.cluster.running import admin_address, admin_ca, admin_send
from trent.cluster.xks_cli import DEFAULT_PROXY_DIR, add_proxy_parser, xks_fault
from trent.node.config import ConfigError, load_config
from trent.node.store.etcd_client import EtcdSettings

if TYPE_CHECKING:
    pass

BANNER = """Trent is up: {n} regions, account {account}, credentials {ak}/{sk}
  gateway         {gateway}   (routes by the region your client signs for)
{regions}
  data            {data}

Try:
  aws --endpoint-url {gateway} --region {first} kms create-key
  python -c "import boto3; print(boto3.client('kms', endpoint_url='{gateway}', region_name='{first}', \\
aws_access_key_id='{ak}', aws_secret_access_key='{sk}').list_keys())"
Ctrl-C stops the cluster."""


def _up(args: argparse.Namespace) -> int:
    overrides = {"data_dir": args.data_dir, "host": args.host, "port": args.port, "regions": args.regions,
                 "auth": args.auth, "replica_creating_seconds": args.replica_delay, "workers": args.workers,
                 "quotas": args.quotas, "seed": args.seed, "any_region": args.any_region,
                 "latency_profile": args.latency_profile, "store": args.store, "etcd_endpoints": args.etcd_endpoints}
    try:
        config = load_config(Path(args.config) if args.config else None, overrides)
    except ConfigError as exc:
        print(f"trent: {exc}", file=sys.stderr)
        return 2
    from trent.cluster.etcd_local import local_etcd_for

    try:
        local_etcd, config = local_etcd_for(config, config.etcd.endpoints != EtcdSettings().endpoints)
    except (OSError, TimeoutError) as exc:
        print(f"trent: cannot start a local etcd: {exc}", file=sys.stderr)
        return 1
    if local_etcd is not None:
        print(f"etcd: a local member for the etcd-backed regions at {local_etcd.endpoints[0]} "
              f"(data in {local_etcd.directory})", flush=True)
    try:
        return _run_up(args, config)
    finally:
        if local_etcd is not None:
            local_etcd.stop()


def _run_up(args: argparse.Namespace, config: Any) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from trent.cluster.handoff import prompt_thread_handoff
    from trent.cluster.heap import tune_collector

    tune_collector()
    prompt_thread_handoff()
    if args.processes:
        if config.workers > 1:
            print("trent: --processes runs one process per region; --workers is for the single-process mode",
                  file=sys.stderr)
            return 2
        from trent.cluster.processes_cli import serve_processes

        return run_server(serve_processes(config, args.verbose))
    return run_server(_serve(config))


async def _serve(config: Any) -> int:
    from trent.cluster.heap import freeze_start_up
    from trent.cluster.region_host import RegionHost  # the server stack (aiohttp, botocore): only `trent up` needs it

    stop = stop_signal()
    try:
        lock = DataDirLock(config.data_dir)  # first: a second `trent up` on this directory touches nothing in it
    except OSError as exc:  # another cluster on the directory, or one that cannot be made
        print(f"trent: cannot start: {exc}", file=sys.stderr)
        return 1
    cluster = await start_role(lambda: RegionHost.from_config(config), "trent")
    if cluster is None:
        lock.abandon()
        return 1
    freeze_start_up()
    principal = config.effective_principals()[0]
    urls = cluster.region_urls()
    regions = "\n".join(f"  {name:<16}{url}" for name, url in urls.items())
    if config.workers > 1:
        regions += f"\n  workers         {config.workers} processes on the gateway port"
    print(BANNER.format(n=len(urls), account=config.account, ak=principal.access_key,
                        sk=principal.secret_key, gateway=cluster.gateway_url, regions=regions,
                        data=config.data_dir, first=config.regions[0]), flush=True)
    banner = key_store_banner(cluster.status())
    if banner:
        print(banner, flush=True)
    await stop.wait()
    await cluster.stop()
    lock.release()
    print("Trent stopped.", flush=True)
    return 0


def _admin_call(data_dir: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """admin_request, its failures turned into the command's message and exit code."""
    root = Path(data_dir)
    try:
        gateway, token = admin_address(root)
    except OSError as exc:
        raise SystemExit(f"trent: no running cluster found under {root} ({exc.strerror})") from exc
    try:
        return admin_send(gateway, token, path, body, ca=admin_ca(root))
    except urllib.error.HTTPError as exc:
        raise _refused(exc) from exc
    except urllib.error.URLError as exc:
        raise SystemExit(f"trent: cluster at {gateway} not reachable: {exc.reason}") from exc


def _refused(exc: urllib.error.HTTPError) -> SystemExit:
    """The cluster said no: a request it rejects (400) is a usage error (exit 2), anything else exit 1."""
    text = exc.read().decode(errors="replace")
    with contextlib.suppress(ValueError, AttributeError):
        text = str(json.loads(text)["error"])
    print(f"trent: {text}" if exc.code == 400 else f"trent: {exc.code} {text}", file=sys.stderr)
    return SystemExit(2 if exc.code == 400 else 1)


def _clock(args: argparse.Namespace) -> int:
    if args.action == "advance":
        try:
            seconds = parse_duration(args.duration)
        except ValueError as exc:
            print(f"trent: {exc}", file=sys.stderr)
            return 2
        state = _admin_call(args.data_dir, "/_trent/clock", {"advance": seconds})
    else:
        state = _admin_call(args.data_dir, "/_trent/clock")
    if args.json:
        print(json.dumps(state, indent=2))
        return 0
    style = Style()
    offset = float(state["offset"])
    ahead = f"{span(offset)} ahead of the real time" if offset else "the real time"
    print(table(["now", utc(float(state["now"]))], [["offset", ahead]], style))
    changed = {region: n for region, n in state.get("changed", {}).items() if n}
    if "changed" in state:
        done = ", ".join(f"{region} {n} key{'s' if n != 1 else ''}" for region, n in changed.items())
        print("due deletions and rotations done: " + (done or style("none", "dim")))
    return 0


def _console(args: argparse.Namespace) -> int:
    """The console's address with the admin token in its fragment (which a browser never sends to a server)."""
    root = Path(args.data_dir)
    try:
        gateway, token = admin_address(root)
    except OSError as exc:
        raise SystemExit(f"trent: no running cluster found under {root} ({exc.strerror})") from exc
    print(f"{gateway}/_trent/console#token={token}")
    return 0


def _status(args: argparse.Namespace) -> int:
    status = _admin_call(args.data_dir, "/_trent/status")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    style = Style()
    print(f"gateway {status['gateway']}")
    for name, region in status["regions"].items():
        state = style("up   ", "green") if region["up"] else style("DOWN ", "red")
        print(f"  {name:<16} {state} {region['url']:<24} keys={region['keys']} "
              f"multi-region={region['multi_region_keys']} outbox={region['outbox_head']}")
        if region.get("store") == "failed":
            print("      " + style("its store failed to sync to disk: every call is refused until the region "
                                   "starts again", "red"))
        for line in etcd_lines(region.get("etcd")):
            print(line)
        for peer, lag in region["replication"].items():
            link = "connected" if lag["connected"] else style("not connected", "yellow")
            print(f"      <- {peer:<16} cursor={lag['cursor']:<6} lag={lag['lag_records']} records, "
                  f"{lag['lag_seconds'] if lag['lag_seconds'] is not None else '?'}s ({link})")
    consistency = status["consistency"]
    missing = consistency.get("missing", {})
    verdict = style("consistent", "green") if consistency["consistent"] else style("DIVERGENT", "red") + ": " + \
        ", ".join(f"{key} (not yet in {', '.join(missing[key])})" if key in missing else key
                  for key in consistency["divergent_keys"])
    print(f"multi-Region keys: {consistency['multi_region_keys']}, {verdict}")
    active = {k: v for k, v in status["faults"].items() if v}
    print("faults: " + (json.dumps(active) if active else "none"))
    print_key_stores(status)
    return 0


def _fault(args: argparse.Namespace) -> int:
    if args.kind == "show":
        if args.regions:
            print("trent: usage: trent fault show", file=sys.stderr)
            return 2
        status = _admin_call(args.data_dir, "/_trent/status")
        return _print_faults(status["faults"], list(status["regions"]), args.json)
    doc: dict[str, Any] = {"action": args.kind, "regions": args.regions}
    if args.kind == "xks":
        return xks_fault(args.regions, args.proxy_dir, fault_value)
    try:
        if args.kind == "hsm":
            doc = hsm_fault_command(args.regions, fault_value)
        elif args.kind in ("latency", "errors", "throttle"):
            if len(args.regions) != 2:
                raise ValueError(f"usage: trent fault {args.kind} REGION VALUE")
            doc["regions"], raw = [args.regions[0]], args.regions[1]
            doc["value"] = fault_value(args.kind, raw)
    except ValueError as exc:
        print(f"trent: {exc}", file=sys.stderr)
        return 2
    faults = _admin_call(args.data_dir, "/_trent/faults", doc)
    if "disk" in faults:  # trent fault disk REGION: one region's next fsync, not a standing fault
        return _print_disk(faults, args.json)
    if "processes" in faults:  # crash / restart: the regions' processes, not the in-memory faults
        return _print_processes(faults["processes"], args.json)
    if "hsm_faults" in faults:  # trent fault hsm ...: the HSM clusters' faults
        return _print_hsm_faults(faults["hsm_faults"], args.json)
    regions = [] if args.json else list(_admin_call(args.data_dir, "/_trent/status")["regions"])
    return _print_faults(faults, regions, args.json)


def _print_disk(answer: dict[str, Any], as_json: bool) -> int:
    disk = answer["disk"]
    if as_json:
        print(json.dumps({"disk": disk}, indent=2))
    elif disk["here"]:
        print(f"{disk['region']}: its next fsync fails. From then on the region refuses every call until it starts "
              "again; `trent status` shows it.")
    else:
        print(f"trent: no node of {disk['region']} answered: the disk fault was not carried out", file=sys.stderr)
    return 0 if disk["here"] else 1


def _print_hsm_faults(faults: dict[str, dict[str, Any]], as_json: bool) -> int:
    if as_json:
        print(json.dumps({"hsm_faults": faults}, indent=2))
        return 0
    style = Style()
    rows = [[cluster, "DOWN" if f["down"] else "up", f"{f['latency_ms']:g} ms" if f["latency_ms"] else "-",
             f"{f['errors_percent']:g}%" if f["errors_percent"] else "-"] for cluster, f in faults.items()]
    print(table(["HSM CLUSTER", "STATE", "LATENCY", "ERRORS"], rows, style,
                lambda col, cell: ("red" if cell == "DOWN" else "green") if col == 1 else
                ("yellow" if col > 1 and cell != "-" else None)))
    return 0


def _print_processes(processes: dict[str, int | None], as_json: bool) -> int:
    if as_json:
        print(json.dumps({"processes": processes}, indent=2))
        return 0
    style = Style()
    rows = [[region, "DOWN" if pid is None else "up", "-" if pid is None else str(pid)]
            for region, pid in processes.items()]
    print(table(["REGION", "PROCESS", "PID"], rows, style,
                lambda col, cell: ("red" if cell == "DOWN" else "green") if col == 1 else None))
    return 0


def _print_faults(faults: dict[str, Any], regions: list[str], as_json: bool) -> int:
    """The faults in force: one row per region, then the partitions."""
    if as_json:
        print(json.dumps(faults, indent=2))
        return 0
    style = Style()
    rows = []
    for region in regions:
        latency = faults["latency_ms"].get(region)
        errors = faults["errors_percent"].get(region)
        throttle = faults["throttle_per_second"].get(region)
        rows.append([region, "DOWN" if region in faults["down"] else "up",
                     f"{latency:g} ms" if latency is not None else "-", f"{errors:g}%" if errors is not None else "-",
                     f"{throttle:g}/s" if throttle is not None else "-"])
    print(table(["REGION", "STATE", "LATENCY", "ERRORS", "THROTTLE"], rows, style,
                lambda col, cell: ("red" if cell == "DOWN" else "green") if col == 1 else
                ("yellow" if col > 1 and cell != "-" else None)))
    partitions = [" <-> ".join(pair) for pair in faults["partitions"]]
    print("partitions: " + (", ".join(partitions) if partitions else "none"))
    return 0


def _reset(args: argparse.Namespace) -> int:
    answer = _admin_call(args.data_dir, "/_trent/reset", {})
    if args.json:
        print(json.dumps(answer, indent=2))
        return 0
    cleared = answer["cleared"]
    totals = {what: sum(region[what] for region in cleared.values()) for what in ("keys", "aliases", "grants")}
    print(f"reset {len(cleared)} regions: {totals['keys']} keys, {totals['aliases']} aliases, "
          f"{totals['grants']} grants removed")
    seeded = answer.get("seeded")
    if seeded:
        print(f"seed applied again: {seeded.get('created', 0)} keys created")
    return 0


def fault_value(kind: str, raw: str) -> float:
    """200ms → 0.2 s; 5% → 0.05; 10/s → 10."""
    text = raw.strip().lower()
    if kind == "latency":
        if re.fullmatch(r"[-+]?[0-9.]+", text):
            raise ValueError(f"a latency needs a unit: {raw!r} (use e.g. 200ms or 1.5s)")
        return parse_duration(text)
    number = text.rstrip("%") if kind == "errors" else text.removesuffix("/s")
    try:
        value = float(number)
    except ValueError:
        example = "5%" if kind == "errors" else "10/s"
        raise ValueError(f"not a valid {kind} value: {raw!r} (use e.g. {example})") from None
    if not math.isfinite(value):
        raise ValueError(f"not a valid {kind} value: {raw!r}")
    if kind == "errors":
        share = value / (100 if text.endswith("%") else 1)
        if not 0 <= share <= 1:
            raise ValueError("an error share is between 0% and 100%")
        return share
    if value <= 0:
        raise ValueError("a throttle rate is a positive number of requests per second")
    return value


def _audit(args: argparse.Namespace) -> int:
    from trent.cluster.audit_view import audit_events, format_event, known_event, known_region  # only this command

    root = Path(args.data_dir)
    if not root.is_dir():
        print(f"trent: no data directory at {root}", file=sys.stderr)
        return 2
    try:
        region = known_region(root, args.region) if args.region is not None else None
        event_name = known_event(args.event) if args.event is not None else None
        events = audit_events(root, region=region, key=args.key, principal=args.principal,
                              event=event_name, since=args.since)
    except ValueError as exc:
        print(f"trent: {exc}", file=sys.stderr)
        return 2
    style = Style()
    for event in events:
        if args.json:
            print(json.dumps(event))
        else:
            line = format_event(event)
            print(style(line, "red") if event.get("errorCode") else line)
    return 0


def _bench(args: argparse.Namespace) -> int:
    from trent.bench.__main__ import main as bench_main  # the suite and its plotting load only for this command

    return bench_main(args.bench_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trent", description="AWS-KMS-compatible multi-region key cluster")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the cluster in the foreground")
    up.add_argument("--config", help="TOML config file (every flag has a key of the same name)")
    up.add_argument("--data-dir", dest="data_dir", help="data directory (default ./.trent)")
    up.add_argument("--host", help="address to bind (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="gateway port (default 4599); regions use the next ports")
    up.add_argument("--regions", help="comma-separated regions (default us-east-1,eu-west-1,ap-northeast-2)")
    up.add_argument("--auth", choices=["verify", "off"], help="SigV4 verification (default verify)")
    up.add_argument("--replica-delay", dest="replica_delay", type=float,
                    help="seconds a new multi-Region replica stays Creating (default 2)")
    up.add_argument("--workers", type=int, help="processes serving the gateway port (default 1); the first also "
                    "runs the region ports, replication and background work")
    up.add_argument("--quotas", choices=["off", "aws"], help="request quotas: 'aws' throttles at KMS's published "
                    "per-account, per-region rates, as AWS does (default off)")
    up.add_argument("--seed", metavar="FILE", help="seed file (TOML, or YAML such as local-kms's): keys with fixed ids "
                    "and material, created at every start if missing")
    up.add_argument("--any-region", dest="any_region", action="store_const", const=True,
                    help="make a region nobody configured on its first request through the gateway (a client "
                    "signing for us-west-2 just works)")
    up.add_argument("--processes", action="store_true", help="each region and the gateway in an OS process of "
                    "its own, under this one (real crashes: trent fault crash|restart REGION)")
    up.add_argument("--latency-profile", dest="latency_profile", choices=["none", "aws"],
                    help="delay replication between regions by a published inter-region round-trip matrix")
    up.add_argument("--store", choices=["sqlite", "etcd"], help="where regions keep their state (default sqlite; "
                    "etcd without etcd_endpoints starts a local one-member etcd under the data directory)")
    up.add_argument("--etcd-endpoints", dest="etcd_endpoints", help="etcd client URLs, comma-separated")
    up.add_argument("-v", "--verbose", action="store_true", help="log region activity")
    up.set_defaults(func=_up)
    running = "the running cluster's data directory (default ./.trent)"
    from trent.cluster.processes_cli import add_commands

    add_commands(sub)
    clock = sub.add_parser("clock", help="show or move the cluster's clock")
    clock.add_argument("action", choices=["show", "advance"], help="show the time, or advance it")
    clock.add_argument("duration", nargs="?", default="0", help="how far to advance, e.g. 8d, 12h, 90m, 1d12h")
    clock.add_argument("--json", action="store_true", help="the cluster's answer as JSON (epoch seconds)")
    clock.add_argument("--data-dir", dest="data_dir", default=".trent", help=running)
    clock.set_defaults(func=_clock)
    status = sub.add_parser("status", help="regions and keys of a running cluster")
    status.add_argument("--json", action="store_true", help="the full status as JSON")
    status.add_argument("--data-dir", dest="data_dir", default=".trent", help=running)
    status.set_defaults(func=_status)
    fault = sub.add_parser("fault", help="break regions on purpose (DR drills), or show the faults", description=(
        "show | down REGION | up REGION | partition A B | heal A B | latency REGION 200ms | errors REGION 5% | "
        "throttle REGION 10/s | clear | disk REGION (its next fsync fails; it then refuses every call until it "
        "starts again) | crash REGION | restart REGION (these two: trent up --processes) | "
        "hsm CLUSTER_ID down|up|latency 200ms|errors 5%|clear | "
        "xks down|up|latency 300ms|errors 20%|garbage|reject|clear --proxy-dir DIR"))
    fault.add_argument("kind", nargs="?", default="show", choices=["show", "down", "up", "partition", "heal",
                                                                    "latency", "errors", "throttle", "clear",
                                                                    "disk", "crash", "restart", "hsm", "xks"],
                       help="what to do (default show: the faults in force, as a table)")
    fault.add_argument("regions", nargs="*", help="region(s), then the value for latency/errors/throttle; for hsm: "
                       "CLUSTER_ID down|up|latency 200ms|errors 5%%|clear; for xks: the fault")
    fault.add_argument("--json", action="store_true", help="the faults in force as JSON")
    fault.add_argument("--data-dir", dest="data_dir", default=".trent", help=running)
    fault.add_argument("--proxy-dir", dest="proxy_dir", default=DEFAULT_PROXY_DIR,
                       help="for xks: the XKS proxy's data directory (faults: down|up|latency 300ms|errors 20%%|"
                       "garbage|reject|clear)")
    fault.set_defaults(func=_fault)
    console = sub.add_parser("console", help="print the web console's address (with the admin token) to open")
    console.add_argument("--data-dir", dest="data_dir", default=".trent", help=running)
    console.set_defaults(func=_console)
    reset = sub.add_parser("reset", help="remove every region's keys, aliases and grants (no restart); the seed "
                           "file, if any, is applied again")
    reset.add_argument("--json", action="store_true", help="the cluster's answer as JSON")
    reset.add_argument("--data-dir", dest="data_dir", default=".trent", help=running)
    reset.set_defaults(func=_reset)
    audit = sub.add_parser("audit", help="read the audit trail (CloudTrail-shaped), newest last")
    audit.add_argument("--region", help="only this region (any case)")
    audit.add_argument("--key", help="only events about this key (id or ARN)")
    audit.add_argument("--principal", help="only calls by this principal (ARN or access key)")
    audit.add_argument("--event", help="only this event name, e.g. Decrypt (any case)")
    audit.add_argument("--since", help="an ISO time (2026-11-23T15:00:00Z) or a duration back from now (15m, 2h)")
    audit.add_argument("--json", action="store_true", help="one JSON record per line")
    audit.add_argument("--data-dir", dest="data_dir", default=".trent",
                       help="the cluster's data directory, running or not (default ./.trent)")
    audit.set_defaults(func=_audit)
    add_report_commands(sub, lambda data_dir, path: _admin_call(data_dir, path))
    add_proxy_parser(sub)
    bench = sub.add_parser("bench", help="run the benchmark suite (see bench/README.md)", add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER, help="the suite's own options (trent bench --help)")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # The suite has its own options (argparse cannot pass "--flags" through a sub-command untouched).
        return _bench(argparse.Namespace(bench_args=argv[1:]))
    args = build_parser().parse_args(argv)

    def run() -> int:
        result: int = args.func(args)
        sys.stdout.flush()  # inside: a reader that left is noticed here, not at exit
        return result
    return quiet_broken_pipe(run, 1)


if __name__ == "__main__":
    sys.exit(main())
