"""`trent bench` / `make bench` / `python -m trent.bench`: run the suite, write the results and the report."""

from __future__ import annotations

import argparse
import sys

from trent.bench.procs import TargetCluster
from trent.bench.report import write
from trent.bench.suite import Settings, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trent bench", description="benchmark the cluster against its peers")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each load run (default 3)")
    parser.add_argument("--connections", default="1,8,32,128", help="connection counts for the Encrypt sweep")
    parser.add_argument("--client-processes", type=int, default=1, help="load-generator processes (default 1)")
    parser.add_argument("--generator", choices=("auto", "python", "wrk"), default="auto",
                        help="load generator of every single-request run: the suite's own or wrk replaying one signed "
                        "request (Debian package wrk); auto (default): wrk for the flat section where installed, the "
                        "suite's own elsewhere. Encrypt at 32/128 is measured with both anyway")
    parser.add_argument("--scale", default="1000,10000,100000", help="keys per region for the scale runs")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (1 s runs, small scale)")
    parser.add_argument("--target", metavar="URL", help="measure a running cluster's gateway (http://host:port) "
                        "instead of starting one; it creates keys there (thousands, in the CreateKey run)")
    parser.add_argument("--region", default="us-east-1", help="the region to sign for with --target")
    parser.add_argument("--admin-token", dest="admin_token", help="the --target cluster's admin token "
                        "(.trent/admin.token), to measure its CPU when it runs on this machine")
    parser.add_argument("--only", default="", help="run only these sections, comma-separated (throughput, "
                        "workers, replication, key_store, scale, processes, xks, etcd; etcd_scale: a node's start "
                        "over --scale keys in etcd; flat: every hot operation at 32 and 128 connections, in rounds)")
    args = parser.parse_args(argv)
    settings = Settings(seconds=args.seconds, connections=tuple(int(x) for x in args.connections.split(",")),
                        client_processes=args.client_processes, generator=args.generator,
                        scale=tuple(int(x) for x in args.scale.split(",")))
    if args.quick:
        settings = Settings(seconds=1.0, connections=(8, 32), client_processes=1, scale=(1000,),
                            replication_samples=10, rounds=1, quick=True)
    settings.only = tuple(x for x in args.only.split(",") if x)
    target_cluster = None
    if args.target:
        # Reached now, to fail with the reason rather than in the middle of the run; the run measures this one.
        try:
            target_cluster = TargetCluster(args.target, args.admin_token)
        except (ValueError, OSError) as exc:
            print(f"trent bench: cannot use --target: {exc}", file=sys.stderr)
            return 2
        settings.target, settings.region = args.target, args.region
    results = run(settings, target_cluster)
    report = write(results, "trent bench " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(f"report: {report}")
    for name, value in results["ratios"].items():
        print(f"  {name}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
