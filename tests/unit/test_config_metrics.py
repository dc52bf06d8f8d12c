"""The ``[metrics]`` table: ``max_job_series`` caps the jobs with per-job series."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftcron.config import DEFAULT_MAX_JOB_SERIES, ConfigError, load_config
from raftcron.metrics import DEFAULT_MAX_JOB_SERIES as METRICS_DEFAULT

CLUSTER = """[cluster]
secret = "0123456789abcdef-not-a-real-secret"
[cluster.nodes.a]
raft = "127.0.0.1:7101"
api = "127.0.0.1:8101"
"""


def load(tmp_path: Path, text: str) -> int:
    path = tmp_path / "cluster.toml"
    path.write_text(CLUSTER + text)
    return load_config(path).metrics.max_job_series


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text)
    return [e.removeprefix(f"{tmp_path}/") for e in info.value.errors]


def test_max_job_series(tmp_path: Path) -> None:
    assert load(tmp_path, "") == DEFAULT_MAX_JOB_SERIES == METRICS_DEFAULT == 1_000
    assert load(tmp_path, "[metrics]\nmax_job_series = 25\n") == 25
    assert load(tmp_path, "[metrics]\nmax_job_series = 0\n") == 0  # no per-job series


def test_metrics_table_errors_name_the_file_key_and_fix(tmp_path: Path) -> None:
    assert errors(tmp_path, "[metrics]\nmax_job_series = -1\n") == [
        "cluster.toml: metrics.max_job_series: -1 is negative (use 0 or more)"
    ]
    assert errors(tmp_path, '[metrics]\nmax_job_series = "many"\n') == [
        "cluster.toml: metrics.max_job_series: expected an integer, got a string (write a "
        "whole number, no quotes)"
    ]
    assert errors(tmp_path, "[metrics]\nmax_jobs_series = 5\n") == [
        'cluster.toml: metrics.max_jobs_series: unknown key (did you mean "max_job_series"?)'
    ]
    (tmp_path / "cluster.toml").write_text("metrics = 5\n" + CLUSTER)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "cluster.toml")
    assert info.value.errors == [
        f"{tmp_path}/cluster.toml: metrics: expected a table, got an integer (write it as a "
        "[metrics] table)"
    ]
