"""``raftcron jobs import dkron FILE``: Dkron's ``GET /v1/jobs`` JSON as ``[[jobs]]``
tables (schedule seconds first -> seconds last, executors, concurrency, retries, tags with
their ``:N`` cardinality, parent jobs), the report, and bad input."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from raftcron.config import job_spec_from_mapping
from raftcron.importers.common import InputError, to_toml
from raftcron.importers.dkron import go_duration_ms, import_dkron, schedule_of

BACKUP: dict[str, Any] = {
    "id": "backup",
    "name": "backup",
    "displayname": "",
    "schedule": "0 30 2 * * *",
    "timezone": "Europe/Berlin",
    "owner": "ops",
    "owner_email": "ops@example.com",
    "success_count": 10,
    "error_count": 0,
    "last_success": "2026-01-01T02:30:05Z",
    "last_error": None,
    "disabled": False,
    "tags": {"role": "db:1", "dkron_server": "true"},
    "metadata": None,
    "retries": 2,
    "dependent_jobs": ["report"],
    "parent_job": "",
    "processors": {},
    "concurrency": "forbid",
    "executor": "shell",
    "executor_config": {
        "command": "/usr/local/bin/backup --full 'two words'",
        "shell": "false",
        "env": "A=1,B=two",
        "cwd": "/srv",
        "timeout": "1h30m",
        "payload": base64.b64encode(b"yes\n").decode(),
        "su": "backup:staff",
    },
    "status": "success",
    "next": "2026-01-02T01:30:00Z",
    "ephemeral": False,
    "expires_at": None,
}
REPORT = {
    "name": "report",
    "schedule": "",
    "parent_job": "backup",
    "executor": "shell",
    "executor_config": {"command": "echo done | mail ops", "shell": "true"},
    "tags": {"role": "db:1"},
}
PING = {
    "name": "ping",
    "schedule": "@every 10s",
    "timezone": "",
    "executor": "http",
    "executor_config": {
        "method": "post",
        "url": "https://example.com/health",
        "headers": '["Accept: text/plain", "X-Key: k"]',
        "body": "{}",
        "timeout": "30",
        "expectCode": "200",
    },
    "tags": {"role": "web"},
}


def run(jobs: Any, **kw: Any) -> Any:
    return import_dkron(
        json.dumps(jobs).encode(),
        "jobs.json",
        **{"tz": None, "host_zone": "UTC", "prefix": "", **kw},
    )


def test_the_three_kinds_of_job_become_these_tables() -> None:
    result = run([BACKUP, REPORT, PING])
    assert [j.table for j in result.jobs] == [
        {
            "name": "backup",
            "schedule": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "command": ["/usr/local/bin/backup", "--full", "two words"],
            "env": {"A": "1", "B": "two"},
            "cwd": "/srv",
            "timeout": "90m",
            "stdin": "yes\n",
            "user": "backup",
            "group": "staff",
            "overlap": "skip",
            "retries": 2,
            "tags": {"role": "db"},
        },
        {
            "name": "report",
            "after": ["backup"],
            "on": "success",
            "timezone": "UTC",
            "command": ["/bin/sh", "-c", "echo done | mail ops"],
            "tags": {"role": "db"},
        },
        {
            "name": "ping",
            "schedule": "@every 10s",
            "timezone": "UTC",
            "http": {
                "url": "https://example.com/health",
                "method": "POST",
                "headers": {"Accept": "text/plain", "X-Key": "k"},
                "body": "{}",
                "expect": 200,
            },
            "timeout": "30s",
            "tags": {"role": "web"},
            "count": "all",
        },
    ]
    lines = result.report_lines()
    assert any("job backup: owner_email ops@example.com" in line for line in lines)
    assert any('job ping: no ":N" in its tags' in line for line in lines)
    assert any("job backup: Dkron's own tags dropped: dkron_server" in line for line in lines)
    assert result.exit_code == 3
    for table in tomllib.loads(to_toml(result))["jobs"]:
        job_spec_from_mapping(table, "jobs[0]")


@pytest.mark.parametrize(
    ("dkron", "raftcron", "zone"),
    [
        ("0 30 2 * * *", "30 2 * * *", None),
        ("*/10 * * * * *", "* * * * * */10", None),
        ("15 0 0 1 * MON", "0 0 1 * MON 15", None),
        ("@daily", "@daily", None),
        ("@every 1h30m", "@every 1h30m", None),
        ("CRON_TZ=Asia/Tokyo 0 0 9 * * *", "0 9 * * *", "Asia/Tokyo"),
        ("TZ=UTC @hourly", "@hourly", "UTC"),
    ],
)
def test_schedules_move_the_seconds_last(dkron: str, raftcron: str, zone: str | None) -> None:
    assert schedule_of(dkron) == (raftcron, zone, None)


def test_what_cannot_be_imported_is_an_error_and_nothing_else_is_said() -> None:
    jobs = [
        {**PING, "name": "once", "schedule": "@at 2026-01-01T00:00:00Z"},
        {**PING, "name": "manual", "schedule": "@manually"},
        {**PING, "name": "q", "executor": "kafka", "executor_config": {}},
        {**BACKUP, "name": "bad-timeout", "executor_config": {"command": "x", "timeout": "soon"}},
        {**BACKUP, "name": "late", "schedule": "0 61 * * * *"},
    ]
    result = run(jobs)
    assert result.jobs == [] and result.exit_code == 2
    errors = [e for e in result.report]
    assert [(e.level, e.where) for e in errors] == [
        ("error", "job once"),
        ("error", "job manual"),
        ("error", "job q"),
        ("error", "job bad-timeout"),
        ("error", "job late"),
    ]
    assert "one run at a date" in errors[0].text and "manual-only" in errors[1].text
    assert errors[4].text.startswith('schedule: "61 * * * *" is not a cron expression')


def test_disabled_jobs_are_left_out_with_a_notice_and_prefix_names_parents() -> None:
    result = run([{**BACKUP, "disabled": True}, REPORT], prefix="dk")
    assert [j.table["name"] for j in result.jobs] == ["dk-report"]
    assert result.jobs[0].table["after"] == ["dk-backup"]
    assert result.report[0].level == "notice" and "disabled in Dkron" in result.report[0].text


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("90s", 90_000),
        ("1h30m", 5_400_000),
        ("1.5h", 5_400_000),
        ("500ms", 500),
        ("0", 0),
        ("x", None),
        ("-1s", None),
    ],
)
def test_go_durations(text: str, ms: int | None) -> None:
    assert go_duration_ms(text) == ms


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not JSON"):
        import_dkron(b"{oops", "f", tz=None, host_zone=None, prefix="")
    with pytest.raises(InputError, match="byte 0 is not UTF-8"):
        import_dkron(b"\xff\x00", "f", tz=None, host_zone=None, prefix="")
    with pytest.raises(InputError, match="expected a list of job objects"):
        import_dkron(b"[1, 2]", "f", tz=None, host_zone=None, prefix="")
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps([BACKUP, {**PING, "schedule": "@manually"}]))
    out = subprocess.run(
        [sys.executable, "-m", "raftcron", "jobs", "import", "dkron", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert f"error: {path}: job ping: @manually" in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "raftcron", "jobs", "import", "dkron", str(path), "--partial"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and tomllib.loads(out.stdout)["jobs"][0]["name"] == "backup"
