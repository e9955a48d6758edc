"""`trent xks-proxy` against aws-samples' public XKS proxy compliance test client (`./test-xks-proxy -a`: every
test, with the encrypt-only, decrypt-only and impotent keys), over plain HTTP and over HTTPS, and with mutual TLS.
Skipped where the client or the tools it runs (bash, curl >= 7.75, jq, xxd, uuidgen) are missing."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.e2e.xks_fixtures import TEST_CLIENT_DIR, client_unavailable
from trent.cluster.xks_running import ACCESS_KEY, SECRET, RunningProxy
from trent.node.hsm.softhsm import find_library
from trent.node.xks.devcerts import make_dev_certs

pytestmark = [pytest.mark.skipif(find_library() is None, reason="SoftHSM2 is not installed (Debian: softhsm2)"),
              pytest.mark.skipif(client_unavailable() is not None, reason=str(client_unavailable()))]


def run_client(host: str, scheme: str, extra: dict[str, str]) -> str:
    env = {**os.environ, "XKS_PROXY_HOST": host, "SCHEME": scheme, "URI_PREFIX": "example/uri/path/prefix",
           "SIGV4_ACCESS_KEY_ID": ACCESS_KEY, "SIGV4_SECRET_ACCESS_KEY": SECRET, "ANSI_ESCAPE": "0", "VERBOSE": "",
           **extra}
    done = subprocess.run(["bash", "./test-xks-proxy", "-a"], cwd=TEST_CLIENT_DIR, env=env, capture_output=True,
                          timeout=300)
    return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


def passed(output: str) -> int:
    m = re.search(r"All (\d+) tests PASSED", output)
    assert m is not None, output[-3000:]
    return int(m[1])


def test_the_public_client_passes_over_http(tmp_path: Path) -> None:
    proxy = RunningProxy(tmp_path).start()
    try:
        assert passed(run_client(f"127.0.0.1:{proxy.port}", "", {})) >= 49
    finally:
        proxy.stop()
    assert "Encrypt key=foo status=200" in proxy.log()


def test_the_public_client_passes_over_https_and_mutual_tls(tmp_path: Path) -> None:
    certs = make_dev_certs(tmp_path / "certs")
    proxy = RunningProxy(tmp_path / "tls", tls=(certs.server_cert, certs.server_key), ca=certs.ca).start()
    try:
        assert passed(run_client(f"localhost:{proxy.port}", "https://", {"SECURE": f"--cacert {certs.ca}"})) >= 49
    finally:
        proxy.stop()
    mtls = RunningProxy(tmp_path / "mtls", tls=(certs.server_cert, certs.server_key), ca=certs.ca,
                        client_ca=certs.ca).start()
    try:
        # Without MTLS the client's own negative mTLS checks (which expect one alert text) are not run.
        out = run_client(f"localhost:{mtls.port}", "https://", {
            "SECURE": f"--cacert {certs.ca}", "MTLS": f"--key {certs.client_key} --cert {certs.client_cert}"})
        assert "49 tests PASSED" in out, out[-3000:]
        # The client's two bogus-certificate probes are refused too, but it expects one TLS alert text (a TLS 1.2
        # "handshake failure"); over TLS 1.3 curl sees the refusal as a reset instead.
        failed = re.findall(r"=> Test (.*) FAILED", out)
        assert all("via mTLS with a" in name for name in failed), failed
        refused = subprocess.run(["curl", "-s", "--cacert", str(certs.ca), f"https://localhost:{mtls.port}/ping"],
                                 capture_output=True, timeout=30)
        assert refused.returncode != 0  # no client certificate, no connection
    finally:
        mtls.stop()
