"""Job dependencies against three real agents: a chain ``a -> b -> c`` and a fan-in
``d`` after ``a`` and ``c`` (``on = "always"``), all from the config file.

Every fire of ``a`` runs ``b`` once, ``b``'s run runs ``c`` once, and ``a`` and ``c``
together run ``d`` once; each child's ``RAFTCRON_PARENT_RUN_ID`` is its parents' run
ids, and the ledger says the same (``trigger`` ``dependency``, ``parents``).

Every wait is a poll with a deadline (wait_for), sized for a loaded 2-core machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.cluster.harness import Cluster, read_sink, wait_for

pytestmark = pytest.mark.cluster

SINK = (
    'echo "job=$RAFTCRON_JOB run=$RAFTCRON_RUN_ID parent=${{RAFTCRON_PARENT_RUN_ID:-none}} '
    'node=$RAFTCRON_NODE" >> {sink}'
)
FIRES = 3  # fires of a to follow through the chain


def test_a_dependency_chain_runs_each_child_once_per_parent_fire(
    tmp_path: Path, make_cluster: list[Cluster]
) -> None:
    sink = tmp_path / "sink.log"
    cmd = ["sh", "-c", SINK.format(sink=sink)]
    jobs = [
        {"name": "a", "schedule": "* * * * * */4", "command": cmd},
        {"name": "b", "after": ["a"], "command": cmd},
        {"name": "c", "after": ["b"], "command": cmd},
        {"name": "d", "after": ["a", "c"], "on": "always", "command": cmd},
    ]
    cl = Cluster(tmp_path, jobs)
    make_cluster.append(cl)
    cl.start()
    leader = cl.wait_leader(60)

    def lines(job: str) -> list[dict[str, str]]:
        return [x for x in read_sink(sink) if x["job"] == job]

    wait_for(f"{FIRES} fires of a to run through to d", lambda: len(lines("d")) >= FIRES, 120)
    # stop a, then let every fire of a that ran finish its chain
    status, body = cl.request(leader, "POST", "/v1/jobs/a/pause", {"note": "test done"})
    assert status == 200, body

    def chains_done() -> bool:
        live = [
            r
            for r in cl.runs(leader)
            if r["status"] in ("claimed", "running", "pending", "buffered")
        ]
        return not live and len({len(lines(j)) for j in "abcd"}) == 1

    wait_for("the chains of every fire of a to finish", chains_done, 60, interval=0.5)
    a_runs = [x["run"] for x in lines("a")]
    assert len(a_runs) == len(set(a_runs)) >= FIRES
    # each child ran once per parent run, with the parent's run id in its environment
    for child, parent in (("b", "a"), ("c", "b")):
        parents = Counter(x["parent"] for x in lines(child))
        assert parents == Counter(x["run"] for x in lines(parent)), (child, parents)
    for x in lines("b"):
        assert x["run"] == x["parent"].replace("a@", "b@", 1) + "~after"
    for x in lines("c"):
        assert x["run"] == x["parent"].replace("b@", "c@", 1)
    # the fan-in: once per fire, with both parents (in the order of after)
    c_by_a = {x["run"].replace("c@", "a@", 1).removesuffix("~after"): x["run"] for x in lines("c")}
    want = Counter(f"{a},{c}" for a, c in c_by_a.items())
    assert Counter(x["parent"] for x in lines("d")) == want

    # the ledger agrees, on a follower too
    other = next(n for n in cl.members if n != leader)

    def ledger() -> list[dict[str, object]] | None:
        runs = [r for r in cl.runs(other, "c") if r["status"] == "succeeded"]
        return runs if len(runs) >= len(lines("c")) else None

    for run in wait_for("c's runs in a follower's ledger", ledger, 30):
        assert run["trigger"] == "dependency"
        assert run["parents"] == [str(run["id"]).replace("c@", "b@", 1)]
    status, job = cl.request(other, "GET", "/v1/jobs/d")
    assert status == 200 and job["after"] == ["a", "c"] and job["on"] == "always", job
    assert job["spec"]["after"] == ["a", "c"] and "schedule" not in job["spec"]
    argv = [sys.executable, "-m", "raftcron", "jobs", "show", "d", "--api", cl.members[other].api]
    shown = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert shown.returncode == 0, shown.stderr
    assert "a, c  (on always)" in shown.stdout, shown.stdout
    if os.environ.get("RAFTCRON_TEST_LOGS"):
        print(sink.read_text())
