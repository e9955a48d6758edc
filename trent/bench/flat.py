"""Flat from 32 to 128 connections (`trent bench --only flat`): each hot operation through the gateway at 32 and then
128 connections, back to back, ``settings.rounds`` times in turn with the ceiling's Encrypt at the same two counts,
so drift hits every operation alike. Reported per operation: the median of the rounds' 128/32 throughput ratios
(target ≥ 0.9) and its p99 at each count against the ceiling's p99 at that count (target ≤ 2×). Sign and Verify are
held to the ceiling doing their cryptography (ECDSA P-256, bench/baseline_server.py), every other operation to the
ceiling's Encrypt; the table shows both."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import statistics
from collections.abc import Callable
from typing import Any

from trent.bench import wrk
from trent.bench.loadgen import Call, Target
from trent.bench.procs import TrentCluster, kms_client, start_baseline
from trent.bench.scenarios import HOT_OPERATIONS, Fixtures, encrypt_call_for_baseline

COUNTS = (32, 128)
FLAT_TARGET = 0.9
P99_TARGET = 2.0
# The ceiling each operation's p99 is held to: the one doing its cryptography (the rest: the ceiling's Encrypt).
CEILING_OF = {"Sign ECC_NIST_P256": "Sign", "Verify ECC_NIST_P256": "Verify"}


def ceiling_calls(port: int, message: bytes) -> dict[str, Call]:
    """The ceiling's calls by kind; its Verify checks a signature its own key made (asked of it once)."""
    def body(doc: dict[str, Any]) -> bytes:
        return json.dumps(doc).encode()
    signature = kms_client(f"http://127.0.0.1:{port}", "us-east-1").sign(
        KeyId="baseline", Message=message, SigningAlgorithm="ECDSA_SHA_256")["Signature"]
    digest = hashlib.sha256(message).digest()
    return {"Encrypt": encrypt_call_for_baseline(message),
            "Sign": Call("Sign", body({"KeyId": "baseline", "Message": base64.b64encode(message).decode()})),
            "Verify": Call("Verify", body({"KeyId": "baseline", "Message": base64.b64encode(digest).decode(),
                                           "MessageType": "DIGEST", "SigningAlgorithm": "ECDSA_SHA_256",
                                           "Signature": base64.b64encode(signature).decode()}))}


def flat(settings: Any, progress: Any, measured: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    message = os.urandom(64)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {op: {str(n): [] for n in COUNTS} for op in HOT_OPERATIONS}
    kinds = ("Encrypt", *sorted(set(CEILING_OF.values())))
    ceiling: dict[str, dict[str, list[dict[str, Any]]]] = {k: {str(n): [] for n in COUNTS} for k in kinds}
    generator = generator_of(settings)
    cluster = TrentCluster()
    baseline = start_baseline(1)
    try:
        fixtures = Fixtures(cluster.client("us-east-1"))
        gateway = Target("127.0.0.1", cluster.port, "us-east-1")
        base_target = Target("127.0.0.1", baseline.port, "us-east-1")
        base_calls = ceiling_calls(baseline.port, message)
        for i in range(settings.rounds):
            for kind in kinds:
                for n in COUNTS:
                    ceiling[kind][str(n)].append(_brief(measured(baseline, base_target, [base_calls[kind]],
                                                                 settings, n, generator=generator)))
            for op in HOT_OPERATIONS:
                for n in COUNTS:
                    runs[op][str(n)].append(_brief(measured(cluster, gateway, [fixtures.call(op)], settings, n,
                                                            generator=generator)))
            progress.step(f"flat 32/128, round {i + 1}")
    finally:
        baseline.stop()
        cluster.stop()
    return summary(runs, ceiling) | {"generator": generator}


def generator_of(settings: Any) -> str:
    """The load generator of these runs: wrk where installed unless the suite's own is asked for. At 128
    connections the Python generator takes enough of the two cores to cause part of the fall-off it would report
    (the throughput section measures both side by side)."""
    return "wrk" if settings.generator != "python" and wrk.available() else "python"


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("req_per_s", "p50_ms", "p99_ms", "errors")}


def summary(runs: dict[str, dict[str, list[dict[str, Any]]]], ceiling: dict[str, dict[str, list[dict[str, Any]]]]
            ) -> dict[str, Any]:
    ceiling_p99 = {kind: {n: statistics.median(r["p99_ms"] for r in rows) for n, rows in by_n.items()}
                   for kind, by_n in ceiling.items()}
    operations: dict[str, Any] = {}
    for op, by_n in runs.items():
        low, high = by_n[str(COUNTS[0])], by_n[str(COUNTS[1])]
        ratio = statistics.median(h["req_per_s"] / max(lo["req_per_s"], 1e-9) for lo, h in zip(low, high, strict=True))
        p99 = {n: statistics.median(r["p99_ms"] for r in rows) for n, rows in by_n.items()}
        own = ceiling_p99[CEILING_OF.get(op, "Encrypt")]
        operations[op] = {
            "req_per_s": {n: statistics.median(r["req_per_s"] for r in rows) for n, rows in by_n.items()},
            "ratio_128_vs_32": round(ratio, 3), "p99_ms": p99, "ceiling": CEILING_OF.get(op, "Encrypt"),
            "p99_vs_ceiling": {n: round(p99[n] / own[n], 2) for n in p99},
            "p99_vs_encrypt_ceiling": {n: round(p99[n] / ceiling_p99["Encrypt"][n], 2) for n in p99},
            "errors": sum(r["errors"] for rows in by_n.values() for r in rows),
            "within_target": ratio >= FLAT_TARGET and all(p99[n] <= P99_TARGET * own[n] for n in p99)}
    return {"rounds": len(ceiling["Encrypt"][str(COUNTS[0])]), "ceiling_p99_ms": ceiling_p99,
            "ceiling_req_per_s": {kind: {n: statistics.median(r["req_per_s"] for r in rows) for n, rows in by_n.items()}
                                  for kind, by_n in ceiling.items()},
            "operations": operations, "runs": runs, "ceiling": ceiling}


def ratios(f: dict[str, Any] | None) -> dict[str, Any]:
    if not f:
        return {}
    ops = f["operations"]
    return {"flat_128_vs_32_lowest": min(o["ratio_128_vs_32"] for o in ops.values()),
            "flat_p99_vs_ceiling_highest": max(max(o["p99_vs_ceiling"].values()) for o in ops.values()),
            "flat_operations_within_target": f"{sum(o['within_target'] for o in ops.values())} of {len(ops)}"}


def markdown(f: dict[str, Any] | None) -> list[str]:
    if not f:
        return []
    c = f["ceiling_p99_ms"]
    generator = f.get("generator", "python")
    lines = ["", f"## From 32 to 128 connections (gateway, keep-alive; medians of {f['rounds']} rounds; "
             f"load from {generator})", "",
             "Each round: the ceiling at 32 and 128 connections (p99 in ms, medians: "
             + ", ".join(f"{kind} {c[kind]['32']} / {c[kind]['128']}" for kind in c)
             + "), then every operation at 32 and 128 back to back. Targets: 128/32 ≥ 0.9, p99 ≤ 2× the p99 of the "
             "ceiling doing the operation's cryptography (Sign and Verify: ECDSA P-256; the rest: its Encrypt).", "",
             "| operation | req/s 32 | req/s 128 | 128/32 | p99 ms 32 | p99 ms 128 | p99 vs its ceiling 32 / 128 | "
             "vs the Encrypt ceiling | errors | targets |", "|---|---|---|---|---|---|---|---|---|---|"]
    for op, o in f["operations"].items():
        encrypt = o.get("p99_vs_encrypt_ceiling", o["p99_vs_ceiling"])
        lines.append(f"| {op} | {o['req_per_s']['32']:.0f} | {o['req_per_s']['128']:.0f} | {o['ratio_128_vs_32']} | "
                     f"{o['p99_ms']['32']} | {o['p99_ms']['128']} | {o['p99_vs_ceiling']['32']}× / "
                     f"{o['p99_vs_ceiling']['128']}× ({o.get('ceiling', 'Encrypt')}) | {encrypt['32']}× / "
                     f"{encrypt['128']}× | {o['errors']} | {'met' if o['within_target'] else 'missed'} |")
    return lines
