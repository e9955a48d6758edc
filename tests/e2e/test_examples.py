"""Every demo in examples/ runs from the repository with one command and ends with its OK line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.harness import ROOT
from trent.node.hsm.softhsm import find_library


@pytest.mark.parametrize(("script", "expected"), [
    ("envelope_encryption.py", ["opened after a key rotation", "envelope encryption round trip OK"]),
    ("global_encryption.py", ["decrypted in ap-northeast-2 again, with us-east-1 still down",
                              "global encryption demo OK"]),
    ("dr_drill.py", ["primary moved to eu-west-1", "replication lag 0", "consistent", "DR drill OK"]),
    ("bring_your_own_key.py", ["rotated on demand", "old data still decrypts", "decrypt refused while material",
                               "re-imported the same bytes: Enabled", "bring your own key demo OK"]),
    pytest.param("keystore_demo.py", ["HSM cluster cluster-trentdefault is DOWN", "-> KeyUnavailableException",
                                      "-> KMSInvalidStateException", "decrypts again", "key store demo OK"],
                 marks=pytest.mark.skipif(find_library() is None,
                                          reason="SoftHSM2 is not installed (Debian: softhsm2)")),
    pytest.param("xks_demo.py", ["external key store", "CONNECTED", "did not respond in time",
                                 "cannot communicate with the external key store proxy", "decrypts again",
                                 "XKS demo OK"],
                 marks=pytest.mark.skipif(find_library() is None,
                                          reason="SoftHSM2 is not installed (Debian: softhsm2)")),
])
def test_demo_runs(script: str, expected: list[str]) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    for line in expected:
        assert line in done.stdout
