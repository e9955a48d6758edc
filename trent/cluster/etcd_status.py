"""`trent status` lines for an etcd-backed region: its nodes, which holds the lease, and etcd's members' health."""

from __future__ import annotations

from typing import Any


def etcd_lines(report: dict[str, Any] | None) -> list[str]:
    if not report:
        return []
    holder = report.get("lease_holder")
    nodes = report.get("nodes", [])
    lines = [f"      etcd: {len(nodes)} node(s), lease holder {holder or 'none (election pending)'} "
             f"(TTL {report.get('lease_ttl')}s)"]
    for node in nodes:
        mark = " *" if node.get("node") == holder else ""
        lines.append(f"        node {node.get('node')} {node.get('url', '')}{mark}")
    members = report.get("etcd", [])
    healthy = sum(1 for m in members if m.get("healthy"))
    lines.append(f"        etcd members {healthy}/{len(members)} healthy"
                 + (f", watch {'open' if report.get('watching') else 'reconnecting'}"))
    for member in members:
        if not member.get("healthy"):
            lines.append(f"          {member.get('endpoint')}: {member.get('error') or 'no leader'}")
    return lines
