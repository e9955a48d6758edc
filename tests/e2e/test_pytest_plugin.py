"""The pytest plugin as a user meets it: a project of their own, in a folder of its own, whose tests ask for
``trent_kms`` and ``trent_cluster``, run by pytest in a separate process that finds the plugin through the
``pytest11`` entry point this repository's pyproject.toml declares."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from tests.e2e.harness import ROOT

ENTRY_POINT = "trent.cluster.pytest_plugin"

PROJECT_PYPROJECT = """\
[project]
name = "invoices"
version = "1.0"

[tool.pytest.ini_options]
trent_regions = "us-east-1,eu-west-1"
trent_args = "--replica-delay 0"
"""

# The user's own code; beside it, packages of their own named like the ones Trent's modules live in (node, cluster,
# bench), which Trent's single top-level package `trent` leaves alone.
INVOICES = '''\
def seal(kms, key_id: str, text: str) -> bytes:
    return kms.encrypt(KeyId=key_id, Plaintext=text.encode(), EncryptionContext={"doc": "invoice"})["CiphertextBlob"]


def open_sealed(kms, blob: bytes) -> str:
    return kms.decrypt(CiphertextBlob=blob, EncryptionContext={"doc": "invoice"})["Plaintext"].decode()
'''

USER_TESTS = '''\
import datetime as dt

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from invoices import open_sealed, seal

SEEN = set()


def test_the_projects_own_node_cluster_and_bench_packages_are_its_own(trent_kms):
    import bench
    import cluster
    import node

    assert (node.OWNER, cluster.OWNER, bench.OWNER) == ("invoices", "invoices", "invoices")
    assert trent_kms().list_keys()["Keys"] is not None  # and Trent works beside them


def test_roundtrip_in_the_first_region(trent_kms, trent_cluster):
    kms = trent_kms()
    assert kms.meta.region_name == "us-east-1"
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    assert open_sealed(kms, seal(kms, key, "42 EUR")) == "42 EUR"
    SEEN.add(trent_cluster.endpoint)


def test_a_named_region(trent_kms, trent_cluster):
    assert trent_cluster.regions == ("us-east-1", "eu-west-1")
    eu = trent_kms("eu-west-1")
    assert eu.meta.region_name == "eu-west-1"
    assert ":eu-west-1:" in eu.create_key()["KeyMetadata"]["Arn"]
    assert trent_kms("eu-west-1") is eu
    SEEN.add(trent_cluster.endpoint)


def test_faults(trent_cluster):
    direct = trent_cluster.client("eu-west-1", via="region")
    trent_cluster.down("eu-west-1")
    assert trent_cluster.faults["down"] == ["eu-west-1"]
    with pytest.raises(EndpointConnectionError):
        direct.list_keys()
    trent_cluster.up("eu-west-1")
    assert "Keys" in direct.list_keys()
    trent_cluster.fault("latency", "us-east-1", value="50ms")
    assert trent_cluster.faults["latency_ms"] == {"us-east-1": 50.0}
    trent_cluster.clear_faults()
    SEEN.add(trent_cluster.endpoint)


def test_clock(trent_cluster, trent_kms):
    kms = trent_kms()
    key = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    before = trent_cluster.now()
    after = trent_cluster.advance_clock(dt.timedelta(days=8))
    assert after - before >= dt.timedelta(days=8)
    with pytest.raises(ClientError) as err:
        kms.describe_key(KeyId=key)
    assert err.value.response["Error"]["Code"] == "NotFoundException"


def test_reset(trent_cluster, trent_kms):
    trent_kms().create_key()
    trent_cluster.down("eu-west-1")
    trent_cluster.reset()
    assert trent_kms().list_keys()["Keys"] == []
    assert trent_kms("eu-west-1").list_keys()["Keys"] == []
    assert trent_cluster.faults["down"] == []


@pytest.mark.trent(regions=["ap-southeast-2"])
def test_a_marker_gets_its_own_cluster(trent_cluster, trent_kms):
    assert trent_cluster.regions == ("ap-southeast-2",)
    assert trent_kms().meta.region_name == "ap-southeast-2"
    assert trent_cluster.endpoint not in SEEN


@pytest.mark.trent(seed="fixtures/keys.toml")
def test_a_seeded_cluster(trent_cluster, trent_kms):
    kms = trent_kms()
    assert kms.describe_key(KeyId="alias/fixture")["KeyMetadata"]["KeyId"] == "0b7c9e2a-4d6f-4a1b-8c3e-5f7a9b1d3e5f"
    trent_cluster.reset()
    assert [k["KeyId"] for k in kms.list_keys()["Keys"]] == ["0b7c9e2a-4d6f-4a1b-8c3e-5f7a9b1d3e5f"]


@pytest.mark.trent(config="fixtures/trent.toml", regions="eu-north-1")
def test_a_configured_cluster_signs_with_its_principal(trent_cluster, trent_kms):
    assert trent_cluster.account == "444455556666"
    arn = trent_kms().create_key()["KeyMetadata"]["Arn"]
    assert arn.startswith("arn:aws:kms:eu-north-1:444455556666:key/")


def test_one_cluster_per_session(trent_cluster):
    assert SEEN == {trent_cluster.endpoint}
'''


SEED = """\
[[keys]]
key_id = "0b7c9e2a-4d6f-4a1b-8c3e-5f7a9b1d3e5f"
material = "hex:8d2f6b0e4c1a3957b2e6d4f0a8c1e3b5d7f9a2c4e6b8d0f1a3c5e7b9d2f4a6c8"
aliases = ["alias/fixture"]
"""


def _entry_point() -> str:
    """What pyproject.toml registers under pytest11 (what `pip install` writes into the distribution's metadata)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    target: str = project["entry-points"]["pytest11"]["trent"]
    return target


def _installed_metadata(site: Path) -> None:
    """The entry point as an installation records it, for the Trent sources on PYTHONPATH (the shared development
    environment may hold an older installation of Trent)."""
    info = site / "trent_sources-0.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: trent-sources\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(f"[pytest11]\ntrent = {_entry_point()}\n")


def test_pyproject_registers_the_plugin() -> None:
    assert _entry_point() == ENTRY_POINT
    # Where Trent is installed from this checkout (make installs it), its metadata names the plugin too.
    installed = [ep for ep in metadata.entry_points(group="pytest11") if ep.name == "trent"]
    assert all(ep.value == ENTRY_POINT for ep in installed)


def test_a_user_project_runs_against_the_plugin(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "invoices").mkdir(parents=True)
    (project / "checks").mkdir()
    (project / "pyproject.toml").write_text(PROJECT_PYPROJECT)
    (project / "invoices" / "__init__.py").write_text(INVOICES)
    (project / "checks" / "test_invoices.py").write_text(USER_TESTS)
    for own in ("node", "cluster", "bench"):
        (project / own).mkdir()
        (project / own / "__init__.py").write_text('OWNER = "invoices"\n')
    (project / "fixtures").mkdir()
    (project / "fixtures" / "keys.toml").write_text(SEED)
    (project / "fixtures" / "trent.toml").write_text(
        'account = "444455556666"\n[[principals]]\naccess_key = "AKIAPROJECT"\nsecret_key = "project-secret"\n')
    site = tmp_path / "site"
    _installed_metadata(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(project), str(ROOT), str(site)])}
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_KMS", "PYTEST_ADDOPTS",
                 "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "checks"],
                            cwd=project, env=env, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "10 passed" in out, out
    # The clusters were stopped at the end of the session: nothing of them still runs.
    assert not list(tmp_path.glob("**/cluster.json"))


def test_help_lists_the_options(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _installed_metadata(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    for option in ("--trent-regions", "--trent-config", "--trent-seed", "--trent-args"):
        assert option in result.stdout
    assert "trent_regions" in result.stdout
    markers = subprocess.run([sys.executable, "-m", "pytest", "--markers"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
    assert "@pytest.mark.trent(regions=None" in markers.stdout


FAILING_TESTS = '''\
import pytest

pytestmark = pytest.mark.trent(seed="absent.toml")


def test_one(trent_kms):
    trent_kms().list_keys()


def test_two(trent_cluster):
    pass
'''


def test_a_cluster_that_cannot_start_fails_its_tests_once(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(PROJECT_PYPROJECT)
    (project / "test_broken.py").write_text(FAILING_TESTS)
    site = tmp_path / "site"
    _installed_metadata(site)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    base = tmp_path / "base"
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"--basetemp={base}"],
                            cwd=project, env=env, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "2 failed" in out or "2 errors" in out, out
    assert out.count("cannot read seed file") >= 2, out
    assert len(list(base.glob("trent[0-9]*"))) == 1  # one attempt to start it, not one per test
