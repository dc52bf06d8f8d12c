"""An imported crontab on three real agents: ``raftcron jobs import crontab`` writes
[[jobs]] that ``raftcron jobs apply`` takes as they are, and the cluster's next fires of
every job over a week equal what a reference cron computes for the same lines, across
daylight saving changes (Berlin spring forward, New York fall back).

The reference is croniter on local wall times, with Vixie cron's two rules on top: the day
rule (a day field starting with ``*`` makes both day fields required: ``day_or=False``)
and the DST rule (a line whose minute or hour starts with ``*`` runs by real time: a wall
time in the spring-forward gap does not fire and one in the repeated hour fires twice; any
other line fires once, at the first occurrence, and a gap fire runs when the gap ends).
The line the importer flags for the day rule is the one line whose fires differ.

The imported job with a ``%`` in its line reads the text after it on stdin."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

from tests.cluster.harness import Cluster, wait_for

pytestmark = pytest.mark.cluster

# (zone, a week that holds its DST change)
WEEKS = {
    "Europe/Berlin": datetime(2026, 3, 26, tzinfo=UTC),  # 2026-03-29 02:00 -> 03:00
    "America/New_York": datetime(2026, 10, 29, tzinfo=UTC),  # 2026-11-01 02:00 -> 01:00
}
LINES = [
    ("Europe/Berlin", "30 2 * * *", "/bin/echo fixed-in-gap"),
    ("Europe/Berlin", "*/20 * * * *", "/bin/echo every-20"),
    ("Europe/Berlin", "15 * * * *", "/bin/echo quarter-past"),
    ("Europe/Berlin", "0 3 * * 1-5", "/bin/echo weekday"),
    ("Europe/Berlin", "@hourly", "/bin/echo hourly"),
    ("Europe/Berlin", "0 0 */2 * 1-5", "/bin/echo day-rule"),
    ("America/New_York", "30 1 * * *", "/bin/echo fall-fixed"),
    ("America/New_York", "45 * * * *", "/bin/echo fall-wild"),
    ("America/New_York", "0 */2 * * *", "flock -n /tmp/rc-x.lock /bin/echo locked"),
    ("America/New_York", "@daily", "cat%line one%line two"),
    ("America/New_York", "5 4 1,15 * SUN", "/bin/echo both-days"),
]
FLAGGED = "0 0 */2 * 1-5"  # Vixie: odd days that are weekdays; raftcron: either
ALIASES = {"@hourly": "0 * * * *", "@daily": "0 0 * * *"}


def crontab() -> str:
    out, zone = ["MAILTO=ops@example.com", "SHELL=/bin/sh"], None
    for z, schedule, command in LINES:
        if z != zone:
            out.append(f"CRON_TZ={z}")
            zone = z
        out.append(f"{schedule} {command}")
    return "\n".join(out) + "\n"


def vixie_fires(schedule: str, zone: str, start: datetime, end: datetime) -> list[int]:
    """The fires (epoch ms) of a crontab line in ``[start, end)`` as Vixie cron runs it."""
    expr = ALIASES.get(schedule, schedule)
    fields = expr.split()
    tz = ZoneInfo(zone)
    wild = schedule == "@hourly" or fields[0].startswith("*") or fields[1].startswith("*")
    day_or = not (fields[2].startswith("*") or fields[4].startswith("*"))
    local = (start.astimezone(tz) - timedelta(days=1)).replace(tzinfo=None)
    it = croniter(expr, local, day_or=day_or)
    out: set[int] = set()
    while True:
        wall: datetime = it.get_next(datetime)
        if wall > (end.astimezone(tz) + timedelta(days=1)).replace(tzinfo=None):
            break
        first, second = wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1)
        exists = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall
        if not exists:  # in the spring-forward gap
            if wild:
                continue
            after = wall
            while (
                after.replace(tzinfo=tz).astimezone(UTC).astimezone(tz).replace(tzinfo=None)
                != after
            ):
                after += timedelta(minutes=1)
            instants = [after.replace(tzinfo=tz)]
        elif first.utcoffset() != second.utcoffset():  # the repeated hour
            instants = [first, second] if wild else [first]
        else:
            instants = [first]
        out.update(int(t.timestamp() * 1000) for t in instants)
    lo, hi = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    return sorted(t for t in out if lo <= t < hi)


def cluster_fires(cl: Cluster, node: str, job: str, start: datetime, end: datetime) -> list[int]:
    fires: list[int] = []
    after = start - timedelta(seconds=1)
    while True:
        frm = after.strftime("%Y-%m-%dT%H:%M:%SZ")
        page = cl.get(node, f"/v1/jobs/{job}/next?from={frm}&count=1000", timeout=10)["fires"]
        fires += [f["at_ms"] for f in page if f["at_ms"] < end.timestamp() * 1000]
        if len(page) < 1000 or page[-1]["at_ms"] >= end.timestamp() * 1000:
            return fires
        after = datetime.fromtimestamp(page[-1]["at_ms"] / 1000, UTC)


def raftcron(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftcron", *args], capture_output=True, text=True, timeout=120
    )


def test_an_imported_crontab_fires_as_cron_did(tmp_path: Path, make_cluster: list[Cluster]) -> None:
    source = tmp_path / "crontab"
    source.write_text(crontab())
    imported = raftcron("jobs", "import", "crontab", str(source), "--tz", "UTC")
    assert imported.returncode == 3, imported.stderr  # MAILTO and the day rule: notices
    assert "line 9: day fields '*/2' and '1-5'" in imported.stderr
    jobs_file = tmp_path / "jobs.toml"
    jobs_file.write_text(imported.stdout)
    tables: list[dict[str, Any]] = tomllib.loads(imported.stdout)["jobs"]
    assert len(tables) == len(LINES)

    cl = Cluster(tmp_path)
    make_cluster.append(cl)
    cl.start()
    leader = cl.wait_leader(60)
    wait_for("every member to see the leader", cl.all_see_leader, 30)
    follower = next(n for n in cl.members if n != leader)
    applied = raftcron("jobs", "apply", str(jobs_file), "--api", cl.members[follower].api)
    assert applied.returncode == 0, applied.stderr

    differs = []
    for (zone, schedule, _), table in zip(LINES, tables, strict=True):
        assert table["timezone"] == zone
        start = WEEKS[zone]
        end = start + timedelta(days=7)
        name = table["name"]
        got = wait_for(
            f"{name} on {follower}",
            lambda name=name, s=start, e=end: cluster_fires(cl, follower, name, s, e),
            30,
        )
        want = vixie_fires(schedule, zone, start, end)
        if schedule == FLAGGED:
            differs.append(name)
            assert got != want  # the flagged line: raftcron fires on either day field
            assert set(want) < set(got)
        else:
            assert got == want, (name, schedule, zone)
    assert len(differs) == 1

    # The % line: its job reads the text after the first % on stdin.
    stdin_job = next(t["name"] for t in tables if t.get("stdin"))
    status, body = cl.request(leader, "POST", f"/v1/jobs/{stdin_job}/trigger", {})
    assert status in (200, 201, 202), body

    def finished() -> dict[str, Any] | None:
        runs = cl.runs(leader, stdin_job)
        done = [r for r in runs if r["status"] in ("succeeded", "failed")]
        return done[0] if done else None

    run = wait_for(f"the triggered run of {stdin_job}", finished, 60)
    assert run["status"] == "succeeded", run
    full = cl.get(leader, f"/v1/runs/{run['id']}")
    assert full["output"] == "line one\nline two"
