"""`trent compliance` and `trent cost`: reports a running cluster computes (GET /_trent/compliance, /_trent/cost),
printed as a table or JSON. `trent compliance --fail-on` makes findings a non-zero exit for CI."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from collections.abc import Callable
from typing import Any

from trent.node.compliance import KINDS

AdminCall = Callable[[str, str], dict[str, Any]]  # (data directory, path) → the answer
FINDINGS_EXIT = 3  # findings of a --fail-on kind (1 and 2 are the cluster's and the command line's errors)


def add_report_commands(sub: Any, admin: AdminCall) -> None:
    compliance = sub.add_parser("compliance", help="keys whose rotation age, rotation or expiry needs attention")
    compliance.add_argument("--region", help="only this region")
    compliance.add_argument("--json", action="store_true", help="the report as JSON")
    compliance.add_argument("--fail-on", dest="fail_on", metavar="KINDS",
                            help=f"exit {FINDINGS_EXIT} if there is a finding of these kinds (comma-separated: "
                                 f"{', '.join(KINDS)}; or 'any')")
    compliance.add_argument("--data-dir", dest="data_dir", default=".trent",
                            help="the running cluster's data directory (default ./.trent)")
    compliance.set_defaults(func=lambda args: compliance_command(args, admin))
    cost = sub.add_parser("cost", help="what the cluster's keys and calls would cost in AWS KMS")
    cost.add_argument("--since", help="start of the period: an ISO time or a duration back from now (30d)")
    cost.add_argument("--until", help="end of the period: an ISO time (default: now, on the cluster's clock)")
    cost.add_argument("--region", help="only this region")
    cost.add_argument("--json", action="store_true", help="the estimate as JSON")
    cost.add_argument("--data-dir", dest="data_dir", default=".trent",
                            help="the running cluster's data directory (default ./.trent)")
    cost.set_defaults(func=lambda args: cost_command(args, admin))


def _query(**params: str | None) -> str:
    given = {k: v for k, v in params.items() if v is not None}
    return "?" + urllib.parse.urlencode(given) if given else ""


def _fail_kinds(text: str | None) -> set[str]:
    if text is None:
        return set()
    kinds = {k.strip() for k in text.split(",") if k.strip()}
    if "any" in kinds:
        return set(KINDS)
    unknown = kinds - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"--fail-on takes {', '.join(KINDS)} or any, not {text!r}")
    return kinds


def compliance_command(args: argparse.Namespace, admin: AdminCall) -> int:
    try:
        fail_on = _fail_kinds(args.fail_on)
    except ValueError as exc:
        print(f"trent: {exc}", file=sys.stderr)
        return 2
    report = admin(args.data_dir, "/_trent/compliance" + _query(region=args.region))
    findings = report["findings"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"rotation age threshold {report['settings']['max_age_days']:g} days; imported material expiring "
              f"within {report['settings']['expiry_days']:g} days")
        if not findings:
            print("no findings")
        for f in findings:
            print(f"  {f['region']:<16} {f['key_id']:<40} {f['kind']:<14} {f['detail']}")
        print("counts: " + ", ".join(f"{kind}={n}" for kind, n in report["counts"].items()))
    failing = [f for f in findings if f["kind"] in fail_on]
    if failing:
        print(f"trent: {len(failing)} finding(s) of {', '.join(sorted(fail_on))}", file=sys.stderr)
        return FINDINGS_EXIT
    return 0


def cost_command(args: argparse.Namespace, admin: AdminCall) -> int:
    report = admin(args.data_dir, "/_trent/cost" + _query(since=args.since, until=args.until, region=args.region))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"AWS KMS cost estimate, {report['since_iso']} .. {report['until_iso']} "
          f"({report['months']:.3f} months); prices: {report['prices']['source']} as of {report['prices']['as_of']}")
    print(f"  key storage     ${report['key_storage_usd']:.4f}  ({report['key_months']:.3f} key-months)")
    print(f"  requests        ${report['requests_usd']:.4f}  ({report['requests']} requests, "
          f"{report['free_tier_used']} in the free tier)")
    print(f"  total           ${report['total_usd']:.4f}")
    print("by pricing class:")
    for name, line in report["by_class"].items():
        print(f"  {name:<22} {line['requests']:>9} requests  {line['billed']:>9} billed  ${line['usd']:.4f}")
    print("by operation:")
    for name, line in report["by_operation"].items():
        print(f"  {name:<36} {line['requests']:>9} requests  ${line['usd']:.4f}")
    print("by key:")
    for arn, line in report["by_key"].items():
        print(f"  {arn}  {line['key_months']:.3f} key-months ${line['storage_usd']:.4f} + "
              f"{line['requests']} requests ${line['requests_usd']:.4f}")
    return 0
