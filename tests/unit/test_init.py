"""``raftcron init``: a commented cluster file that check-config accepts, a 0600 secret, tokens
for an API that leaves loopback, no file ever overwritten without --force, no weak modes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from raftcron import initcmd
from tests.tls import self_signed

THREE_LOOPBACK = "a=127.0.0.1:17101:18101,b=127.0.0.1:17102:18102,c=127.0.0.1:17103:18103"
THREE_SERVERS = "a=10.0.0.1:7100:8100,b=10.0.0.2,c=db3.example.net:7200:8200"


def raftcron(
    *args: str, cwd: Path | None = None, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftcron", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        preexec_fn=None if umask is None else (lambda: os.umask(umask) and None),
        check=False,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    d = tmp_path / "etc"
    d.mkdir(mode=0o755)
    return d


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_three_loopback_nodes_pass_check_config(etc: Path, tmp_path: Path, umask: int) -> None:
    out = etc / "cluster.toml"
    data = tmp_path / "data"
    res = raftcron(
        "init", "--node", "b", "--nodes", THREE_LOOPBACK, "--out", str(out),
        "--data-dir", str(data), umask=umask,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"wrote {etc / 'secret'} (0600)" in res.stdout
    # Exact modes whatever the umask: the secret for the agent's user only, the rest readable.
    assert mode(etc / "secret") == 0o600
    assert mode(out) == 0o644 and mode(etc / "agent.env") == 0o644
    secret = (etc / "secret").read_text().strip()
    assert len(secret) >= 40 and len(set(secret)) > 16
    assert not (etc / "admin.token").exists()  # loopback APIs need no token
    assert (etc / "agent.env").read_text().count("RAFTCRON_NODE_NAME=b\n") == 1
    check = raftcron("check-config", str(out), "--node", "b")
    assert check.returncode == 0, check.stderr
    assert "ok (3 nodes: a, b, c; 0 jobs)" in check.stdout
    raw = tomllib.loads(out.read_text())
    assert raw["cluster"]["nodes"]["c"] == {
        "raft": "127.0.0.1:17103",
        "api": "127.0.0.1:18103",
        "data_dir": f"{data}/c",
    }
    text = out.read_text()
    assert text.count("\n#") > 30  # commented
    assert "17101, 17102, 17103/tcp" in text and "18101, 18102, 18103/tcp" in text  # firewall


def test_servers_get_tokens_and_tls_paths(etc: Path) -> None:
    out = etc / "cluster.toml"
    res = raftcron("init", "--node", "a", "--nodes", THREE_SERVERS, "--out", str(out))
    assert res.returncode == 0, res.stderr
    for name in ("secret", "admin.token", "read.token"):
        assert mode(etc / name) == 0o600, name
    tokens = {(etc / n).read_text() for n in ("secret", "admin.token", "read.token")}
    assert len(tokens) == 3  # three different random values
    raw = tomllib.loads(out.read_text())
    assert raw["cluster"]["nodes"]["b"]["raft"] == "10.0.0.2:7100"  # default ports
    assert raw["cluster"]["nodes"]["b"]["api"] == "10.0.0.2:8100"
    assert raw["cluster"]["nodes"]["a"]["data_dir"] == "/var/lib/raftcron/a"
    assert [t["role"] for t in raw["api"]["tokens"]] == ["admin", "read"]
    assert "tls/cert.pem" in res.stdout and "copy secret, admin.token, read.token" in res.stdout
    # Until the operator provides the certificate, check-config says exactly that ...
    check = raftcron("check-config", str(out), "--node", "a")
    assert check.returncode == 2 and "tls" in check.stderr and "cert.pem" in check.stderr
    # ... and accepts the file once it is there.
    (etc / "tls").mkdir()
    self_signed(etc / "tls")
    check = raftcron("check-config", str(out), "--node", "a")
    assert check.returncode == 0, check.stderr


def test_single_node_default(etc: Path) -> None:
    res = raftcron("init", "--node", "solo", "--out", str(etc / "c.toml"))
    assert res.returncode == 0, res.stderr
    raw = tomllib.loads((etc / "c.toml").read_text())
    assert raw["cluster"]["nodes"] == {
        "solo": {
            "raft": "127.0.0.1:7100",
            "api": "127.0.0.1:8100",
            "data_dir": "/var/lib/raftcron/solo",
        }
    }
    assert raftcron("check-config", str(etc / "c.toml")).returncode == 0


def test_default_ports_are_the_single_node_ones() -> None:
    from raftcron.config import SINGLE_NODE_API, SINGLE_NODE_RAFT

    assert f"127.0.0.1:{initcmd.DEFAULT_RAFT_PORT}" == SINGLE_NODE_RAFT
    assert f"127.0.0.1:{initcmd.DEFAULT_API_PORT}" == SINGLE_NODE_API


def test_never_overwrites_without_force(etc: Path) -> None:
    out = etc / "cluster.toml"
    assert raftcron("init", "--node", "a", "--out", str(out)).returncode == 0
    before = {p.name: p.read_bytes() for p in etc.iterdir()}
    (etc / "secret").chmod(0o644)  # someone loosened it
    again = raftcron("init", "--node", "a", "--out", str(out))
    assert again.returncode == 2 and again.stderr.startswith("error: ")
    assert "already there; not overwritten" in again.stderr and "--force" in again.stderr
    assert str(etc / "secret") in again.stderr and str(out) in again.stderr
    assert {p.name: p.read_bytes() for p in etc.iterdir()} == before
    forced = raftcron("init", "--node", "a", "--out", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (etc / "secret").read_bytes() != before["secret"]  # a new secret ...
    assert mode(etc / "secret") == 0o600  # ... and the weak mode is gone
    assert not [p for p in etc.iterdir() if p.name.endswith(".tmp")]


def test_one_existing_file_stops_everything(etc: Path) -> None:
    (etc / "agent.env").write_text("RAFTCRON_NODE_NAME=x\n")
    res = raftcron("init", "--node", "a", "--out", str(etc / "cluster.toml"))
    assert res.returncode == 2 and "agent.env" in res.stderr
    assert sorted(p.name for p in etc.iterdir()) == ["agent.env"]  # nothing else written


@pytest.mark.parametrize("dir_mode", [0o777, 0o775, 0o757])
def test_refuses_a_directory_others_can_write(tmp_path: Path, dir_mode: int) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(dir_mode)
    res = raftcron("init", "--node", "a", "--out", str(d / "cluster.toml"))
    assert res.returncode == 2 and "writable by group or others" in res.stderr
    assert "chmod go-w" in res.stderr
    assert list(d.iterdir()) == []


def test_creates_a_missing_directory(tmp_path: Path) -> None:
    out = tmp_path / "new" / "raftcron" / "cluster.toml"
    res = raftcron("init", "--node", "a", "--out", str(out), umask=0o077)
    assert res.returncode == 0, res.stderr
    assert mode(out.parent) == 0o700  # umask 077 on top of 0755
    assert mode(out.parent / "secret") == 0o600


@pytest.mark.parametrize(
    ("nodes", "needle"),
    [
        ("a=10.0.0.1:7100", "NAME=HOST:RAFT_PORT:API_PORT"),
        ("a=10.0.0.1:7100:99999", "port '99999' is not 1-65535"),
        ("a=10.0.0.1:x:8100", "port 'x'"),
        ("a=[::1]:7100:8100", "IPv6"),
        ("a=0.0.0.0", "cannot connect to 0.0.0.0"),
        ("a", "NAME=HOST"),
        ("_a=10.0.0.1", "is not a node name"),
        ("a=10.0.0.1,a=10.0.0.2", "node 'a' is given twice"),
        ("a=10.0.0.1:7100:8100,b=10.0.0.1:8100:8200", "10.0.0.1:8100 is both a api and b raft"),
        ("b=10.0.0.2,c=10.0.0.3", "--node a: not in --nodes (known: b, c)"),
    ],
)
def test_bad_nodes_exit_2_naming_the_fix(etc: Path, nodes: str, needle: str) -> None:
    res = raftcron("init", "--node", "a", "--nodes", nodes, "--out", str(etc / "c.toml"))
    assert res.returncode == 2
    assert res.stderr.startswith("error: --n") and needle in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert list(etc.iterdir()) == []


def test_relative_data_dir_is_refused(etc: Path) -> None:
    res = raftcron("init", "--node", "a", "--out", str(etc / "c.toml"), "--data-dir", "data")
    assert res.returncode == 2 and "absolute path" in res.stderr


def test_owner_unknown_is_refused(etc: Path) -> None:
    res = raftcron(
        "init", "--node", "a", "--out", str(etc / "c.toml"), "--owner", "no-such-user-xyz"
    )
    assert res.returncode == 2 and "no such user" in res.stderr
    assert list(etc.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_owner_gets_the_secret_and_tokens(etc: Path) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    res = raftcron(
        "init", "--node", "a", "--nodes", THREE_SERVERS, "--out", str(etc / "c.toml"),
        "--owner", "nobody",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    for name in ("secret", "admin.token", "read.token"):
        st = (etc / name).stat()
        assert (st.st_uid, st.st_gid, mode(etc / name)) == (nobody.pw_uid, nobody.pw_gid, 0o600)
    assert (etc / "c.toml").stat().st_uid == 0  # the cluster file stays root's, readable


def test_weak_mode_after_writing_is_refused_and_rolled_back(
    etc: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that ignores modes (some network or FAT mounts) leaves the secret
    readable: init refuses and removes what it wrote."""
    import argparse

    real_write = initcmd._write

    def loose(path: Path, text: str, mode_: int, force: bool) -> None:
        real_write(path, text, mode_, force)
        os.chmod(path, 0o644)

    monkeypatch.setattr(initcmd, "_write", loose)
    args = argparse.Namespace(
        node="a", nodes=None, out=str(etc / "c.toml"), data_dir="/var/lib/raftcron",
        owner=None, force=False,
    )  # fmt: skip
    with pytest.raises(initcmd.InitError, match=r"keeps mode 0644, not 0600"):
        initcmd.run(args)
    assert list(etc.iterdir()) == []
