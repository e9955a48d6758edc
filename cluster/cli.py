"""`trent`: run a cluster (`trent up`) and drive a running one (`trent clock ...`, `trent status`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import re
import sys
import urllib.error
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cluster.datadir import DataDirLock
from cluster.durations import parse_duration
from cluster.etcd_status import etcd_lines
from cluster.lifecycle import start_role, stop_signal
from cluster.running import admin_address, admin_send
from node.config import ConfigError, load_config
from node.store.etcd_client import EtcdSettings

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
                 "latency_profile": args.latency_profile, "store": args.store,
                 "etcd_endpoints": args.etcd_endpoints}
    try:
        config = load_config(Path(args.config) if args.config else None, overrides)
    except ConfigError as exc:
        print(f"trent: {exc}", file=sys.stderr)
        return 2
    from cluster.etcd_local import local_etcd_for

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
    from cluster.heap import tune_collector

    tune_collector()
    if args.processes:
        if config.workers > 1:
            print("trent: --processes runs one process per region; --workers is for the single-process mode",
                  file=sys.stderr)
            return 2
        from cluster.processes_cli import serve_processes

        return asyncio.run(serve_processes(config, args.verbose))
    return asyncio.run(_serve(config))


async def _serve(config: Any) -> int:
    from cluster.heap import freeze_start_up
    from cluster.region_host import RegionHost  # the server stack (aiohttp, botocore): only `trent up` needs it

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
        return admin_send(gateway, token, path, body)
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
    print(json.dumps(state, indent=2))
    return 0


def _status(args: argparse.Namespace) -> int:
    status = _admin_call(args.data_dir, "/_trent/status")
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"gateway {status['gateway']}")
    for name, region in status["regions"].items():
        print(f"  {name:<16} {'up' if region['up'] else 'DOWN':<5} {region['url']:<24} keys={region['keys']} "
              f"multi-region={region['multi_region_keys']} outbox={region['outbox_head']}")
        for line in etcd_lines(region.get("etcd")):
            print(line)
        for peer, lag in region["replication"].items():
            link = "connected" if lag["connected"] else "not connected"
            print(f"      <- {peer:<16} cursor={lag['cursor']:<6} lag={lag['lag_records']} records, "
                  f"{lag['lag_seconds'] if lag['lag_seconds'] is not None else '?'}s ({link})")
    consistency = status["consistency"]
    missing = consistency.get("missing", {})
    verdict = "consistent" if consistency["consistent"] else "DIVERGENT: " + ", ".join(
        f"{key} (not yet in {', '.join(missing[key])})" if key in missing else key
        for key in consistency["divergent_keys"])
    print(f"multi-Region keys: {consistency['multi_region_keys']}, {verdict}")
    active = {k: v for k, v in status["faults"].items() if v}
    print("faults: " + (json.dumps(active) if active else "none"))
    return 0


def _fault(args: argparse.Namespace) -> int:
    doc: dict[str, Any] = {"action": args.kind, "regions": args.regions}
    try:
        if args.kind in ("latency", "errors", "throttle"):
            if len(args.regions) != 2:
                raise ValueError(f"usage: trent fault {args.kind} REGION VALUE")
            doc["regions"], raw = [args.regions[0]], args.regions[1]
            doc["value"] = _fault_value(args.kind, raw)
    except ValueError as exc:
        print(f"trent: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(_admin_call(args.data_dir, "/_trent/faults", doc), indent=2))
    return 0


def _fault_value(kind: str, raw: str) -> float:
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
    from cluster.audit_view import audit_events, format_event  # only this command reads the logs

    root = Path(args.data_dir)
    if not root.is_dir():
        print(f"trent: no data directory at {root}", file=sys.stderr)
        return 2
    try:
        events = audit_events(root, region=args.region, key=args.key, principal=args.principal,
                              event=args.event, since=args.since)
    except ValueError as exc:
        print(f"trent: {exc}", file=sys.stderr)
        return 2
    for event in events:
        print(json.dumps(event) if args.json else format_event(event))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from bench.__main__ import main as bench_main  # the suite and its plotting load only for this command

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
    up.add_argument("--processes", action="store_true", help="each region and the gateway in an OS process of "
                    "its own, under this one (real crashes: trent fault crash|restart REGION)")
    up.add_argument("--latency-profile", dest="latency_profile", choices=["none", "aws"],
                    help="delay replication between regions by a published inter-region round-trip matrix")
    up.add_argument("--store", choices=["sqlite", "etcd"], help="where regions keep their state (default sqlite; "
                    "etcd without etcd_endpoints starts a local one-member etcd under the data directory)")
    up.add_argument("--etcd-endpoints", dest="etcd_endpoints", help="etcd client URLs, comma-separated")
    up.add_argument("-v", "--verbose", action="store_true", help="log region activity")
    up.set_defaults(func=_up)
    from cluster.processes_cli import add_commands

    add_commands(sub)
    clock = sub.add_parser("clock", help="show or move the cluster's clock")
    clock.add_argument("action", choices=["show", "advance"])
    clock.add_argument("duration", nargs="?", default="0", help="e.g. 8d, 12h, 90m")
    clock.add_argument("--data-dir", dest="data_dir", default=".trent")
    clock.set_defaults(func=_clock)
    status = sub.add_parser("status", help="regions and keys of a running cluster")
    status.add_argument("--json", action="store_true")
    status.add_argument("--data-dir", dest="data_dir", default=".trent")
    status.set_defaults(func=_status)
    fault = sub.add_parser("fault", help="break regions on purpose (DR drills)", description=(
        "down REGION | up REGION | partition A B | heal A B | latency REGION 200ms | errors REGION 5% | "
        "throttle REGION 10/s | clear | crash REGION | restart REGION (the last two: trent up --processes)"))
    fault.add_argument("kind", choices=["down", "up", "partition", "heal", "latency", "errors", "throttle", "clear",
                                        "crash", "restart"])
    fault.add_argument("regions", nargs="*", help="region(s), then the value for latency/errors/throttle")
    fault.add_argument("--data-dir", dest="data_dir", default=".trent")
    fault.set_defaults(func=_fault)
    audit = sub.add_parser("audit", help="read the audit trail (CloudTrail-shaped), newest last")
    audit.add_argument("--region", help="only this region")
    audit.add_argument("--key", help="only events about this key (id or ARN)")
    audit.add_argument("--principal", help="only calls by this principal (ARN or access key)")
    audit.add_argument("--event", help="only this event name, e.g. Decrypt")
    audit.add_argument("--since", help="an ISO time (2026-11-23T15:00:00Z) or a duration back from now (15m, 2h)")
    audit.add_argument("--json", action="store_true", help="one JSON record per line")
    audit.add_argument("--data-dir", dest="data_dir", default=".trent")
    audit.set_defaults(func=_audit)
    bench = sub.add_parser("bench", help="run the benchmark suite (see bench/README.md)", add_help=False)
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:
        # The suite has its own options (argparse cannot pass "--flags" through a sub-command untouched).
        return _bench(argparse.Namespace(bench_args=argv[1:]))
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
