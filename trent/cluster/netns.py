"""Network namespaces for a multi-host drill on one machine (root, no containers): one namespace per region and one
for the client, each with a veth into a hub namespace that holds the bridge. Every address is from the benchmarking
range 198.18.0.0/15 (RFC 2544) and exists only inside those namespaces; nothing is made in the machine's own
namespace, and ``verify`` checks every namespace (links, addresses, routes) before anything is sent, so no packet
can leave the machine.

Delays between regions follow cluster/latency.py's published matrix with `tc netem` where the kernel has it; where
it has not but has NFQUEUE, each region's namespace hands the packets arriving from another region to a queue that
cluster/nfqueue_delay.py reads and releases after half the pair's round trip (a delay on the kernel's own path, as
netem's); with neither (``delays`` None), the caller applies the matrix in the nodes' replication links instead. A
partition is 100 % loss between two namespaces: each one's neighbour entry for the other points at a hardware
address no namespace has, so every frame between them is dropped silently, as on a cut link (and the entries are
removed again to heal)."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trent.cluster.latency import rtt_ms
from trent.cluster.running import ROOT

NET = ipaddress.IPv4Network("198.18.0.0/24")
ALLOWED = ipaddress.IPv4Network("198.18.0.0/15")
NOWHERE_MAC = "02:00:5e:00:53:01"  # locally administered; no namespace of the drill has it
CLIENT = "client"
NETEM, NFQUEUE = "tc netem", "nfqueue"
QUEUE = 0  # the NFQUEUE number, in each region's own namespace


def describe_delays(mechanism: str | None) -> str:
    """How the inter-region delays were applied, for reports."""
    if mechanism == NFQUEUE:
        return "nfqueue (packets held in the kernel's queue by nfqueue_delay; this kernel has no sch_netem)"
    return mechanism or "replication links (this kernel has neither sch_netem nor NFQUEUE)"


class NetnsUnavailable(RuntimeError):
    """Namespaces cannot be made here (not root, no iproute2, no permission): the drill is skipped."""


class NetnsUnsafe(RuntimeError):
    """A namespace holds something the harness did not make: nothing is sent."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def _ip_json(*args: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(ip("-j", *args).stdout or "[]")
    return out


def _inside(dst: str) -> bool:
    try:
        network = ipaddress.ip_network(dst, strict=False)
    except ValueError:
        return False
    return isinstance(network, ipaddress.IPv4Network) and network.subnet_of(ALLOWED)


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (the ip command) is not installed"
    probe = f"trent-probe-{secrets.token_hex(3)}"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@dataclass
class Net:
    regions: list[str]
    run_id: str = field(default_factory=lambda: f"trent-{secrets.token_hex(3)}")
    made: list[str] = field(default_factory=list)
    delays: str | None = None  # NETEM, NFQUEUE, or None: not applied by the network
    delay_counts: dict[str, Any] = field(default_factory=dict)  # per region, what its nfqueue_delay held
    _delayers: dict[str, subprocess.Popen[str]] = field(default_factory=dict, repr=False)
    partitions: set[frozenset[str]] = field(default_factory=set)

    @property
    def hub(self) -> str:
        return f"{self.run_id}-hub"

    @property
    def members(self) -> list[str]:
        return [*self.regions, CLIENT]

    def ns(self, member: str) -> str:
        return f"{self.run_id}-{self.members.index(member)}"

    def address(self, member: str) -> str:
        return str(NET.network_address + 2 + self.members.index(member))

    def exec_prefix(self, member: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(member)]

    # -- making and removing -------------------------------------------------------------------------------

    def create(self) -> Net:
        """Every namespace, link and address; on failure what was made is removed again."""
        try:
            self._add(self.hub)
            ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            ip("-n", self.hub, "link", "set", "br0", "up")
            for i, member in enumerate(self.members):
                ns = self.ns(member)
                self._add(ns)
                # Both ends are made inside namespaces: nothing appears in the machine's own.
                ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"v{i}", "netns", self.hub)
                ip("-n", self.hub, "link", "set", f"v{i}", "master", "br0")
                ip("-n", self.hub, "link", "set", f"v{i}", "up")
                ip("-n", ns, "addr", "add", f"{self.address(member)}/{NET.prefixlen}", "dev", "eth0")
                ip("-n", ns, "link", "set", "eth0", "up")
        except (subprocess.CalledProcessError, OSError):
            self.destroy()
            raise
        return self

    def _add(self, ns: str) -> None:
        ip("netns", "add", ns)
        self.made.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")

    def destroy(self) -> None:
        """Stop the delay processes (they let go of every packet they hold), kill what still runs in the namespaces
        made (all started by this run), then remove them."""
        self.unshape()
        for ns in reversed(self.made):
            pids = ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", ns, check=False)
        self.made.clear()

    def leftovers(self) -> list[str]:
        """This run's namespaces that still exist (none after ``destroy``)."""
        names = [str(n.get("name")) for n in _ip_json("netns", "list")] if ip("netns", "list").stdout else []
        return [n for n in names if n.startswith(self.run_id)]

    # -- checking before sending ----------------------------------------------------------------------------

    def verify(self) -> None:
        """Every namespace of the run holds exactly what ``create`` made: in a member, lo and eth0 (a veth) with one
        address of 198.18.0.0/15 and only on-link routes inside it, no default route; in the hub, the bridge and
        its ports, no address. Raises NetnsUnsafe otherwise."""
        for member in self.members:
            ns = self.ns(member)
            links = {str(link["ifname"]): link for link in _ip_json("-n", ns, "link")}
            if set(links) != {"lo", "eth0"}:
                raise NetnsUnsafe(f"{ns}: unexpected links {sorted(links)}")
            for entry in _ip_json("-n", ns, "addr"):
                for info in entry.get("addr_info", []):
                    address = ipaddress.ip_address(str(info["local"]))
                    if entry["ifname"] == "lo":
                        if not address.is_loopback:
                            raise NetnsUnsafe(f"{ns}: lo has {address}")
                    elif (address.version != 4 or address not in ALLOWED) and not (
                            address.version == 6 and address.is_link_local):
                        raise NetnsUnsafe(f"{ns}: address {address} is outside {ALLOWED}")
            for route in _ip_json("-n", ns, "route"):
                dst = str(route.get("dst"))
                if dst == "default" or route.get("gateway") or not _inside(dst):
                    raise NetnsUnsafe(f"{ns}: route {route} leads outside {ALLOWED}")
        hub_links = {str(link["ifname"]) for link in _ip_json("-n", self.hub, "link")}
        expected = {"lo", "br0", *(f"v{i}" for i in range(len(self.members)))}
        if hub_links != expected:
            raise NetnsUnsafe(f"{self.hub}: unexpected links {sorted(hub_links - expected)}")
        for entry in _ip_json("-n", self.hub, "addr"):
            for info in entry.get("addr_info", []):
                address = ipaddress.ip_address(str(info["local"]))
                if not (address.is_loopback or (address.version == 6 and address.is_link_local)):
                    raise NetnsUnsafe(f"{self.hub}: unexpected address {address}")

    # -- delays and partitions ------------------------------------------------------------------------------

    def netem_available(self) -> bool:
        """Whether this kernel has sch_netem (probed on the client's link, then removed)."""
        ns = self.ns(CLIENT)
        probe = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                                "delay", "1ms"], capture_output=True, text=True, timeout=30)
        if probe.returncode != 0:
            return False
        subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root"], capture_output=True,
                       timeout=30)
        return True

    def shape(self, rtt: Callable[[str, str], float] = rtt_ms, netem: bool = True) -> str | None:
        """Half of each pair's round trip (``rtt``, ms) on each side, by `tc netem` (unless ``netem`` is False) or
        else by NFQUEUE; the mechanism (also in ``delays``), or None (and nothing left behind) when this kernel has
        neither."""
        if netem and self.netem_available() and self._shape_netem(rtt):
            self.delays = NETEM
        elif self.nfqueue_unavailable_reason() is None and self._shape_nfqueue(rtt):
            self.delays = NFQUEUE
        return self.delays

    def _shape_netem(self, rtt: Callable[[str, str], float]) -> bool:
        """Each side's egress towards the other: an htb class per destination, netem under it, a u32 filter on the
        destination address."""
        try:
            for member in self.regions:
                tc = [*self.exec_prefix(member), "tc"]
                subprocess.run([*tc, "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "99"],
                               check=True, capture_output=True, timeout=30)
                subprocess.run([*tc, "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:99", "htb", "rate",
                                "10gbit"], check=True, capture_output=True, timeout=30)
                for n, other in enumerate(r for r in self.regions if r != member):
                    cls = f"1:{n + 1}"
                    subprocess.run([*tc, "class", "add", "dev", "eth0", "parent", "1:", "classid", cls, "htb",
                                    "rate", "10gbit"], check=True, capture_output=True, timeout=30)
                    subprocess.run([*tc, "qdisc", "add", "dev", "eth0", "parent", cls, "netem", "delay",
                                    f"{rtt(member, other) / 2:.1f}ms"], check=True, capture_output=True, timeout=30)
                    subprocess.run([*tc, "filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip", "u32",
                                    "match", "ip", "dst", f"{self.address(other)}/32", "flowid", cls],
                                   check=True, capture_output=True, timeout=30)
        except subprocess.CalledProcessError:
            for member in self.regions:
                subprocess.run([*self.exec_prefix(member), "tc", "qdisc", "del", "dev", "eth0", "root"],
                               capture_output=True, timeout=30)
            return False
        return True

    def nfqueue_unavailable_reason(self) -> str | None:
        """Why packets cannot be held in an NFQUEUE here (probed in the client's namespace), or None."""
        if shutil.which("iptables") is None:
            return "iptables is not installed (Debian package iptables)"
        probe = subprocess.run([*self.exec_prefix(CLIENT), sys.executable, "-m", "trent.cluster.nfqueue_delay",
                                "--queue", str(QUEUE), "--probe"], capture_output=True, text=True, timeout=30,
                               cwd=ROOT)
        if probe.returncode != 0:
            return f"cannot bind an NFQUEUE: {probe.stderr.strip()[-300:]}"
        rule = ["PREROUTING", "-s", str(NET.broadcast_address), "-j", "NFQUEUE", "--queue-num", str(QUEUE)]
        added = self._iptables(CLIENT, "-A", *rule)
        if added.returncode != 0:
            return f"iptables cannot queue packets: {added.stderr.strip()[-300:]}"
        self._iptables(CLIENT, "-D", *rule)
        return None

    def _iptables(self, member: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.exec_prefix(member), "iptables", "-w", "5", "-t", "mangle", *args],
                              capture_output=True, text=True, timeout=30)

    def _shape_nfqueue(self, rtt: Callable[[str, str], float]) -> bool:
        """In each region's namespace a delay process holding what arrives from each other region for half the
        pair's round trip; the rule that queues those packets only once it reads the queue (a queue nobody reads
        drops). On arrival rather than on departure: a packet held on its sender's OUTPUT still counts against the
        sending socket's small-queue limit, which would throttle a bulk transfer to a crawl."""
        try:
            for member in self.regions:
                others = [r for r in self.regions if r != member]
                delays = [f"--delay={self.address(o)}={rtt(member, o) / 2:.1f}" for o in others]
                process = subprocess.Popen([*self.exec_prefix(member), sys.executable, "-m",
                                            "trent.cluster.nfqueue_delay", "--queue", str(QUEUE), *delays],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
                self._delayers[member] = process
                if not _ready(process, 30):
                    raise OSError(f"nfqueue_delay in {member} did not start")
                for other in others:
                    # Bypass: once the process has let go of the queue at the end, packets pass instead of dropping.
                    added = self._iptables(member, "-A", "PREROUTING", "-s", f"{self.address(other)}/32", "-j",
                                           "NFQUEUE", "--queue-num", str(QUEUE), "--queue-bypass")
                    if added.returncode != 0:
                        raise OSError(f"iptables in {member}: {added.stderr.strip()}")
        except (OSError, subprocess.SubprocessError):
            self.unshape()
            return False
        return True

    def unshape(self) -> None:
        """Each delay process stopped: it lets go of what it holds, in order, and of the queue (the rules bypass it
        from then on, then go); its counts are kept in ``delay_counts``."""
        for process in self._delayers.values():
            process.terminate()
        for member, process in list(self._delayers.items()):
            try:
                out, _err = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                out, _err = process.communicate(timeout=10)
            lines = out.strip().splitlines()
            with contextlib.suppress(ValueError, IndexError):
                self.delay_counts[member] = {**json.loads(lines[-1]), "exit": process.returncode}
            self._iptables(member, "-F", "PREROUTING")
            del self._delayers[member]

    def partition(self, a: str, b: str) -> None:
        """100 % loss between ``a`` and ``b``, both ways."""
        for here, there in ((a, b), (b, a)):
            ip("-n", self.ns(here), "neigh", "replace", self.address(there), "lladdr", NOWHERE_MAC, "nud", "permanent",
               "dev", "eth0")
        self.partitions.add(frozenset((a, b)))

    def heal(self, a: str, b: str) -> None:
        for here, there in ((a, b), (b, a)):
            ip("-n", self.ns(here), "neigh", "del", self.address(there), "dev", "eth0", check=False)
        self.partitions.discard(frozenset((a, b)))


def _ready(process: subprocess.Popen[str], timeout: float) -> bool:
    """Whether ``process`` said ``ready`` on its first line within ``timeout`` seconds."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return bool(ready) and process.stdout.readline().strip() == "ready"


def run_drill(members: list[str], out: Path, module: str, timeout: float,
              prepare: Callable[[Net], dict[str, Any]]) -> dict[str, Any]:
    """A drill from the machine's own namespace: the namespaces made, ``prepare`` (the inner run's spec, after any
    shaping), the addresses checked before anything is sent, ``python -m module --inside SPEC`` run in the client's
    namespace; its result (what it wrote to out/result.json) with the namespaces left behind, none normally."""
    reason = unavailable_reason()
    if reason is not None:
        raise NetnsUnavailable(reason)
    out.mkdir(parents=True, exist_ok=True)
    net = Net(members).create()
    result: dict[str, Any] = {"ok": False}
    try:
        spec = prepare(net)
        net.verify()  # before anything is sent
        inner = subprocess.run([*net.exec_prefix(CLIENT), sys.executable, "-m", module, "--inside",
                                json.dumps(spec)], cwd=Path(__file__).resolve().parents[2], timeout=timeout)
        result_file = out / "result.json"
        if result_file.exists():
            result = json.loads(result_file.read_text())
        else:
            result = {"ok": False, "error": f"the drill exited with {inner.returncode} and no result"}
    finally:
        net.destroy()
        result["leftover_namespaces"] = net.leftovers()
        result["delay_counts"] = net.delay_counts
        (out / "result.json").write_text(json.dumps(result, indent=2))
    return result


class WriteBurst:
    """Writes through ``kms`` in a thread of its own until stopped, ``step(n)`` making the n-th call: only answered
    calls count (``keys``, ``blobs``: key id, ciphertext, plaintext); a failed one is kept and the next one paced."""

    def __init__(self, kms: Any, pause: float, join_timeout: float) -> None:
        self.kms = kms
        self.keys: list[str] = []
        self.blobs: list[tuple[str, bytes, bytes]] = []
        self.failures: list[Exception] = []
        self._pause, self._join_timeout = pause, join_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def acks(self) -> int:
        return len(self.keys) + len(self.blobs)

    def step(self, n: int) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                self.step(n)
            except Exception as exc:  # a call that failed (after the client's own retries): no promise was made
                self.failures.append(exc)
                time.sleep(self._pause)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self._join_timeout)
