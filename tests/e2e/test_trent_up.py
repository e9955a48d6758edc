"""`trent up` as a user runs it (`make up`): it says where it listens and how to call it, the example works, and
Ctrl-C or SIGTERM stop it cleanly with exit status 0."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.e2e.harness import ROOT, RunningCluster, free_port_block, poll

Fresh = Callable[..., RunningCluster]


def _log(c: RunningCluster) -> str:
    return c.log_path.read_text()


def _banner(c: RunningCluster) -> str:
    # The harness sees the cluster healthy a moment before the banner is printed.
    poll(lambda: "Ctrl-C stops the cluster." in _log(c), timeout=10)
    return _log(c)


def _example_command(log: str) -> str:
    """The `python -c ...` example from the banner, exactly as printed (a shell line continuation included)."""
    m = re.search(r'^  (python -c ".*?\)")$', log, re.S | re.M)
    assert m is not None, log
    return m[1]


def test_banner_lists_endpoints_and_a_working_example(fresh_cluster: Fresh) -> None:
    c = fresh_cluster()
    log = _banner(c)
    assert f"gateway         {c.gateway_url}" in log
    for region in c.regions:
        assert re.search(rf"^  {region}\s+{re.escape(c.region_url(region))}$", log, re.M), region
    assert f"aws --endpoint-url {c.gateway_url} --region us-east-1 kms create-key" in log
    assert "credentials test/test" in log
    assert str(c.data_dir) in log

    # The printed python example, run by a shell as a user would paste it, reaches the cluster.
    key = c.client("us-east-1").create_key()["KeyMetadata"]["KeyId"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS"):
        env.pop(name, None)
    done = subprocess.run(["bash", "-c", _example_command(log)], capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert key in done.stdout

    # The AWS CLI example too.
    out = c.aws("us-east-1", "kms", "create-key")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["KeyMetadata"]["Arn"].startswith("arn:aws:kms:us-east-1:111122223333:key/")


def test_sigterm_and_sigint_stop_cleanly(fresh_cluster: Fresh) -> None:
    c = fresh_cluster(regions=("us-east-1", "eu-west-1"))
    key = c.client("eu-west-1").create_key()["KeyMetadata"]["KeyId"]
    assert c.stop() == 0  # SIGTERM
    assert _log(c).rstrip().endswith("Trent stopped.")
    assert not (c.data_dir / "cluster.json").exists()

    c.start()  # same data dir and ports: nothing left behind blocks a restart
    assert c.client("eu-west-1").describe_key(KeyId=key)["KeyMetadata"]["KeyId"] == key
    assert c.proc is not None
    c.proc.send_signal(signal.SIGINT)  # Ctrl-C
    code = c.proc.wait(timeout=20)
    c.proc = None
    assert code == 0
    log = _log(c)
    assert log.count("Trent stopped.") == 2
    assert "Traceback" not in log
    assert "KeyboardInterrupt" not in log
    assert not (c.data_dir / "cluster.json").exists()


def test_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    c = RunningCluster(tmp_path / "data", free_port_block(4), regions=("us-east-1",)).start()
    try:
        args = [sys.executable, "-m", "trent.cluster.cli", "up", "--data-dir", str(tmp_path / "other"), "--port",
                str(c.port), "--regions", "us-east-1"]
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        assert done.stderr.startswith("trent: cannot start:")
        assert "Traceback" not in done.stderr
        assert c.client("us-east-1").list_keys()["Keys"] == []  # the running cluster is untouched
    finally:
        c.stop()


def test_bad_configuration_exits_2_with_a_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('account = "12345"\n')
    args = [sys.executable, "-m", "trent.cluster.cli", "up", "--config", str(config), "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr.strip()) == (2, "trent: account must be 12 digits")
    assert not (tmp_path / "d").exists()


def test_a_misspelt_config_key_is_refused_by_name(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('prot = 8599\n')
    args = [sys.executable, "-m", "trent.cluster.cli", "up", "--config", str(config), "--data-dir", str(tmp_path / "d")]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr.strip()) == (
        2, f"trent: unknown key 'prot' in {config} (did you mean 'port'?)")
    assert not (tmp_path / "d").exists()
