"""The CLI as an etcdctl user expects it (issue 16 item 3), on three real agents.

A table of every verb that prints data, each run with ``-o json`` through an ``--api``
list whose first member is dead (the CLI fails over), and the verbs that act through one
node (drain, undrain, leader transfer), which never fail over. Then: a closed stdout pipe
(exit 141, no traceback), ``jobs export`` -> ``jobs apply`` -> ``jobs export`` giving the
same bytes (TOML, and JSON through stdin), a read token refused by ``jobs export``, and a
dead member shown ``unreachable`` by ``status`` and ``version``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.harness import Cluster, api_tokens, free_ports, wait_for

pytestmark = pytest.mark.cluster

ADMIN = "admin-token-cli-0123456789abcdef"
READ = "read-token-cli-0123456789abcdef"
TOKENS = api_tokens(ADMIN, READ)
TICK = {
    "name": "tick",
    "schedule": "* * * * * *",
    "command": ["/bin/true"],
}
HELLO = {  # fired once by the tests (trigger): its output tail stays in the ledger
    "name": "hello",
    "schedule": "0 0 1 1 *",
    "command": ["sh", "-c", "echo out-$RAFTCRON_RUN_ID; echo line-two"],
}
DEAD = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there

JOBS_TOML = """
[[jobs]]
name = "exp-secret"
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
command = ["sh", "-c", "echo \\"quoted\\" $PGPASSWORD"]
env = { PGPASSWORD = "s3cr\\u00e9t \\"x\\"" }
retries = 2
retry_backoff = "30s"
tags = { zone = "eu" }

[[jobs]]
name = "exp-plain"
schedule = "*/5 * * * *"
command = ["/bin/true"]
overlap = "skip"
"""


def new_cluster(root: Path) -> Cluster:
    return Cluster(root, [TICK, HELLO], extra_toml=TOKENS, token=ADMIN)


def cli(
    cl: Cluster,
    *args: str,
    first: str | None = DEAD,
    token: str = ADMIN,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """``raftcron ARGS`` with ``--api FIRST,<every member>`` (``first`` None: members only)."""
    urls = [m.api for m in cl.members.values()]
    api = ",".join(([first] if first else []) + urls)
    env = {**os.environ, "RAFTCRON_TOKEN": token, "RAFTCRON_API": api}
    return subprocess.run(
        [sys.executable, "-m", "raftcron", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        input=stdin,
    )


def ok_json(out: subprocess.CompletedProcess[str]) -> Any:
    assert out.returncode == 0, out
    assert "Traceback" not in out.stderr, out.stderr
    return json.loads(out.stdout)


def a_finished_run(cl: Cluster) -> dict[str, Any]:
    """A succeeded run of ``hello`` (triggered once)."""
    leader = cl.wait_leader(30)
    if not cl.runs(leader, "hello"):
        cl.request(leader, "POST", "/v1/jobs/hello/trigger", {})

    def find() -> dict[str, Any] | None:
        done = [r for r in cl.runs(cl.wait_leader(30), "hello") if r["status"] == "succeeded"]
        return done[0] if done else None

    return wait_for("a succeeded run of hello", find, 30)


# Every verb that prints data, with -o json, through a dead first endpoint: (argv, check).
def _table(run_id: str) -> list[tuple[list[str], Any]]:
    return [
        (["status"], lambda b: b["leader"] is not None and len(b["members"]) == 3),
        (["version"], lambda b: {m["reachable"] for m in b["members"]} == {True}),
        (["jobs", "list"], lambda b: {j["name"] for j in b} == {"tick", "hello"}),
        (["jobs", "show", "tick"], lambda b: b["name"] == "tick" and len(b["next_fires"]) == 5),
        (["jobs", "next", "tick", "--count", "2"], lambda b: len(b) == 2),
        (["runs", "--job", "hello", "--limit", "1"], lambda b: b["runs"][0]["id"] == run_id),
        (["runs", "show", run_id], lambda b: b["id"] == run_id and "out-" in b["output"]),
        (["runs", "logs", run_id], lambda b: b["id"] == run_id and "line-two" in b["output"]),
        (["jobs", "export", "-o", "json"], lambda b: b == {"jobs": []}),  # tick is the file's
        (["trigger", "tick"], lambda b: b["job"] == "tick"),
        (["jobs", "pause", "tick"], lambda b: b["paused"] is True),
        (["jobs", "resume", "tick"], lambda b: b["paused"] is False),
    ]


def test_every_data_verb_prints_json_through_a_dead_first_endpoint(cl: Cluster) -> None:
    run_id = a_finished_run(cl)["id"]
    for argv, check in _table(run_id):
        body = ok_json(cli(cl, *argv, "-o", "json"))
        assert check(body), (argv, body)
    # --json is -o json (the jobs' last runs move on every second: compare the shape)
    one = ok_json(cli(cl, "jobs", "list", "--json"))
    two = ok_json(cli(cl, "jobs", "list", "-o", "json"))
    assert [sorted(j) for j in one] == [sorted(j) for j in two] and len(one) == 2


def test_tables_and_the_run_verbs(cl: Cluster) -> None:
    run = a_finished_run(cl)
    out = cli(cl, "runs", "--job", "tick", "--limit", "5")
    assert out.returncode == 0, out
    head = out.stdout.splitlines()[0].split()
    assert head[:8] == [
        "run",
        "status",
        "node",
        "attempt",
        "fence",
        "scheduled",
        "(UTC)",
        "duration",
    ]
    show = cli(cl, "runs", "show", run["id"])
    assert show.returncode == 0, show
    assert show.stdout.splitlines()[0].split() == ["run", run["id"]]
    assert "output (tail):" in show.stdout and f"out-{run['id']}" in show.stdout
    logs = cli(cl, "runs", "logs", run["id"])
    assert logs.returncode == 0, logs
    assert logs.stdout == f"out-{run['id']}\nline-two\n"
    missing = cli(cl, "runs", "show", "tick@1")
    assert missing.returncode == 1 and missing.stderr.startswith("error: "), missing


def test_one_node_verbs_never_fail_over(cl: Cluster) -> None:
    for argv in (["drain", "c"], ["undrain", "c"], ["leader", "transfer"]):
        out = cli(cl, *argv)  # the dead endpoint first: they talk to it only
        assert out.returncode == 1, out
        assert out.stderr.startswith(f"error: cannot reach the raftcron API at {DEAD}"), out
        assert "Traceback" not in out.stderr
    member_c = cl.members["c"].api
    body = ok_json(cli(cl, "drain", "c", "-o", "json", first=member_c))
    assert body["node"] == "c" and body["drained"] is True
    body = ok_json(cli(cl, "undrain", "c", "-o", "json", first=member_c))
    assert body["node"] == "c" and body["drained"] is False


def test_a_closed_pipe_ends_quietly_with_141(cl: Cluster) -> None:
    for argv in (["runs", "--limit", "1000", "--wide"], ["status"], ["jobs", "list", "-o", "json"]):
        r, w = os.pipe()
        os.close(r)  # the reader is gone before the CLI writes
        env = {**os.environ, "RAFTCRON_TOKEN": ADMIN, "RAFTCRON_API": cl.members["a"].api}
        proc = subprocess.run(
            [sys.executable, "-m", "raftcron", *argv],
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            env=env,
        )
        os.close(w)
        assert proc.returncode == 141, (argv, proc.stderr)
        assert proc.stderr == "", (argv, proc.stderr)


def test_export_apply_export_is_identical(cl: Cluster, tmp_path: Path) -> None:
    src = tmp_path / "jobs.toml"
    src.write_text(JOBS_TOML)
    out = cli(cl, "jobs", "apply", str(src))
    assert out.returncode == 0, out
    first = tmp_path / "export.toml"
    out = cli(cl, "jobs", "export", str(first))
    assert out.returncode == 0, out
    assert first.stat().st_mode & 0o777 == 0o600
    text = first.read_text()
    exported = tomllib.loads(text)["jobs"]
    assert [j["name"] for j in exported] == ["exp-plain", "exp-secret"]
    assert exported[1]["env"] == {"PGPASSWORD": 's3cr\u00e9t "x"'}  # the real value
    # the file's job (tick) is not the API's: left out, and said so
    assert "tick" not in text and "left out 2" in out.stderr
    # apply the export (every job unchanged), export again: the same bytes
    again = cli(cl, "jobs", "apply", str(first), "-o", "json")
    assert {r["result"] for r in ok_json(again)} == {"unchanged"}
    second = cli(cl, "jobs", "export")
    assert second.returncode == 0 and second.stdout == text, second
    # JSON through stdin, after deleting the jobs: created again, exported the same
    as_json = cli(cl, "jobs", "export", "-o", "json").stdout
    for name in ("exp-plain", "exp-secret"):
        assert cli(cl, "jobs", "delete", name).returncode == 0
    applied = ok_json(cli(cl, "jobs", "apply", "-", "-o", "json", stdin=as_json))
    assert [r["result"] for r in applied] == ["created", "created"]
    assert cli(cl, "jobs", "export").stdout == text
    assert cli(cl, "jobs", "export", "-o", "json").stdout == as_json
    # `jobs show -o json` output is accepted by apply too
    shown = cli(cl, "jobs", "show", "exp-plain", "-o", "json").stdout
    applied = ok_json(cli(cl, "jobs", "apply", "-", "-o", "json", stdin=shown))
    assert applied[0]["result"] == "unchanged"


def test_export_refuses_a_read_token(cl: Cluster) -> None:
    out = cli(cl, "jobs", "export", token=READ)
    assert out.returncode == 1, out
    assert out.stderr.startswith("error: jobs export needs an admin token: "), out.stderr
    assert out.stdout == ""


def test_a_dead_member_is_unreachable_in_status_and_version(cl: Cluster) -> None:
    cl.kill("c")
    wait_for(
        "a leader among a and b",
        lambda: cl.leader(["a", "b"]),
        30,
    )
    first = cl.members["a"].api

    def status_says_unreachable() -> str | None:
        out = cli(cl, "status", first=first)
        rows = [line.split() for line in out.stdout.splitlines()[1:]]
        role = {r[0]: r[1] for r in rows if r}
        return out.stdout if role.get("c") == "unreachable" else None

    wait_for("status to show c unreachable", status_says_unreachable, 30)
    body = ok_json(cli(cl, "version", "-o", "json", first=first))
    by_name = {m["name"]: m for m in body["members"]}
    assert by_name["c"]["reachable"] is False and by_name["a"]["version"]
    rows = {line.split()[0]: line for line in cli(cl, "version", first=first).stdout.splitlines()}
    assert "unreachable" in rows["c"] and "unreachable" not in rows["a"], rows
