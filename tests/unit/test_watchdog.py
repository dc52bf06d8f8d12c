"""The per-run watchdog process: deadlines, extensions, timeouts, a dead agent."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def start(
    tmp_path: Path,
    argv: list[str],
    deadline_in: float,
    timeout: float | None = None,
    grace: float = 1.0,
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftcron.executor.watchdog"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    spec = {
        "argv": argv,
        "env": dict(os.environ),
        "cwd": None,
        "out": str(tmp_path / "out.log"),
        "deadline": time.monotonic() + deadline_in,
        "timeout": timeout,
        "grace": grace,
    }
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec).encode() + b"\n")
    proc.stdin.flush()
    return proc


def events(proc: subprocess.Popen[bytes], timeout: float = 30) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    out = proc.stdout.read()  # EOF when the watchdog exits
    proc.wait(timeout)
    if proc.stdin is not None and not proc.stdin.closed:
        proc.stdin.close()
    proc.stdout.close()
    return [json.loads(line) for line in out.splitlines()]


def test_job_exits_normally_and_output_is_captured(tmp_path: Path) -> None:
    proc = start(tmp_path, ["sh", "-c", "echo hello; echo oops >&2; exit 3"], 30)
    evs = events(proc)
    assert evs[0]["event"] == "started"
    assert evs[-1] == {"event": "exit", "exit_code": 3, "outcome": "exited", "detail": ""}
    assert (tmp_path / "out.log").read_text() == "hello\noops\n"


def test_deadline_without_renewal_kills_the_job(tmp_path: Path) -> None:
    t0 = time.monotonic()
    proc = start(tmp_path, ["sleep", "60"], 0.5)
    assert proc.stdin is not None
    proc.stdin.close()  # the agent died: the deadline stays in force
    evs = events(proc)
    assert evs[-1]["outcome"] == "lease_lost"
    assert time.monotonic() - t0 < 10


def test_extensions_keep_the_job_alive(tmp_path: Path) -> None:
    proc = start(tmp_path, ["sh", "-c", "sleep 1.5; exit 0"], 0.6)
    assert proc.stdin is not None
    for _ in range(4):
        time.sleep(0.3)
        proc.stdin.write(json.dumps({"deadline": time.monotonic() + 0.6}).encode() + b"\n")
        proc.stdin.flush()
    evs = events(proc)
    assert evs[-1]["outcome"] == "exited" and evs[-1]["exit_code"] == 0


def test_timeout_and_kill_message(tmp_path: Path) -> None:
    proc = start(tmp_path, ["sleep", "60"], 60, timeout=0.3)
    assert events(proc)[-1]["outcome"] == "timeout"
    proc = start(tmp_path, ["sleep", "60"], 60)
    assert proc.stdin is not None
    proc.stdin.write(b'{"kill": "lease lost"}\n')
    proc.stdin.flush()
    last = events(proc)[-1]
    assert last["outcome"] == "killed" and last["detail"] == "lease lost"


def test_a_hard_kill_is_sigkill_at_once_and_upgrades_a_soft_one(tmp_path: Path) -> None:
    """The kill endpoint's hard flag and overlap=terminate_other: no grace at all. With a
    grace of 10 minutes, only the SIGKILL ends a job that ignores SIGTERM."""
    for msgs in ([{"kill": "now", "hard": True}], [{"kill": "soft"}, {"kill": "x", "hard": True}]):
        out = tmp_path / "out.log"
        out.unlink(missing_ok=True)
        job = ["sh", "-c", "trap '' TERM; echo ready; sleep 600"]
        proc = start(tmp_path, job, 900, grace=600)
        assert proc.stdin is not None and proc.stdout is not None
        assert json.loads(proc.stdout.readline())["event"] == "started"
        until = time.monotonic() + 30
        while not (out.exists() and "ready" in out.read_text()):  # the trap is set
            assert time.monotonic() < until, "the job never started"
            time.sleep(0.02)
        for msg in msgs:
            proc.stdin.write(json.dumps(msg).encode() + b"\n")
            proc.stdin.flush()
        last = events(proc, timeout=60)[-1]
        assert last["outcome"] == "killed" and last["exit_code"] == -9
        assert last["detail"] == msgs[0]["kill"]


def test_sigterm_ignoring_job_is_sigkilled_after_grace(tmp_path: Path) -> None:
    proc = start(tmp_path, ["sh", "-c", "trap '' TERM; sleep 60"], 0.3)
    last = events(proc)[-1]
    assert last["outcome"] == "lease_lost" and last["exit_code"] == -9


def test_missing_program_is_reported(tmp_path: Path) -> None:
    proc = start(tmp_path, ["/nonexistent/program"], 60)
    last = events(proc)[-1]
    assert last["outcome"] == "spawn_failed" and "nonexistent" in last["detail"]


def test_lease_kill_is_complete_by_the_deadline(tmp_path: Path) -> None:
    """Regression: SIGKILL must land by the lease deadline, not `grace` after it, or a job
    ignoring SIGTERM could still run when the leader re-grants its fire."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftcron.executor.watchdog"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    deadline = time.monotonic() + 1.0
    spec = {
        "argv": ["sh", "-c", "trap '' TERM; sleep 60"],
        "env": dict(os.environ),
        "cwd": None,
        "out": str(tmp_path / "out.log"),
        "deadline": deadline,
        "timeout": None,
        "grace": 5.0,
        "lease_grace": 0.5,
    }
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec).encode() + b"\n")
    proc.stdin.flush()
    last = events(proc)[-1]
    assert last["outcome"] == "lease_lost" and last["exit_code"] == -9
    assert time.monotonic() < deadline + 0.5  # dead by the deadline (plus reaping slack)


def test_a_renewal_sent_before_the_watchdog_came_up_counts(tmp_path: Path) -> None:
    """The spec's deadline has already passed by the time the watchdog reads it, but a
    renewal was written right behind the spec: it must move the deadline before the
    deadline is checked (a chaos-suite finding: on a loaded machine the watchdog can start
    after its first renewal was sent)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftcron.executor.watchdog"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    now = time.monotonic()
    spec = {
        "argv": ["sh", "-c", "exit 0"],
        "env": dict(os.environ),
        "cwd": None,
        "out": str(tmp_path / "out.log"),
        "deadline": now - 1.0,
        "timeout": None,
        "grace": 1.0,
        "lease_grace": 0.1,
    }
    assert proc.stdin is not None
    proc.stdin.write(
        json.dumps(spec).encode() + b"\n" + json.dumps({"deadline": now + 60}).encode() + b"\n"
    )
    proc.stdin.flush()
    evs = events(proc)
    assert evs[-1] == {"event": "exit", "exit_code": 0, "outcome": "exited", "detail": ""}


def test_a_dead_agent_does_not_make_the_watchdog_crash(tmp_path: Path) -> None:
    """The agent was killed: the report at the end goes into a broken pipe, quietly."""
    proc = start(tmp_path, ["sh", "-c", "sleep 0.3"], 30)
    assert proc.stdout is not None and proc.stdin is not None
    proc.stdout.close()  # nobody reads the report any more
    proc.stdin.close()
    assert proc.wait(30) == 0


def test_output_goes_through_a_pipe_into_a_bounded_private_file(tmp_path: Path) -> None:
    """The file never holds more than out_max bytes, even while the job writes; when it
    would, it is cut to its last out_keep bytes. It is created 0600 whatever the umask."""
    out = tmp_path / "out.log"
    old = os.umask(0o022)
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "raftcron.executor.watchdog"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
    finally:
        os.umask(old)
    script = (
        "i=0; while [ $i -lt 400 ]; do head -c 10000 /dev/zero | tr '\\0' a; i=$((i+1)); "
        "done; echo; echo tail-line; sleep 1"
    )
    spec = {
        "argv": ["sh", "-c", script],
        "env": {"PATH": os.environ["PATH"]},
        "cwd": None,
        "out": str(out),
        "out_max": 100_000,
        "out_keep": 10_000,
        "deadline": time.monotonic() + 60,
        "timeout": None,
        "grace": 1.0,
    }
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(spec).encode() + b"\n")
    proc.stdin.flush()
    sizes = []
    while proc.poll() is None:
        if out.exists():
            sizes.append(out.stat().st_size)
            assert stat.S_IMODE(out.stat().st_mode) == 0o600
        time.sleep(0.001)
    evs = events(proc)
    assert evs[-1]["outcome"] == "exited" and evs[-1]["exit_code"] == 0
    assert max(sizes) <= 100_000 and len(sizes) > 10
    data = out.read_bytes()
    assert data.endswith(b"a\ntail-line\n") and len(data) <= 100_000
    assert set(data[:-11]) <= {ord("a"), ord("\n")}


def test_a_process_left_behind_holding_the_output_does_not_hold_the_run(tmp_path: Path) -> None:
    """The job's own process exits: the run ends then, as before, even though a background
    process it started still holds the output pipe (its later output is not collected)."""
    t0 = time.monotonic()
    proc = start(tmp_path, ["sh", "-c", "echo before; (sleep 20; echo after) & exit 0"], 60)
    evs = events(proc)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(evs[0]["pid"], signal.SIGKILL)  # the sleep left behind (its own group)
    assert evs[-1]["outcome"] == "exited" and evs[-1]["exit_code"] == 0
    assert time.monotonic() - t0 < 15
    assert (tmp_path / "out.log").read_text() == "before\n"
