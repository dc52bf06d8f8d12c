"""The per-run watchdog process: the versioned channel, deadlines, extensions, timeouts, a
dead agent, the result on disk, re-attaching."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from raftcron.executor import rundir
from raftcron.executor import watchdog as wd


class Agent:
    """One connection to a watchdog, as the agent holds it (synchronous, for tests)."""

    def __init__(self, run_dir: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with wd.socket_path(str(run_dir)) as path:
            self.sock.connect(path)
        self.file = self.sock.makefile("rwb")

    def send(self, msg: dict[str, Any]) -> None:
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()

    def recv(self) -> dict[str, Any] | None:
        line = self.file.readline()
        return json.loads(line) if line else None

    def hello(self, **fields: Any) -> dict[str, Any]:
        self.send({"hello": wd.PROTOCOL, "min": wd.MIN_PROTOCOL, **fields})
        reply = self.recv()
        assert reply is not None
        return reply

    def until_exit(self) -> dict[str, Any] | None:
        while (msg := self.recv()) is not None:
            if msg.get("event") == "exit":
                return msg
        return None

    def close(self) -> None:
        self.file.close()
        self.sock.close()


Connect = Callable[[Path], Agent]


@pytest.fixture
def connect() -> Iterator[Connect]:
    """Agents connected in a test are closed at its end."""
    made: list[Agent] = []

    def make(run_dir: Path) -> Agent:
        made.append(Agent(run_dir))
        return made[-1]

    yield make
    for agent in made:
        agent.close()


def start(run_dir: Path, argv: list[str], **fields: Any) -> subprocess.Popen[bytes]:
    """A watchdog as the agent starts one, its spec written on its stdin (left open);
    ``fields`` override or add spec keys."""
    run_dir.mkdir(mode=0o700, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", wd.__file__],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    spec = {
        "version": wd.PROTOCOL,
        "run_dir": str(run_dir),
        "run": "j@1000",
        "fence": 7,
        "job": "j",
        "node": "a",
        "argv": argv,
        "env": dict(os.environ),
        "cwd": None,
        "timeout": None,
        "grace": 1.0,
        "lease_grace": 0.0,
        **fields,
    }
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(spec).encode() + b"\n")
    proc.stdin.flush()
    return proc


def launch(
    run_dir: Path,
    argv: list[str],
    deadline_in: float,
    timeout: float | None = None,
    grace: float = 1.0,
    lease_grace: float = 0.0,
    attach_wait: float = 30.0,
    extra: dict[str, Any] | None = None,
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """Start a watchdog as the agent does: spec on stdin, one line back once it listens."""
    proc = start(
        run_dir,
        argv,
        deadline=time.monotonic() + deadline_in,
        timeout=timeout,
        grace=grace,
        lease_grace=lease_grace,
        attach_wait=attach_wait,
        **(extra or {}),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    listening = json.loads(proc.stdout.readline())
    assert proc.stdout.read() == b""  # stdout is closed after that one line
    proc.stdout.close()
    return proc, listening


def run_to_end(
    connect: Connect, run_dir: Path, argv: list[str], deadline_in: float = 30, **kw: Any
) -> Any:
    proc, _ = launch(run_dir, argv, deadline_in, **kw)
    try:
        agent = connect(run_dir)
        # A short job (`true`) may be over before the hello on a loaded machine.
        assert agent.hello()["state"] in ("running", "ended")
        ev = agent.until_exit()
        agent.close()
    except OSError:
        # ... or over before the agent attached: then the watchdog wrote its result and
        # exited (or is exiting) with nobody to tell, and the result on disk is the event.
        ev = None
    assert proc.wait(30) == 0
    if ev is None:
        result = wd.read_result(str(run_dir))
        assert result is not None
        ev = {"event": "exit", **result}
    return ev


def test_job_exits_normally_and_output_and_result_are_kept(
    tmp_path: Path, connect: Connect
) -> None:
    run_dir, go = tmp_path / "r", tmp_path / "go"
    # The job waits for the agent's hello: a job that ends before any agent attaches makes
    # the watchdog write its result and exit (the case of the test below).
    script = f"while [ ! -e {go} ]; do sleep 0.01; done; echo hello; echo oops >&2; exit 3"
    proc, listening = launch(run_dir, ["sh", "-c", script], 30)
    assert listening == {"event": "listening", "pid": proc.pid, "version": wd.PROTOCOL}
    agent = connect(run_dir)
    reply = agent.hello(run="j@1000", fence=7, deadline=time.monotonic() + 30)
    assert reply["hello"] == wd.PROTOCOL and reply["pid"] == proc.pid
    assert reply["run"] == "j@1000" and reply["fence"] == 7 and reply["job_pid"] > 0
    go.touch()
    ev = agent.until_exit()
    assert ev is not None
    # On disk, complete, the moment an agent hears of the exit (before the watchdog exits).
    saved = wd.read_result(str(run_dir))
    assert saved == {k: v for k, v in ev.items() if k != "event"}
    assert (ev["event"], ev["exit_code"], ev["outcome"], ev["detail"]) == ("exit", 3, "exited", "")
    assert proc.wait(30) == 0
    assert (run_dir / wd.OUTPUT_NAME).read_text() == "hello\noops\n"
    # The socket is gone with the watchdog; no temp file is left.
    assert not (run_dir / wd.SOCKET_NAME).exists()
    assert not (run_dir / (wd.RESULT_NAME + ".tmp")).exists()
    for name in (wd.OUTPUT_NAME, wd.RESULT_NAME):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o600


def test_a_watchdog_that_came_up_too_late_starts_nothing(tmp_path: Path, connect: Connect) -> None:
    """Its spec's deadline has passed and no agent brings a later one: the job never
    runs, and the watchdog gives up (after attach_wait). A stop request in a hello does
    the same at once."""
    run_dir = tmp_path / "r"
    marker = tmp_path / "ran"
    proc, _ = launch(run_dir, ["touch", str(marker)], -0.5, attach_wait=0.2)
    assert proc.wait(30) == 0
    assert not marker.exists()
    result = wd.read_result(str(run_dir))
    assert result is not None and result["outcome"] == "lease_lost"
    assert result["exit_code"] is None and "never started" in result["detail"]

    run_dir = tmp_path / "k"
    proc, _ = launch(run_dir, ["touch", str(marker)], -0.5)
    agent = connect(run_dir)
    reply = agent.hello(kill="killed on request", deadline=time.monotonic() + 30)
    assert reply["state"] == "ended"
    ev = agent.until_exit()
    assert ev is not None and (ev["outcome"], ev["exit_code"]) == ("killed", None)
    assert proc.wait(30) == 0 and not marker.exists()


def test_the_protocol_version_is_negotiated(tmp_path: Path, connect: Connect) -> None:
    """An upgraded agent (speaking 1..N) re-attaches to a watchdog of version 1; an agent
    that speaks none of this watchdog's versions, or names another run, is refused and the
    job goes on under its deadline."""
    assert wd.negotiate(wd.PROTOCOL + 3, wd.MIN_PROTOCOL) == wd.PROTOCOL
    assert wd.negotiate(wd.PROTOCOL + 3, wd.PROTOCOL + 1) is None
    run_dir = tmp_path / "r"
    proc, _ = launch(run_dir, ["sleep", "60"], 30)
    newer = connect(run_dir)
    newer.send({"hello": wd.PROTOCOL + 3, "min": wd.PROTOCOL + 1})
    refused = newer.recv()
    assert refused is not None and "no common protocol version" in refused["error"]
    assert refused["versions"] == [wd.MIN_PROTOCOL, wd.PROTOCOL]
    assert newer.recv() is None  # closed
    other = connect(run_dir)
    other.send({"hello": wd.PROTOCOL, "run": "j@1000", "fence": 8})
    refused = other.recv()
    assert refused is not None and "fence 7" in refused["error"]
    upgraded = connect(run_dir)
    reply = upgraded.hello(**{"hello": wd.PROTOCOL + 3, "min": wd.MIN_PROTOCOL})
    assert reply["hello"] == wd.PROTOCOL and reply["state"] == "running"
    upgraded.send({"kill": "done", "hard": True})
    ev = upgraded.until_exit()
    assert ev is not None and ev["outcome"] == "killed"
    assert proc.wait(30) == 0


def test_reattach_to_a_live_watchdog_and_renew(tmp_path: Path, connect: Connect) -> None:
    """The agent goes away (its connection closes: the deadline stays), a new one attaches
    with the same hello, renews, and gets the exit."""
    run_dir = tmp_path / "r"
    proc, _ = launch(run_dir, ["sh", "-c", "sleep 1.5; exit 0"], 1.0, lease_grace=0.2)
    first = connect(run_dir)
    job_pid = first.hello()["job_pid"]
    first.close()  # the agent stopped
    again = connect(run_dir)
    reply = again.hello(run="j@1000", fence=7)
    assert (reply["state"], reply["job_pid"]) == ("running", job_pid)  # the same job
    for _ in range(4):  # without them the job would be stopped 0.8 s in
        again.send({"deadline": time.monotonic() + 2.0})
        time.sleep(0.3)
    ev = again.until_exit()
    assert ev is not None and (ev["outcome"], ev["exit_code"]) == ("exited", 0)
    assert proc.wait(30) == 0


def test_the_result_of_a_finished_watchdog_is_read_from_disk(tmp_path: Path) -> None:
    """The job ended while no agent was attached: the watchdog wrote its result and
    exited; attaching finds nobody listening and the result on disk."""
    run_dir = tmp_path / "r"
    proc, _ = launch(run_dir, ["sh", "-c", "exit 4"], 30)
    assert proc.wait(30) == 0

    async def reattach() -> Any:
        return await rundir.attach(run_dir, {"run": "j@1000", "fence": 7})

    assert asyncio.run(reattach()) is None
    result = rundir.read_result(run_dir)
    assert result is not None and (result["outcome"], result["exit_code"]) == ("exited", 4)
    assert (result["run"], result["fence"], result["job"]) == ("j@1000", 7, "j")


def test_the_agent_side_attach_and_a_long_data_dir(tmp_path: Path, connect: Connect) -> None:
    """rundir.attach is the agent's one path to a watchdog; a data dir longer than a Unix
    socket path can be is reached through /proc/self/fd."""
    run_dir = tmp_path / ("d" * 60) / ("e" * 60) / "7-j@1000"
    run_dir.parent.mkdir(parents=True)
    assert len(str(run_dir / wd.SOCKET_NAME)) > 108
    proc, _ = launch(run_dir, ["sh", "-c", "sleep 1; echo hi"], 30)

    async def go() -> Any:
        ch = await rundir.attach(run_dir, {"run": "j@1000", "fence": 7})
        assert ch is not None and ch.reply["state"] == "running"
        try:
            return await ch.wait_exit()
        finally:
            ch.close()

    ev = asyncio.run(go())
    assert ev is not None and ev["outcome"] == "exited"
    assert proc.wait(30) == 0
    assert rundir.output_tail(run_dir) == "hi\n"


def test_deadline_without_renewal_kills_the_job(tmp_path: Path, connect: Connect) -> None:
    run_dir = tmp_path / "r"
    proc, _ = launch(run_dir, ["sleep", "60"], 0.8)
    agent = connect(run_dir)
    agent.hello()
    agent.close()  # the agent died: the deadline stays in force
    assert proc.wait(30) == 0
    result = wd.read_result(str(run_dir))
    # killed at the deadline: a 60 s sleep that ran out would be "exited"
    assert result is not None and result["outcome"] == "lease_lost"


def test_extensions_keep_the_job_alive(tmp_path: Path, connect: Connect) -> None:
    run_dir = tmp_path / "r"
    proc, _ = launch(run_dir, ["sh", "-c", "sleep 1.5; exit 0"], 0.6)
    agent = connect(run_dir)
    agent.hello(deadline=time.monotonic() + 0.6)
    for _ in range(4):
        time.sleep(0.3)
        agent.send({"deadline": time.monotonic() + 0.6})
    ev = agent.until_exit()
    assert ev is not None and ev["outcome"] == "exited" and ev["exit_code"] == 0
    assert proc.wait(30) == 0


def test_timeout_and_kill_message(tmp_path: Path, connect: Connect) -> None:
    assert (
        run_to_end(connect, tmp_path / "a", ["sleep", "60"], 60, timeout=0.3)["outcome"]
        == "timeout"
    )
    run_dir = tmp_path / "b"
    proc, _ = launch(run_dir, ["sleep", "60"], 60)
    agent = connect(run_dir)
    agent.hello()
    agent.send({"kill": "lease lost"})
    last = agent.until_exit()
    assert last is not None and last["outcome"] == "killed" and last["detail"] == "lease lost"
    assert proc.wait(30) == 0


@pytest.mark.parametrize(
    "msgs",
    [[{"kill": "now", "hard": True}], [{"kill": "soft"}, {"kill": "x", "hard": True}]],
    ids=["hard", "soft-then-hard"],
)
def test_a_hard_kill_is_sigkill_at_once_and_upgrades_a_soft_one(
    tmp_path: Path, connect: Connect, msgs: list[dict[str, Any]]
) -> None:
    """The kill endpoint's hard flag and overlap=terminate_other: no grace at all. With a
    grace of 10 minutes, only the SIGKILL ends a job that ignores SIGTERM."""
    run_dir = tmp_path / "r"
    out = run_dir / wd.OUTPUT_NAME
    job = ["sh", "-c", "trap '' TERM; echo ready; sleep 600"]
    proc, _ = launch(run_dir, job, 900, grace=600)
    agent = connect(run_dir)
    assert agent.hello()["state"] == "running"
    until = time.monotonic() + 30
    while not (out.exists() and "ready" in out.read_text()):  # the trap is set
        assert time.monotonic() < until, "the job never started"
        time.sleep(0.02)
    for msg in msgs:
        agent.send(msg)
    last = agent.until_exit()
    assert last is not None and last["outcome"] == "killed" and last["exit_code"] == -9
    assert last["detail"] == msgs[0]["kill"]
    assert proc.wait(30) == 0


def test_sigterm_ignoring_job_is_sigkilled_after_grace(tmp_path: Path, connect: Connect) -> None:
    last = run_to_end(connect, tmp_path / "r", ["sh", "-c", "trap '' TERM; sleep 60"], 0.6)
    assert last["outcome"] == "lease_lost" and last["exit_code"] == -9


def test_missing_program_is_reported(tmp_path: Path, connect: Connect) -> None:
    run_dir = tmp_path / "r"
    proc, _ = launch(run_dir, ["/nonexistent/program"], 60)
    assert proc.wait(30) == 0  # nothing to wait for: the result is on disk
    last = wd.read_result(str(run_dir))
    assert last is not None and last["outcome"] == "spawn_failed"
    assert "nonexistent" in last["detail"]


def test_a_watchdog_that_cannot_listen_says_so(tmp_path: Path, connect: Connect) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", wd.__file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    spec = {"run_dir": str(tmp_path / "missing"), "run": "j@1", "fence": 1, "deadline": 0}
    out, _ = proc.communicate(json.dumps(spec).encode() + b"\n", timeout=30)
    msg = json.loads(out)
    assert msg["event"] == "error" and "cannot listen" in msg["detail"]
    assert proc.returncode == 1


def test_lease_kill_is_complete_by_the_deadline(tmp_path: Path, connect: Connect) -> None:
    """Regression: SIGKILL must land by the lease deadline, not `grace` after it, or a job
    ignoring SIGTERM could still run when the leader re-grants its fire."""
    run_dir = tmp_path / "r"
    deadline = time.monotonic() + 1.5
    job = ["sh", "-c", "trap '' TERM; sleep 120"]
    proc, _ = launch(run_dir, job, 1.5, grace=60, lease_grace=0.5)
    agent = connect(run_dir)
    agent.hello()
    last = agent.until_exit()
    assert last is not None and last["outcome"] == "lease_lost" and last["exit_code"] == -9
    # SIGKILLed at the deadline: with the bug it would come a 60 s grace after SIGTERM; the
    # check keeps half of that grace as slack for a loaded machine
    assert time.monotonic() < deadline + 30
    assert proc.wait(30) == 0


def test_a_renewal_in_the_hello_counts_before_the_deadline_is_checked(
    tmp_path: Path, connect: Connect
) -> None:
    """The spec's deadline has already passed by the time the watchdog is up, but the
    agent's hello carries the renewed one: the job runs (a chaos-suite finding: on a loaded
    machine the watchdog can come up after its first renewal committed). A hello whose
    deadline has passed too starts nothing."""
    run_dir = tmp_path / "r"
    proc, _ = launch(run_dir, ["sh", "-c", "exit 0"], -1.0, lease_grace=0.1)
    agent = connect(run_dir)
    reply = agent.hello(deadline=time.monotonic() + 60)
    assert reply["state"] in ("running", "ended") and reply["job_pid"]
    ev = agent.until_exit()
    assert ev is not None and (ev["outcome"], ev["exit_code"]) == ("exited", 0)
    assert proc.wait(30) == 0

    run_dir = tmp_path / "late"
    marker = tmp_path / "ran"
    proc, _ = launch(run_dir, ["touch", str(marker)], -1.0, lease_grace=0.1)
    agent = connect(run_dir)
    reply = agent.hello(deadline=time.monotonic() - 0.5)
    assert (reply["state"], reply["job_pid"]) == ("ended", None)
    ev = agent.until_exit()
    assert (
        ev is not None
        and ev["outcome"] == "lease_lost"
        and "before the job started" in (ev["detail"])
    )
    assert proc.wait(30) == 0 and not marker.exists()


def test_output_goes_through_a_pipe_into_a_bounded_private_file(
    tmp_path: Path, connect: Connect
) -> None:
    """The file never holds more than out_max bytes, even while the job writes; when it
    would, it is cut to its last out_keep bytes. It is created 0600 whatever the umask."""
    run_dir = tmp_path / "r"
    out = run_dir / wd.OUTPUT_NAME
    script = (
        "i=0; while [ $i -lt 400 ]; do head -c 10000 /dev/zero | tr '\\0' a; i=$((i+1)); "
        "done; echo; echo tail-line; sleep 1"
    )
    old = os.umask(0o022)
    try:
        proc, _ = launch(
            run_dir, ["sh", "-c", script], 60, extra={"out_max": 100_000, "out_keep": 10_000}
        )
    finally:
        os.umask(old)
    agent = connect(run_dir)
    agent.hello()
    sizes = []
    while proc.poll() is None:
        if out.exists():
            sizes.append(out.stat().st_size)
            assert stat.S_IMODE(out.stat().st_mode) == 0o600
        time.sleep(0.001)
    ev = agent.until_exit()
    assert ev is not None and ev["outcome"] == "exited" and ev["exit_code"] == 0
    assert max(sizes) <= 100_000 and len(sizes) > 10
    data = out.read_bytes()
    assert data.endswith(b"a\ntail-line\n") and len(data) <= 100_000
    assert set(data[:-11]) <= {ord("a"), ord("\n")}


def test_a_process_left_behind_holding_the_output_does_not_hold_the_run(
    tmp_path: Path, connect: Connect
) -> None:
    """The job's own process exits: the run ends then, as before, even though a background
    process it started still holds the output pipe (its later output is not collected)."""
    run_dir = tmp_path / "r"
    job = ["sh", "-c", "echo before; (sleep 60; echo after) & exit 0"]
    proc, _ = launch(run_dir, job, 120)
    assert proc.wait(30) == 0
    result = wd.read_result(str(run_dir))
    assert result is not None
    # the run ended while the process left behind still lives (its own group): killing it
    # now finds it, so the run did not wait for it
    os.killpg(result["job_pid"], signal.SIGKILL)
    assert result["outcome"] == "exited" and result["exit_code"] == 0
    assert (run_dir / wd.OUTPUT_NAME).read_text() == "before\n"


def test_the_job_reads_the_specs_stdin_and_dev_null_without_it(
    tmp_path: Path, connect: Connect
) -> None:
    """``stdin`` (a crontab line's text after its first %) is what the job reads, to the
    end, byte for byte; a job that never reads it still ends; without it, /dev/null."""
    text = "line 1\nline 2 é %\n" + "x" * 200_000  # more than a pipe holds
    read_all = ["sh", "-c", 'cat > "$0"; echo done', str(tmp_path / "got")]
    ev = run_to_end(connect, tmp_path / "r1", read_all, extra={"stdin": text})
    assert (ev["outcome"], ev["exit_code"]) == ("exited", 0)
    assert (tmp_path / "got").read_bytes() == text.encode()
    assert (tmp_path / "r1" / wd.OUTPUT_NAME).read_text() == "done\n"

    ev = run_to_end(connect, tmp_path / "r2", ["true"], extra={"stdin": text})
    assert (ev["outcome"], ev["exit_code"]) == ("exited", 0)

    ev = run_to_end(connect, tmp_path / "r3", ["sh", "-c", "wc -c; readlink /proc/self/fd/0"])
    assert (tmp_path / "r3" / wd.OUTPUT_NAME).read_text() == "0\n/dev/null\n"


# -- the held start (protocol version 2): set up, listen, start the job only on the go


def launch_held(
    run_dir: Path, argv: list[str], hold_in: float = 30.0
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """A held watchdog as the executor starts it: deadline 0 in the spec, ``hold`` set, and
    its stdin and stdout left open for the go."""
    proc = start(run_dir, argv, deadline=0.0, hold=time.monotonic() + hold_in)
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def close_pipes(proc: subprocess.Popen[bytes]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None and not pipe.closed:
            pipe.close()


def to_held(proc: subprocess.Popen[bytes], msg: dict[str, Any]) -> None:
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(msg).encode() + b"\n")
    proc.stdin.flush()


def test_a_held_watchdog_starts_the_job_only_on_the_go(tmp_path: Path, connect: Connect) -> None:
    """It listens before the go and answers a hello (``held``), but neither that nor a
    hello carrying a deadline starts the job; the go does, under the go's deadline."""
    run_dir, marker = tmp_path / "r", tmp_path / "ran"
    proc, listening = launch_held(run_dir, ["sh", "-c", f"touch {marker}; sleep 0.3"])
    assert listening == {"event": "listening", "pid": proc.pid, "version": wd.PROTOCOL}
    agent = connect(run_dir)
    reply = agent.hello(run="j@1000", fence=7, deadline=time.monotonic() + 30)
    assert (reply["state"], reply["job_pid"]) == ("held", None)
    time.sleep(0.5)
    assert not marker.exists() and proc.poll() is None
    to_held(proc, {"go": True, "deadline": time.monotonic() + 30})
    ev = agent.until_exit()
    assert ev is not None and (ev["outcome"], ev["exit_code"]) == ("exited", 0)
    assert marker.exists()
    assert proc.wait(30) == 0
    assert proc.stdout is not None and proc.stdout.read() == b""  # released at the go
    close_pipes(proc)


def test_a_go_carries_the_lease_deadline(tmp_path: Path) -> None:
    """The deadline is the go's: a job still running then is stopped as lease_lost."""
    run_dir = tmp_path / "r"
    proc, _ = launch_held(run_dir, ["sleep", "30"])
    to_held(proc, {"go": True, "deadline": time.monotonic() + 0.5})
    assert proc.wait(30) == 0
    result = wd.read_result(str(run_dir))
    assert result is not None and result["outcome"] == "lease_lost"
    assert result["job_pid"] is not None
    close_pipes(proc)


@pytest.mark.parametrize("how", ["cancel", "eof", "hold_ends"])
def test_a_held_job_without_a_go_never_starts(tmp_path: Path, how: str) -> None:
    """A cancel, EOF on stdin (the agent went away) or the end of the hold before any
    go: the job never starts, the watchdog exits with a ``not_started`` result and the
    agent sees EOF on its stdout."""
    run_dir, marker = tmp_path / "r", tmp_path / "ran"
    proc, _ = launch_held(
        run_dir, ["touch", str(marker)], hold_in=0.5 if how == "hold_ends" else 30
    )
    assert proc.stdin is not None and proc.stdout is not None
    if how == "cancel":
        to_held(proc, {"cancel": "the start was refused"})
    elif how == "eof":
        proc.stdin.close()
    assert proc.stdout.read() == b""  # EOF once it has exited
    assert proc.wait(30) == 0
    result = wd.read_result(str(run_dir))
    assert result is not None
    assert (result["outcome"], result["exit_code"], result["job_pid"]) == (
        "not_started",
        None,
        None,
    )
    detail = {"cancel": "the start was refused", "eof": "went away", "hold_ends": "end of its hold"}
    assert detail[how] in result["detail"]
    time.sleep(0.2)
    assert not marker.exists()
    assert not (run_dir / wd.SOCKET_NAME).exists()
    close_pipes(proc)


def test_a_go_after_a_cancel_or_a_kill_starts_nothing(tmp_path: Path, connect: Connect) -> None:
    """A stop request in a hello ends a held watchdog at once (the executor clears a
    leftover one that way); a go that comes after a cancel is too late."""
    run_dir, marker = tmp_path / "k", tmp_path / "ran"
    proc, _ = launch_held(run_dir, ["touch", str(marker)])
    agent = connect(run_dir)
    reply = agent.hello(kill="its agent restarted before the go", hard=True)
    assert reply["state"] == "ended"
    ev = agent.until_exit()
    assert ev is not None and (ev["outcome"], ev["job_pid"]) == ("killed", None)
    assert proc.wait(30) == 0
    close_pipes(proc)

    run_dir = tmp_path / "c"
    proc, _ = launch_held(run_dir, ["touch", str(marker)])
    assert proc.stdin is not None
    proc.stdin.write(b'{"cancel": "refused"}\n{"go": true, "deadline": 1e12}\n')
    proc.stdin.flush()
    assert proc.wait(30) == 0
    result = wd.read_result(str(run_dir))
    assert result is not None and result["outcome"] == "not_started"
    time.sleep(0.2)
    assert not marker.exists()
    close_pipes(proc)


def test_a_watchdog_of_version_1_starts_a_held_spec_only_with_a_deadline(
    tmp_path: Path, connect: Connect
) -> None:
    """What makes the held spec safe on a watchdog that knows no hold: it ignores
    ``hold`` but its deadline is 0 (passed), so it starts nothing until a hello brings
    one, which the executor sends only after the start committed (the go is then
    written to a closed pipe)."""
    run_dir, marker = tmp_path / "r", tmp_path / "ran"
    proc, _ = launch(run_dir, ["touch", str(marker)], -time.monotonic(), attach_wait=30)
    time.sleep(0.5)
    assert not marker.exists()
    agent = connect(run_dir)
    agent.hello(run="j@1000", fence=7, deadline=time.monotonic() + 30)
    ev = agent.until_exit()
    assert ev is not None and ev["outcome"] == "exited" and marker.exists()
    assert proc.wait(30) == 0
