"""The `trent` command line's own text (no cluster needed)."""

from __future__ import annotations

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
