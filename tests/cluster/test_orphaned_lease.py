"""An orphaned lease expires on time while the leader keeps changing (issue 12, finding 2).

A follower running a job of an ``overlap = "skip"`` job with a 5 s lease is killed with
``kill -9`` (and stays dead: nothing renews its lease any more) while the leader is
restarted every 2-4 s. Before the fix every takeover re-anchored every inherited lease at
"now + patience", so with leaderships shorter than that the run was never marked ``lost``
while the restarts went on (27.5 s with a restart every 4 s), and every fire meanwhile was
recorded ``skipped: ... is still running``, falsely. Now each replica keeps the time it
applied the last renewal (a replay at start-up counts as applied then) and only adds the
patience: the run is ``lost`` while the restarts go on (seen by the test before it stops
churning), and no fire scheduled after it was recorded lost is skipped because of it.
How long it took is printed, not asserted (a loaded machine restarts agents slowly).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from raftcron.core.lease import takeover_patience
from tests.cluster.harness import Cluster, wait_for

pytestmark = pytest.mark.cluster

LEASE_S = 5.0
ELECTION_S = 0.9  # RaftSettings.max_timeout
PATIENCE_S = takeover_patience(int(LEASE_S * 1000), ELECTION_S)
# the lease, the patience, one leader restart (1-3 s on a loaded 2-core machine) and an
# election: measured here 9.5 s from the kill to lost (4 leader restarts meanwhile)
EXPECTED_S = LEASE_S + PATIENCE_S + 7.0
# how long the leader keeps being restarted after the kill: before the fix the run was
# never lost while the restarts went on, so a run not lost by then is the bug
CHURN_S = 30.0


def test_an_orphaned_lease_expires_while_the_leader_churns(
    tmp_path: Path, make_cluster: list[Cluster]
) -> None:
    cl = Cluster(tmp_path, tags={n: {"n": n} for n in "abc"})
    make_cluster.append(cl)
    cl.start()
    leader = cl.wait_leader(60)
    wait_for("every member to see the leader", cl.all_see_leader, 30)
    # the run goes to a follower (tags), then the job may run anywhere again, so that
    # its later fires meet the orphaned run (overlap = "skip")
    holder = next(n for n in cl.members if n != leader)
    job: dict[str, Any] = {
        "schedule": "* * * * * */2",
        "command": ["sleep", "600"],
        "overlap": "skip",
        "lease": "5s",
    }
    code, body = cl.request(leader, "PUT", "/v1/jobs/skipper", {**job, "tags": {"n": holder}})
    assert code == 201, body

    def live_run() -> dict[str, Any] | None:
        for r in cl.runs(leader, "skipper", 50):
            if r["status"] == "running":
                return r
        return None

    run = wait_for("a running skipper", live_run, 30)
    assert run["node"] == holder
    code, body = cl.request(leader, "PUT", "/v1/jobs/skipper", job)
    assert code == 200, body
    rid = run["id"]

    cl.kill(holder)  # kill -9; its watchdog stops the job at the lease deadline
    t_kill_ms = int(time.time() * 1000)
    alive = [n for n in cl.members if n != holder]
    restarts = 0
    lost_at: float | None = None
    end = time.monotonic() + CHURN_S
    while time.monotonic() < end or restarts < 3:
        current = cl.wait_leader(60, among=alive)
        time.sleep(2.0 + (restarts % 3))  # the leader lasts 2-4 s
        if lost_at is None and _status(cl, alive, rid) == "lost":
            lost_at = time.monotonic()
        cl.signal(current, signal.SIGTERM)
        proc = cl.members[current].proc
        assert proc is not None
        proc.wait(30)
        cl.start(current)
        restarts += 1
        if lost_at is not None and time.monotonic() - lost_at > 6 and restarts >= 3:
            break  # enough churn, and after the expiry, to see no false skip
    assert lost_at is not None, f"{rid} still not lost after {CHURN_S:g}s of leader churn"
    leader = cl.wait_leader(60, among=alive)
    wait_for("every member back", lambda: all(
        cl.request(n, "GET", "/health")[0] == 200 for n in alive), 60)  # fmt: skip
    orphan = cl.get(leader, f"/v1/runs/{rid}")
    assert orphan["status"] == "lost", orphan
    finished = _ms(orphan["finished_at"])
    took = (finished - t_kill_ms) / 1000
    print(f"lost {took:.1f}s after the kill ({restarts} leader restarts); ~{EXPECTED_S:g}s")
    # once recorded lost, the orphan holds nothing: no later fire is skipped because of it
    false_skips = [
        r
        for r in cl.runs(leader, "skipper", 1000)
        if r["status"] == "skipped" and rid in r["reason"] and r["scheduled_at_ms"] > finished
    ]
    assert false_skips == []


def _ms(rfc3339: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def _status(cl: Cluster, members: list[str], rid: str) -> str | None:
    for n in members:
        try:
            code, body = cl.request(n, "GET", f"/v1/runs/{rid}", timeout=2.0)
        except OSError:  # restarting
            continue
        if code == 200:
            status: str = body["status"]
            return status
    return None
