"""`trent fault ...` as the region host carries it out: the command checked, the faults set, a region that is down
made to refuse connections on its own port (and listen again when it is back), the other processes told."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from trent.cluster.faults import Faults
from trent.cluster.serving import Servers
from trent.node.hsm.faults import HSM_FAULT_ACTIONS, HsmFaults
from trent.node.store.base import Store

FAULT_ACTIONS = ("down", "up", "partition", "heal", "latency", "errors", "throttle", "clear", "disk")


@dataclass
class FaultCommand:
    action: str
    regions: list[str]
    value: float | None


def parse_fault(doc: dict[str, Any], known: Callable[[str], bool]) -> FaultCommand:
    """{"action": down|up|partition|heal|latency|errors|throttle|clear, "regions": [...], "value": ...}."""
    action = str(doc.get("action", ""))
    if action in ("crash", "restart"):
        raise ValueError(f"{action} acts on a region's own process: run the cluster with `trent up --processes`")
    if action not in FAULT_ACTIONS:
        raise ValueError(f"unknown fault {action!r} (one of: {', '.join(FAULT_ACTIONS)})")
    raw_regions = doc.get("regions", [])
    if not isinstance(raw_regions, list):
        raise ValueError("regions is a list of region names")
    regions = [str(r) for r in raw_regions]
    unknown = [r for r in regions if not known(r)]
    if unknown:
        raise ValueError(f"unknown region(s): {', '.join(unknown)}")
    if action == "clear":
        return FaultCommand(action, regions, None)
    if not regions:
        raise ValueError(f"fault {action!r} needs a region")
    if action == "disk" and len(regions) != 1:
        raise ValueError("a disk fault names one region")
    value = doc.get("value")
    return FaultCommand(action, regions, None if value is None else float(value))


@dataclass
class RegionSite:
    """A region's own port: the server behind it, and its listening socket while the region is up."""
    runner: web.AppRunner
    port: int
    site: web.TCPSite | None = None


class FaultControl:
    def __init__(self, faults: Faults, servers: Servers, sites: dict[str, RegionSite],
                 publish: Callable[[], None], known: Callable[[str], bool] | None = None,
                 hsm_faults: HsmFaults | None = None, hsm_clusters: tuple[str, ...] = (),
                 disks: Callable[[str], Store | None] = lambda _region: None) -> None:
        """``disks``: the store of a region this process serves (None for another's)."""
        self.faults = faults
        self._disks = disks
        # The regions a command may name (by default the ones with a site here; a node knows its peers too).
        self._known = known or (lambda name: name in self._sites)
        self.hsm_faults = hsm_faults
        self._hsm_clusters = hsm_clusters
        self._servers = servers
        self._sites = sites
        # Tells the cluster's other processes (the shared runtime state) before the admin call is answered.
        self._publish = publish

    async def apply(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Apply one fault command; the faults now in force."""
        if doc.get("action") == "hsm":
            return self._apply_hsm(doc)
        command = parse_fault(doc, self._known)
        if command.action == "disk":
            return {**self.faults.describe(), "disk": self._fail_disk(command.regions[0])}
        if command.action == "clear":
            self.faults.clear()
            if self.hsm_faults is not None:
                self.hsm_faults.clear()  # `trent fault clear`: every fault, the HSM clusters' too
        else:
            self.faults.set(command.action, command.regions, command.value)
        await self.sync_sites()
        self._publish()  # before answering: the next request to any process sees it
        return self.faults.describe()

    def _fail_disk(self, region: str) -> dict[str, Any]:
        """The region's next fsync fails, as a failing disk's would (with --workers, whichever process makes it): from
        then on the region refuses every call until it starts again (node/store/groupsync.py). Not a standing fault:
        `clear` does not undo it."""
        store = self._disks(region)
        if store is None:
            return {"region": region, "here": False}  # another process's region (`trent up --processes`)
        if not store.fail_next_sync():
            raise ValueError(f"{region} keeps its state in etcd: it has no disk of its own to fail "
                             "(stop an etcd member instead)")
        return {"region": region, "here": True}

    def _apply_hsm(self, doc: dict[str, Any]) -> dict[str, Any]:
        """{"action": "hsm", "cluster": ID, "fault": down|up|latency|errors|clear, "value": ...}."""
        if self.hsm_faults is None:
            raise ValueError("this cluster has no HSM clusters")
        cluster, fault = str(doc.get("cluster", "")), str(doc.get("fault", ""))
        if cluster not in self._hsm_clusters:
            known = ", ".join(self._hsm_clusters) or "none"
            raise ValueError(f"unknown HSM cluster {cluster!r} (configured: {known})")
        if fault not in HSM_FAULT_ACTIONS:
            raise ValueError(f"unknown HSM fault {fault!r} (one of: {', '.join(HSM_FAULT_ACTIONS)})")
        value = doc.get("value")
        self.hsm_faults.set(cluster, fault, None if value is None else float(value))
        self._publish()
        return {"hsm_faults": self.hsm_faults.describe()}

    async def sync_sites(self) -> None:
        """A region that is down refuses connections on its own port; one that is back listens again."""
        for name, region in self._sites.items():
            down = self.faults.is_down(name)
            if down and region.site is not None:
                await region.site.stop()
                region.site = None
                # Connections already open (pooled clients, peers' long-polls) die too, as a dead host's would.
                server = region.runner.server
                for connection in server.connections if server is not None else ():
                    connection.force_close()
            elif not down and region.site is None:
                region.site = await self._servers.open_site(region.runner, region.port)
