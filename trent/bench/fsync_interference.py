"""What one region's fsync-bound writes do to another region's latency in the same process.

A one-process cluster serves every region on one event loop. Commits used to wait for their fsync on it (SQLite
WAL, synchronous=FULL); now a thread of each region's store does the fsyncs (node/store/groupsync.py). This runs
Encrypt against eu-west-1's port alone, then with CreateKey in a loop against us-east-1's port beside it, in
alternating rounds, and prints Encrypt's latency both ways (figures: bench/README.md, "fsync and the event loop"):

    .venv/bin/python -m trent.bench.fsync_interference [--seconds 3] [--rounds 3] [--writers 4] [--readers 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

from trent.bench.loadgen import Call, LoadResult, Target, run_load
from trent.bench.procs import TrentCluster
from trent.bench.scenarios import Fixtures

READ_REGION, WRITE_REGION = "eu-west-1", "us-east-1"


def _round(cluster: TrentCluster, encrypt: Call, writes: bool, args: argparse.Namespace) -> dict[str, Any]:
    reader = Target(cluster.host, cluster.region_port(READ_REGION), READ_REGION)
    writer = Target(cluster.host, cluster.region_port(WRITE_REGION), WRITE_REGION)
    written: list[LoadResult] = []
    thread = None
    if writes:
        create = Call("CreateKey", json.dumps({"Description": "fsync interference"}).encode())
        thread = threading.Thread(target=lambda: written.append(run_load(
            writer, [create], connections=args.writers, seconds=args.seconds + 1.0, processes=1)))
        thread.start()
        time.sleep(0.5)  # the writers' client process is up and writing before Encrypt is measured
    read = run_load(reader, [encrypt], connections=args.readers, seconds=args.seconds, processes=1)
    if thread is not None:
        thread.join()
    out = {"writes": writes, "encrypt": read.summary()}
    if written:
        out["create_key"] = written[0].summary()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fsync_interference")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--writers", type=int, default=4, help="CreateKey connections (us-east-1)")
    parser.add_argument("--readers", type=int, default=4, help="Encrypt connections (eu-west-1)")
    args = parser.parse_args(argv)
    cluster = TrentCluster()
    try:
        encrypt = Fixtures(cluster.client(READ_REGION)).call("Encrypt")
        rounds = [_round(cluster, encrypt, writes, args) for _ in range(args.rounds) for writes in (False, True)]
    finally:
        cluster.stop()
    for r in rounds:
        line = f"writes={'on ' if r['writes'] else 'off'} Encrypt {r['encrypt']}"
        if "create_key" in r:
            line += f"\n           CreateKey {r['create_key']}"
        print(line)
    for writes in (False, True):
        mine = [r["encrypt"] for r in rounds if r["writes"] == writes]
        print(f"writes {'on ' if writes else 'off'}: Encrypt p50 {statistics.median(m['p50_ms'] for m in mine)} ms, "
              f"p99 {statistics.median(m['p99_ms'] for m in mine)} ms, "
              f"{statistics.median(m['req_per_s'] for m in mine)} req/s (medians of {len(mine)} rounds)")
    creates = [r["create_key"] for r in rounds if "create_key" in r]
    print(f"CreateKey beside it: {statistics.median(c['req_per_s'] for c in creates)} req/s, "
          f"p50 {statistics.median(c['p50_ms'] for c in creates)} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
