"""`trent up` runs only its own code and its dependencies': Python files lying in the directory an operator starts
it from (a `secrets.py`, a stray `aiohttp.py`) are never imported, by the leader nor by its workers."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.harness import free_port_block, poll

# Modules the leader or a worker imports (the standard library's among them), shadowed in the working directory; and
# Trent's own packages (the worker used to be started by package name).
MODULES = ("secrets", "json", "typing_extensions", "aiohttp", "orjson")
PACKAGES = ("cluster", "node")


def shadow(cwd: Path, markers: Path, names: tuple[str, ...]) -> None:
    for name in names:
        code = f"open({str(markers / name)!r}, 'w').close()\n"
        if name in PACKAGES:
            (cwd / name).mkdir()
            (cwd / name / "__init__.py").write_text(code)
            (cwd / name / "gateway_worker.py").write_text(code)
        else:
            (cwd / f"{name}.py").write_text(code)


def health(url: str, data: Path) -> dict[str, int] | None:
    """The health answer with the process's details (given to the admin token only), None until there is one."""
    try:
        token = (data / "admin.token").read_text().strip()
        request = urllib.request.Request(url + "/_trent/health", headers={"X-Trent-Admin-Token": token})
        with urllib.request.urlopen(request, timeout=2) as r:  # a new connection each time
            doc: dict[str, int] = json.loads(r.read())
            return doc
    except (urllib.error.URLError, OSError):
        return None


@pytest.mark.parametrize("names", [MODULES, PACKAGES], ids=["modules", "packages"])
def test_modules_in_the_working_directory_are_never_imported(tmp_path: Path, names: tuple[str, ...]) -> None:
    cwd, markers, data = tmp_path / "cwd", tmp_path / "markers", tmp_path / "data"
    cwd.mkdir()
    markers.mkdir()
    shadow(cwd, markers, names)
    port = free_port_block(2)
    trent = Path(sys.executable).parent / "trent"  # the console script an operator runs
    args = [str(trent), "up", "--workers", "2", "--data-dir", str(data), "--port", str(port), "--regions", "us-east-1"]
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "trent.log", "wb") as log:
        proc = subprocess.Popen(args, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)
    try:
        poll(lambda: proc.poll() is not None or (health(url, data) and (data / "cluster.json").exists()), timeout=30)
        assert sorted(p.name for p in markers.iterdir()) == [], (tmp_path / "trent.log").read_text()
        assert proc.poll() is None, (tmp_path / "trent.log").read_text()
        seen: set[int] = set()

        def both_serve() -> bool:
            doc = health(url, data)
            if doc is not None:
                seen.add(doc["worker"])
            return seen == {0, 1}
        poll(both_serve, timeout=10, interval=0)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=20)
    assert code == 0
    assert sorted(p.name for p in markers.iterdir()) == []
