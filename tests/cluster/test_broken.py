"""One job cannot stop the others, on a real 3-node cluster.

The agents run with one fault in the leader's planner (``faulty_agent``): the pacing of
a backfill whose id starts with "boom" raises OverflowError, exactly what a backfill rate
of 5e-324 did before (the audit: the scheduler died, a job created later never fired and
nothing was recorded). Now the job is marked broken (reason in the job view, a WARNING,
``raftcron_job_errors_total``), its fires are recorded missed with ``broken: ...``, a job
created later fires, and a resume clears the flag. The real 5e-324 is a 400 at the API.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster, wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parent.parent.parent
EVERY_SECOND = {"schedule": "* * * * * *", "command": ["true"]}


def new_cluster(root: Path) -> Cluster:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    cluster = Cluster(root, env={"PYTHONPATH": path})
    cluster.module = "tests.cluster.faulty_agent"
    return cluster


def job(cl: Cluster, name: str) -> dict[str, Any]:
    body: dict[str, Any] = cl.get("a", f"/v1/jobs/{name}")
    return body


def test_a_broken_job_is_marked_recorded_and_stops_nothing(cl: Cluster) -> None:
    leader = cl.wait_leader(30)
    status, body = cl.request("b", "PUT", "/v1/jobs/bf", EVERY_SECOND)
    assert status == 201, body
    wait_for("bf to run", lambda: any(r["status"] == "succeeded" for r in cl.runs("a", "bf")), 30)
    now = time.time()
    frm = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 120))
    to = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60))
    # the real thing is refused at the door now ...
    status, err = cl.request("c", "POST", "/v1/jobs/bf/backfill",
                             {"from": frm, "to": to, "rate": 5e-324})  # fmt: skip
    assert status == 400 and "rate" in err["error"]["message"], err
    # ... the fault behind it is caught by the leader's guard
    status, body = cl.request("c", "POST", "/v1/jobs/bf/backfill",
                              {"from": frm, "to": to, "rate": 1, "id": "boom1"})  # fmt: skip
    assert status == 202, body
    broken = wait_for("bf to be marked broken", lambda: job(cl, "bf")["broken"], 30)
    assert "OverflowError: cannot convert float infinity to integer" in broken, broken
    for name in cl.members:  # replicated: every member shows it
        wait_for(f"{name} to see it", lambda n=name: cl.get(n, "/v1/jobs/bf")["broken"], 15)
    # a job created after it keeps firing
    status, body = cl.request("a", "PUT", "/v1/jobs/later", EVERY_SECOND)
    assert status == 201, body
    wait_for(
        "3 runs of a job created later",
        lambda: sum(r["status"] == "succeeded" for r in cl.runs("b", "later")) >= 3,
        30,
    )
    # the broken job's fires are in the ledger as missed, with the reason
    missed = wait_for(
        "bf's fires recorded missed",
        lambda: [r for r in cl.runs("a", "bf") if r["reason"].startswith("broken: ")],
        30,
    )
    assert all(r["status"] == "missed" for r in missed), missed
    assert "OverflowError" in missed[0]["reason"]
    # a WARNING on the leader, and the metric (a cluster fact, on every member)
    log = cl.members[leader].log.read_text(errors="replace")
    assert "WARNING" in log and "job=bf is broken" in log, log[-3000:]
    assert "Traceback" not in log
    for name in cl.members:
        with cl.open(cl.members[name].api + "/metrics", timeout=5) as r:
            metrics = r.read().decode()
        assert 'raftcron_job_errors_total{job="bf"} 1.0' in metrics, name
    # the CLI says so
    from tests.cluster.test_api import raftcron

    shown = raftcron(cl, "jobs", "show", "bf")
    assert shown.returncode == 0 and "broken" in shown.stdout and "OverflowError" in shown.stdout

    # cancel the backfill and resume: cleared, and it runs again
    assert cl.request("a", "DELETE", "/v1/jobs/bf/backfill")[0] == 200
    status, body = cl.request("b", "POST", "/v1/jobs/bf/resume")
    assert status == 200 and body["broken"] is None, body
    resumed_ms = int(time.time() * 1000)
    wait_for(
        "bf to run again",
        lambda: any(
            r["status"] == "succeeded" and r["scheduled_at_ms"] > resumed_ms
            for r in cl.runs("a", "bf")
        ),
        30,
    )
    assert job(cl, "bf")["broken"] is None
