"""Retries, kills and overlap cancel_other/terminate_other against three real agents (one
cluster for the module).

* A failing job with ``retries`` and ``retry_other_node`` runs its retries on other nodes,
  each after its backoff, with run ids ``...~manual.N`` and reasons naming the attempt
  before.
* ``raftcron runs kill RUN_ID`` (CLI) and ``POST /v1/runs/{id}/kill`` (API, ``hard``)
  stop a running job's process group; the run is recorded as killed and not retried.
* A manual trigger of a cancel_other/terminate_other job stops the live run, and the new
  run starts only after the old one's end has committed.

Every wait is a poll with a deadline (wait_for), sized for a loaded 2-core machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster, read_sink, wait_for

pytestmark = pytest.mark.cluster

YEARLY = "0 0 1 1 *"  # never fires during a test: only triggers run


def follower(cl: Cluster) -> str:
    leader = cl.wait_leader(30)
    return next(n for n in cl.members if n != leader)


def put(cl: Cluster, node: str, name: str, **job: Any) -> None:
    status, body = cl.request(node, "PUT", f"/v1/jobs/{name}", {"schedule": YEARLY, **job})
    assert status in (200, 201), body


def trigger(cl: Cluster, node: str, name: str) -> dict[str, Any]:
    status, body = cl.request(node, "POST", f"/v1/jobs/{name}/trigger", {})
    assert status == 202, body
    return dict(body)


def run(cl: Cluster, node: str, rid: str) -> dict[str, Any]:
    status, body = cl.request(node, "GET", f"/v1/runs/{rid}")
    assert status == 200, body
    return dict(body)


def status_is(cl: Cluster, node: str, rid: str, *want: str) -> dict[str, Any] | None:
    status, body = cl.request(node, "GET", f"/v1/runs/{rid}")
    return dict(body) if status == 200 and body["status"] in want else None


def ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def up(marker: Path, script: str) -> list[str]:
    """A job that says it is up (its process runs, any trap is set) in ``marker``, then runs
    ``script`` in the same process (``exec``), so its exit code is the signal that ends it."""
    return ["sh", "-c", script.replace("EXEC", f"echo $RAFTCRON_RUN_ID >> {marker}; exec")]


def is_up(marker: Path, rid: str) -> bool:
    return marker.exists() and rid in marker.read_text().split()


def cli(cl: Cluster, node: str, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "raftcron", *args, "--api", cl.members[node].api]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=dict(os.environ))


def test_retries_run_on_another_node_after_their_backoff(cl: Cluster, tmp_path: Path) -> None:
    """Attempts 1 and 2 fail, attempt 3 succeeds; each retry avoids the node that failed
    before it, is claimed no sooner than its backoff after that attempt ended, and says in
    the ledger which attempt it retries."""
    node = follower(cl)
    sink = tmp_path / "sink"
    script = (
        f'echo "attempt=$RAFTCRON_ATTEMPT node=$RAFTCRON_NODE run=$RAFTCRON_RUN_ID" >> {sink}; '
        'test "$RAFTCRON_ATTEMPT" -ge 3'
    )
    put(cl, node, "flaky", command=["sh", "-c", script], retries=3, retry_backoff="1s",
        retry_backoff_max="1500ms", retry_other_node=True, lease="5s")  # fmt: skip
    first = trigger(cl, node, "flaky")["run"]
    ids = [first, f"{first}.2", f"{first}.3"]
    third = wait_for("attempt 3 to succeed", lambda: status_is(cl, node, ids[2], "succeeded"), 90)
    runs = [run(cl, node, rid) for rid in ids[:2]] + [third]
    assert [r["status"] for r in runs] == ["failed", "failed", "succeeded"], runs
    assert [r["attempt"] for r in runs] == [1, 2, 3]
    assert [r["trigger"] for r in runs] == ["manual", "retry", "retry"]
    assert runs[1]["node"] != runs[0]["node"] and runs[2]["node"] != runs[1]["node"], runs
    for k, backoff in ((1, 1000), (2, 1500)):  # 1 s, then doubled but capped at 1.5 s
        before, after = runs[k - 1], runs[k]
        assert after["reason"].startswith(
            f"retry {k} of 3: {before['id']} failed (exit code 1); due {backoff / 1000:g}s after"
        ), after
        assert ms(after["claimed_at"]) >= ms(before["finished_at"]) + backoff, (before, after)
    assert [(r["attempt"], r["node"], r["run"]) for r in read_sink(sink)] == [
        (str(r["attempt"]), r["node"], r["id"]) for r in runs
    ], "each attempt ran exactly once, where the ledger says"
    assert run(cl, node, first)["scheduled_at"] == third["scheduled_at"]  # one fire


def test_kill_through_the_cli_and_the_api(cl: Cluster, tmp_path: Path) -> None:
    """``raftcron runs kill`` stops a run (SIGTERM) and nothing retries it; the API's
    ``hard`` kill is SIGKILL at once, even for a job that ignores SIGTERM; repeats, unknown
    and finished runs get clear answers; ``raftcron runs`` still lists."""
    node = follower(cl)
    marker = tmp_path / "up"
    put(cl, node, "sleeper", command=up(marker, "EXEC sleep 300"), retries=2, retry_backoff="0s")
    rid = trigger(cl, node, "sleeper")["run"]
    wait_for("the sleeper to run", lambda: is_up(marker, rid), 30)
    out = cli(cl, node, "runs", "kill", rid, "--reason", "maintenance")
    assert out.returncode == 0 and out.stderr == "", out
    assert out.stdout.startswith(f"{rid}: stopping (SIGTERM"), out.stdout
    done = wait_for("the run to be killed", lambda: status_is(cl, node, rid, "killed"), 30)
    assert done["reason"].endswith("killed through the API: maintenance"), done
    assert done["exit_code"] == -15 and "kill" not in done, done  # ended by SIGTERM
    again = cli(cl, node, "runs", "kill", rid)
    assert again.returncode == 0 and again.stdout.strip() == f"{rid}: killed", again
    listed = cli(cl, node, "runs", "--job", "sleeper")
    assert listed.returncode == 0 and rid in listed.stdout and "killed" in listed.stdout, listed
    # a killed run is never retried
    assert cl.request(node, "GET", f"/v1/runs/{rid}.2")[0] == 404
    job = cl.get(node, "/v1/jobs/sleeper")
    assert job["pending_retries"] == [] and job["running"] == [], job
    shown = cli(cl, node, "jobs", "show", "sleeper").stdout
    assert "retries" in shown and "retry_backoff " in shown and "pending retry" not in shown

    put(cl, node, "stubborn", command=up(marker, "trap '' TERM; EXEC sleep 300"), retries=2)
    rid = trigger(cl, node, "stubborn")["run"]
    wait_for("stubborn to run", lambda: is_up(marker, rid), 30)
    status, body = cl.request(node, "POST", f"/v1/runs/{rid}/kill", {"hard": True})
    assert status == 202 and body["result"] == "killing", body
    done = wait_for("stubborn to be killed", lambda: status_is(cl, node, rid, "killed"), 30)
    assert done["exit_code"] == -9, done

    bad = cli(cl, node, "runs", "kill", "nope@1")
    assert bad.returncode == 1 and "HTTP 404 unknown_run" in bad.stderr, bad
    put(cl, node, "quick", command=["true"])
    rid = trigger(cl, node, "quick")["run"]
    wait_for("quick to succeed", lambda: status_is(cl, node, rid, "succeeded"), 30)
    status, body = cl.request(node, "POST", f"/v1/runs/{rid}/kill", {})
    assert status == 409 and body["error"]["code"] == "not_running", body
    usage = cli(cl, node, "runs", "stop", rid)
    assert usage.returncode == 2 and "invalid choice: 'stop'" in usage.stderr, usage


@pytest.mark.parametrize(
    ("overlap", "script", "exit_code"),
    [
        ("cancel_other", "EXEC sleep 300", -15),  # SIGTERM, grace, SIGKILL
        ("terminate_other", "trap '' TERM; EXEC sleep 300", -9),  # SIGKILL at once
    ],
)
def test_a_manual_trigger_cancels_the_live_run_first(
    cl: Cluster, tmp_path: Path, overlap: str, script: str, exit_code: int
) -> None:
    node = follower(cl)
    name = overlap.replace("_", "-")
    marker = tmp_path / "up"
    put(cl, node, name, command=up(marker, script), overlap=overlap)
    old = trigger(cl, node, name)["run"]
    wait_for("the first run to run", lambda: is_up(marker, old), 30)
    new = trigger(cl, node, name)
    assert new["status"] == "buffered", new
    assert f"waiting for {old} to stop (overlap={overlap})" in new["reason"], new
    ended = wait_for("the old run to be killed", lambda: status_is(cl, node, old, "killed"), 30)
    assert ended["exit_code"] == exit_code, ended
    assert f"overlap={overlap}: stopped for the newer manual fire {new['run']}" in ended["reason"]
    started = wait_for(
        "the new run to start", lambda: status_is(cl, node, new["run"], "running"), 30
    )
    # never two at once: granted only once the old run's end had committed
    assert ms(started["claimed_at"]) >= ms(ended["finished_at"]), (ended, started)
    status, body = cl.request(node, "POST", f"/v1/runs/{new['run']}/kill", {"hard": True})
    assert status == 202, body
    wait_for("the new run to be killed", lambda: status_is(cl, node, new["run"], "killed"), 30)
