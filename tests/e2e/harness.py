"""Real `trent up` processes on free loopback ports (cluster/running.py), real clients for them, and what the
end-to-end tests share to check their answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization

from trent.cluster import running
from trent.cluster.ports import free_port_block
from trent.cluster.running import ROOT as ROOT
from trent.cluster.running import poll as poll
from trent.node.config import DEFAULT_REGIONS

REGIONS = DEFAULT_REGIONS


class RunningCluster(running.RunningCluster):
    """A cluster a test started, with the test-only ways in: the clock and the AWS CLI."""

    def advance_clock(self, duration: str) -> Any:
        return self.admin("/_trent/clock", {"advance": duration})

    def aws(self, region: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the AWS CLI (the one installed with the test extras) against the gateway."""
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
               "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
               "AWS_MAX_ATTEMPTS": "1", "AWS_PAGER": ""}
        env.pop("AWS_PROFILE", None)
        aws = str(Path(sys.executable).parent / "aws")
        return subprocess.run([aws, "--endpoint-url", self.gateway_url, "--region", region, "--output", "json",
                               *args], capture_output=True, text=True, timeout=60, env=env, check=check)


def private_cluster(factory: pytest.TempPathFactory, name: str, *extra: str, kill: bool = True
                    ) -> Iterator[RunningCluster]:
    """A cluster of one test module's own (its own data directory and ports), for a module-scoped fixture to
    ``yield from``; killed at the end, or stopped cleanly with ``kill=False``."""
    c = RunningCluster(factory.mktemp(name) / "data", free_port_block(len(REGIONS) + 1), extra_args=extra).start()
    yield c
    if c.proc is not None:
        if kill:
            c.kill()
        else:
            c.stop()


def ts(value: datetime) -> float:
    return value.timestamp()


def server_now(cluster: RunningCluster) -> float:
    """The cluster's clock (which tests may have moved), in epoch seconds."""
    now: float = cluster.admin("/_trent/clock")["now"]
    return now


def admin_post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """POST to an admin endpoint as sent, refusals included: (HTTP status, JSON document)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def marker_pages(call: Callable[..., dict[str, Any]], member: str, limit: int | None = None,
                 max_pages: int = 10_000, **kwargs: Any) -> Iterator[list[dict[str, Any]]]:
    """The ``member`` list of every page of a KMS list operation, following NextMarker by hand and checking the
    paging contract on the way: Truncated always there, pages no longer than ``limit``, a marker exactly when
    truncated."""
    if limit is not None:
        kwargs["Limit"] = limit
    for _ in range(max_pages):
        page = call(**kwargs)
        assert "Truncated" in page
        if limit is not None:
            assert len(page[member]) <= limit
        yield page[member]
        if not page["Truncated"]:
            assert "NextMarker" not in page
            return
        assert page["NextMarker"]
        kwargs["Marker"] = page["NextMarker"]
    raise AssertionError(f"paging {member} did not end")


def all_key_ids(kms: Any) -> set[str]:
    return {k["KeyId"] for page in kms.get_paginator("list_keys").paginate() for k in page["Keys"]}


def error(call: Any, **kwargs: Any) -> dict[str, Any]:
    """Call a boto3 operation that must fail; return {Code, Message, Status}."""
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response = info.value.response
    return {"Code": response["Error"]["Code"], "Message": response["Error"].get("Message"),
            "Status": response["ResponseMetadata"]["HTTPStatusCode"]}


def error_of(call: Any, **kwargs: Any) -> dict[str, Any]:
    """The whole error response of a call that must fail."""
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    response: dict[str, Any] = info.value.response
    return response


def code_of(call: Any, **kwargs: Any) -> str:
    code: str = error_of(call, **kwargs)["Error"]["Code"]
    return code


def spki_of(private: Any) -> bytes:
    """A locally made private key's public half as DER SubjectPublicKeyInfo (the form KMS takes and returns)."""
    der: bytes = private.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return der
