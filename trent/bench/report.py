"""Writes a run's results: bench/results/<date>-<host>.json, a Markdown report with PNG plots, and the ratios."""

from __future__ import annotations

import itertools
import json
import statistics
import time
from pathlib import Path
from typing import Any

from trent.bench import flat
from trent.bench.etcd import markdown as etcd_markdown

RESULTS = Path(__file__).resolve().parent / "results"


def _row(sweep: list[dict[str, Any]], n: int, via: str, keep: bool) -> dict[str, Any] | None:
    return next((r for r in sweep if r["connections"] == n and r["via"] == via and r["keep_alive"] is keep), None)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    w = results.get("workers")
    if w:
        out["encrypt_gateway_workers2_vs_ceiling2"] = _median_ratio(list(zip(w["trent"], w["ceiling"], strict=True)))
        out["encrypt_gateway_workers2_req_per_s"] = w["trent_req_per_s"]
        out["encrypt_gateway_workers2_p99_ms"] = w["trent_p99_ms"]
        out["encrypt_gateway_workers2_cpu_vs_ceiling2"] = round(
            w["ceiling_server_cpu_ms_per_request"] / w["trent_server_cpu_ms_per_request"], 3)
        if w.get("headline_wrk"):
            out["encrypt_gateway_workers2_vs_ceiling2_wrk"] = _median_ratio(_pairs(w["headline_wrk"]))
    p = (results.get("processes") or {}).get("standalone_gateway")
    if p:
        out["encrypt_standalone_gateway_32_vs_ceiling"] = p["gateway_vs_ceiling"]
        out["encrypt_region_process_port_32_vs_ceiling"] = p["region_vs_ceiling"]
    rotation = (results.get("processes") or {}).get("netem_rotation") or {}
    for region, v in (rotation.get("visibility_ms") or {}).items():
        out[f"rotation_visible_p99_ms_netns_{region}"] = (f"{v['p99']} (target {v['target_ms']}, "
                                                          f"{rotation.get('delays')})")
    for region, v in ((results.get("processes") or {}).get("profile_rotation") or {}).items():
        out[f"rotation_visible_p99_ms_one_process_{region}"] = f"{v['p99']} (target {v['target_ms']})"
    out.update(flat.ratios(results.get("flat")))
    x = results.get("xks")
    if x:
        out["encrypt_xks_vs_standard_key"] = x["xks_vs_standard"]
        out["encrypt_xks_p99_ms_median_round"] = x["xks_p99_ms"]
        out["encrypt_xks_p99_ms_worst_round"] = x.get("xks_p99_ms_worst", x["xks_p99_ms"])
        out["xks_proxy_encrypt_req_per_s"] = x["proxy"]["req_per_s"]
    t = results.get("throughput")
    if not t:
        return out
    pairs = _pairs(t.get("headline", []))
    if not pairs:  # results written before the headline pairs existed: the sweep's one pair
        base32 = next((r for r in t["baseline"] if r["connections"] == 32), None)
        trent32 = _row(t["encrypt_sweep"], 32, "gateway", True)
        pairs = [(trent32, base32)] if base32 and trent32 else []
    if pairs:
        out["encrypt_gateway_keepalive_32_vs_ceiling"] = _median_ratio(pairs)
        out["encrypt_gateway_keepalive_32_p99_ms"] = max(trent["p99_ms"] for trent, _ in pairs)
        if all(tr["server_cpu_ms_per_request"] for tr, _ in pairs):  # unknown for a cluster on another machine
            out["encrypt_gateway_keepalive_32_cpu_vs_ceiling"] = round(statistics.median(
                c["server_cpu_ms_per_request"] / tr["server_cpu_ms_per_request"] for tr, c in pairs), 3)
        wrk_pairs = _pairs(t.get("headline_wrk", []))
        if wrk_pairs:
            out["encrypt_gateway_keepalive_32_vs_ceiling_wrk"] = _median_ratio(wrk_pairs)
            out["encrypt_gateway_keepalive_32_cpu_vs_ceiling_wrk"] = round(statistics.median(
                c["server_cpu_ms_per_request"] / tr["server_cpu_ms_per_request"] for tr, c in wrk_pairs), 3)
        if t.get("moto"):
            trent_rate = statistics.median(trent["req_per_s"] for trent, _ in pairs)
            out["encrypt_gateway_keepalive_32_vs_moto"] = round(trent_rate / t["moto"]["req_per_s"], 2)
    return out


Pair = tuple[dict[str, Any], dict[str, Any]]  # (Trent's run, the ceiling's), measured back to back


def _pairs(rounds: list[dict[str, Any]]) -> list[Pair]:
    """A section's alternating rounds ({"trent": ..., "ceiling": ...}) as pairs."""
    return [(p["trent"], p["ceiling"]) for p in rounds]


def _pair_table(pairs: list[Pair]) -> list[str]:
    """Every pair of a headline ratio, a row each."""
    return ["| round | Trent req/s | ceiling req/s | ratio | Trent CPU ms/req | ceiling CPU ms/req |",
            "|---|---|---|---|---|---|",
            *(f"| {i} | {tr['req_per_s']} | {c['req_per_s']} | {tr['req_per_s'] / c['req_per_s']:.3f} | "
              f"{tr['server_cpu_ms_per_request']} | {c['server_cpu_ms_per_request']} |"
              for i, (tr, c) in enumerate(pairs, 1))]


def _median_ratio(pairs: list[Pair]) -> float:
    """The median of Trent's req/s over the ceiling's, pair by pair (each pair measured back to back)."""
    return round(float(statistics.median(trent["req_per_s"] / ceiling["req_per_s"] for trent, ceiling in pairs)), 3)


def _plots(results: dict[str, Any], stem: str) -> list[str]:
    try:
        import matplotlib
    except ImportError:  # the report's tables stand without the plots (`pip install -e '.[bench]'` adds them)
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: list[str] = []
    t = results.get("throughput")
    if t:
        made += _throughput_plots(plt, t, stem)
    if results.get("replication"):
        made += _lag_plot(plt, results["replication"]["catch_up"]["lag_over_time"], stem)
    return made


def _connections_plot(plt: Any, fig: Any, ax: Any, name: str, title: str, legend_size: int) -> str:
    """Requests/s against connections (log scale), saved as ``name``."""
    ax.set_xscale("log", base=2)
    ax.set(xlabel="connections", ylabel="requests/s", title=title)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(RESULTS / name, dpi=110)
    plt.close(fig)
    return name


def _throughput_plots(plt: Any, t: dict[str, Any], stem: str) -> list[str]:
    made = []
    fig, ax = plt.subplots(figsize=(7, 4))
    ns = sorted({r["connections"] for r in t["encrypt_sweep"]})
    for via in ("gateway", "region"):
        for keep in (True, False):
            ys = [(_row(t["encrypt_sweep"], n, via, keep) or {}).get("req_per_s", 0) for n in ns]
            ax.plot(ns, ys, marker="o", label=f"Trent {via}, {'keep-alive' if keep else 'new connection'}")
    ax.plot([r["connections"] for r in t["baseline"]], [r["req_per_s"] for r in t["baseline"]], "k--", marker="s",
            label="ceiling: minimal aiohttp + SigV4 + AES-GCM")
    if t.get("moto"):
        ax.scatter([32], [t["moto"]["req_per_s"]], color="red", label="moto server", zorder=5)
    made.append(_connections_plot(plt, fig, ax, f"{stem}-throughput.png", "Signed Encrypt (64 B) throughput", 7))

    sweep = t.get("operation_sweep") or {}
    if sweep:
        fig, ax = plt.subplots(figsize=(7, 4))
        for i, (op, by_n) in enumerate(sweep.items()):
            ns = sorted(int(n) for n in by_n)
            # Eleven operations, ten default colours: the marker tells apart the two that share one.
            ax.plot(ns, [by_n[str(n)]["req_per_s"] for n in ns], marker="osD^v<>pP*X"[i % 11], label=op)
        made.append(_connections_plot(plt, fig, ax, f"{stem}-operations.png",
                                      "Throughput per operation, gateway, keep-alive", 6))

    fig, ax = plt.subplots(figsize=(7, 4))
    for op, row in t["operations"].items():
        xs = sorted(row["latency_sample_ms"])
        if xs:
            ax.plot(xs, [i / len(xs) for i in range(len(xs))], label=op)
    ax.set_xscale("log")
    ax.set(xlabel="latency (ms)", ylabel="fraction of requests", title="Latency CDF, gateway, 32 connections")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}-latency-cdf.png", dpi=110)
    made.append(f"{stem}-latency-cdf.png")
    plt.close(fig)

    return made


def _lag_plot(plt: Any, lag: list[tuple[float, int]], stem: str) -> list[str]:
    made = []
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([x for x, _ in lag], [y for _, y in lag], marker=".")
    ax.set(xlabel="seconds after the region came back", ylabel="records behind",
           title="Replication catch-up after an outage")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{stem}-replication-lag.png", dpi=110)
    made.append(f"{stem}-replication-lag.png")
    plt.close(fig)
    return made


def markdown(results: dict[str, Any], plots: list[str], command: str) -> str:
    m, t, r = results["machine"], results.get("throughput") or {}, results.get("replication")
    lines = [f"# Benchmark {time.strftime('%Y-%m-%d %H:%M', time.localtime(results['started']))}", "",
             f"Machine: {m['host']}, {m['cpu']}, {m['cores']} cores, Python {m['python']}. "
             f"Load generator on the same machine. Command: `{command}`."]
    target = (results.get("settings") or {}).get("target")
    if target:
        lines += ["", f"Measured a running cluster at {target} (only its gateway; several processes, replication and "
                      "scale need clusters the suite starts itself and were not run)."]
    lines += ["", "## Ratios", ""]
    # write() has stored them already; results from elsewhere get them worked out here.
    lines += [f"- {k}: **{v}**" for k, v in (results["ratios"] if "ratios" in results else ratios(results)).items()]
    only = set((results.get("settings") or {}).get("only") or ())

    def ran(section: str) -> bool:
        """Whether the run took this section (a run of some sections leaves the others' headings out)."""
        return not only or section in only

    if t.get("operations"):
        lines += ["", "## Operations (gateway, keep-alive, 32 connections)", "",
                  "| operation | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | server CPU ms/req | errors |",
                  "|---|---|---|---|---|---|---|---|"]
    for op, row in t.get("operations", {}).items():
        lines.append(f"| {op} | {row['req_per_s']} | {row['p50_ms']} | {row['p90_ms']} | {row['p99_ms']} | "
                     f"{row['p99_9_ms']} | {row['server_cpu_ms_per_request']} | {row['errors']} |")
    sweep = t.get("operation_sweep") or {}
    if sweep:
        ns = sorted({int(n) for by_n in sweep.values() for n in by_n})
        lines += ["", "## Every operation over connections (gateway, keep-alive): req/s (p99 ms)", "",
                  "| operation | " + " | ".join(f"{n} conn." for n in ns) + " |", "|---|" + "---|" * len(ns)]
        for op, by_n in sweep.items():
            cells = [f"{by_n[str(n)]['req_per_s']} ({by_n[str(n)]['p99_ms']})" if str(n) in by_n else ""
                     for n in ns]
            lines.append(f"| {op} | " + " | ".join(cells) + " |")
    if t.get("encrypt_sweep"):
        lines += ["", "## Encrypt: connections, keep-alive, gateway vs region port", "",
                  "| connections | via | keep-alive | req/s | p99 ms | ceiling req/s |", "|---|---|---|---|---|---|"]
    for row in t.get("encrypt_sweep", []):
        base = next((b["req_per_s"] for b in t["baseline"] if b["connections"] == row["connections"]), "")
        lines.append(f"| {row['connections']} | {row['via']} | {row['keep_alive']} | {row['req_per_s']} | "
                     f"{row['p99_ms']} | {base} |")
    if t.get("generators"):
        lines += ["", "## Encrypt at 32 and 128 connections by load generator (gateway, keep-alive)", "",
                  "Both generators share the machine with the server: their own CPU (cores kept busy, CPU per "
                  "request) is what they took from it. wrk replays one signed request.", "",
                  "| connections | generator | req/s | p50 ms | p99 ms | server CPU ms/req | generator cores | "
                  "generator CPU ms/req |", "|---|---|---|---|---|---|---|---|"]
        for row in t["generators"]:
            lines.append(f"| {row['connections']} | {row['generator']} | {row['req_per_s']} | {row['p50_ms']} | "
                         f"{row['p99_ms']} | {row['server_cpu_ms_per_request']} | {row.get('client_cores')} | "
                         f"{row.get('client_cpu_ms_per_request')} |")
    if t.get("headline"):
        lines += ["", "## Encrypt vs the ceiling, alternating pairs (gateway, keep-alive, 32 connections)", "",
                  *_pair_table(_pairs(t["headline"]))]
    if t.get("headline_wrk"):
        lines += ["", "The same pairs from wrk, in the same rounds (the ceiling serves the Python generator's bursts "
                  "faster than wrk's steady stream; Trent serves both alike):", "",
                  *_pair_table(_pairs(t["headline_wrk"]))]
    if t.get("moto"):
        lines += ["", f"moto server, Encrypt, 32 connections: {t['moto']['req_per_s']} req/s, "
                      f"p99 {t['moto']['p99_ms']} ms."]
    w = results.get("workers")
    if w:
        lines += ["", "## Several processes: `trent up --workers 2` vs the two-process ceiling", "",
                  "Encrypt through the gateway, keep-alive, 32 connections, measured alternately; server CPU counts "
                  "every process.", "", "| server | req/s | p99 ms | server CPU ms/req |", "|---|---|---|---|",
                  f"| trent --workers 2 | {w['trent_req_per_s']} | {w['trent_p99_ms']} | "
                  f"{w['trent_server_cpu_ms_per_request']} |",
                  f"| ceiling --processes 2 | {w['ceiling_req_per_s']} | {w['ceiling_p99_ms']} | "
                  f"{w['ceiling_server_cpu_ms_per_request']} |", "",
                  *_pair_table(list(zip(w["trent"], w["ceiling"], strict=True)))]
        if w.get("headline_wrk"):
            lines += ["", "From wrk, in the same rounds:", "", *_pair_table(_pairs(w["headline_wrk"]))]
    if "key_store" in results:
        lines += keystore_lines(results["key_store"])
    x = results.get("xks")
    if x:
        lines += ["", "## External key store: Encrypt through `trent xks-proxy` vs a standard key (gateway, "
                  "keep-alive, 32 connections)", "",
                  "| round | XKS req/s | XKS p99 ms | standard req/s | standard p99 ms |", "|---|---|---|---|---|"]
        lines += [f"| {i} | {p['xks']['req_per_s']} | {p['xks']['p99_ms']} | {p['standard']['req_per_s']} | "
                  f"{p['standard']['p99_ms']} |" for i, p in enumerate(x["pairs"], 1)]
        lines += ["", f"The proxy alone (its encrypt call, SigV4, 32 connections): {x['proxy']['req_per_s']} req/s, "
                      f"p99 {x['proxy']['p99_ms']} ms."]
    failed = results.get("failures") or {}
    if r or ran("replication"):
        lines += ["", "## Replication", ""] + ([
                  "(failed: see failures in the JSON)" if "replication" in failed else "(not run)"] if not r else [
                  f"- ReplicateKey → replica Enabled: p50 {r['replicate_visible_ms']['p50']} ms, "
                  f"p99 {r['replicate_visible_ms']['p99']} ms",
                  f"- On-demand MRK rotation → current everywhere (idle): p50 "
                  f"{r['rotation_visible_idle_ms']['p50']} ms, p99 {r['rotation_visible_idle_ms']['p99']} ms "
                  f"(n={r['rotation_visible_idle_ms']['n']})",
                  f"- Catch-up after an outage: {r['catch_up']['records']} records in {r['catch_up']['seconds']} s"])
    if results.get("scale") or ran("scale"):
        lines += ["", "## Scale", "", "| keys/region | startup s | RSS MiB | DescribeKey p99 ms (median run; all "
                  "runs) | ListKeys(1000) ms |", "|---|---|---|---|---|"]
    for row in results.get("scale") or []:
        runs = ", ".join(map(str, row.get("describe_key_p99_ms_runs", [])))
        lines.append(f"| {row['keys_per_region']} | {row['startup_seconds']} | {row['rss_mib']} | "
                     f"{row['describe_key']['p99_ms']} ({runs}) | {row['list_keys_1000_ms']} |")
    lines += flat.markdown(results.get("flat"))
    lines += etcd_markdown(results)
    for name, failure in (results.get("failures") or {}).items():
        lines.append(f"\n**{name} failed**: `{failure}`")
    lines += ["", *[f"![{p}]({p})" for p in plots], ""]
    return "\n".join(lines)


def keystore_lines(k: dict[str, Any] | None) -> list[str]:
    """The custom key store section (bench/keystore.py)."""
    if not k:
        return ["", "## Custom key store (SoftHSM2)", "", "(not run: SoftHSM2 is not installed, or the section failed)"]
    return ["", "## Custom key store (SoftHSM2)", "",
            "Signed Encrypt (64 B) through the gateway at 32 connections, keep-alive, a key in an AWS CloudHSM key "
            "store (its AES-256 key in a SoftHSM2 token, every call in the token) and a key of KMS's own, measured "
            f"alternately ({len(k['pairs'])} pairs, medians):", "",
            "| key | req/s | p99 ms |", "|---|---|---|",
            f"| KMS key | {k['standard_req_per_s_median']} | {k['standard_p99_ms_median']} |",
            f"| key store key | {k['key_store_req_per_s_median']} | {k['key_store_p99_ms_median']} |", "",
            f"Throughput ratio (key store / KMS key, median of pairs): **{k['throughput_ratio_median']}x** "
            "(target >= 0.5x; p99 target <= 25 ms). Time in PKCS#11: "
            f"{k['pkcs11_ms_per_call_median']} ms per call, "
            f"{k['pkcs11_share_of_server_cpu_median']} of the server's CPU time per request."]


def write(results: dict[str, Any], command: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y-%m-%d", time.localtime(results["started"])) + "-" + results["machine"]["host"]
    settings = results.get("settings") or {}
    # A smoke run, or a run against someone's cluster, never overwrites the day's full results.
    stem += "-target" if settings.get("target") else "-quick" if settings.get("quick") else ""
    if settings.get("only"):  # a run of some sections only: never in place of a full run's results
        stem += "-" + "-".join(settings["only"])
    if settings.get("generator", "auto") not in ("auto", "python"):  # nor one under another load generator
        stem += "-" + settings["generator"]
    # A second run of the same day and kind keeps the first one's results: targets are often judged on several runs.
    taken = stem
    for n in itertools.count(2):
        if not (RESULTS / f"{stem}.json").exists() and not (RESULTS / f"{stem}.md").exists():
            break
        stem = f"{taken}-run{n}"
    results["ratios"] = ratios(results)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1))
    plots = _plots(results, stem)
    report = RESULTS / f"{stem}.md"
    report.write_text(markdown(results, plots, command))
    return report
