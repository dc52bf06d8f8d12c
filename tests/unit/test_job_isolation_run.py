"""How a command job's process starts (issue 13 item 4), with a real watchdog and job: a
clean environment, the job's account, its working directory, resource limits, output
bounded while it runs. The executor runs against one in-process state machine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest

from raftcron.core.model import JobSpec, Run
from raftcron.executor.runner import DEFAULT_PATH
from tests.helpers import FakeRaft
from tests.unit.test_executor import run_one

TOKEN = "admin-Xq3vJ8pL0wZr7TkN2b"
SECRET = "Xq3vJ8pL0wZr7TkN2bYc5HdF"


def run(tmp_path: Path, spec: JobSpec, **executor: Any) -> Run:
    raft, rid = asyncio.run(run_one(tmp_path, spec, 0.0, FakeRaft(), **executor))
    result: Run = raft.machine.read(lambda s: s.runs[rid])
    return result


def env_of(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


@pytest.fixture
def agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent started with its admin token and a marker variable in its environment."""
    monkeypatch.setenv("RAFTCRON_TOKEN", TOKEN)
    monkeypatch.setenv("RAFTCRON_TOKEN_FILE", "/etc/raftcron/admin.token")
    monkeypatch.setenv("MARKER", "marker-value-42")
    monkeypatch.setenv("LANG", "C.UTF-8")


def test_a_job_sees_no_agent_variable_it_did_not_ask_for(tmp_path: Path, agent_env: None) -> None:
    """The audit's finding: jobs started from the agent's whole environment and printed
    its RAFTCRON_TOKEN into the replicated ledger."""
    spec = JobSpec(name="j", schedule="* * * * * *", command=("env",), env=(("MINE", "1"),))
    got = run(tmp_path, spec)
    assert got.status == "succeeded", got.reason
    env = env_of(got.output)
    assert TOKEN not in got.output and "marker-value-42" not in got.output
    assert "RAFTCRON_TOKEN" not in env and "RAFTCRON_TOKEN_FILE" not in env
    me = pwd.getpwuid(os.geteuid())
    assert set(env) == {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "MINE",
        "RAFTCRON_JOB",
        "RAFTCRON_RUN_ID",
        "RAFTCRON_SCHEDULED_AT",
        "RAFTCRON_FENCE",
        "RAFTCRON_NODE",
        "RAFTCRON_ATTEMPT",
        "RAFTCRON_INSTANCE",
        "RAFTCRON_COUNT",
    }
    assert env["PATH"] == DEFAULT_PATH
    assert (env["USER"], env["LOGNAME"], env["HOME"]) == (me.pw_name, me.pw_name, me.pw_dir)
    assert env["LANG"] == "C.UTF-8" and env["MINE"] == "1" and env["RAFTCRON_JOB"] == "j"


def test_env_passthrough_gives_the_job_exactly_the_named_variables(
    tmp_path: Path, agent_env: None
) -> None:
    spec = JobSpec(
        name="j",
        schedule="* * * * * *",
        command=("env",),
        env_passthrough=("MARKER", "NOT_SET_IN_THE_AGENT"),
    )
    got = run(tmp_path, spec)
    env = env_of(got.output)
    assert env["MARKER"] == "marker-value-42"
    assert "NOT_SET_IN_THE_AGENT" not in env and TOKEN not in got.output


def test_a_variable_holding_a_secret_is_never_passed_the_run_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job created elsewhere (its PUT checked another node's environment) names a
    variable that holds the cluster secret on this node: it does not start."""
    monkeypatch.setenv("CLUSTER_SECRET", SECRET)
    spec = JobSpec(
        name="j", schedule="* * * * * *", command=("env",), env_passthrough=("CLUSTER_SECRET",)
    )
    got = run(tmp_path, spec, secret_values={SECRET: "the cluster secret"})
    assert (got.status, got.exit_code, got.output) == ("failed", None, "")
    assert got.reason == (
        "env_passthrough: CLUSTER_SECRET holds the cluster secret on node a; the job was not "
        "started (remove it from env_passthrough)"
    )


def test_a_job_whose_user_does_not_exist_here_fails_saying_so(tmp_path: Path) -> None:
    spec = JobSpec(name="j", schedule="* * * * * *", command=("id",), user="backup-not-here")
    got = run(tmp_path, spec)
    assert (got.status, got.output) == ("failed", "")
    assert got.reason == (
        'no user "backup-not-here" on node a (create it there, or keep the job off such nodes '
        "with tags)"
    )


def test_the_default_working_directory_is_the_home_not_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without cwd a job ran in the agent's working directory (often its data dir, 0700
    from now on). It runs in its account's home, or in / when that home is inside the data
    dir, and HOME says the same."""
    spec = JobSpec(name="j", schedule="* * * * * *", command=("sh", "-c", 'pwd; echo "H=$HOME"'))
    monkeypatch.chdir(tmp_path)
    home = pwd.getpwuid(os.geteuid()).pw_dir
    got = run(tmp_path, spec)
    assert got.output.splitlines() == [os.path.realpath(home), f"H={home}"]
    from raftcron import accounts

    real = accounts.resolve

    def home_in_data_dir(user: str | None, group: str | None) -> accounts.Account:
        from dataclasses import replace

        return replace(real(user, group), home=str(tmp_path / "output"))

    monkeypatch.setattr("raftcron.executor.runner.resolve_account", home_in_data_dir)
    got = run(tmp_path, spec)
    assert got.output.splitlines() == ["/", "H=/"]


# --------------------------------------------------------------------------- the watchdog


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (an agent that can switch)")
def test_a_job_with_user_nobody_runs_as_nobody_when_the_agent_is_root(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    script = 'id -u; id -g; id -G; echo "$USER $LOGNAME $HOME"; pwd; echo hi > /dev/stderr'
    spec = JobSpec(name="j", schedule="* * * * * *", command=("sh", "-c", script), user="nobody")
    got = run(tmp_path, spec)
    assert got.status == "succeeded", (got.reason, got.output)
    groups = " ".join(str(g) for g in sorted(os.getgrouplist("nobody", nobody.pw_gid)))
    assert got.output.splitlines() == [
        str(nobody.pw_uid),
        str(nobody.pw_gid),
        groups,  # root's own groups are gone
        f"nobody nobody {nobody.pw_dir}",
        "/",  # its home (/nonexistent) does not exist
        "hi",
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (an agent that can switch)")
def test_group_alone_changes_only_the_group(tmp_path: Path) -> None:
    import grp

    gid = grp.getgrnam("nogroup").gr_gid
    spec = JobSpec(name="j", schedule="* * * * * *", command=("sh", "-c", "id -u; id -g"))
    got = run(tmp_path, JobSpec(**{**_fields(spec), "group": "nogroup"}))
    assert got.output.splitlines() == ["0", str(gid)]


def _fields(spec: JobSpec) -> dict[str, Any]:
    return {f: getattr(spec, f) for f in spec.__slots__}  # type: ignore[attr-defined]


def test_limits_are_set_in_the_job_process(tmp_path: Path) -> None:
    script = (
        "ulimit -n; ulimit -v; ulimit -t; "
        "grep -E 'open files|address space|cpu time' /proc/self/limits"
    )
    spec = JobSpec(
        name="j",
        schedule="* * * * * *",
        command=("sh", "-c", script),
        limits=(("cpu", 7), ("memory", 256 << 20), ("nofile", 64)),
    )
    got = run(tmp_path, spec)
    assert got.status == "succeeded", (got.reason, got.output)
    lines = got.output.splitlines()
    assert lines[:3] == ["64", str(256 << 10), "7"]  # ulimit -v counts KiB
    limits = {" ".join(line.split()[:3]): line.split()[3:5] for line in lines[3:]}
    assert limits["Max cpu time"] == ["7", "12"]  # SIGXCPU at 7 s, SIGKILL 5 s later
    assert limits["Max open files"] == ["64", "64"]
    assert limits["Max address space"] == [str(256 << 20)] * 2


def test_a_cpu_limit_stops_a_busy_job(tmp_path: Path) -> None:
    spec = JobSpec(
        name="j",
        schedule="* * * * * *",
        command=("sh", "-c", "while :; do :; done"),
        limits=(("cpu", 1),),
        lease_ms=60_000,
    )
    got = run(tmp_path, spec)
    assert (got.status, got.exit_code) == ("failed", -24)  # SIGXCPU


def test_jobs_get_the_umask_and_open_files_limit_the_agent_started_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raftcron import hardening

    monkeypatch.setattr(hardening.job_defaults, "umask", 0o027)
    monkeypatch.setattr(hardening.job_defaults, "nofile_soft", 200)
    spec = JobSpec(name="j", schedule="* * * * * *", command=("sh", "-c", "umask; ulimit -n"))
    got = run(tmp_path, spec)
    assert got.output.splitlines() == ["0027", "200"]
    spec = JobSpec(**{**_fields(spec), "limits": (("nofile", 100),)})
    assert run(tmp_path, spec).output.splitlines() == ["0027", "100"]


def test_output_is_bounded_while_the_job_runs(tmp_path: Path) -> None:
    """A job printing 40 MB (then waiting) never has more than OUTPUT_FILE_MAX on disk, and
    the ledger keeps the last 64 KiB. Before: the whole 40 MB until the job ended."""
    from raftcron.core.model import OUTPUT_TAIL_BYTES
    from raftcron.executor.runner import OUTPUT_FILE_MAX

    out = tmp_path / "runs" / "1-j@1800000001000" / "output.log"  # the run's directory
    script = "head -c 30000000 /dev/zero | tr '\\0' x; echo; echo the-end; touch {done}; sleep 2"
    done = tmp_path / "printed"
    spec = JobSpec(
        name="j",
        schedule="* * * * * *",
        command=("sh", "-c", script.format(done=done)),
        lease_ms=60_000,
    )
    sizes: list[int] = []
    modes: set[int] = set()
    stop = False

    def watch() -> None:
        while not stop:
            with contextlib.suppress(FileNotFoundError):
                st = out.stat()
                sizes.append(st.st_size)
                modes.add(stat.S_IMODE(st.st_mode))

    import threading

    t = threading.Thread(target=watch)
    t.start()
    try:
        got = run(tmp_path, spec)
    finally:
        stop = True
        t.join()
    assert done.exists() and got.status == "succeeded", got.reason
    assert sizes and max(sizes) <= OUTPUT_FILE_MAX, max(sizes)
    assert modes == {0o600}
    assert got.output.endswith("x\nthe-end\n")
    assert len(got.output) == OUTPUT_TAIL_BYTES
