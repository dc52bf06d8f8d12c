"""The job keys of issue 13 item 4 (``user``, ``group``, ``limits``, ``env_passthrough``):
validated with the key and the fix, carried by the wire codec (old entries still decode),
shown by the API as keys that PUT back, and refused by `check-config` where they would run
a job as a missing account or hand it a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest

from raftcron.api.app import spec_table
from raftcron.config import (
    ConfigError,
    account_problems,
    environment_problems,
    job_spec_from_mapping,
    load_config,
    parse_size,
)
from raftcron.core import commands as c
from raftcron.core.model import JobSpec
from raftcron.core.state import State

SECRET = "Xq3vJ8pL0wZr7TkN2bYc5HdF"
TOKEN = "admin-Xq3vJ8pL0wZr7TkN2b"
NODE = '[cluster.nodes.a]\nraft = "127.0.0.1:17301"\napi = "127.0.0.1:18301"\n'
BASE = {"name": "j", "schedule": "0 3 * * *", "command": ["true"]}


def spec_of(**keys: Any) -> JobSpec:
    return job_spec_from_mapping({**BASE, **keys}, "jobs[0]")


def errors(**keys: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        spec_of(**keys)
    return info.value.errors


# --------------------------------------------------------------------------- parsing


def test_the_keys_parse_into_the_spec() -> None:
    spec = spec_of(
        user="nobody",
        group="nogroup",
        limits={"nofile": 64, "memory": "512M", "cpu": "2m"},
        env_passthrough=["HTTPS_PROXY", "LC_ALL"],
    )
    assert (spec.user, spec.group) == ("nobody", "nogroup")
    assert spec.limits == (("cpu", 120), ("memory", 512 << 20), ("nofile", 64))
    assert spec.env_passthrough == ("HTTPS_PROXY", "LC_ALL")
    plain = spec_of()
    assert (plain.user, plain.group, plain.limits, plain.env_passthrough) == (None, None, (), ())


@pytest.mark.parametrize(
    ("text", "size"),
    [(1048576, 1 << 20), ("1M", 1 << 20), ("2G", 2 << 30), ("2GiB", 2 << 30), ("3kb", 3 << 10)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text, "k") == size


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"user": "a b"}, 'jobs[0].user: "a b" is not a valid user name'),
        ({"user": ""}, 'jobs[0].user: "" is not a valid user name'),
        ({"group": 5}, "jobs[0].group: expected a string, got an integer"),
        ({"limits": 5}, "jobs[0].limits: expected a table, got an integer (e.g. limits = {"),
        ({"limits": {"files": 1}}, 'jobs[0].limits.files: unknown key (did you mean "nofile"?)'),
        ({"limits": {"nofile": 0}}, "jobs[0].limits.nofile: 0 is out of range"),
        ({"limits": {"nofile": "x"}}, "jobs[0].limits.nofile: expected an integer, got a string"),
        ({"limits": {"memory": 512}}, "jobs[0].limits.memory: 512 bytes is out of range"),
        ({"limits": {"memory": "lots"}}, 'jobs[0].limits.memory: "lots" is not a size'),
        ({"limits": {"cpu": 0}}, "jobs[0].limits.cpu: 0 is out of range"),
        ({"limits": {"cpu": "1500ms"}}, "jobs[0].limits.cpu: 1500ms is not a whole number"),
        ({"env_passthrough": "PATH"}, "jobs[0].env_passthrough: expected a list of variable"),
        ({"env_passthrough": ["A-B"]}, 'jobs[0].env_passthrough: "A-B" is not an environment'),
        (
            {"env_passthrough": ["RAFTCRON_TOKEN"]},
            'jobs[0].env_passthrough: "RAFTCRON_TOKEN": the agent\'s API token is never given',
        ),
        (
            {"env_passthrough": ["RAFTCRON_TOKEN_FILE"]},
            'jobs[0].env_passthrough: "RAFTCRON_TOKEN_FILE": the agent\'s API token is never',
        ),
        (
            {"env_passthrough": ["RAFTCRON_FENCE"]},
            'jobs[0].env_passthrough: "RAFTCRON_FENCE": raftcron sets it for every run',
        ),
        ({"env_passthrough": ["A", "A"]}, 'jobs[0].env_passthrough: "A" is listed twice'),
        (
            {"env_passthrough": ["A"], "env": {"A": "1"}},
            'jobs[0].env_passthrough: "A" is set in env too',
        ),
    ],
)
def test_invalid_values_name_the_key_and_the_fix(keys: dict[str, Any], message: str) -> None:
    assert any(e.startswith(message) for e in errors(**keys)), errors(**keys)


@pytest.mark.parametrize("key", ["user", "group", "limits", "env_passthrough"])
def test_the_keys_are_for_command_jobs_only(key: str) -> None:
    value: Any = {"user": "nobody", "group": "nogroup", "limits": {"cpu": 1}}.get(key, ["A"])
    table = {"name": "h", "schedule": "0 3 * * *", "http": {"url": "http://127.0.0.1/"}}
    with pytest.raises(ConfigError) as info:
        job_spec_from_mapping({**table, key: value}, "request body")
    assert info.value.errors == [
        f"request body: {key}: only applies to a command job (an http job runs no process; "
        "remove it)"
    ]


def test_embedded_jobs_refuse_the_keys(tmp_path: Path) -> None:
    from raftcron.embed import Cluster

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[cluster]\nsecret = "{SECRET}"\n' + NODE)
    cluster = Cluster.from_config(cfg, "a")
    with pytest.raises(ConfigError, match="user: not for an embedded job"):
        cluster.add_job(lambda: None, "* * * * *", name="e", user="nobody")


# --------------------------------------------------------------------------- wire, API


FULL = JobSpec(
    name="iso",
    schedule="0 3 * * *",
    command=("env",),
    user="nobody",
    group="nogroup",
    limits=(("cpu", 5), ("memory", 64 << 20), ("nofile", 32)),
    env_passthrough=("HTTPS_PROXY",),
)


def test_the_keys_round_trip_the_wire_and_the_spec_table() -> None:
    cmd = c.PutJob(at_ms=1, spec=FULL)
    assert c.decode(c.encode(cmd)) == cmd
    table = spec_table(FULL)
    assert table["limits"] == {"cpu": 5, "memory": 64 << 20, "nofile": 32}
    assert job_spec_from_mapping(table, "request body") == FULL  # GET, then PUT it back


def test_old_entries_and_snapshots_decode_and_plain_specs_encode_as_before() -> None:
    plain = JobSpec(name="p", schedule="@daily", command=("true",))
    wire = c.spec_to_wire(plain)
    assert not {"user", "group", "limits", "env_passthrough"} & set(wire)
    old = msgpack.packb({"v": 1, "t": "put_job", "at": 1, "spec": wire, "source": "api"})
    decoded = c.decode(old)
    assert isinstance(decoded, c.PutJob) and decoded.spec == plain
    # a snapshot holding the new keys restores them; one written before them still reads
    s = State()
    s.apply(c.PutJob(at_ms=1, spec=FULL))
    s.apply(c.PutJob(at_ms=1, spec=plain))
    back = State.restore(s.snapshot())
    assert back.jobs["iso"].spec == FULL and back.jobs["p"].spec == plain
    assert back.digest() == s.digest()


# --------------------------------------------------------------------------- the host


def _file(tmp_path: Path, job: str, tokens: str = "") -> Path:
    path = tmp_path / "cluster.toml"
    path.write_text(f'[cluster]\nsecret = "{SECRET}"\n{NODE}{tokens}[[jobs]]\n{job}')
    return path


def raftcron(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftcron", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


JOB = 'name = "j"\nschedule = "0 3 * * *"\ncommand = ["env"]\n'


def test_check_config_refuses_an_unknown_user(tmp_path: Path) -> None:
    cfg = _file(tmp_path, JOB + 'user = "no-such-user-here"\n')
    assert account_problems(load_config(cfg)) == [
        f'{cfg}: jobs[0].user: no user "no-such-user-here" on this machine (create it there, '
        "or keep the job off such nodes with tags)"
    ]
    out = raftcron("check-config", str(cfg), env={})
    assert out.returncode == 2 and out.stderr.startswith(f"error: {cfg}: jobs[0].user: no user")
    cfg = _file(tmp_path, JOB + 'group = "no-such-group-here"\n')
    out = raftcron("check-config", str(cfg), env={})
    assert out.returncode == 2 and 'jobs[0].group: no group "no-such-group-here"' in out.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (an agent that can switch)")
def test_a_root_agent_accepts_any_existing_account(tmp_path: Path) -> None:
    cfg = _file(tmp_path, JOB + 'user = "nobody"\n')
    assert account_problems(load_config(cfg)) == []


def test_a_non_root_agent_accepts_only_its_own_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent running as ``nobody`` (ids faked: the rule, not the kernel, is under test;
    the cluster test runs a job as nobody for real) refuses another account and says why,
    and accepts ``nobody`` itself, which then needs no switch."""
    import pwd

    from raftcron import accounts

    nobody = pwd.getpwnam("nobody")
    monkeypatch.setattr(accounts.os, "geteuid", lambda: nobody.pw_uid)
    monkeypatch.setattr(accounts.os, "getgid", lambda: nobody.pw_gid)
    monkeypatch.setattr(accounts.os, "getegid", lambda: nobody.pw_gid)
    cfg = _file(tmp_path, JOB + 'user = "root"\n')
    assert account_problems(load_config(cfg)) == [
        f'{cfg}: jobs[0].user: user "root": the agent runs as "nobody", not root, and cannot '
        'switch to another account on this machine (leave user out, or name "nobody"; only '
        "an agent running as root runs jobs as other accounts)"
    ]
    cfg = _file(tmp_path, JOB + 'user = "nobody"\n')
    assert account_problems(load_config(cfg)) == []
    assert accounts.resolve("nobody", None).switch is False
    cfg = _file(tmp_path, JOB + 'group = "root"\n')
    (problem,) = account_problems(load_config(cfg))
    assert 'jobs[0].group: group "root": the agent runs as "nobody", not root' in problem


def test_check_config_and_agent_refuse_passing_the_secret_or_a_token(tmp_path: Path) -> None:
    """env_passthrough of a variable that holds the cluster secret or a token (in the
    environment check-config or the agent runs in): exit 2. Of RAFTCRON_TOKEN: refused by
    name, whatever it holds."""
    tokens = f'[[api.tokens]]\nrole = "admin"\ntoken = "{TOKEN}"\n'
    for var, value, what in (
        ("CLUSTER_SECRET", SECRET, "the cluster secret"),
        ("MY_TOKEN", TOKEN, "an API token"),
    ):
        cfg = _file(tmp_path, JOB + f'env_passthrough = ["{var}"]\n', tokens)
        assert environment_problems(load_config(cfg), {var: value}) == [
            f'{cfg}: jobs[0].env_passthrough: "{var}" holds {what} in this environment (a job '
            "must never see it: remove it from env_passthrough)"
        ]
        assert environment_problems(load_config(cfg), {var: "harmless"}) == []
        for args in (("check-config", str(cfg)), ("agent", "--config", str(cfg), "--node", "a")):
            out = raftcron(*args, env={var: value})
            assert out.returncode == 2, out
            assert f'jobs[0].env_passthrough: "{var}" holds {what}' in out.stderr
            assert SECRET not in out.stderr and TOKEN not in out.stderr
    for var in ("RAFTCRON_TOKEN", "RAFTCRON_TOKEN_FILE"):
        cfg = _file(tmp_path, JOB + f'env_passthrough = ["{var}"]\n', tokens)
        out = raftcron("check-config", str(cfg), env={})
        assert out.returncode == 2
        assert f'jobs[0].env_passthrough: "{var}": the agent\'s API token is never' in out.stderr


def test_the_previous_secret_is_a_secret_too(tmp_path: Path) -> None:
    """During a secret rotation the secret being replaced still opens the Raft port: an
    env_passthrough of a variable holding it is refused like the current secret."""
    old = "Pr3v1ousSecretQz8Kw5Tn"
    cfg = _file(tmp_path, JOB + 'env_passthrough = ["OLD_SECRET"]\n')
    cfg.write_text(
        cfg.read_text().replace("[cluster]\n", f'[cluster]\nprevious_secret = "{old}"\n')
    )
    assert environment_problems(load_config(cfg), {"OLD_SECRET": old}) == [
        f'{cfg}: jobs[0].env_passthrough: "OLD_SECRET" holds the previous cluster secret in '
        "this environment (a job must never see it: remove it from env_passthrough)"
    ]
