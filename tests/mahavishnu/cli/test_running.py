"""A device's `agent run --config FILE` skips argparse; anything else is argparse's, with the same answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from mahavishnu.cli.running import agent_config_only
from tests.mahavishnu.cli_harness import environment, one_line_error, run


@pytest.mark.parametrize(
    ("argv", "config"),
    [
        (["agent", "run", "--config", "agent.toml"], "agent.toml"),
        (["agent", "run", "--config", "/etc/mahavishnu agent/agent.toml"], "/etc/mahavishnu agent/agent.toml"),
        (["agent", "run", "--config=agent.toml"], None),  # argparse reads the other spellings
        (["agent", "run", "--config", "-h"], None),
        (["agent", "run", "--config"], None),
        (["agent", "run", "--config", "a.toml", "--simulate", "3"], None),
        (["--home", "h", "agent", "run", "--config", "a.toml"], None),
        (["agent", "run", "--simulate", "3"], None),
        (["agent", "csr", "--config", "a.toml"], None),
        ([], None),
    ],
)
def test_only_agent_run_with_its_config_skips_argparse(argv: list[str], config: str | None) -> None:
    assert agent_config_only(argv) == config


@pytest.mark.parametrize("spelling", [("--config", "{}"), ("--config={}",)])
def test_a_missing_agent_toml_is_named_in_one_line_either_way(tmp_path: Path, spelling: tuple[str, ...]) -> None:
    missing = tmp_path / "agent.toml"
    result = run("agent", "run", *(word.format(missing) for word in spelling), env=environment(tmp_path / "home"))
    assert result.returncode == 1
    assert one_line_error(result) == f"error: {missing}: no such file; enrol the device or pass the right --config"


def test_a_wrong_agent_toml_names_its_fields_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("device_id = 3\n")
    result = run("agent", "run", "--config", str(config), env=environment(tmp_path / "home"))
    assert result.returncode == 1
    assert "device_id 3 must be" in one_line_error(result)
