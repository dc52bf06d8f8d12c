"""The watchdog fork server (raftcron/executor/spawner.py) and the agent's side of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from raftcron.clock import SystemClock
from raftcron.core import commands as c
from raftcron.core.model import JobSpec, run_id
from raftcron.executor import rundir
from raftcron.executor.runner import Executor, _Watchdog
from raftcron.executor.spawning import WatchdogSpawner
from tests.helpers import FakeRaft
from tests.unit.test_executor import T0


def wd_spec(run_dir: Path, argv: list[str], deadline_in: float = 30.0) -> bytes:
    spec = {
        "version": 1,
        "run_dir": str(run_dir),
        "run": "t",
        "fence": 1,
        "job": "t",
        "node": "a",
        "argv": argv,
        "env": dict(os.environ),
        "cwd": None,
        "deadline": time.monotonic() + deadline_in,
        "timeout": None,
        "grace": 1.0,
        "lease_grace": 0.1,
    }
    return json.dumps(spec).encode() + b"\n"


def ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if ppid(int(entry)) == pid:
                    out.append(int(entry))
            except (OSError, IndexError, ValueError):
                pass
    return out


def fd_links(pid: int) -> dict[int, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
    return out


async def run_watchdog(
    sp: WatchdogSpawner, tmp_path: Path, argv: list[str], during: Any = None
) -> tuple[int, list[dict[str, Any]]]:
    """Launch a forked watchdog as the executor does (spec on its stdin, one line back),
    attach to it, and wait for the exit: ``(watchdog pid, [started, exit])``."""
    got = await sp.spawn("job=t run=t fence=1 node=a")
    assert got is not None
    run_dir = Path(tempfile.mkdtemp(dir=tmp_path))
    wd = await _Watchdog.over_pipes(*got)
    try:
        wd.stdin.write(wd_spec(run_dir, argv))
        await wd.stdin.drain()
        wd.stdin.close()
        assert json.loads(await wd.stdout.readline())["event"] == "listening"
    finally:
        wd.close()
    ch = await rundir.attach(run_dir, {"run": "t", "fence": 1})
    if ch is None:  # a quick job: done before we attached, the result is on disk
        assert during is None
        ev = rundir.read_result(run_dir)
        assert ev is not None
        events = [{"event": "started", "pid": ev["job_pid"]}, {"event": "exit", **ev}]
    else:
        try:
            events = [{"event": "started", "pid": ch.reply["job_pid"]}]
            if during is not None:
                await during(wd.pid, ch.reply["job_pid"])
            ev = await ch.wait_exit()
        finally:
            ch.close()
        assert ev is not None
        events.append(ev)
    (tmp_path / "out.log").write_bytes((run_dir / "output.log").read_bytes())
    return wd.pid, events


def test_a_forked_watchdog_runs_the_job_and_reports(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    async def during(wd_pid: int, job_pid: int) -> None:
        seen["wd_ppid"] = ppid(wd_pid)
        seen["wd_sid"] = os.getsid(wd_pid)
        seen["job_sid"] = os.getsid(job_pid)

    async def go() -> None:
        sp = WatchdogSpawner("a")
        try:
            pid, events = await run_watchdog(
                sp, tmp_path, ["sh", "-c", "sleep 1; echo hi; exit 3"], during
            )
            assert [e["event"] for e in events] == ["started", "exit"]
            last = events[-1]
            assert (last["exit_code"], last["outcome"], last["detail"]) == (3, "exited", "")
            assert (tmp_path / "out.log").read_text() == "hi\n"
            assert seen["wd_ppid"] == sp.pid  # the spawner's child (the chaos suite walks it)
            assert seen["wd_sid"] == pid  # its own session, as before
            assert seen["job_sid"] == events[0]["pid"]  # the job: its own session too
            # the same server serves the next request
            first = sp.pid
            await run_watchdog(sp, tmp_path, ["true"])
            assert (sp.pid, sp.starts, sp.fallbacks) == (first, 1, 0)
        finally:
            await sp.close()

    asyncio.run(go())


JOB_FDS = textwrap.dedent(
    """
    import os, sys
    fds = []
    for fd in range(3, 1024):
        try:
            os.fstat(fd)
        except OSError:
            continue
        fds.append((fd, os.readlink(f"/proc/self/fd/{fd}")))
    print(repr(fds))
    sys.stdout.flush()
    import time; time.sleep(1)
    """
)


def test_no_descriptor_leaks_into_the_watchdog_or_the_job(tmp_path: Path) -> None:
    """The job holds nothing but 0-2 (never the spawner socket, the watchdog's sockets or
    another run's pipe); the watchdog holds /dev/null on 0 and 1 once it listens, its own
    sockets (listening, attached agent), the job's output file and pipe and epoll/pidfd,
    no other pipe; the spawner keeps no pipe of a run it forked (or the agent would never
    see EOF)."""
    seen: dict[str, Any] = {}

    async def during(wd_pid: int, job_pid: int) -> None:
        await asyncio.sleep(0.2)
        seen["wd"] = fd_links(wd_pid)

    async def go() -> None:
        sp = WatchdogSpawner("a")
        try:
            # a second run's pipes are open in the agent meanwhile
            other = await sp.spawn("job=o run=o fence=1 node=a")
            assert other is not None
            await run_watchdog(sp, tmp_path, [sys.executable, "-I", "-S", "-c", JOB_FDS], during)
            assert sp.pid is not None
            seen["spawner"] = fd_links(sp.pid)
            for fd in other[1:]:
                os.close(fd)
        finally:
            await sp.close()

    asyncio.run(go())
    assert (tmp_path / "out.log").read_text().strip() == "[]"
    wd = seen["wd"]
    assert wd[0] == "/dev/null" and wd[1] == "/dev/null", wd
    extra = {fd: link for fd, link in wd.items() if fd > 2}
    # the job's output file and the read end of the job's output pipe, the watchdog's
    # listening socket and the attached agent's connection
    output = {fd for fd, link in extra.items() if link.endswith("/output.log")}
    job_pipe = {fd for fd, link in extra.items() if link.startswith("pipe:")}
    sockets = {fd for fd, link in extra.items() if link.startswith("socket:")}
    assert len(output) == 1 and len(job_pipe) == 1 and len(sockets) == 2, wd
    others = [link for fd, link in extra.items() if fd not in output | job_pipe | sockets]
    assert all(link.startswith("anon_inode:") for link in others), wd
    sp_fds = {fd: link for fd, link in seen["spawner"].items() if fd > 2}
    assert len(sp_fds) == 1 and next(iter(sp_fds.values())).startswith("socket:"), sp_fds


def test_the_spawner_reaps_its_children(tmp_path: Path) -> None:
    async def go() -> None:
        sp = WatchdogSpawner("a")
        try:
            pids = []
            for _ in range(5):
                pid, events = await run_watchdog(sp, tmp_path, ["true"])
                assert events[-1]["outcome"] == "exited"
                pids.append(pid)
            assert sp.pid is not None
            for _ in range(250):
                if not children(sp.pid):
                    break
                await asyncio.sleep(0.02)
            assert children(sp.pid) == []  # no zombies left behind
            assert all(state(p) == "gone" for p in pids)
            spawner = sp.pid
        finally:
            await sp.close()
        assert state(spawner) == "gone"  # stopped and reaped: no leak, no zombie

    asyncio.run(go())


def test_a_hung_spawner_falls_back_and_is_replaced(tmp_path: Path) -> None:
    async def go() -> None:
        sp = WatchdogSpawner("a", reply_timeout=0.5, retry_s=0.0)
        try:
            await run_watchdog(sp, tmp_path, ["true"])
            hung = sp.pid
            assert hung is not None
            os.kill(hung, signal.SIGSTOP)
            assert await sp.spawn("job=t run=t fence=1 node=a") is None  # caller falls back
            assert sp.fallbacks == 1
            for _ in range(500):
                if sp.pid not in (None, hung) and sp.starts >= 2:
                    break
                await asyncio.sleep(0.02)
            assert sp.pid not in (None, hung)  # restarted at once
            assert state(hung) == "gone"  # killed (by pid) and reaped
            _, events = await run_watchdog(sp, tmp_path, ["true"])
            assert events[-1]["outcome"] == "exited"
        finally:
            await sp.close()

    asyncio.run(go())


def test_a_request_to_a_spawner_that_just_died_falls_back(tmp_path: Path) -> None:
    """Killed between two runs, before the agent noticed: the send fails, the caller
    spawns that watchdog itself, and a new server takes over."""

    async def go() -> None:
        sp = WatchdogSpawner("a", retry_s=0.0)
        try:
            await run_watchdog(sp, tmp_path, ["true"])
            dead = sp.pid
            assert dead is not None
            os.kill(dead, signal.SIGKILL)
            for _ in range(500):  # no await: the loop must not see the EOF first
                if state(dead) in ("Z", "gone"):
                    break
                time.sleep(0.01)  # noqa: ASYNC251 (on purpose: the loop must not run)
            assert await sp.spawn("job=t run=t fence=1 node=a") is None
            assert sp.fallbacks == 1
            for _ in range(500):
                if sp.pid not in (None, dead):
                    break
                await asyncio.sleep(0.02)
            _, events = await run_watchdog(sp, tmp_path, ["true"])
            assert events[-1]["outcome"] == "exited" and sp.starts == 2
        finally:
            await sp.close()

    asyncio.run(go())


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "no-pidfd"])
def test_a_dead_spawner_is_restarted(tmp_path: Path, monkeypatch: Any, pidfd: bool) -> None:
    """A killed server is reaped and replaced, and close() leaves no zombie. Kernels
    before 5.3 have no pidfd_open: there a thread in waitpid does the reaping."""
    if not pidfd:

        def no_pidfd(pid: int, flags: int = 0) -> int:
            raise OSError(38, "Function not implemented")

        monkeypatch.setattr(os, "pidfd_open", no_pidfd)

    async def go() -> None:
        sp = WatchdogSpawner("a", retry_s=0.0)
        try:
            await run_watchdog(sp, tmp_path, ["true"])
            dead = sp.pid
            assert dead is not None
            os.kill(dead, signal.SIGKILL)
            for _ in range(500):
                if sp.pid not in (None, dead):
                    break
                await asyncio.sleep(0.02)
            assert sp.pid not in (None, dead)
            _, events = await run_watchdog(sp, tmp_path, ["true"])
            assert events[-1]["outcome"] == "exited"
            assert sp.fallbacks == 0 and state(dead) == "gone"
            last = sp.pid
        finally:
            await sp.close()
        assert last is not None and state(last) == "gone"

    asyncio.run(go())


def test_a_spawn_cancelled_as_its_reply_arrives_stays_cancelled(tmp_path: Path) -> None:
    """On 3.11 asyncio.wait_for returns the result when a cancel comes in the same loop
    iteration; the run would then start after it was cancelled. The spawn must raise, and
    its pipe ends must be closed (the forked watchdog reads EOF and exits)."""

    async def go() -> None:
        sp = WatchdogSpawner("a")
        try:
            await run_watchdog(sp, tmp_path, ["true"])
            before = set(fd_links(os.getpid()))
            task = asyncio.get_running_loop().create_task(sp.spawn("job=t run=t fence=1"))
            for _ in range(5000):
                srv = sp._server
                if srv is not None and srv.pending:
                    break
                await asyncio.sleep(0)
            assert srv is not None and srv.pending
            (fut,) = srv.pending.values()
            fut.set_result(os.getpid())  # the reply and the cancel, one iteration
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            else:
                raise AssertionError("the cancelled spawn returned a watchdog")
            assert set(fd_links(os.getpid())) <= before  # both pipe ends closed
        finally:
            await sp.close()

    asyncio.run(go())


# ------------------------------------------------------------- through the executor


def granted(raft: FakeRaft, spec: JobSpec, k: int) -> str:
    if k == 0:
        raft.machine.apply(c.encode(c.PutJob(at_ms=T0, spec=spec)))
    at = T0 + 1000 * (k + 1)
    fire = c.Fire(job=spec.name, scheduled_at_ms=at, node="a", trigger="schedule")
    raft.machine.apply(c.encode(c.Plan(at_ms=at - 1000, fires=(fire,), missed=())))
    return run_id(spec.name, at)


async def run_in(ex: Executor, raft: FakeRaft, rid: str) -> Any:
    fence = raft.machine.read(lambda s: s.runs[rid].fence)
    ex.caught_up()
    ex.on_granted(rid, fence, "a")
    await asyncio.wait_for(asyncio.gather(*list(ex._tasks)), 30)
    return raft.machine.read(lambda s: s.runs[rid])


def test_the_executor_uses_the_spawner_and_falls_back(tmp_path: Path) -> None:
    spec = JobSpec(name="j", schedule="* * * * * *", command=("sh", "-c", "exit 0"))

    async def go() -> None:
        raft = FakeRaft()
        ex = Executor(node="a", raft=raft, clock=SystemClock(), data_dir=tmp_path)  # type: ignore[arg-type]
        assert ex.spawner is not None
        ex.spawner = sp = WatchdogSpawner("a", reply_timeout=0.5, retry_s=0.0)
        try:
            run = await run_in(ex, raft, granted(raft, spec, 0))
            assert run.status == "succeeded"
            assert (sp.starts, sp.fallbacks) == (1, 0)
            first = sp.pid
            assert first is not None
            os.kill(first, signal.SIGSTOP)  # hung: this run is spawned directly
            run = await run_in(ex, raft, granted(raft, spec, 1))
            assert run.status == "succeeded", run.reason
            assert sp.fallbacks == 1
            run = await run_in(ex, raft, granted(raft, spec, 2))  # by the new spawner
            assert run.status == "succeeded"
            assert sp.fallbacks == 1 and sp.starts == 2 and sp.pid != first
            last = sp.pid
        finally:
            await ex.stop()
        assert last is not None and state(last) == "gone"  # stop does not leak it

    asyncio.run(go())


def test_a_killed_watchdog_ends_the_run_at_eof(tmp_path: Path) -> None:
    """The agent is not the forked watchdog's parent: the end of its connection ends the
    run; with no exit event and no result on disk the run is lost, exactly as with a
    directly spawned one."""
    pidfile = tmp_path / "job.pid"
    job = ("sh", "-c", f"echo $$ > {pidfile}; exec sleep 60")
    spec = JobSpec(name="j", schedule="* * * * * *", command=job)

    async def go() -> Any:
        raft = FakeRaft()
        ex = Executor(node="a", raft=raft, clock=SystemClock(), data_dir=tmp_path)  # type: ignore[arg-type]
        real_start = ex._start_watchdog

        async def start_then_kill(ctx: str) -> Any:
            wd = await real_start(ctx)
            asyncio.get_running_loop().call_later(0.3, os.kill, wd.pid, signal.SIGKILL)
            return wd

        ex._start_watchdog = start_then_kill  # type: ignore[method-assign]
        try:
            return await run_in(ex, raft, granted(raft, spec, 0))
        finally:
            await ex.stop()

    # ended at the EOF, not when the job ends: a run that waited for its 60 s job would
    # miss this deadline
    run = asyncio.run(asyncio.wait_for(go(), 30))
    assert (run.status, run.reason) == ("lost", "killed: the watchdog exited without a result")
    with contextlib.suppress(ProcessLookupError, ValueError):
        os.kill(int(pidfile.read_text()), signal.SIGKILL)  # the job, if it outlived them


AGENT = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from pathlib import Path
    from raftcron.executor import rundir
    from raftcron.executor.runner import _Watchdog
    from raftcron.executor.spawning import WatchdogSpawner

    async def main():
        sp = WatchdogSpawner("a")
        wd = await _Watchdog.over_pipes(*await sp.spawn("job=t run=t fence=1 node=a"))
        spec = {"run_dir": sys.argv[1], "run": "t", "fence": 1, "argv": ["sleep", "60"],
                "env": dict(os.environ), "cwd": None, "deadline": time.monotonic() + 1.5,
                "timeout": None, "grace": 1.0, "lease_grace": 0.1}
        wd.stdin.write(json.dumps(spec).encode() + b"\\n")
        await wd.stdin.drain()
        await wd.stdout.readline()  # listening
        ch = await rundir.attach(Path(sys.argv[1]), {})
        print(sp.pid, wd.pid, ch.reply["job_pid"], flush=True)
        os._exit(9)  # killed: no cleanup at all

    asyncio.run(main())
    """
)


def test_a_dead_agent_leaves_its_watchdogs_enforcing_the_deadline(tmp_path: Path) -> None:
    """The agent dies: the spawner exits at EOF; the watchdog it forked lives on, kills
    the job at the lease deadline, as a directly spawned one does, and leaves its result
    on disk for the agent's next life."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with (tmp_path / "agent.err").open("wb") as err:  # not a pipe: the watchdog keeps it
        out = subprocess.run(
            [sys.executable, "-c", AGENT, str(run_dir)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        )
    spawner, wd, job = (int(x) for x in out.stdout.split())
    until = time.monotonic() + 5
    while state(spawner) not in ("gone", "Z") and time.monotonic() < until:
        time.sleep(0.02)
    assert state(spawner) in ("gone", "Z")  # exited (reaped by init/subreaper, or soon)
    assert state(wd) not in ("gone", "Z") and state(job) not in ("gone", "Z")
    until = time.monotonic() + 10
    while state(job) not in ("gone", "Z") and time.monotonic() < until:
        time.sleep(0.05)
    assert state(job) in ("gone", "Z"), "the job outlived its lease"
    until = time.monotonic() + 10
    while rundir.read_result(run_dir) is None and time.monotonic() < until:
        time.sleep(0.05)
    result = rundir.read_result(run_dir)
    assert result is not None and result["outcome"] == "lease_lost"


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


@pytest.mark.parametrize("forked", [True, False], ids=["fork-server", "direct"])
def test_no_agent_variable_in_the_spawner_or_a_watchdog(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forked: bool
) -> None:
    """The fork server and every watchdog (forked by it, or spawned directly when it is
    off) start with none of the agent's environment: an admin token in the agent's
    environment is in no /proc/PID/environ of theirs, while the job still gets the
    environment job_environment builds for it."""
    monkeypatch.setenv("RAFTCRON_TOKEN", "admin-token-in-the-agent-env")
    monkeypatch.setenv("AGENT_ONLY_VARIABLE", "agent")
    agent_names = set(os.environ)
    out = tmp_path / "job-env.txt"
    spec = JobSpec(
        name="j",
        schedule="* * * * * *",
        command=("sh", "-c", f'echo "$RAFTCRON_JOB $PATH" > {out}; sleep 1'),
    )
    seen: dict[str, dict[str, str]] = {}

    async def go() -> Any:
        raft = FakeRaft()
        ex = Executor(node="a", raft=raft, clock=SystemClock(), data_dir=tmp_path, spawner=forked)  # type: ignore[arg-type]
        real_start = ex._start_watchdog

        async def start_and_look(ctx: str) -> Any:
            wd = await real_start(ctx)
            seen["watchdog"] = environ_of(wd.pid)
            if ex.spawner is not None:
                assert ex.spawner.pid is not None
                seen["spawner"] = environ_of(ex.spawner.pid)
            return wd

        ex._start_watchdog = start_and_look  # type: ignore[method-assign]
        try:
            run = await run_in(ex, raft, granted(raft, spec, 0))
            # a directly spawned watchdog is our child: let it be reaped before the loop ends
            await asyncio.wait_for(asyncio.gather(*ex._reapers), 10)
            return run
        finally:
            await ex.stop()

    run = asyncio.run(go())
    assert run.status == "succeeded", run.reason
    assert set(seen) == ({"watchdog", "spawner"} if forked else {"watchdog"})
    for who, env in seen.items():
        assert "RAFTCRON_TOKEN" not in env, (who, env)
        assert not agent_names & set(env), (who, sorted(agent_names & set(env)))
    job, path = out.read_text().split()
    assert job == "j" and path  # the job's own environment is intact
