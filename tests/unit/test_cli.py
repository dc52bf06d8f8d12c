"""The command line: bad config refuses to start (exit 2, one message, no traceback)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
[cluster]
secret = "0123456789abcdef0123"
[cluster.nodes.a]
raft = "127.0.0.1:17101"
api = "127.0.0.1:18101"
"""


def raftcron(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftcron", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (
            GOOD + '[[jobs]]\nname = "x"\nschedule = "61 * * * *"\ncommand = ["true"]\n',
            "minute must be 0-59",
        ),
        (
            GOOD
            + '[[jobs]]\nname = "x"\nschedule = "* * * * *"\n'
            + 'timezone = "Mars/Base"\ncommand = ["true"]\n',
            "unknown timezone 'Mars/Base'",
        ),
        (
            GOOD + '[[jobs]]\nname = "x"\nschedule = "* * * * *"\ncommand = ["true"]\n' * 2,
            'duplicate job name "x"',
        ),
        (GOOD.replace('secret = "0123456789abcdef0123"', 'secret = "short"'), "cluster.secret"),
        (GOOD.replace('secret = "0123456789abcdef0123"\n', ""), "cluster.secret: missing"),
        (
            GOOD + '[cluster.nodes.b]\nraft = "127.0.0.1:17101"\napi = "127.0.0.1:18102"\n',
            "already used",
        ),
    ],
)
def test_agent_refuses_bad_config_with_exit_2(tmp_path: Path, body: str, needle: str) -> None:
    cfg = tmp_path / "cluster.toml"
    cfg.write_text(body)
    for args in (("agent", "--config", str(cfg), "--node", "a"), ("check-config", str(cfg))):
        out = raftcron(*args)
        assert out.returncode == 2, out
        assert "Traceback" not in out.stderr
        assert (
            out.stderr.startswith("error: ") and str(cfg) in out.stderr and needle in out.stderr
        ), out.stderr


def test_node_not_in_cluster(tmp_path: Path) -> None:
    cfg = tmp_path / "cluster.toml"
    cfg.write_text(GOOD)
    out = raftcron("agent", "--config", str(cfg), "--node", "zz")
    assert out.returncode == 2 and "--node zz: not in cluster.nodes (known: a)" in out.stderr, (
        out.stderr
    )


def test_check_config_ok_and_example_file(tmp_path: Path) -> None:
    shutil.copy(ROOT / "cluster.example.toml", tmp_path / "cluster.toml")
    (tmp_path / "raftcron-data").mkdir()
    (tmp_path / "raftcron-data" / "secret").write_text("test-secret-0123456789abcdef")
    (tmp_path / "raftcron-data" / "secret").chmod(0o600)
    out = raftcron("check-config", str(tmp_path / "cluster.toml"))
    assert out.returncode == 0, out.stderr
    assert "3 nodes: a, b, c" in out.stdout


def test_client_verb_without_a_server_fails_cleanly() -> None:
    out = raftcron("status", "--api", "http://127.0.0.1:9")
    assert out.returncode == 1
    assert (
        out.stderr.startswith("error: cannot reach the raftcron API")
        and "Traceback" not in out.stderr
    )


@pytest.mark.cluster
def test_dev_runs_three_nodes_prints_urls_and_stops_cleanly(tmp_path: Path) -> None:
    shutil.copy(ROOT / "cluster.example.toml", tmp_path / "cluster.toml")
    out = raftcron(
        "dev", "--config", str(tmp_path / "cluster.toml"), "--duration", "25", timeout=180
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for port in (8101, 8102, 8103):
        assert f"http://127.0.0.1:{port}" in out.stdout
    assert "generated a cluster secret" in out.stdout
    assert "leader:" in out.stdout
    assert "heartbeat" in out.stdout and "succeeded" in out.stdout, out.stdout
    assert "stopped all nodes" in out.stdout
    assert (tmp_path / "raftcron-data" / "secret").stat().st_mode & 0o077 == 0


def test_runs_lists_and_runs_kill_parses() -> None:
    from raftcron import cli_runs
    from raftcron.cli import build_parser

    listing = build_parser().parse_args(["runs", "--job", "backup"])
    assert (listing.fn, listing.runs_verb, listing.job) == (cli_runs.cmd_runs, None, "backup")
    kill = build_parser().parse_args(["runs", "kill", "backup@1", "--hard", "--reason", "x"])
    assert (kill.fn, kill.run_id, kill.hard, kill.reason) == (
        cli_runs.cmd_runs_kill,
        "backup@1",
        True,
        "x",
    )
    # the client options given before the sub-verb are kept (not reset by its defaults)
    show = build_parser().parse_args(["runs", "--api", "http://h:1", "show", "x@1", "-o", "json"])
    assert (show.fn, show.api, show.output, show.run_id) == (
        cli_runs.cmd_runs_show,
        "http://h:1",
        "json",
        "x@1",
    )
    logs = build_parser().parse_args(["runs", "logs", "x@1", "--api", "http://h:2"])
    assert (logs.fn, logs.api, logs.output) == (cli_runs.cmd_runs_logs, "http://h:2", "table")


def test_version_is_the_one_in_pyproject() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    res = raftcron("--version")
    assert res.returncode == 0 and res.stdout == f"raftcron {version}\n", res.stderr
    # It is read from the installed metadata, the one place a build takes from pyproject.
    import importlib.metadata

    assert importlib.metadata.version("raftcron") == version


def test_dev_without_config_writes_the_packaged_example(tmp_path: Path) -> None:
    from raftcron.cli import _write_example

    target = tmp_path / "cluster.example.toml"
    assert _write_example(target) is True
    assert target.read_bytes() == (ROOT / "cluster.example.toml").read_bytes()
    target.write_text("# mine\n")
    assert _write_example(target) is False  # never overwritten
    assert target.read_text() == "# mine\n"


def test_dev_with_a_missing_config_exits_2(tmp_path: Path) -> None:
    res = raftcron("dev", "--config", "nope.toml", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr == "error: nope.toml: not found (check the path, or omit --config)\n"
    assert not (tmp_path / "cluster.example.toml").exists()


def test_a_second_agent_on_a_data_dir_exits_2_before_touching_it(tmp_path: Path) -> None:
    """Issue 12, finding 4: the second agent started Raft on the shared data dir before
    the API port clash ended it with a traceback. Here the first agent is this test
    process holding the lock: the second must name it, exit 2 and write nothing."""
    from raftcron.datadir import DataDirLock

    cfg = tmp_path / "cluster.toml"
    cfg.write_text(GOOD + '  data_dir = "d"\n'.lstrip())
    data = tmp_path / "d"
    lock = DataDirLock.acquire(data)
    try:
        before = sorted(p.name for p in data.iterdir())
        out = raftcron("agent", "--config", str(cfg), "--node", "a")
    finally:
        lock.release()
    assert out.returncode == 2, out
    assert out.stderr.startswith(f"error: {data} is used by another agent (pid "), out.stderr
    assert "Traceback" not in out.stderr
    assert sorted(p.name for p in data.iterdir()) == before == ["agent.lock"]


def test_drain_verbs_parse() -> None:
    from raftcron.cli import build_parser

    d = build_parser().parse_args(["drain", "b", "--wait", "--timeout", "90s"])
    assert (d.node, d.wait, d.wait_timeout) == ("b", True, "90s")
    assert build_parser().parse_args(["drain", "b"]).wait_timeout == "10m"
    u = build_parser().parse_args(["undrain", "b", "--timeout", "3"])
    assert (u.node, u.timeout) == ("b", 3.0)  # a plain request timeout here
    t = build_parser().parse_args(["leader", "transfer", "--to", "c"])
    assert t.to == "c"
    assert build_parser().parse_args(["leader", "transfer"]).to is None


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["drain"], 2, "the following arguments are required: node"),
        (["drain", "b", "--wait", "--timeout", "soon", "--api", "http://127.0.0.1:9"], 2,
         "error: --timeout:"),
        (["drain", "b", "--api", "http://127.0.0.1:9"], 1, "error: cannot reach the raftcron API"),
        (["undrain", "b", "--api", "http://127.0.0.1:9"], 1, "error: cannot reach"),
        (["leader", "transfer", "--api", "http://127.0.0.1:9"], 1, "error: cannot reach"),
    ],
)  # fmt: skip
def test_drain_verbs_fail_cleanly(args: list[str], code: int, needle: str) -> None:
    out = raftcron(*args)
    assert out.returncode == code, out
    assert needle in out.stderr and "Traceback" not in out.stderr, out.stderr
