"""Fixtures: one shared cluster for the e2e suite, and fresh clusters for tests that kill or restart one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import RunningCluster, free_port_block


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningCluster]:
    # A short Creating period, so tests can still see a new replica pass through it.
    c = RunningCluster(tmp_path_factory.mktemp("shared") / "data", free_port_block(4),
                       extra_args=("--replica-delay", "0.3")).start()
    yield c
    if c.proc is not None:
        c.stop()


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[Callable[..., RunningCluster]]:
    """A factory for a private cluster (own data dir and ports), stopped at the end of the test."""
    made: list[RunningCluster] = []

    def make(**kwargs: Any) -> RunningCluster:
        c = RunningCluster(tmp_path / f"data{len(made)}", free_port_block(4), **kwargs).start()
        made.append(c)
        return c

    yield make
    for c in made:
        if c.proc is not None:
            c.kill()


@pytest.fixture(scope="module")
def kms(cluster: RunningCluster) -> Any:
    """A boto3 KMS client for us-east-1 through the gateway (one per module: module-scoped fixtures use it too)."""
    return cluster.client("us-east-1")
