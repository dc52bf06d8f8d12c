"""Backup and restore on real agents (issue 15 item 3; raftcron/backup.py,
docs/operations.md "Back up and restore").

* A live 3-node cluster holding 100,000 runs (plus an every-second job writing to an
  outside sink, a run in progress and a held lock) is backed up with ``raftcron snapshot
  save`` (followers first in ``--api``: they pass it on); the file is 0600 and checks out.
* It is restored with ``raftcron snapshot restore`` into a NEW 3-node cluster on other
  ports; that cluster elects a leader and holds exactly the backup's jobs, runs and locks
  as the restore rules make them (``content_digest``, which leaves out the cluster id and
  membership): live leases and locks ended, the fence counter raised, jobs paused.
* A member restored from the backup and started with the OLD cluster's file, on an old
  member's address, is refused by the old members (different cluster id; logged) and
  never takes part: the old cluster goes on, the restored node keeps its own state.

The 100,000 runs are seeded synthetically before the old cluster first starts: a
test-only bulk load (:func:`bulk_state`) applies ordinary ledger commands to a
``State`` in this process (100 API jobs, each given 1,000 ``missed`` records by ``Plan``
commands, the same code every replica runs), and every old member's data dir is seeded
with that state as its Raft snapshot (``raftcron.raft.seed``), so the cluster starts
holding them. Save and restore times are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftcron.backup import decode_state, read_backup
from raftcron.core import commands as c
from raftcron.core.model import JobSpec
from raftcron.core.restore import FENCE_GAP, content_digest, seal
from raftcron.core.state import Ok, State
from raftcron.raft.seed import seed_raft_dir
from tests.cluster.harness import SINK_CMD, Cluster, read_sink, wait_for

pytestmark = pytest.mark.cluster

BULK_JOBS = 100
RUNS_PER_JOB = 1_000
HISTORY = 1_000
DAY_MS = 86_400_000


def bulk_state(now_ms: int) -> State:
    """100 yearly API jobs created two days ago, each with 1,000 missed records a minute
    apart (all in the past): 100,000 runs, through the commands every replica applies."""
    st = State(history_limit=HISTORY)
    created = now_ms - 2 * DAY_MS
    for j in range(BULK_JOBS):
        name = f"bulk-{j:03d}"
        spec = JobSpec(name=name, schedule="0 0 1 1 *", command=("true",))
        assert st.apply(c.PutJob(at_ms=created, spec=spec)) == Ok("created")
        missed = tuple(
            c.Missed(
                job=name,
                first_ms=created + 60_000 * (i + 1),
                last_ms=created + 60_000 * (i + 1),
                count=1,
                reason="bulk-loaded by tests/cluster/test_snapshot.py",
            )
            for i in range(RUNS_PER_JOB)
        )
        st.apply(c.Plan(at_ms=created, missed=missed))
    assert len(st.runs) == BULK_JOBS * RUNS_PER_JOB
    return st


def cli(
    root: Path, *args: str, timeout: float = 120.0
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "raftcron", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return time.monotonic() - started, done


def cluster_file(root: Path, sink: Path) -> Cluster:
    tick = {
        "name": "tick",
        "schedule": "* * * * * *",
        "command": ["sh", "-c", SINK_CMD.format(sink=sink)],
        "lease": "5s",
    }
    slow = {
        "name": "slow",
        "schedule": "* * * * * */5",
        "command": ["sleep", "20"],
        "lease": "5s",
    }
    root.mkdir(parents=True, exist_ok=True)
    return Cluster(root, [tick, slow], extra_cluster=f"history = {HISTORY}")


def save(cl: Cluster, dest: Path, leader: str) -> tuple[float, State, dict[str, object]]:
    """``raftcron snapshot save`` with the followers first in ``--api`` (they answer 409
    not_leader and the CLI asks the next member)."""
    order = sorted(cl.members, key=lambda n: n == leader)
    apis = ",".join(cl.members[n].api for n in order)
    seconds, done = cli(cl.root, "snapshot", "save", str(dest), "--api", apis, "--timeout", "60")
    assert done.returncode == 0, done.stderr + cl.logs()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    backup = read_backup(dest.read_bytes())
    return seconds, decode_state(backup), backup.header


def test_save_restore_into_a_new_cluster_that_never_joins_the_old(tmp_path: Path) -> None:
    sink = tmp_path / "sink.txt"
    old = cluster_file(tmp_path / "old", sink)
    seeded = bulk_state(int(time.time() * 1000))
    blob = seeded.snapshot()
    addrs = [m.raft for m in old.members.values()]
    for name in old.members:
        seed_raft_dir(old.root / "data" / name, blob, addrs)
    del blob
    new: Cluster | None = None
    try:
        old.start()
        leader = old.wait_leader(90)
        wait_for("tick runs in the sink", lambda: len(read_sink(sink)) >= 3, 60)
        status, lock = old.request(
            leader, "POST", "/v1/locks/db", {"holder": "old-x", "ttl": "10m"}
        )
        assert status in (200, 201), lock

        backup_file = tmp_path / "cluster.backup"
        wait_for(
            "a live run of slow",
            lambda: old.get(leader, "/v1/runs?job=slow&status=running", timeout=5.0)["runs"],
            60,
        )
        save_s, saved, header = save(old, backup_file, leader)
        assert len(saved.runs) >= BULK_JOBS * RUNS_PER_JOB
        assert header["runs"] == len(saved.runs) and header["cluster_id"] == ""
        assert "db" in saved.locks
        live_at_save = sorted(saved.leases)
        assert any(rid.startswith("slow@") for rid in live_at_save)

        # -- restore into a new cluster on other ports
        new = cluster_file(tmp_path / "new", sink)
        restore_s: list[float] = []
        for name in new.members:
            seconds, done = cli(
                new.root,
                "snapshot",
                "restore",
                str(backup_file),
                "--config",
                str(new.config),
                "--node",
                name,
                "--data-dir",
                str(new.root / "data" / name),
            )
            assert done.returncode == 0, done.stderr
            restore_s.append(seconds)
        print(
            f"\n{len(saved.runs)} runs, {backup_file.stat().st_size} bytes: "
            f"snapshot save {save_s:.2f}s, snapshot restore "
            + ", ".join(f"{s:.2f}s" for s in restore_s)
            + f" (per member); {len(live_at_save)} live runs at the save"
        )
        new.start()
        new_leader = new.wait_leader(90)
        _, restored, new_header = save(new, tmp_path / "restored.backup", new_leader)
        assert new_header["cluster_id"] and new_header["cluster_id"] != header["cluster_id"]

        expected = seal(
            decode_state(read_backup(backup_file.read_bytes())), cluster_id=restored.cluster_id
        )
        ids = list(saved.runs)
        assert content_digest(restored, ids) == content_digest(expected, ids)
        assert not restored.locks and not restored.leases.keys() & saved.leases.keys()
        assert all(restored.runs[rid].status == "lost" for rid in live_at_save)
        ended = [e.outcome for (name, _), e in restored.lock_done.items() if name == "db"]
        assert ended[-1:] == ["expired"]
        assert restored.counters.fence >= saved.counters.fence + FENCE_GAP
        assert all(j.paused for j in restored.jobs.values())
        jobs = new.get(new_leader, "/v1/jobs", timeout=10.0)["jobs"]
        assert len(jobs) == BULK_JOBS + 2 and all(j["paused"] for j in jobs)

        # -- a member restored from the backup never joins the old cluster
        old.kill("c")
        impostor = old.members["c"]
        text = old.config.read_text().replace('data_dir = "data/c"', 'data_dir = "data/c2"')
        impostor.config = old.root / "cluster-c2.toml"
        impostor.config.write_text(text)
        _, done = cli(
            old.root,
            "snapshot",
            "restore",
            str(backup_file),
            "--config",
            str(impostor.config),
            "--node",
            "c",
            "--data-dir",
            str(old.root / "data" / "c2"),
            "-o",
            "json",
        )
        assert done.returncode == 0, done.stderr
        impostor_id = json.loads(done.stdout)["cluster_id"]
        assert impostor_id not in ("", new_header["cluster_id"])
        old.start("c")

        def refused() -> bool:
            logs = old.logs()
            return f"belongs to cluster {impostor_id}" in logs or (
                f"this node to cluster {impostor_id}" in logs
            )

        wait_for("the old members to refuse the restored node (cluster id)", refused, 60)
        # The old cluster goes on without it; the restored node never gets the old state.
        old.wait_leader(60, among=["a", "b"])
        before = len(read_sink(sink))
        wait_for("tick to go on firing", lambda: len(read_sink(sink)) >= before + 3, 30)
        st = old.get("c", "/v1/status", timeout=5.0)
        assert st["role"] != "leader"
        c_jobs = {j["name"]: j["paused"] for j in old.get("c", "/v1/jobs", timeout=5.0)["jobs"]}
        assert c_jobs["tick"] is True  # its own (restored) state, not the old cluster's
        for name in ("a", "b"):
            a_jobs = {j["name"]: j["paused"] for j in old.get(name, "/v1/jobs")["jobs"]}
            assert a_jobs["tick"] is False
        assert old.leader(["a", "b", "c"]) in ("a", "b")
    finally:
        old.stop()
        if new is not None:
            new.stop()
        if os.environ.get("RAFTCRON_TEST_LOGS"):
            print(old.logs())
            if new is not None:
                print(new.logs())
        shutil.rmtree(tmp_path / "old" / "data", ignore_errors=True)
        shutil.rmtree(tmp_path / "new" / "data", ignore_errors=True)
