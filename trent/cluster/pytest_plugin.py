"""The pytest plugin (registered through the ``pytest11`` entry point, so installing Trent is enough): a private
cluster on free loopback ports in a temporary data directory, started once per test session and stopped at its
end, and boto3 KMS clients for it.

    def test_roundtrip(trent_kms):
        kms = trent_kms()                        # the first region's client; trent_kms("eu-west-1") for another
        key = kms.create_key()["KeyMetadata"]["KeyId"]
        blob = kms.encrypt(KeyId=key, Plaintext=b"x")["CiphertextBlob"]
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"

Settings (a ``trent`` marker on a test, class or module wins over the options, the options over the ini keys):
regions (``--trent-regions`` / ``trent_regions``), a config file (``--trent-config`` / ``trent_config``), a seed
file (``--trent-seed`` / ``trent_seed``) and further ``trent up`` flags (``--trent-args`` / ``trent_args``). Each
distinct set of settings gets one cluster for the whole session.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from trent.cluster.running import RunningCluster

START_TIMEOUT = 120.0  # a cold start on a loaded CI machine (imports, the first key pairs) can take a while
_OPTIONS = (
    ("regions", "comma-separated regions of the cluster the trent fixtures start (default: Trent's three)"),
    ("config", "a Trent config file (TOML) for that cluster"),
    ("seed", "a seed file (TOML or YAML) whose keys that cluster holds from the start"),
    ("args", "further `trent up` flags for that cluster, e.g. \"--replica-delay 0\""),
)


@dataclass(frozen=True)
class Settings:
    """What makes one cluster differ from another."""

    regions: tuple[str, ...] | None = None
    config: str | None = None
    seed: str | None = None
    args: tuple[str, ...] = ()

    def up_args(self) -> tuple[str, ...]:
        out: list[str] = []
        if self.config:
            out += ["--config", self.config]
        if self.seed:
            out += ["--seed", self.seed]
        return (*out, *self.args)


class TrentCluster:
    """A running cluster as tests drive it: its addresses, clients, faults, clock and reset."""

    def __init__(self, running: RunningCluster, account: str = "111122223333",
                 credentials: tuple[str, str] = ("test", "test")) -> None:
        self._running = running
        self._clients: dict[str, Any] = {}
        self.account = account
        # The first principal of the cluster's config (test/test without one): what clients sign with by default.
        self.credentials = credentials

    @property
    def endpoint(self) -> str:
        """The gateway: one URL for every region (routed by the region a client signs for)."""
        return self._running.gateway_url

    @property
    def regions(self) -> tuple[str, ...]:
        return self._running.regions

    @property
    def data_dir(self) -> Path:
        return self._running.data_dir

    @property
    def log_path(self) -> Path:
        """The cluster's own output (look here when it misbehaves)."""
        return self._running.log_path

    def region_endpoint(self, region: str) -> str:
        """A region's own port (it answers only requests signed for that region)."""
        return self._running.region_url(region)

    def client(self, region: str | None = None, **kwargs: Any) -> Any:
        """A new boto3 KMS client for ``region`` (default the first) through the gateway; ``kwargs`` as
        RunningCluster.client takes them (via="region", access_key, secret_key, session_token, retries: 0 by
        default, so an injected fault reaches the test rather than a retry)."""
        kwargs.setdefault("access_key", self.credentials[0])
        kwargs.setdefault("secret_key", self.credentials[1])
        return self._running.client(region or self.regions[0], **kwargs)

    def kms(self, region: str | None = None) -> Any:
        """The shared client of ``region`` (default the first), made once per cluster."""
        name = region or self.regions[0]
        if name not in self._clients:
            self._clients[name] = self.client(name)
        return self._clients[name]

    # -- faults --------------------------------------------------------------------------------------------

    def fault(self, kind: str, *regions: str, value: str | float | None = None) -> dict[str, Any]:
        """As `trent fault`: ``fault("down", "eu-west-1")``, ``fault("latency", "us-east-1", value="200ms")``,
        ``fault("errors", r, value="5%")``, ``fault("throttle", r, value="10/s")``, ``fault("clear")``. The faults
        now in force."""
        from trent.cluster.cli import fault_value

        doc: dict[str, Any] = {"action": kind, "regions": list(regions)}
        if value is not None:
            doc["value"] = fault_value(kind, value) if isinstance(value, str) else float(value)
        result: dict[str, Any] = self._running.admin("/_trent/faults", doc)
        return result

    def down(self, region: str) -> dict[str, Any]:
        return self.fault("down", region)

    def up(self, region: str) -> dict[str, Any]:
        return self.fault("up", region)

    def partition(self, a: str, b: str) -> dict[str, Any]:
        return self.fault("partition", a, b)

    def heal(self, a: str, b: str) -> dict[str, Any]:
        return self.fault("heal", a, b)

    def clear_faults(self) -> dict[str, Any]:
        return self.fault("clear")

    @property
    def faults(self) -> dict[str, Any]:
        faults: dict[str, Any] = self.status()["faults"]
        return faults

    # -- the clock, status, reset ----------------------------------------------------------------------------

    def now(self) -> dt.datetime:
        """The cluster's clock (moved only forward, by ``advance_clock``)."""
        return _utc(self._running.admin("/_trent/clock")["now"])

    def advance_clock(self, duration: str | float | dt.timedelta) -> dt.datetime:
        """Move the cluster's clock forward (``"8d"``, ``"12h"``, seconds, a timedelta); deletions and rotations
        that fall due happen before this returns. The new time."""
        seconds = duration.total_seconds() if isinstance(duration, dt.timedelta) else duration
        return _utc(self._running.admin("/_trent/clock", {"advance": seconds})["now"])

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self._running.admin("/_trent/status")
        return status

    def reset(self) -> dict[str, Any]:
        """A clean slate without a restart: faults cleared, every region's keys, aliases and grants removed, the
        seed file applied again. (The clock stays where it is: it only moves forward.)"""
        self.clear_faults()
        result: dict[str, Any] = self._running.admin("/_trent/reset", {})
        return result


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


class _Clusters:
    """The session's clusters, one per distinct Settings, started on first use and stopped at the end."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._clusters: dict[Settings, TrentCluster] = {}
        self._running: list[RunningCluster] = []
        # A cluster that could not start is not tried again by every test that wants it: they all fail at once.
        self._failed: dict[Settings, str] = {}

    def get(self, settings: Settings) -> TrentCluster:
        cluster = self._clusters.get(settings)
        if settings in self._failed:
            pytest.fail(self._failed[settings], pytrace=False)
        if cluster is None:
            from trent.node.config import ConfigError, load_config

            try:
                config = load_config(Path(settings.config) if settings.config else None)
                running = self._start(settings)
            except (ConfigError, RuntimeError) as exc:
                self._failed[settings] = f"trent: {exc}"
                pytest.fail(self._failed[settings], pytrace=False)
            principal = config.effective_principals()[0]
            cluster = TrentCluster(running, config.account, (principal.access_key, principal.secret_key))
            self._clusters[settings] = cluster
        return cluster

    def _start(self, settings: Settings) -> RunningCluster:
        from trent.cluster.ports import free_port_block
        from trent.cluster.running import RunningCluster
        from trent.node.config import DEFAULT_REGIONS

        regions = settings.regions or DEFAULT_REGIONS
        data = self._factory.mktemp("trent") / "data"
        running = RunningCluster(data, free_port_block(len(regions) + 1), regions=regions,
                                 extra_args=settings.up_args(), verbose=False)
        try:
            running.start(timeout=START_TIMEOUT)
        except (RuntimeError, TimeoutError) as exc:
            if running.proc is not None:
                running.kill()
            tail = running.log_path.read_text(errors="replace")[-2000:] if running.log_path.exists() else ""
            raise RuntimeError(f"the cluster did not start ({exc}):\n{tail}") from None
        self._running.append(running)
        return running

    def close(self) -> None:
        for running in self._running:
            if running.proc is not None:
                try:
                    running.stop()
                except Exception:  # a cluster that will not stop is killed: the session must end
                    running.kill()
        self._running.clear()
        self._clusters.clear()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("trent", "Trent (a local AWS KMS cluster for tests)")
    for name, text in _OPTIONS:
        group.addoption(f"--trent-{name}", dest=f"trent_{name}", default=None, help=text)
        parser.addini(f"trent_{name}", text, default=None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "trent(regions=None, config=None, seed=None, args=()): the settings of the Trent cluster this "
        "test's trent_cluster and trent_kms fixtures use (one cluster per distinct settings per session)")


def _setting(config: pytest.Config, name: str) -> str | None:
    value = config.getoption(f"trent_{name}")
    if value is None:
        value = config.getini(f"trent_{name}") or None
    return None if value is None else str(value)


def _path(value: str | None, base: Path) -> str | None:
    """Relative paths from the ini file or a marker are taken from the project's root directory."""
    return None if value is None else str((base / value).resolve())


def settings_for(config: pytest.Config, marker: pytest.Mark | None) -> Settings:
    base = Path(config.rootpath)
    regions = _setting(config, "regions")
    args = _setting(config, "args")
    settings = Settings(
        regions=_regions(regions) if regions else None, config=_path(_setting(config, "config"), base),
        seed=_path(_setting(config, "seed"), base), args=tuple(shlex.split(args)) if args else ())
    if marker is None:
        return settings
    unknown = set(marker.kwargs) - {"regions", "config", "seed", "args"}
    if marker.args or unknown:
        raise pytest.UsageError(f"@pytest.mark.trent takes the keywords regions, config, seed and args "
                                f"(got {', '.join(sorted(unknown)) or 'positional arguments'})")
    kw = marker.kwargs
    return Settings(
        regions=_regions(kw["regions"]) if "regions" in kw else settings.regions,
        config=_path(kw["config"], base) if "config" in kw else settings.config,
        seed=_path(kw["seed"], base) if "seed" in kw else settings.seed,
        args=tuple(shlex.split(kw["args"]) if isinstance(kw["args"], str) else kw["args"]) if "args" in kw
        else settings.args)


def _regions(value: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    regions = tuple(str(r).strip() for r in items if str(r).strip())
    if not regions:
        raise pytest.UsageError("trent: at least one region is needed")
    return regions


@pytest.fixture(scope="session")
def _trent_clusters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Clusters]:
    clusters = _Clusters(tmp_path_factory)
    yield clusters
    clusters.close()


@pytest.fixture(scope="session")
def trent_session_cluster(_trent_clusters: _Clusters, pytestconfig: pytest.Config) -> TrentCluster:
    """The session's cluster as the options and ini keys configure it (for session- or module-scoped fixtures of
    your own; markers do not apply)."""
    return _trent_clusters.get(settings_for(pytestconfig, None))


@pytest.fixture
def trent_cluster(_trent_clusters: _Clusters, request: pytest.FixtureRequest) -> TrentCluster:
    """The running cluster for this test's settings (started once per session and shared; call ``reset()`` for a
    clean slate)."""
    return _trent_clusters.get(settings_for(request.config, request.node.get_closest_marker("trent")))


@pytest.fixture
def trent_kms(trent_cluster: TrentCluster) -> Callable[..., Any]:
    """``trent_kms("eu-west-1")``: a boto3 KMS client for that region (through the gateway); ``trent_kms()``: the
    first region's. Clients are made once per cluster and region."""
    return trent_cluster.kms
