"""The `trent` command line's own text (no cluster needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trent.cluster.cli import main


@pytest.mark.parametrize("command", ["up", "clock", "status", "fault", "audit"])
def test_help_shows_percent_signs_as_typed(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "%%" not in text
    if command == "fault":
        assert "errors REGION 5% |" in text


def test_made_tokens_never_look_like_an_option(tmp_path: Path) -> None:
    # An admin token beginning with "-" (one in 64 of the URL-safe ones) broke `trent bench --admin-token TOKEN`.
    from trent.cluster.files import load_or_create_token

    tokens = [load_or_create_token(tmp_path / str(n), "admin.token") for n in range(200)]
    assert all(re.fullmatch(r"[0-9a-f]{48}", token) for token in tokens) and len(set(tokens)) == 200
