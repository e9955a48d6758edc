"""The config keys of seeding and --any-region."""

from __future__ import annotations

from pathlib import Path

import pytest

from trent.node.config import ConfigError, load_config


def test_seed_and_any_region_from_a_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "trent.toml"
    path.write_text('seed = "keys.yaml"\nany_region = true\n')
    config = load_config(path)
    assert config.seed == Path("keys.yaml") and config.any_region
    assert load_config(path, {"seed": "other.toml"}).seed == Path("other.toml")
    assert load_config(None).seed is None and not load_config(None).any_region


def test_any_region_must_be_a_boolean_and_needs_one_process(tmp_path: Path) -> None:
    path = tmp_path / "trent.toml"
    path.write_text('any_region = "yes"\n')
    with pytest.raises(ConfigError, match="any_region must be true or false"):
        load_config(path)
    with pytest.raises(ConfigError, match="workers = 1 only"):
        load_config(None, {"any_region": True, "workers": 2})


def test_a_misspelt_seed_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "trent.toml"
    path.write_text('seeds = "keys.toml"\n')
    with pytest.raises(ConfigError, match="did you mean 'seed'"):
        load_config(path)
