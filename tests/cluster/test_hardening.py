"""Issue 13 items 3-5 and 7 against a real agent: jobs see no agent variable they did not ask
for, run as their account with their limits, the data dir is private after the agent ran,
and the CLI's --token-file works on a client verb and on `raftcron lock`.

One single-node cluster with an admin token serves every test of the module."""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster, wait_for

pytestmark = pytest.mark.cluster

ADMIN = "admin-Xq3vJ8pL0wZr7TkN2bYc"
MARKER = "marker-value-7f3a"
YEARLY = "0 0 1 1 *"


def job(name: str, command: list[str], **keys: Any) -> dict[str, Any]:
    return {"name": name, "schedule": YEARLY, "command": command, **keys}


LIMITS = "ulimit -n; ulimit -v; ulimit -t; grep 'Max cpu time' /proc/self/limits"
JOBS = [
    job("env-plain", ["env"]),
    job("env-marker", ["env"], env_passthrough=["MARKER"]),
    job("limits", ["sh", "-c", LIMITS], limits={"nofile": 77, "memory": "300M", "cpu": 9}),
    job("sleeper", ["sh", "-c", "echo started; sleep 30"]),
]


def new_cluster(root: Path) -> Cluster:
    token = root / "admin.token"
    token.write_text(ADMIN + "\n")
    token.chmod(0o600)
    # An older release's data dir: 0755, a journal-like file 0644 (tightened at start).
    (root / "data" / "a").mkdir(parents=True)
    (root / "data").chmod(0o755)
    (root / "data" / "a").chmod(0o755)
    (root / "data" / "a" / "old.log").write_text("x")
    (root / "data" / "a" / "old.log").chmod(0o644)
    cluster = Cluster(
        root,
        JOBS,
        size=1,
        # The agent runs with its admin token and a marker variable in its environment;
        # snapshots every few entries, so one is written while the tests run.
        env={
            "RAFTCRON_TOKEN": ADMIN,
            "COPY_OF_TOKEN": ADMIN,
            "MARKER": MARKER,
            "RAFTCRON_COMPACT_ENTRIES": "20",
        },
        extra_toml='[[api.tokens]]\nrole = "admin"\ntoken_file = "admin.token"\n',
        token=ADMIN,
    )
    cluster.use_hooks()  # tests/cluster/hooked_agent.py: RAFTCRON_COMPACT_ENTRIES
    return cluster


def trigger_and_wait(cl: Cluster, name: str, timeout: float = 30) -> dict[str, Any]:
    status, body = cl.request("a", "POST", f"/v1/jobs/{name}/trigger", {})
    assert status in (200, 201, 202), body
    rid = body["run"]

    def final() -> dict[str, Any] | None:
        run: dict[str, Any] = cl.get("a", f"/v1/runs/{rid}")
        return run if run["status"] not in ("claimed", "running") else None

    return wait_for(f"run {rid} to end", final, timeout)


def env_of(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def test_a_job_that_runs_env_shows_no_agent_variable_it_did_not_ask_for(cl: Cluster) -> None:
    plain = trigger_and_wait(cl, "env-plain")
    assert plain["status"] == "succeeded", plain
    env = env_of(plain["output"])
    assert ADMIN not in plain["output"] and MARKER not in plain["output"]
    assert "RAFTCRON_TOKEN" not in env and "MARKER" not in env
    assert env["RAFTCRON_JOB"] == "env-plain" and env["RAFTCRON_NODE"] == "a"
    asked = trigger_and_wait(cl, "env-marker")
    env = env_of(asked["output"])
    assert env["MARKER"] == MARKER and ADMIN not in asked["output"]


def test_limits_are_what_the_job_reads_of_itself(cl: Cluster) -> None:
    run = trigger_and_wait(cl, "limits")
    lines = run["output"].splitlines()
    assert lines[:3] == ["77", str(300 << 10), "9"], run
    assert lines[3].split()[3:5] == ["9", "14"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (an agent that can switch)")
def test_a_job_with_user_nobody_runs_as_nobody_when_the_agent_is_root(cl: Cluster) -> None:
    """And a PUT naming an account this node does not know, or a variable of the agent's
    environment holding a token, is refused (400) naming the key and the node."""
    body = {"schedule": YEARLY, "command": ["sh", "-c", "id -un; id -u; echo $HOME"]}
    status, res = cl.request("a", "PUT", "/v1/jobs/as-nobody", {**body, "user": "nobody"})
    assert status in (200, 201), res
    run = trigger_and_wait(cl, "as-nobody")
    nobody = pwd.getpwnam("nobody")
    assert run["output"].splitlines() == ["nobody", str(nobody.pw_uid), nobody.pw_dir], run
    status, res = cl.request("a", "PUT", "/v1/jobs/as-ghost", {**body, "user": "ghost-user-x"})
    assert status == 400, res
    assert res["error"]["message"] == (
        'request body: user: no user "ghost-user-x" on node a (create it there, or keep the '
        "job off such nodes with tags)"
    )
    status, res = cl.request(
        "a", "PUT", "/v1/jobs/leaky", {**body, "env_passthrough": ["RAFTCRON_TOKEN"]}
    )
    assert status == 400 and "the agent's API token is never given" in res["error"]["message"]
    status, res = cl.request(
        "a", "PUT", "/v1/jobs/leaky", {**body, "env_passthrough": ["COPY_OF_TOKEN"]}
    )
    assert status == 400, res
    assert res["error"]["message"] == (
        'request body: env_passthrough: "COPY_OF_TOKEN" holds an API token on node a (a job '
        "must never see it: remove it from env_passthrough)"
    )


def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in root.rglob("*")}


def test_the_data_dir_and_every_file_in_it_are_private(cl: Cluster) -> None:
    data = cl.root / "data" / "a"
    status, body = cl.request("a", "POST", "/v1/jobs/sleeper/trigger", {})
    assert status in (200, 201, 202), body
    rid = body["run"]
    out = wait_for(  # in the run's directory, runs/<fence>-<run id>
        "the running job's output file",
        lambda: next(
            (p for p in (data / "runs").glob(f"*-{rid}/output.log") if p.read_text()), None
        ),
        30,
    )
    run_dir = out.parent
    for i in range(30):  # enough entries for a snapshot (compaction every 20)
        cl.request("a", "PUT", f"/v1/jobs/filler-{i}", {"schedule": YEARLY, "command": ["true"]})
    wait_for("a snapshot", lambda: (data / "raft" / "snapshot.bin").exists(), 30)
    modes = _modes(data)
    for name in ("raft/raft.journal", "raft/raft.journal.meta", "raft/snapshot.bin"):
        assert name in modes, sorted(modes)
    for name in ("output.log", "wd.sock"):  # the job's output, its watchdog's socket
        assert str(run_dir.relative_to(data) / name) in modes, sorted(modes)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name, mode in modes.items():
        is_dir = (data / name).is_dir()
        assert mode == (0o700 if is_dir else 0o600), (name, oct(mode))
    assert ADMIN.encode() not in (data / "raft" / "snapshot.bin").read_bytes()
    log = cl.members["a"].log.read_text()
    tightened = [line for line in log.splitlines() if "tightened" in line]
    assert len(tightened) == 1 and "tightened 2 entries under" in tightened[0], tightened
    assert "open-files limit" in log
    cl.request("a", "POST", f"/v1/runs/{rid}/kill", {"hard": True})


def raftcron(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAFTCRON_")}
    return subprocess.run(
        [sys.executable, "-m", "raftcron", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )


def test_token_file_works_on_a_client_verb_and_on_lock(cl: Cluster) -> None:
    api = cl.members["a"].api
    token = str(cl.root / "admin.token")
    out = raftcron("status", "--api", api, "--json", env={})
    assert out.returncode == 1 and "401" in out.stderr, out  # no token: refused
    out = raftcron("status", "--api", api, "--json", "--token-file", token, env={})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["node"] == "a"
    out = raftcron("jobs", "list", "--api", api, "--json", env={"RAFTCRON_TOKEN_FILE": token})
    assert out.returncode == 0 and "env-plain" in out.stdout, out.stderr
    # lock: the option after NAME, and CMD still gets the lock command's whole environment
    cmd = ["sh", "-c", 'echo "fence=$RAFTCRON_FENCE lock=$RAFTCRON_LOCK mine=$MINE"']
    out = raftcron(
        "lock", "nightly", "--api", api, "--token-file", token, "--", *cmd, env={"MINE": "kept"}
    )
    assert out.returncode == 0, out.stderr
    assert "lock=nightly mine=kept" in out.stdout and "fence=" in out.stdout
    out = raftcron("lock", "nightly", "--api", api, "--", *cmd, env={"RAFTCRON_TOKEN_FILE": token})
    assert out.returncode == 0, out.stderr
    out = raftcron("lock", "nightly", "--api", api, "--", *cmd, env={})
    assert out.returncode == 1 and "unauthorized" in out.stderr.lower(), out
