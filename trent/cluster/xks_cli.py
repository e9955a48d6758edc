"""The XKS parts of the `trent` command: `trent xks-proxy` (the parser; the proxy itself loads only when run) and
`trent fault xks down|up|latency 300ms|errors 20%|garbage|reject|clear --proxy-dir DIR`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

DEFAULT_PROXY_DIR = ".trent-xks"
FAULT_APPLY_TIMEOUT = 10.0


def _run_proxy(args: argparse.Namespace) -> int:
    from trent.cluster.xks_proxy import run  # aiohttp and PKCS#11 load only for this command

    return run(args)


def add_proxy_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    proxy = sub.add_parser("xks-proxy", help="run an XKS proxy (AWS KMS External Keystore Proxy API) in the "
                           "foreground, its keys in a PKCS#11 token")
    proxy.add_argument("--config", required=True, help="TOML file: host, port, uri_prefix, [[credentials]], "
                       "[[keys]], tls_cert/tls_key/tls_client_ca, [pkcs11]")
    proxy.add_argument("--data-dir", dest="data_dir", default=DEFAULT_PROXY_DIR,
                       help=f"where the SoftHSM2 token and the faults file live (default {DEFAULT_PROXY_DIR})")
    proxy.add_argument("--port", type=int, help="port to listen on (overrides the config's)")
    proxy.add_argument("--local-tls", dest="local_tls", action="store_true", help="without tls_cert/tls_key: serve "
                       "HTTPS with a certificate from a local CA made under the data directory (its path is printed, "
                       "for the cluster's xks_trusted_ca)")
    proxy.add_argument("-q", "--quiet", action="store_true", help="log warnings only (not each request)")
    proxy.set_defaults(func=_run_proxy)


def xks_fault(words: list[str], proxy_dir: str, value_of: Callable[[str, str], float]) -> int:
    """Write the proxy's faults file; a running proxy applies it within a fifth of a second, and for a change to
    its listening socket (down, up, clear) this returns once it has."""
    from trent.node.xks.proxy_faults import XKS_FAULT_ACTIONS, FaultFile, ListeningFile

    usage = ("usage: trent fault xks down|up|latency 300ms|errors 20%|garbage|reject|clear "
             f"[--proxy-dir DIR, default {DEFAULT_PROXY_DIR}]")
    if not words or words[0] not in XKS_FAULT_ACTIONS or len(words) != (2 if words[0] in ("latency", "errors")
                                                                         else 1):
        print(f"trent: {usage}", file=sys.stderr)
        return 2
    root = Path(proxy_dir)
    if not root.is_dir():
        print(f"trent: no XKS proxy data directory at {root}", file=sys.stderr)
        return 2
    try:
        value = value_of(words[0], words[1]) if len(words) == 2 else None
        file = FaultFile(root)
        faults = file.refresh().apply(words[0], value)
    except ValueError as exc:
        print(f"trent: {exc}", file=sys.stderr)
        return 2
    file.write(faults)
    if not ListeningFile(root).wait_for(not faults.down, timeout=FAULT_APPLY_TIMEOUT):
        print(f"trent: the XKS proxy did not apply the fault within {FAULT_APPLY_TIMEOUT:g} s", file=sys.stderr)
        return 1
    print(json.dumps({"xks_proxy": str(root), "faults": faults.describe()}, indent=2))
    return 0
