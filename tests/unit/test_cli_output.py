"""The `trent` command line's output helpers and help text (no cluster needed)."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from trent.cluster.cli import build_parser
from trent.cluster.cli_output import Style, span, table, utc


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_every_flag_and_argument_has_help() -> None:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {action.dest}" for name, sub in subparsers.choices.items() for action in sub._actions
               if not isinstance(action, argparse._HelpAction) and not action.help]
    assert missing == []


def test_tables_pad_before_colouring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    plain = table(["A", "B"], [["long cell", "x"], ["y", "z"]], Style(io.StringIO()))
    assert plain.splitlines() == ["A          B", "long cell  x", "y          z"]
    coloured = table(["A", "B"], [["long cell", "x"]], Style(_Tty()), lambda col, cell: "red" if col == 0 else None)
    assert coloured.splitlines()[1] == "\033[31mlong cell\033[0m  x"
    assert "\033[1m" in coloured.splitlines()[0]


def test_no_colour_when_piped_or_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    assert not Style(io.StringIO()).enabled
    monkeypatch.setenv("NO_COLOR", "1")
    assert not Style(_Tty()).enabled
    monkeypatch.delenv("NO_COLOR")
    assert Style(_Tty()).enabled
    monkeypatch.setenv("TERM", "dumb")
    assert not Style(_Tty()).enabled


def test_dates_and_spans() -> None:
    assert utc(0) == "1970-01-01 00:00:00 UTC"
    assert utc(1_800_000_000.4) == "2027-01-15 08:00:00 UTC"
    assert span(8 * 86400) == "8d"
    assert span(93784) == "1d 2h 3m 4s"
    assert span(0) == "0s"


def test_make_up_passes_args_to_trent_up(tmp_path: Path) -> None:
    import shutil
    import subprocess

    from trent.cluster.running import ROOT

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(["make", "-n", "up", "ARGS=--regions us-east-1 --any-region", f"VENV={tmp_path}/venv"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert f"{tmp_path}/venv/bin/trent up --regions us-east-1 --any-region" in dry.stdout.splitlines()
