"""What an expression means, on three real agents: ``jobs apply`` prints the next fires and
the seconds-first warning the API returns, and an ``@every`` job fires on its creation's
grid, under the first leader and the next one."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.cluster.harness import SINK_CMD, Cluster, read_sink, wait_for

pytestmark = pytest.mark.cluster

EVERY_MS = 2000
# Seconds-first "00:00:00 on January 12th"; as written (seconds last) every second of
# 00:00 on January 12th: valid, warned about, and it does not fire during the test.
QUARTZ = "0 0 12 1 1 *"


def fires_of(sink: Path) -> list[int]:
    return [int(line["run"].split("@")[1].split("~")[0]) for line in read_sink(sink)]


def test_apply_warns_and_every_keeps_its_grid_across_a_leader_change(
    tmp_path: Path, make_cluster: list[Cluster]
) -> None:
    cl = Cluster(tmp_path)
    make_cluster.append(cl)
    cl.start()
    leader = cl.wait_leader(60)
    wait_for("every member to see the leader", cl.all_see_leader, 30)
    follower = next(n for n in cl.members if n != leader)
    sink = tmp_path / "sink.log"
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(
        f'[[jobs]]\nname = "beat"\nschedule = "@every 2s"\ncommand = ["sh", "-c", '
        f"'{SINK_CMD.format(sink=sink)}']\n"
        f'[[jobs]]\nname = "quartz"\nschedule = "{QUARTZ}"\ncommand = ["true"]\n'
    )
    api = cl.members[follower].api
    out = subprocess.run(
        [sys.executable, "-m", "raftcron", "jobs", "apply", str(jobs), "--api", api],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "beat: created; UTC; next 3 fires:", out.stdout
    assert lines[4] == "quartz: created; UTC; next 3 fires:", out.stdout
    assert out.stderr == (
        f"warning: {jobs}: quartz: schedule: raftcron's 6-field form puts seconds LAST "
        "(minute hour day-of-month month day-of-week second): '0 0 12 1 1 *' fires every "
        "second of each minute it matches; if it is seconds-first (Quartz, Spring, Dkron), "
        "did you mean '0 12 1 1 * 0'?\n"
    )
    # the PUT's own answer carries the warning (not an error: the job is saved)
    status, body = cl.request(
        leader, "PUT", "/v1/jobs/quartz", {"schedule": QUARTZ, "command": ["true"]}
    )
    assert status == 200 and body["result"] == "unchanged"
    (warning,) = body["warnings"]
    assert warning.startswith("schedule: raftcron's 6-field form puts seconds LAST")

    created = cl.get(leader, "/v1/jobs/beat")["created_at"]
    anchor = int(datetime.fromisoformat(created).timestamp()) * 1000  # truncated to the second
    printed = [datetime.fromisoformat(x.strip().replace(" UTC", "+00:00")) for x in lines[1:4]]
    assert all((int(t.timestamp() * 1000) - anchor) % EVERY_MS == 0 for t in printed), lines

    wait_for("three fires of beat", lambda: len(fires_of(sink)) >= 3, 30)
    cl.kill(leader)
    killed_at = max(fires_of(sink))
    survivors = [n for n in cl.members if n != leader]
    cl.wait_leader(60, among=survivors)
    wait_for(
        "two fires of beat under the new leader",
        lambda: len([t for t in fires_of(sink) if t > killed_at]) >= 2,
        60,
    )
    fires = fires_of(sink)
    assert len(fires) == len(set(fires)), fires  # never twice
    assert all(t > anchor and (t - anchor) % EVERY_MS == 0 for t in fires), (anchor, fires)
