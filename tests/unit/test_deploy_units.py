"""The systemd units in deploy/ start commands `trent` accepts, and the recipe's configuration files load."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from trent.cluster.cli import build_parser
from trent.cluster.netns_drill import gateway_toml, node_toml
from trent.node.config import load_config

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"


@pytest.mark.parametrize("unit", sorted(p.name for p in UNITS.glob("*.service")))
def test_each_unit_runs_a_command_trent_accepts(unit: str) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / unit)
    command = shlex.split(parser["Service"]["ExecStart"].replace("%i", "us-east-1"))
    assert command[0].endswith("/trent")
    args = build_parser().parse_args(command[1:])
    assert args.command in ("up", "node", "gateway")
    assert parser["Service"]["UMask"] == "0077"


def test_the_recipes_configuration_files_load(tmp_path: Path) -> None:
    regions = ["us-east-1", "eu-west-1"]
    urls = {"us-east-1": "https://10.0.1.10:4600", "eu-west-1": "https://10.0.2.10:4600"}
    node = tmp_path / "us-east-1.toml"
    node.write_text(node_toml("us-east-1", regions, urls, "10.0.1.10", tmp_path / "b", tmp_path / "d"))
    config = load_config(node)
    assert config.peers == {"eu-west-1": ("https://10.0.2.10:4600",)} and config.port_of("us-east-1") == 4600
    assert config.bundle == tmp_path / "b" and config.host == "10.0.1.10"
    gateway = tmp_path / "gateway.toml"
    gateway.write_text(gateway_toml(urls, "10.0.0.10", tmp_path / "b", tmp_path / "g"))
    assert load_config(gateway).peers == {r: (u,) for r, u in urls.items()}
