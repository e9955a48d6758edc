"""What the XKS e2e tests share: a local CA, a `trent xks-proxy` over HTTPS (keys the public test client needs,
and a disabled one), and where the public test client is."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from trent.cluster.xks_running import TEST_CLIENT_KEYS, RunningProxy
from trent.node.xks.devcerts import DevCerts, make_dev_certs

TEST_CLIENT_DIR = Path(os.environ.get("XKS_TEST_CLIENT_DIR", "/work/shared/xks/test-client"))
PROXY_KEYS = (*TEST_CLIENT_KEYS, ("second", ("ENCRYPT", "DECRYPT")), ("third", ("ENCRYPT", "DECRYPT")),
              ("disabled_key", ("ENCRYPT", "DECRYPT")))


def https_proxy(root: Path, certs: DevCerts | None = None) -> RunningProxy:
    certs = certs or make_dev_certs(root / "certs")
    return RunningProxy(root / "proxy", keys=PROXY_KEYS, disabled=("disabled_key",),
                        tls=(certs.server_cert, certs.server_key), ca=certs.ca)


def client_unavailable() -> str | None:
    """Why the public test client cannot run here (None: it can)."""
    if not (TEST_CLIENT_DIR / "test-xks-proxy").is_file():
        return f"the XKS proxy test client is not at {TEST_CLIENT_DIR} (set XKS_TEST_CLIENT_DIR)"
    for tool in ("bash", "curl", "jq", "xxd", "uuidgen", "openssl", "sha256sum", "base64"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (deploy/debian-packages.txt)"
    version = subprocess.run(["curl", "--version"], capture_output=True, text=True).stdout
    m = re.match(r"curl (\d+)\.(\d+)", version)
    if m is None or (int(m[1]), int(m[2])) < (7, 75):
        return "curl 7.75 or later (with --aws-sigv4) is needed"
    return None
