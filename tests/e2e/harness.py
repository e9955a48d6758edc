"""Runs a real `trent up` process on free loopback ports and hands out real clients for it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization

from cluster.ports import free_port_block

REGIONS = ("us-east-1", "eu-west-1", "ap-northeast-2")
ROOT = Path(__file__).resolve().parents[2]


def poll(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Wait (bounded) until predicate() is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


@dataclass
class RunningCluster:
    data_dir: Path
    port: int
    regions: tuple[str, ...] = REGIONS
    extra_args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    _started_once: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    # -- process control -----------------------------------------------------------------------------

    def start(self) -> RunningCluster:
        for attempt in range(5):
            args = [sys.executable, "-m", "cluster.cli", "up", "--data-dir", str(self.data_dir), "--port",
                    str(self.port), "--regions", ",".join(self.regions), "-v", *self.extra_args]
            log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
            self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            try:
                poll(self._healthy, timeout=30)
                self._started_once = True
                return self
            except RuntimeError:
                # Someone else took one of the ports first: a first start may move to another block (a restart
                # keeps its ports, which its clients already point at).
                if self._started_once or attempt == 4 or b"address already in use" not in self.log_path.read_bytes():
                    raise
                self.port = free_port_block(len(self.regions) + 1)
        return self

    def _healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"trent exited with {self.proc.returncode}; see {self.log_path}")
        try:
            with urllib.request.urlopen(self.gateway_url + "/_trent/health", timeout=1) as r:
                return bool(r.status == 200) and (self.data_dir / "cluster.json").exists()
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.proc = None
        return code

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)
        self.proc = None

    def restart(self) -> RunningCluster:
        if self.proc is not None:
            self.stop()
        return self.start()

    # -- addresses and clients -------------------------------------------------------------------------

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def region_url(self, region: str) -> str:
        return f"http://127.0.0.1:{self.port + 1 + self.regions.index(region)}"

    def client(self, region: str = "us-east-1", *, via: str = "gateway", access_key: str = "test",
               secret_key: str = "test", session_token: str | None = None, retries: int = 0) -> Any:
        url = self.gateway_url if via == "gateway" else self.region_url(region)
        return boto3.client(
            "kms", endpoint_url=url, region_name=region, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, aws_session_token=session_token,
            # botocore's max_attempts counts retries after the first attempt: 0 means one attempt only.
            config=Config(retries={"max_attempts": retries, "mode": "standard"}),
        )

    # -- admin -----------------------------------------------------------------------------------------

    def admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        token = (self.data_dir / "admin.token").read_text().strip()
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.gateway_url + path, data=data, method="POST" if data else "GET",
                                     headers={"X-Trent-Admin-Token": token})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    def advance_clock(self, duration: str) -> Any:
        return self.admin("/_trent/clock", {"advance": duration})

    def trent(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the `trent` command line against this cluster."""
        return subprocess.run([sys.executable, "-m", "cluster.cli", *args, "--data-dir", str(self.data_dir)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60, check=check)

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
    c = RunningCluster(factory.mktemp(name) / "data", free_port_block(4), extra_args=extra).start()
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
