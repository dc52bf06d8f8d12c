"""What an expression means, on the command line: ``check-config`` and ``jobs apply`` print
each job's next 3 fires in its zone and UTC, ``jobs show`` its next 5, and a schedule that
reads like seconds-first gets a warning naming the field order (stderr; exit code 0).

In-process (``cli.main``) with a fixed "now"; ``jobs apply``/``show`` against the scripted
HTTP server of test_client.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from raftcron import cli
from raftcron.client import PutResult
from tests.unit import test_client

server = test_client.server  # the scripted HTTP server fixture
Script = test_client.Script

NOW = int(datetime(2026, 3, 27, 12, 0, 0, 250_000, tzinfo=UTC).timestamp() * 1000)
CLUSTER = """
[cluster]
secret = "0123456789abcdef0123"
[cluster.nodes.a]
raft = "127.0.0.1:17101"
api = "127.0.0.1:18101"
"""
ORDER = (
    "raftcron's 6-field form puts seconds LAST (minute hour day-of-month month day-of-week "
    "second): "
)


def job(name: str, schedule: str, zone: str | None = None) -> str:
    tz = f'timezone = "{zone}"\n' if zone else ""
    return f'[[jobs]]\nname = "{name}"\nschedule = "{schedule}"\n{tz}command = ["true"]\n'


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(cli, "_now_ms", lambda: NOW)
    return NOW


def check_config(tmp_path: Path, body: str) -> tuple[int, str, str]:
    path = tmp_path / "cluster.toml"
    path.write_text(CLUSTER + body)
    return _run(["check-config", str(path)])


def _run(argv: list[str]) -> tuple[int, str, str]:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


# fmt: off
CHECK_CONFIG = [
    # (job table, the lines check-config prints for it)
    (job("backup", "30 2 * * *", "Europe/Berlin"), [
        "backup: 30 2 * * * (Europe/Berlin); next 3 fires:",
        "  2026-03-28 02:30:00 CET (+01:00)   2026-03-28 01:30:00 UTC",
        "  2026-03-29 03:00:00 CEST (+02:00)  2026-03-29 01:00:00 UTC",  # the gap: shifted
        "  2026-03-30 02:30:00 CEST (+02:00)  2026-03-30 00:30:00 UTC",
    ]),
    (job("month-end", "0 0 L * *"), [
        "month-end: 0 0 L * * (UTC); next 3 fires:",
        "  2026-03-31 00:00:00 UTC",
        "  2026-04-30 00:00:00 UTC",
        "  2026-05-31 00:00:00 UTC",
    ]),
    (job("payroll", "0 18 * * 5L", "America/New_York"), [
        "payroll: 0 18 * * 5L (America/New_York); next 3 fires:",
        "  2026-03-27 18:00:00 EDT (-04:00)  2026-03-27 22:00:00 UTC",
        "  2026-04-24 18:00:00 EDT (-04:00)  2026-04-24 22:00:00 UTC",
        "  2026-05-29 18:00:00 EDT (-04:00)  2026-05-29 22:00:00 UTC",
    ]),
    (job("standup", "0 9 * * MON#2", "Asia/Kolkata"), [
        "standup: 0 9 * * MON#2 (Asia/Kolkata); next 3 fires:",
        "  2026-04-13 09:00:00 IST (+05:30)  2026-04-13 03:30:00 UTC",
        "  2026-05-11 09:00:00 IST (+05:30)  2026-05-11 03:30:00 UTC",
        "  2026-06-08 09:00:00 IST (+05:30)  2026-06-08 03:30:00 UTC",
    ]),
    # a zone whose abbreviation is a number shows the offset once
    (job("sao-paulo", "0 6 1 * *", "America/Sao_Paulo"), [
        "sao-paulo: 0 6 1 * * (America/Sao_Paulo); next 3 fires:",
        "  2026-04-01 06:00:00 -03:00  2026-04-01 09:00:00 UTC",
        "  2026-05-01 06:00:00 -03:00  2026-05-01 09:00:00 UTC",
        "  2026-06-01 06:00:00 -03:00  2026-06-01 09:00:00 UTC",
    ]),
    # @every counts from the job's creation: shown as if it were created now (12:00:00.250)
    (job("heartbeat", "@every 90s", "Europe/Berlin"), [
        "heartbeat: @every 90s (Europe/Berlin), counted from the job's creation (shown as if "
        "created now); next 3 fires:",
        "  2026-03-27 13:01:30 CET (+01:00)  2026-03-27 12:01:30 UTC",
        "  2026-03-27 13:03:00 CET (+01:00)  2026-03-27 12:03:00 UTC",
        "  2026-03-27 13:04:30 CET (+01:00)  2026-03-27 12:04:30 UTC",
    ]),
    (job("backup", "0 3 * * *") + '[[jobs]]\nname = "report"\nafter = ["backup"]\n'
     'command = ["true"]\n', [
        "backup: 0 3 * * * (UTC); next 3 fires:",
        "  2026-03-28 03:00:00 UTC",
        "  2026-03-29 03:00:00 UTC",
        "  2026-03-30 03:00:00 UTC",
        "report: runs after backup (on success); no fires of its own",
    ]),
]
# fmt: on


@pytest.mark.parametrize(("body", "lines"), CHECK_CONFIG, ids=[x[1][0] for x in CHECK_CONFIG])
def test_check_config_prints_the_next_three_fires_in_the_zone_and_utc(
    tmp_path: Path, now: int, body: str, lines: list[str]
) -> None:
    code, out, err = check_config(tmp_path, body)
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == lines


def test_check_config_warns_about_a_seconds_first_schedule(tmp_path: Path, now: int) -> None:
    body = job("ok", "* * * * * */10") + job("quartz", "*/10 * * * * *") + job("d", "0 0 9 * * 1-5")
    code, out, err = check_config(tmp_path, body)
    assert code == 0  # a warning, not an error
    path = tmp_path / "cluster.toml"
    assert err.splitlines() == [
        f"warning: {path}: jobs[1].schedule: {ORDER}'*/10 * * * * *' fires every second of "
        "each minute it matches; if it is seconds-first (Quartz, Spring, Dkron), did you mean "
        "'* * * * * */10'?",
        f"warning: {path}: jobs[2].schedule: {ORDER}'0 0 9 * * 1-5' fires at seconds 1-5 of "
        "each minute it matches; if it is seconds-first (Quartz, Spring, Dkron), did you mean "
        "'0 9 * * 1-5 0'?",
    ]
    # and the fires show what it does as written: every second of minutes 0, 10, 20, ...
    assert "  2026-03-27 12:00:01 UTC\n  2026-03-27 12:00:02 UTC\n" in out


def test_check_config_refuses_a_quartz_expression_with_the_field_order(tmp_path: Path) -> None:
    code, out, err = check_config(tmp_path, job("noon", "0 0 12 * * ?"))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and "did you mean '0 12 * * ? 0'?" in err


# ---------------------------------------------------------------------------- jobs apply


def fires_json(zone: str, *at: str) -> dict[str, object]:
    from zoneinfo import ZoneInfo

    def one(text: str) -> dict[str, object]:
        t = datetime.fromisoformat(text).replace(tzinfo=UTC)
        local = t.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds")
        return {"utc": text + "Z", "local": local, "at_ms": int(t.timestamp() * 1000)}

    return {"job": "x", "timezone": zone, "fires": [one(a) for a in at]}


def apply_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "jobs.toml"
    path.write_text(body)
    return path


def test_jobs_apply_prints_fires_and_warnings(tmp_path: Path, server: tuple[str, Script]) -> None:
    url, script = server
    path = apply_file(
        tmp_path,
        job("tick", "*/10 * * * * *")
        + job("beat", "@every 90s", "Europe/Berlin")
        + '[[jobs]]\nname = "report"\nafter = ["beat"]\ncommand = ["true"]\n',
    )
    warning = f"schedule: {ORDER}'*/10 * * * * *' fires every second ..."
    script.reply(201, {"job": "tick", "result": "created", "warnings": [warning]})
    script.reply(200, fires_json("UTC", "2026-03-27T12:10:00", "2026-03-27T12:10:01"))
    script.reply(200, {"job": "beat", "result": "updated"})  # (an older server: no warnings)
    script.reply(200, fires_json("Europe/Berlin", "2026-03-29T00:59:00", "2026-03-29T01:00:30"))
    script.reply(201, {"job": "report", "result": "created", "warnings": []})
    code, out, err = _run(["jobs", "apply", str(path), "--api", url])
    assert code == 0
    assert [(s.method, s.path) for s in script.seen] == [
        ("PUT", "/v1/jobs/tick"),
        ("GET", "/v1/jobs/tick/next?count=3"),
        ("PUT", "/v1/jobs/beat"),
        ("GET", "/v1/jobs/beat/next?count=3"),
        ("PUT", "/v1/jobs/report"),  # no fires of its own: nothing to ask
    ]
    assert out.splitlines() == [
        "tick: created; UTC; next 2 fires:",
        "  2026-03-27 12:10:00 UTC",
        "  2026-03-27 12:10:01 UTC",
        "beat: updated; Europe/Berlin; next 2 fires:",
        "  2026-03-29 01:59:00 CET (+01:00)   2026-03-29 00:59:00 UTC",
        "  2026-03-29 03:00:30 CEST (+02:00)  2026-03-29 01:00:30 UTC",
        "report: created; runs after beat",
    ]
    assert err.splitlines() == [f"warning: {path}: tick: {warning}"]


def test_jobs_apply_json_carries_warnings_and_fires(
    tmp_path: Path, server: tuple[str, Script]
) -> None:
    url, script = server
    path = apply_file(tmp_path, job("tick", "*/10 * * * * *"))
    script.reply(201, {"job": "tick", "result": "created", "warnings": ["schedule: w"]})
    script.reply(200, fires_json("UTC", "2026-03-27T12:10:00"))
    code, out, err = _run(["jobs", "apply", str(path), "--api", url, "--json"])
    assert (code, err) == (0, "")
    assert json.loads(out) == [
        {
            "job": "tick",
            "result": "created",
            "warnings": ["schedule: w"],
            "next_fires": [
                {
                    "utc": "2026-03-27T12:10:00Z",
                    "local": "2026-03-27T12:10:00+00:00",
                    "at_ms": 1774613400000,
                }
            ],
        }
    ]


def test_jobs_apply_says_the_job_was_saved_when_its_fires_cannot_be_read(
    tmp_path: Path, server: tuple[str, Script]
) -> None:
    url, script = server
    path = apply_file(tmp_path, job("tick", "0 * * * *"))
    script.reply(201, {"job": "tick", "result": "created", "warnings": []})
    script.reply(404, {"error": {"code": "unknown_job", "message": "no job named 'tick'"}})
    code, out, _ = _run(["jobs", "apply", str(path), "--api", url])
    assert code == 0
    assert out == "tick: created; next fires unavailable: no job named 'tick'\n"


def test_jobs_show_prints_the_next_five_in_the_zone_and_utc(server: tuple[str, Script]) -> None:
    url, script = server
    times = [f"2026-10-25T0{h}:30:00" for h in range(5)]
    body = {
        "name": "nightly",
        "schedule": "30 * * * *",
        "timezone": "Europe/Berlin",
        "command": ["true"],
        "paused": False,
        "source": "api",
        "spec": {},
        "next_fires": fires_json("Europe/Berlin", *times)["fires"],
    }
    script.reply(200, body)
    code, out, _ = _run(["jobs", "show", "nightly", "--api", url])
    assert code == 0
    tail = out.splitlines()[-6:]
    assert tail == [
        "next fires (Europe/Berlin, UTC):",
        "  2026-10-25 02:30:00 CEST (+02:00)  2026-10-25 00:30:00 UTC",
        "  2026-10-25 02:30:00 CET (+01:00)   2026-10-25 01:30:00 UTC",  # the repeated hour
        "  2026-10-25 03:30:00 CET (+01:00)   2026-10-25 02:30:00 UTC",
        "  2026-10-25 04:30:00 CET (+01:00)   2026-10-25 03:30:00 UTC",
        "  2026-10-25 05:30:00 CET (+01:00)   2026-10-25 04:30:00 UTC",
    ]


def test_put_result_reads_warnings_and_their_absence() -> None:
    assert PutResult.from_json({"job": "j", "result": "created", "warnings": ["a: b"]}) == (
        PutResult(job="j", result="created", warnings=("a: b",))
    )
    assert PutResult.from_json({"job": "j", "result": "unchanged"}).warnings == ()
