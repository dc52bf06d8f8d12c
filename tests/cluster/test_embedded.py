"""Embedded Python jobs in a 3-process application (examples/embedded_app.py), real Raft.

Each process is the example app: a raftcron node plus an async job that appends
(job, scheduled_at, run_id, fence, node) to a shared file, every second.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from raftcron.client import AsyncClient
from raftcron.config import parse_config
from raftcron.embed import Cluster as Embedded
from raftcron.embed import RunContext
from tests.cluster.harness import Cluster, free_ports, wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "examples" / "embedded_app.py"
JOB = "send-reminders"


def _ms(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)


def read_records(sink: Path) -> list[dict[str, Any]]:
    if not sink.exists():
        return []
    # a line being written when we read is incomplete only at the very end: skip it
    return [json.loads(line) for line in sink.read_text().splitlines() if line.endswith("}")]


def start_app(cl: Cluster, name: str, sink: Path) -> None:
    """Start one copy of the example app as member ``name`` (the harness stops it)."""
    m = cl.members[name]
    env = {
        **cl.env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), cl.env.get("PYTHONPATH")])),
    }
    with m.log.open("ab") as log:
        m.proc = subprocess.Popen(
            [
                sys.executable,
                str(APP),
                "--config",
                str(cl.config),
                "--node",
                name,
                "--sink",
                str(sink),
                "--lease",
                "4s",
                "--work",  # so the kill often lands in a run (it must be lost, not re-run)
                "0.6",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cl.root,
        )


def test_embedded_job_survives_a_kill_9_of_its_leader_without_a_duplicate(
    tmp_path: Path, make_cluster: list[Cluster]
) -> None:
    sink = tmp_path / "sink.jsonl"
    cl = Cluster(tmp_path, extra_cluster='lease = "4s"')
    make_cluster.append(cl)
    for name in cl.members:
        start_app(cl, name, sink)
    leader = cl.wait_leader(90)

    # The job is in the replicated job set, as an embedded job the API will not replace.
    job = wait_for("the embedded job", lambda: cl.get(leader, f"/v1/jobs/{JOB}"), 30)
    assert job["source"] == "embedded"
    assert job["call"] == "__main__:build.<locals>.send_reminders"
    assert job["command"] == [] and job["overlap"] == "skip"
    status, body = cl.request(
        leader, "PUT", f"/v1/jobs/{JOB}", {**job["spec"], "command": ["true"]}
    )
    assert (status, body["error"]["code"]) == (409, "embedded_job"), body
    status, body = cl.request(leader, "DELETE", f"/v1/jobs/{JOB}")
    assert (status, body["error"]["code"]) == (409, "embedded_job"), body

    wait_for("fires before the kill", lambda: len(read_records(sink)) >= 3, 60, 0.2)
    leader = cl.wait_leader(30)
    # aim: kill the leader while it runs the job, if it is one of the runners
    wait_for(
        "a run in flight",
        lambda: any(r["status"] == "running" for r in cl.runs(leader, JOB, 5)),
        30,
        0.05,
    )
    survivors = [n for n in cl.alive() if n != leader]
    cl.kill(leader)  # SIGKILL: the process, its node and any job it was running die at once
    killed_ms = time.time_ns() // 1_000_000
    new = cl.wait_leader(60, among=survivors)
    assert new != leader

    def after_kill() -> list[dict[str, Any]]:
        return [r for r in read_records(sink) if _ms(r["scheduled_at"]) > killed_ms]

    # The job keeps firing under the new leader, in the processes still alive.
    wait_for("5 fires after the kill", lambda: len(after_kill()) >= 5, 90, 0.2)
    later = after_kill()
    assert {r["node"] for r in later} <= set(survivors), later
    # Let in-flight runs finish, then compare the sink with the ledger.
    wait_for(
        "no run in flight",
        lambda: all(r["status"] not in ("claimed", "running") for r in cl.runs(new, JOB)[3:]),
        30,
    )

    records = read_records(sink)
    fires = Counter((r["job"], r["scheduled_at"]) for r in records)
    dups = {k: n for k, n in fires.items() if n > 1}
    assert not dups, f"fires executed more than once: {dups}"
    assert len({r["run_id"] for r in records}) == len(records)
    by_time = sorted(records, key=lambda r: _ms(r["scheduled_at"]))
    fences = [r["fence"] for r in by_time]
    assert fences == sorted(set(fences)), f"fences do not rise with scheduled time: {fences}"

    ledger = {r["id"]: r for r in cl.runs(new, JOB)}
    for rec in records:
        run = ledger.get(rec["run_id"])
        assert run is not None, f"{rec['run_id']} ran but is not in the ledger"
        assert (run["fence"], run["node"]) == (rec["fence"], rec["node"]), (rec, run)
        # lost: it ran in the killed process, which died before its completion committed
        assert run["status"] in ("succeeded", "running", "claimed", "lost"), (rec, run)
        if run["node"] == leader and run["status"] == "lost":
            continue
        assert run["status"] in ("succeeded", "running", "claimed"), (rec, run)
    sunk = {r["run_id"] for r in records}
    for rid, run in ledger.items():
        if run["status"] == "succeeded":
            assert rid in sunk, f"ledger says {rid} succeeded but the sink never saw it"
    first, last = _ms(by_time[0]["scheduled_at"]), _ms(by_time[-1]["scheduled_at"])
    for t in range(first, last + 1, 1000):
        rid = f"{JOB}@{t}"
        if rid in sunk:
            continue
        run = ledger.get(rid)
        assert run is not None and run["status"] in ("lost", "missed", "skipped"), (
            f"fire {rid} neither ran nor is recorded with a reason: {run}"
        )
    print(
        f"embedded: {len(records)} fires, {len(later)} after the kill of {leader}; "
        f"new leader {new}; nodes {Counter(r['node'] for r in records)}"
    )


def test_start_and_stop_inside_an_applications_loop(tmp_path: Path) -> None:
    """A one-node cluster embedded in this very process: start() returns at once, the job
    fires (async and sync), a trigger obeys the same path, stop() ends the node cleanly."""

    raft_port, api_port = free_ports(2)
    config = parse_config(
        "[cluster]\n"
        'secret = "test-secret-0123456789abcdef"\n'
        "[cluster.nodes.solo]\n"
        f'raft = "127.0.0.1:{raft_port}"\n'
        f'api = "127.0.0.1:{api_port}"\n'
        'data_dir = "data"\n',
        tmp_path / "cluster.toml",
    )
    app = Embedded(config, "solo")
    seen: list[tuple[str, int, str]] = []
    threads: set[str] = set()

    @app.job("* * * * * *", lease="3s")
    async def tick(run: RunContext) -> None:
        seen.append((run.job, run.fence, run.trigger))

    @app.job("0 0 1 1 *", name="yearly")
    def yearly(run: RunContext) -> str:
        threads.add(threading.current_thread().name)
        seen.append((run.job, run.fence, run.trigger))
        return "done"

    async def until(what: str, fn: Any, limit: float) -> None:
        deadline = time.monotonic() + limit
        while not fn():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    async def main() -> None:
        await app.start()
        try:
            await until("leadership", lambda: app.is_leader, 60)
            await until("two ticks", lambda: sum(j == "tick" for j, _, _ in seen) >= 2, 30)
            async with AsyncClient(f"http://127.0.0.1:{api_port}") as client:
                res = await client.trigger("yearly")
                assert res.status == "claimed"
                await until("the triggered run", lambda: any(j == "yearly" for j, _, _ in seen), 30)
                await until(
                    "its record",
                    lambda: (
                        app.node is not None
                        and app.node.machine.read(
                            lambda s: s.runs[res.run].status if res.run in s.runs else None
                        )
                        == "succeeded"
                    ),
                    30,
                )
                run = await client.run(res.run)
                assert run.raw["output"] == "done"
        finally:
            await app.stop()

    asyncio.run(main())
    assert ("yearly", max(f for _, f, _ in seen), "manual") in seen
    assert len(threads) == 1 and next(iter(threads)).startswith("raftcron yearly@")
    assert app.node is not None and app.node.failed is None


def test_a_node_that_cannot_start_is_reported(tmp_path: Path) -> None:
    """The API port is taken: wait() raises what stopped the node."""
    raft_port, api_port = free_ports(2)
    busy = socket.socket()
    busy.bind(("127.0.0.1", api_port))
    busy.listen()
    config = parse_config(
        "[cluster]\n"
        'secret = "test-secret-0123456789abcdef"\n'
        "[cluster.nodes.solo]\n"
        f'raft = "127.0.0.1:{raft_port}"\n'
        f'api = "127.0.0.1:{api_port}"\n'
        'data_dir = "data"\n',
        tmp_path / "cluster.toml",
    )
    app = Embedded(config, "solo")

    async def main() -> None:
        await app.start()
        with pytest.raises(OSError):
            await asyncio.wait_for(app.wait(), 30)

    try:
        asyncio.run(main())
    finally:
        busy.close()
