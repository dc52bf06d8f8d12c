"""``max_starting``: a node key of the cluster file (default 8), overridden by
``RAFTCRON_MAX_STARTING`` in the agent's environment (docs/operations.md, "Bursts of runs")."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftcron.config import DEFAULT_MAX_STARTING, ConfigError, parse_config
from raftcron.executor import runner
from raftcron.node import max_starting

SECRET = "0123456789abcdef-not-a-real-secret"


def cluster(a_extra: str = "") -> str:
    return (
        f'[cluster]\nsecret = "{SECRET}"\n'
        f'[cluster.nodes.a]\nraft = "127.0.0.1:7101"\napi = "127.0.0.1:8101"\n{a_extra}\n'
        '[cluster.nodes.b]\nraft = "127.0.0.1:7102"\napi = "127.0.0.1:8102"\n'
    )


def test_the_default_is_declared_once() -> None:
    assert runner.DEFAULT_MAX_STARTING == DEFAULT_MAX_STARTING == 8


def test_a_node_key_sets_it_and_the_variable_overrides(tmp_path: Path) -> None:
    cfg = parse_config(cluster("max_starting = 32"), tmp_path / "c.toml")
    a, b = cfg.node("a"), cfg.node("b")
    assert (a.max_starting, b.max_starting) == (32, DEFAULT_MAX_STARTING)
    assert max_starting(a, {}) == 32
    assert max_starting(b, {}) == DEFAULT_MAX_STARTING
    assert max_starting(a, {"RAFTCRON_MAX_STARTING": "3"}) == 3
    assert max_starting(a, {"RAFTCRON_MAX_STARTING": ""}) == 32


@pytest.mark.parametrize(("value", "message"), [("0", "too small"), ('"4"', "an integer")])
def test_a_bad_value_is_refused(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(cluster(f"max_starting = {value}"), tmp_path / "c.toml")
    text = str(err.value)
    assert "cluster.nodes.a.max_starting" in text
    assert message in text
