"""The command line of regions in processes (and on hosts) of their own: `trent up --processes`, `trent node`,
`trent gateway`, `trent init`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from trent.cluster.datadir import DataDirLock
from trent.cluster.fair_loop import run_server
from trent.cluster.lifecycle import start_role, stop_signal
from trent.node.config import ClusterConfig, ConfigError, load_config

BANNER = """Trent is up: {n} regions in processes of their own, account {account}, credentials {ak}/{sk}
  gateway         {gateway}   (its own process; routes by the region your client signs for)
{regions}
  data            {data}
`trent fault crash REGION` kills a region's process, `trent fault restart REGION` starts it again.
Ctrl-C stops the cluster."""


async def serve_processes(config: ClusterConfig, verbose: bool) -> int:
    from trent.cluster.supervisor import Supervisor

    stop = stop_signal()
    try:
        lock = DataDirLock(config.data_dir)
    except OSError as exc:
        print(f"trent: cannot start: {exc}", file=sys.stderr)
        return 1
    supervisor = await start_role(lambda: Supervisor(config, verbose), "trent")
    if supervisor is None:
        lock.abandon()
        return 1
    principal = config.effective_principals()[0]
    regions = "\n".join(f"  {name:<16}{url}   pid {supervisor.nodes[name].pid}"
                        for name, url in supervisor.urls.items())
    print(BANNER.format(n=len(config.regions), account=config.account, ak=principal.access_key,
                        sk=principal.secret_key, gateway=supervisor.gateway_url, regions=regions,
                        data=config.data_dir), flush=True)
    await stop.wait()
    await supervisor.stop()
    lock.release()
    print("Trent stopped.", flush=True)
    return 0


def _pairs(items: list[str] | None, what: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items or []:
        region, sep, url = item.partition("=")
        if not sep or not region or not url:
            raise ConfigError(f"{what} takes REGION=URL, not {item!r}")
        out.setdefault(region.strip(), []).append(url.strip())
    return out


def _config(args: argparse.Namespace, extra: dict[str, Any]) -> ClusterConfig:
    overrides = {"data_dir": args.data_dir, "host": args.host, "auth": getattr(args, "auth", None),
                 "bundle": args.bundle, "tls_cert": args.tls_cert, "tls_key": args.tls_key, "tls_ca": args.tls_ca,
                 **extra}
    config = load_config(Path(args.config) if args.config else None, overrides)
    if config.bundle is not None:
        from trent.cluster.bundle import apply_bundle

        config = apply_bundle(config)
    return config


def _node(args: argparse.Namespace) -> int:
    from trent.cluster.region_node import serve

    try:
        peers = _pairs(args.peer, "--peer")
        extra: dict[str, Any] = {"latency_profile": args.latency_profile,
                                 "replica_creating_seconds": args.replica_delay, "store": args.store,
                                 "etcd_endpoints": args.etcd_endpoints}
        if peers:
            extra["peers"] = {region: ",".join(urls) for region, urls in peers.items()}
        extra["regions"] = args.regions or (",".join([args.region, *peers]) if peers else None)
        if args.port is not None:
            extra["region_ports"] = {args.region: args.port}
        config = _config(args, extra)
        if args.region not in config.regions:
            raise ConfigError(f"region {args.region!r} is not one of the cluster's regions "
                              f"({', '.join(config.regions)})")
        missing = [r for r in config.regions if r != args.region and r not in config.peers]
        if missing:
            raise ConfigError(f"no URL for peer region(s) {', '.join(missing)} (--peer REGION=URL)")
    except (ConfigError, OSError) as exc:
        print(f"trent node: {exc}", file=sys.stderr)
        return 2
    _logging(args.verbose, args.region)
    return run_server(serve(config, args.region))


def _gateway(args: argparse.Namespace) -> int:
    from trent.cluster.files import load_or_create_token
    from trent.cluster.gateway_proxy import serve

    try:
        regions = _pairs(args.region, "--region")
        extra: dict[str, Any] = {"port": args.port}
        if regions:
            extra["peers"] = {region: ",".join(urls) for region, urls in regions.items()}
            extra["regions"] = ",".join(regions)
        config = _config(args, extra)
        missing = [r for r in config.regions if r not in config.peers]
        if missing:
            raise ConfigError(f"no URL for region(s) {', '.join(missing)} (--region REGION=URL)")
        token = config.admin_token or load_or_create_token(config.data_dir, "admin.token")
    except (ConfigError, OSError) as exc:
        print(f"trent gateway: {exc}", file=sys.stderr)
        return 2
    _logging(args.verbose, "gateway")
    return run_server(serve(config, token))


def _logging(verbose: bool, name: str) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format=f"%(asctime)s {name} %(name)s %(levelname)s %(message)s")


def _init(args: argparse.Namespace) -> int:
    from trent.cluster.bundle import InitError, init_cluster

    try:
        made = init_cluster(Path(args.out), args.node, args.regions.split(",") if args.regions else None,
                            args.force)
    except (InitError, OSError, ValueError) as exc:
        print(f"trent init: {exc}", file=sys.stderr)
        return 2
    for path in made:
        print(path)
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML config file (every flag has a key of the same name)")
    parser.add_argument("--data-dir", dest="data_dir", help="data directory (default ./.trent)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--bundle", help="this node's bundle from `trent init` (secrets, CA, certificate)")
    parser.add_argument("--tls-cert", dest="tls_cert", help="serve TLS with this certificate (PEM)")
    parser.add_argument("--tls-key", dest="tls_key", help="the certificate's private key (PEM)")
    parser.add_argument("--tls-ca", dest="tls_ca", help="the CA that peers' https certificates are checked against")
    parser.add_argument("-v", "--verbose", action="store_true", help="log activity")


def add_commands(sub: Any) -> None:
    node = sub.add_parser("node", help="run one region in this process, its peers given by URL")
    node.add_argument("--region", required=True, help="the region this node serves")
    node.add_argument("--port", type=int, help="the region's port (default: the config's region_ports, else 4600 + "
                      "its place in --regions)")
    node.add_argument("--regions", help="every region of the cluster, comma-separated (default: --region and "
                      "the --peer regions)")
    node.add_argument("--peer", action="append", metavar="REGION=URL", help="another region's node (repeatable; "
                      "config key peers)")
    node.add_argument("--auth", choices=["verify", "off"], help="check SigV4 signatures (default verify)")
    node.add_argument("--replica-delay", dest="replica_delay", type=float,
                      help="seconds a new multi-Region replica stays Creating (default 2)")
    node.add_argument("--latency-profile", dest="latency_profile", choices=["none", "aws"],
                      help="delay replication from peers by a published inter-region round-trip matrix")
    node.add_argument("--store", choices=["sqlite", "etcd"], help="where the region keeps its state (etcd: any "
                      "number of nodes serve the region; etcd_* keys in --config)")
    node.add_argument("--etcd-endpoints", dest="etcd_endpoints", help="etcd client URLs, comma-separated")
    _common(node)
    node.set_defaults(func=_node)
    gateway = sub.add_parser("gateway", help="run the routing front door to regions given by URL")
    gateway.add_argument("--port", type=int, help="the gateway's port (default 4599)")
    gateway.add_argument("--region", action="append", metavar="REGION=URL",
                         help="a region's node (repeatable; a region may have several)")
    _common(gateway)
    gateway.set_defaults(func=_gateway)
    init = sub.add_parser("init", help="make a cluster's shared secrets and one bundle per node")
    init.add_argument("out", help="directory for the cluster's secrets and the bundles (created 0700)")
    init.add_argument("--node", action="append", required=True, metavar="NAME=ADDRESS[,ADDRESS...]",
                      help="a node (or the gateway) and the host names/IPs its certificate is for (repeatable)")
    init.add_argument("--regions", help="the cluster's regions, comma-separated (recorded in every bundle)")
    init.add_argument("--force", action="store_true", help="replace the bundles of an existing directory")
    init.set_defaults(func=_init)
