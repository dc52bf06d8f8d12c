"""The job key ``description`` (feature level 1): one row of the job field table."""

from __future__ import annotations

import argparse
import contextlib
import io
from typing import Any

import pytest

from raftcron import cli
from raftcron.api.app import job_json, spec_table
from raftcron.api.openapi import SCHEMAS
from raftcron.client import JobInfo
from raftcron.config import ConfigError, job_spec_from_mapping
from raftcron.core import commands as c
from raftcron.core.jobfields import FEATURE_LEVEL, spec_level
from raftcron.core.model import Job

_MIN: dict[str, Any] = {"name": "backup", "schedule": "0 3 * * *", "command": ["backup"]}
_TEXT = "Nightly backup of the orders DB"


def test_a_description_is_parsed_shown_and_round_trips() -> None:
    spec = job_spec_from_mapping({**_MIN, "description": _TEXT}, "jobs[0]")
    assert spec.description == _TEXT
    assert spec_table(spec)["description"] == _TEXT
    assert job_json(Job(spec=spec), 0, None, [])["description"] == _TEXT
    wire = c.spec_to_wire(spec)
    assert wire["description"] == _TEXT and list(wire)[-1] == "description"
    assert c.spec_from_wire(wire) == spec
    assert spec_level(spec) == 1 == FEATURE_LEVEL


def test_without_one_nothing_changes_on_the_wire() -> None:
    spec = job_spec_from_mapping(_MIN, "jobs[0]")
    assert spec.description == "" and spec_level(spec) == 0
    assert "description" not in c.spec_to_wire(spec) and "description" not in spec_table(spec)
    assert job_json(Job(spec=spec), 0, None, [])["description"] == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("d" * 1001, "jobs[0].description: 1001 characters is too long (at most 1000)"),
        (5, "jobs[0].description: expected a string, got an integer (put it in double quotes)"),
    ],
)
def test_a_bad_description_is_refused(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        job_spec_from_mapping({**_MIN, "description": value}, "jobs[0]")
    assert exc.value.errors == [message]


def test_openapi_and_jobs_show_have_it(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SCHEMAS["JobTable"]["properties"]["description"]["maxLength"] == 1000
    assert SCHEMAS["Job"]["properties"]["description"] == {"type": "string"}
    spec = job_spec_from_mapping({**_MIN, "description": _TEXT}, "jobs[0]")
    body = job_json(Job(spec=spec), 0, None, [])
    stub = argparse.Namespace(job=lambda name: JobInfo.from_json(body))
    monkeypatch.setattr(cli, "client_from_args", lambda args: stub)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        cli.cmd_jobs_show(argparse.Namespace(name="backup", json=False))
    assert f"description   {_TEXT}" in out.getvalue().splitlines()
