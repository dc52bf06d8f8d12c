"""Health that tells the truth, and one agent per data dir (issue 12, findings 3 and 4).

Finding 3, on a real full filesystem: each member's data dir is a small tmpfs mounted in
a mount namespace of its own (``unshare --mount``, held by a ``sleep`` process; root only,
skipped otherwise) that its agent joins (``nsenter``), so the tmpfs outlives an agent's
restart; the test fills it through ``/proc/PID/root``, so the ENOSPC comes from the
kernel. The member must stop at once by the documented rule (exit status 1), with one
CRITICAL line naming the journal and the fix and no traceback at all, while the others
go on; started again on the still-full disk it must stop again instead of staying up
"healthy" and stale. Before the fix a follower stayed up with ``/health`` 200, its
``last_applied`` frozen, logging ~10 ENOSPC tracebacks a second; a leader printed ~100
``failed _onTick`` tracebacks before it exited.

Finding 4: a second agent started for a node that already runs exits 2 naming the PID
that holds the data dir, before it starts Raft; the first one is unaffected.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import SINK_CMD, Cluster, read_sink, wait_for

pytestmark = pytest.mark.cluster

TMPFS_MB = 24
_MOUNT = 'mount -t tmpfs -o size={mb}m,mode=0700 raftcron-test "$0" && echo ready && exec sleep 600'


def _tmpfs_problem() -> str | None:
    """Why a private tmpfs cannot be mounted here (None if it can)."""
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs in a private mount namespace (CI runs as root)"
    if any(shutil.which(tool) is None for tool in ("unshare", "nsenter", "mount")):
        return "needs unshare(1), nsenter(1) and mount(8) (util-linux)"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         "d=$(mktemp -d) && mount -t tmpfs -o size=1m t \"$d\" && umount \"$d\"; r=$?; "
         "rmdir \"$d\"; exit $r"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace: {probe.stderr.strip()}"
    return None


@pytest.fixture
def holders() -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Per member, the process holding the mount namespace of its tmpfs (ended by PID)."""
    held: dict[str, subprocess.Popen[str]] = {}
    yield held
    for proc in held.values():
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _on_tmpfs(cl: Cluster, held: dict[str, subprocess.Popen[str]]) -> None:
    """Give every member a small tmpfs as its data dir, in a mount namespace that outlives
    its agent, and run the agent in it."""
    for m in cl.members.values():
        data = cl.root / "data" / m.name
        data.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private",
             "sh", "-c", _MOUNT.format(mb=TMPFS_MB), str(data)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        held[m.name] = proc
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        m.prefix = ["nsenter", f"--mount=/proc/{proc.pid}/ns/mnt", "--"]


def _fill(cl: Cluster, held: dict[str, subprocess.Popen[str]], name: str) -> None:
    """Fill member ``name``'s tmpfs (seen through its mount namespace) to the last byte."""
    ns_root = Path(f"/proc/{held[name].pid}/root")
    target = ns_root / (cl.root / "data" / name / "filler").relative_to("/")
    chunk = b"\0" * (1 << 20)
    with open(target, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            while True:
                try:
                    f.write(chunk[:size])
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break


def _log_since(cl: Cluster, name: str, offset: int) -> str:
    return cl.members[name].log.read_bytes()[offset:].decode(errors="replace")


@pytest.mark.parametrize("role", ["follower", "leader"])
def test_a_full_disk_stops_the_member_at_once(
    tmp_path: Path,
    make_cluster: list[Cluster],
    holders: dict[str, subprocess.Popen[str]],
    role: str,
) -> None:
    problem = _tmpfs_problem()
    if problem:
        pytest.skip(problem)
    sink = tmp_path / "sink.txt"
    job = {
        "name": "tick",
        "schedule": "* * * * * *",
        "command": ["sh", "-c", SINK_CMD.format(sink=sink)],
        "lease": "5s",
    }
    cl = Cluster(tmp_path, [job])
    make_cluster.append(cl)
    _on_tmpfs(cl, holders)
    cl.start()
    leader = cl.wait_leader(60)
    wait_for("every member to see the leader", cl.all_see_leader, 30)
    wait_for("a few fires", lambda: len(read_sink(sink)) >= 3, 30)
    name = leader if role == "leader" else next(n for n in cl.members if n != leader)
    proc = cl.members[name].proc
    assert proc is not None
    offset = cl.members[name].log.stat().st_size

    _fill(cl, holders, name)
    t0 = time.monotonic()
    try:
        code = proc.wait(30)
    except subprocess.TimeoutExpired:
        health = cl.request(name, "GET", "/health")
        pytest.fail(f"{name} is still up 30 s after its disk filled; /health: {health}")
    took = time.monotonic() - t0
    log = _log_since(cl, name, offset)
    assert code == 1, (code, log[-3000:])
    critical = [line for line in log.splitlines() if " CRITICAL " in line]
    assert len(critical) == 1, critical
    journal = cl.root / "data" / name / "raft" / "raft.journal"
    assert f"journal {journal}: No space left on device (ENOSPC)" in critical[0], critical
    assert "free space on the filesystem of" in critical[0]
    assert "Traceback" not in log and "failed _onTick" not in log, log[-3000:]
    print(f"{role} {name} stopped {took:.2f}s after its disk filled: {critical[0]}")

    # the others go on
    others = [n for n in cl.members if n != name]
    cl.wait_leader(30, among=others)
    ran = len(read_sink(sink))
    wait_for("fires after the member stopped", lambda: len(read_sink(sink)) >= ran + 3, 30)

    # started again on the still-full disk: it stops again, it never stays up stale
    offset = cl.members[name].log.stat().st_size
    cl.start(name)
    proc = cl.members[name].proc
    assert proc is not None
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        health = cl.request(name, "GET", "/health")
        pytest.fail(f"{name} stays up on a full disk; /health: {health}")
    log = _log_since(cl, name, offset)
    assert code == 1, log[-3000:]
    assert len([line for line in log.splitlines() if " CRITICAL " in line]) == 1, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_a_second_agent_on_a_data_dir_exits_2(tmp_path: Path, make_cluster: list[Cluster]) -> None:
    cl = Cluster(tmp_path)
    make_cluster.append(cl)
    cl.start()
    cl.wait_leader(60)
    first = cl.members["a"].proc
    assert first is not None
    journal = cl.root / "data" / "a" / "raft" / "raft.journal"
    size = journal.stat().st_size
    out = subprocess.run(
        [sys.executable, "-m", "raftcron", "agent", "--config", str(cl.config), "--node", "a"],
        capture_output=True, text=True, timeout=60, cwd=cl.root, env=cl.env,
    )  # fmt: skip
    assert out.returncode == 2, out
    data = cl.root / "data" / "a"
    assert out.stderr.strip() == (
        f"error: {data} is used by another agent (pid {first.pid}); stop that agent first, "
        "or give this node its own data_dir"
    ), out.stderr
    assert "raft on" not in out.stdout + out.stderr  # it never started Raft (nor the API)
    assert first.poll() is None
    assert cl.request("a", "GET", "/health")[0] == 200
    assert journal.stat().st_size >= size
    wait_for("a to stay in the cluster", cl.all_see_leader, 10)
