"""Where a job runs (issue 6 item 5) against three real agents (one cluster for the module).

* ``count = "all"``: every fire of the job runs once on each of the three nodes, each
  instance its own run with its own fence; the job sees ``RAFTCRON_INSTANCE`` and
  ``RAFTCRON_COUNT``.
* A job whose ``tags`` match no node: its fires are recorded as skipped
  ``unschedulable: ...``, the leader logs a WARNING naming the job, the run and the tags,
  and ``raftcron_unschedulable_total{job}`` counts them on every member.

Every wait is a poll with a deadline (wait_for), sized for a loaded 2-core machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster, read_sink, wait_for

pytestmark = pytest.mark.cluster

EVERY_2S = "* * * * * */2"


def new_cluster(root: Path) -> Cluster:
    return Cluster(root, tags={"a": {"role": "web"}})


def all_healthy(cl: Cluster) -> bool:
    """The leader sees every member (so count = "all" means all three)."""
    leader = cl.leader()
    if leader is None:
        return False
    members = cl.get(leader, "/v1/status")["members"]
    return len(members) == 3 and all(m.get("healthy", True) for m in members)


def put(cl: Cluster, node: str, name: str, **job: Any) -> None:
    status, body = cl.request(node, "PUT", f"/v1/jobs/{name}", job)
    assert status in (200, 201), body


def set_paused(cl: Cluster, node: str, name: str) -> None:
    status, body = cl.request(node, "POST", f"/v1/jobs/{name}/pause", {"note": "test over"})
    assert status == 200, body


def test_count_all_runs_one_instance_per_node_per_fire(cl: Cluster, tmp_path: Path) -> None:
    wait_for("the leader to see every member", lambda: all_healthy(cl), 30)
    sink = tmp_path / "sink"
    script = (
        "echo run=$RAFTCRON_RUN_ID node=$RAFTCRON_NODE instance=$RAFTCRON_INSTANCE "
        f"count=$RAFTCRON_COUNT fence=$RAFTCRON_FENCE at=$RAFTCRON_SCHEDULED_AT >> {sink}"
    )
    put(cl, "a", "everywhere", schedule=EVERY_2S, count="all", command=["sh", "-c", script])

    def fires_with_three() -> list[str] | None:
        per_fire = defaultdict(set)
        for line in read_sink(sink):
            per_fire[line["at"]].add(line["node"])
        full = [at for at, ran in per_fire.items() if ran == {"a", "b", "c"}]
        return full if len(full) >= 2 else None

    wait_for("two fires to run on all three nodes", fires_with_three, 60)
    set_paused(cl, "a", "everywhere")

    def settled() -> list[dict[str, Any]] | None:
        runs = [r for r in cl.runs("a", "everywhere") if r["status"] != "paused"]
        return runs if runs and all(r["status"] == "succeeded" for r in runs) else None

    runs = wait_for("every claimed instance to finish", settled, 60)
    lines = read_sink(sink)
    by_id = {line["run"]: line for line in lines}
    assert len(by_id) == len(lines), "no instance ran twice"
    fires: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        fires[r["scheduled_at_ms"]].append(r)
    complete = 0
    for ms, inst in fires.items():
        n = inst[0].get("instances", 1)
        assert all(r.get("instances", 1) == n for r in inst), inst
        assert sorted(r.get("instance", 1) for r in inst) == list(range(1, n + 1)), inst
        assert len({r["node"] for r in inst}) == n, f"one instance per node: {inst}"
        assert len({r["fence"] for r in inst}) == n, f"each its own fence: {inst}"
        for r in inst:
            k = r.get("instance", 1)
            assert r["id"] == f"everywhere@{ms}" + ("" if k == 1 else f"~{k}"), r
            ran = by_id[r["id"]]  # what the job itself saw
            assert (ran["node"], ran["fence"]) == (r["node"], str(r["fence"])), (ran, r)
            assert (ran["instance"], ran["count"]) == (str(k), str(n)), (ran, r)
        complete += n == 3
    assert complete >= 2, fires

    # a manual trigger fires every instance too
    status, body = cl.request("b", "POST", "/v1/jobs/everywhere/trigger", {})
    assert status == 202 and body["status"] == "claimed", body
    assert [i["run"] for i in body["instances"]] == [
        body["run"],
        f"{body['run']}~2",
        f"{body['run']}~3",
    ], body
    assert len({i["node"] for i in body["instances"]}) == 3, body
    # and the CLI says so, one line per instance
    argv = [sys.executable, "-m", "raftcron", "trigger", "everywhere", "--api", cl.members["c"].api]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert out.returncode == 0, out
    said = out.stdout.splitlines()
    assert len(said) == 3 and all(" claimed on node " in line for line in said), out.stdout
    assert re.match(r"everywhere: everywhere@\d+~manual~3 claimed", said[2]), said


def test_a_job_no_node_matches_is_unschedulable_loudly(cl: Cluster) -> None:
    put(cl, "b", "nowhere", schedule=EVERY_2S, command=["true"], tags={"role": "db"})

    def skipped() -> list[dict[str, Any]] | None:
        runs = [r for r in cl.runs("b", "nowhere") if r["status"] == "skipped"]
        return runs if len(runs) >= 2 else None

    runs = wait_for("two unschedulable fires in the ledger", skipped, 60)
    set_paused(cl, "b", "nowhere")
    for r in runs:
        assert r["reason"] == "unschedulable: no live node matches tags {role=db}", r
        assert r["node"] is None and r["fence"] == 0, r
    assert not [r for r in cl.runs("b", "nowhere") if r["status"] == "succeeded"]

    def warned() -> list[str] | None:
        text = "".join(m.log.read_text(errors="replace") for m in cl.members.values())
        found = re.findall(
            r"WARNING .*unschedulable job=nowhere run=(nowhere@\d+) tags=\{role=db\}", text
        )
        return found if {r["id"] for r in runs} <= set(found) else None

    wait_for("the leader's WARNING for each unschedulable run", warned, 30)

    def counted() -> float | None:
        for m in cl.members.values():
            with cl.open(m.api + "/metrics", timeout=5) as resp:
                text = resp.read().decode()
            got = re.search(r'^raftcron_unschedulable_total\{job="nowhere"\} (\S+)$', text, re.M)
            if got is None or float(got.group(1)) < len(runs):
                return None
        return float(len(runs))

    wait_for("raftcron_unschedulable_total on every member", counted, 30)
    # a manual trigger is refused the same way, and says so
    status, body = cl.request("c", "POST", "/v1/jobs/nowhere/trigger", {})
    assert status == 202 and body["status"] == "skipped", body
    assert body["reason"].startswith("unschedulable: no live node matches tags {role=db}")
