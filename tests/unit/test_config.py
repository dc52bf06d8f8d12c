"""Config loading: every error names the file, the key and the fix; good files load fully."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftcron.config import (
    JOB_KEYS,
    ConfigError,
    HostPort,
    job_spec_from_mapping,
    load_config,
    parse_config,
    parse_duration,
    single_node_config,
)
from raftcron.core.model import DEFAULT_CATCHUP_MS, DEFAULT_LEASE_MS, JobSpec

REPO = Path(__file__).resolve().parents[2]
SECRET = "0123456789abcdef-not-a-real-secret"

NODES = """
[cluster.nodes.a]
raft = "127.0.0.1:7101"
api = "127.0.0.1:8101"
[cluster.nodes.b]
raft = "127.0.0.1:7102"
api = "127.0.0.1:8102"
[cluster.nodes.c]
raft = "127.0.0.1:7103"
api = "127.0.0.1:8103"
"""
CLUSTER = f'[cluster]\nsecret = "{SECRET}"\n' + NODES


def job(name: str = "backup", **keys: str) -> str:
    """One [[jobs]] table; keyword values are TOML source text."""
    body = {
        "name": name if name == "OMIT" else f'"{name}"',
        "schedule": '"0 3 * * *"',
        "command": '["/bin/true"]',
    } | keys
    lines = [f"{k} = {v}" for k, v in body.items() if v != "OMIT"]
    return "\n[[jobs]]\n" + "\n".join(lines) + "\n"


def jobs(*names: str) -> str:
    return "".join(job(n) for n in names)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path so messages name the file as the user typed it: cluster.toml."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load_text(text: str) -> Any:
    Path("cluster.toml").write_text(text)
    return load_config("cluster.toml")


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text)
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


# ------------------------------------------------------------------------------ good files


def test_minimal_file_loads_with_defaults(in_tmp: Path) -> None:
    cfg = load_text(CLUSTER + job())
    assert cfg.path == Path("cluster.toml")
    assert cfg.cluster.secret == SECRET
    assert cfg.cluster.lease_ms == DEFAULT_LEASE_MS
    assert cfg.cluster.history == 100
    assert [n.name for n in cfg.cluster.nodes] == ["a", "b", "c"]
    a = cfg.node("a")
    assert a.raft == HostPort(host="127.0.0.1", port=7101)
    assert str(a.api) == "127.0.0.1:8101"
    assert a.tags == ()
    assert a.data_dir == in_tmp.resolve() / "raftcron-data" / "a"
    assert cfg.api.tokens == ()
    assert cfg.api.open_health is True
    assert cfg.api.insecure is False
    assert cfg.jobs == (JobSpec(name="backup", schedule="0 3 * * *", command=("/bin/true",)),)
    assert cfg.jobs[0].catchup_ms == DEFAULT_CATCHUP_MS


def test_every_job_key(in_tmp: Path) -> None:
    text = (
        CLUSTER.replace("[cluster]\n", '[cluster]\nlease = "20s"\nhistory = 7\n')
        + job(
            "nightly.db-backup_1",
            schedule='"0 3 * * * 30"',
            command='["/usr/local/bin/backup", "--full"]',
            timezone='"Europe/Berlin"',
            timeout='"1h"',
            overlap='"buffer_all"',
            catchup='"10m"',
            catchup_mode='"latest"',
            jitter='"90s"',
            retries="3",
            tags='{ role = "db", zone = "eu" }',
            lease='"45s"',
            env='{ Z = "1", A = "2" }',
            cwd='"/srv"',
        )
        + job("plain")
    )
    cfg = load_text(text)
    assert cfg.cluster.history == 7
    full, plain = cfg.jobs
    assert full == JobSpec(
        name="nightly.db-backup_1",
        schedule="0 3 * * * 30",
        command=("/usr/local/bin/backup", "--full"),
        timezone="Europe/Berlin",
        timeout_ms=3_600_000,
        overlap="buffer_all",
        catchup_ms=600_000,
        catchup_mode="latest",
        jitter_ms=90_000,
        retries=3,
        tags=(("role", "db"), ("zone", "eu")),
        lease_ms=45_000,
        env=(("A", "2"), ("Z", "1")),  # sorted: equal tables give equal specs
        cwd="/srv",
    )
    assert plain.lease_ms == 20_000  # cluster.lease is the default of every job


def test_previous_secret_is_read_from_a_file_and_never_shown(tmp_path: Path) -> None:
    """During a rotation the secret being replaced is accepted too (docs/operations.md: Rotating the
    cluster secret); like the secret, it is never in a repr."""
    old = "the-secret-being-replaced-0123"
    (tmp_path / "old.txt").write_text(old + "\n")
    path = tmp_path / "cluster.toml"
    rotating = '[cluster]\nprevious_secret_file = "old.txt"\n'
    path.write_text(CLUSTER.replace("[cluster]\n", rotating))
    (tmp_path / "old.txt").chmod(0o644)
    with pytest.raises(ConfigError, match=r"previous_secret_file: .*mode 0644.*chmod 600"):
        load_config(path)
    (tmp_path / "old.txt").chmod(0o600)
    cfg = load_config(path)
    assert cfg.cluster.previous_secret == old
    assert cfg.cluster.secret == SECRET
    assert old not in repr(cfg.cluster) and SECRET not in repr(cfg.cluster)
    assert "previous_secret='***'" in repr(cfg.cluster)
    path.write_text(CLUSTER)
    assert load_config(path).cluster.previous_secret is None


def test_example_file_loads(tmp_path: Path) -> None:
    shutil.copy(REPO / "cluster.example.toml", tmp_path / "cluster.example.toml")
    (tmp_path / "raftcron-data").mkdir()
    (tmp_path / "raftcron-data" / "secret").write_text(SECRET + "\n")
    (tmp_path / "raftcron-data" / "secret").chmod(0o600)
    cfg = load_config(tmp_path / "cluster.example.toml")
    assert cfg.cluster.secret == SECRET  # the trailing newline is not part of it
    assert [(n.name, n.raft.port, n.api.port) for n in cfg.cluster.nodes] == [
        ("a", 7101, 8101),
        ("b", 7102, 8102),
        ("c", 7103, 8103),
    ]
    for n in cfg.cluster.nodes:
        assert n.raft.host == n.api.host == "127.0.0.1"
        assert n.data_dir == tmp_path.resolve() / "raftcron-data" / n.name
    by_name = {j.name: j for j in cfg.jobs}
    assert by_name["heartbeat"].schedule == "* * * * * */10"
    assert by_name["heartbeat"].command[:2] == ("sh", "-c")
    assert any(j.overlap == "skip" and j.schedule == "* * * * *" for j in cfg.jobs)
    backup = [j for j in cfg.jobs if j.timezone == "Europe/Berlin"]
    assert len(backup) == 1
    assert backup[0].schedule == "0 3 * * *"
    assert backup[0].catchup_ms == 3_600_000


def test_example_file_without_secret_says_how_to_fix(tmp_path: Path) -> None:
    shutil.copy(REPO / "cluster.example.toml", tmp_path / "cluster.example.toml")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "cluster.example.toml")
    (message,) = info.value.errors
    assert message.startswith(f"{tmp_path / 'cluster.example.toml'}: cluster.secret_file: ")
    assert "not found" in message
    assert "raftcron dev" in message


def test_relative_paths_resolve_against_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "etc" / "raftcron"
    conf.mkdir(parents=True)
    (conf / "secret.txt").write_text(SECRET)
    (conf / "admin.token").write_text("admin-token-0123456789\n")
    (conf / "secret.txt").chmod(0o600)
    (conf / "admin.token").chmod(0o600)
    (conf / "tls").mkdir()
    (conf / "tls" / "cert.pem").write_text("cert")
    (conf / "tls" / "key.pem").write_text("key")
    (conf / "cluster.toml").write_text(
        """
[cluster]
secret_file = "secret.txt"
[cluster.nodes.a]
raft = "127.0.0.1:7101"
api = "127.0.0.1:8101"
data_dir = "../../var/a"
[cluster.nodes.b]
raft = "127.0.0.1:7102"
api = "127.0.0.1:8102"
data_dir = "/abs/b"
[api]
tls_cert = "tls/cert.pem"
tls_key = "tls/key.pem"
[[api.tokens]]
role = "admin"
token_file = "admin.token"
"""
        + job(cwd='"work"')
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("../etc/raftcron/cluster.toml"))
    root = tmp_path.resolve()
    assert cfg.cluster.secret == SECRET
    assert cfg.node("a").data_dir == root / "var" / "a"
    assert cfg.node("b").data_dir == Path("/abs/b")
    assert cfg.api.tls_cert == root / "etc" / "raftcron" / "tls" / "cert.pem"
    assert cfg.api.tls_key == root / "etc" / "raftcron" / "tls" / "key.pem"
    assert [(t.role, t.token) for t in cfg.api.tokens] == [("admin", "admin-token-0123456789")]
    assert "admin-token" not in repr(cfg.api.tokens)
    assert SECRET not in repr(cfg)
    assert cfg.jobs[0].cwd == str(root / "etc" / "raftcron" / "work")


def test_non_loopback_api_with_tokens_and_tls_or_insecure(in_tmp: Path) -> None:
    public = CLUSTER.replace('api = "127.0.0.1:8101"', 'api = "10.1.2.3:8101"')
    cfg = load_text(public + "[api]\ninsecure = true\n")
    assert cfg.api.insecure is True
    Path("c.pem").write_text("c")
    Path("k.pem").write_text("k")
    cfg = load_text(
        public + '[api]\ntls_cert = "c.pem"\ntls_key = "k.pem"\nopen_health = false\n'
        '[[api.tokens]]\nrole = "read"\ntoken = "read-token-0123456789"\n'
    )
    assert cfg.api.open_health is False
    assert cfg.api.tokens[0].role == "read"


# ------------------------------------------------------------------------------ errors

ERRORS: list[tuple[str, str, list[str]]] = [
    # (id, file text, expected messages: exact unless they end with "...", then a prefix)
    (
        "bad-cron",
        CLUSTER + jobs("a", "b") + job("c", schedule='"61 * * * *"'),
        [
            'cluster.toml: jobs[2].schedule: "61 * * * *" is not a cron expression: '
            "minute must be 0-59, got 61"
        ],
    ),
    (
        "cron-field-count",
        CLUSTER + job(schedule='"* * *"'),
        ['cluster.toml: jobs[0].schedule: "* * *" is not a cron expression: expected 5 or 6...'],
    ),
    (
        "every-without-unit",
        CLUSTER + job(schedule='"@every 90"'),
        [
            'cluster.toml: jobs[0].schedule: "@every 90" is not a valid @every schedule: '
            "'@every 90': '90' is not a duration (e.g. 90s, 5m, 1h30m, 2d; add a unit: "
            "'@every 90s')"
        ],
    ),
    (
        "quartz-seconds-first",
        CLUSTER + job(schedule='"0 0 12 * * ?"'),
        [
            'cluster.toml: jobs[0].schedule: "0 0 12 * * ?" is not a cron expression: '
            "'?' is only allowed in day-of-month and day-of-week, not in second (raftcron's "
            "6-field form puts seconds LAST: did you mean '0 12 * * ? 0'?)"
        ],
    ),
    (
        "secret-missing",
        NODES,
        [
            "cluster.toml: cluster.secret: missing (set cluster.secret or "
            "cluster.secret_file, at least 16 characters)"
        ],
    ),
    (
        "secret-short",
        '[cluster]\nsecret = "short"\n' + NODES,
        ["cluster.toml: cluster.secret: too short (5 characters; use at least 16 random..."],
    ),
    (
        "secret-and-secret-file",
        CLUSTER.replace("[cluster]\n", '[cluster]\nsecret_file = "s"\n'),
        [
            "cluster.toml: cluster.secret_file: set together with cluster.secret "
            "(keep only one of them)"
        ],
    ),
    (
        "secret-file-missing",
        '[cluster]\nsecret_file = "nope.txt"\n' + NODES,
        ["cluster.toml: cluster.secret_file: /...nope.txt: not found (write at least 16..."],
    ),
    (
        "previous-secret-short",
        CLUSTER.replace("[cluster]\n", '[cluster]\nprevious_secret = "old"\n'),
        ["cluster.toml: cluster.previous_secret: too short (3 characters; it must be the..."],
    ),
    (
        "previous-secret-same",
        CLUSTER.replace("[cluster]\n", f'[cluster]\nprevious_secret = "{SECRET}"\n'),
        ["cluster.toml: cluster.previous_secret: is the same as the cluster secret (set it..."],
    ),
    (
        "previous-secret-and-file",
        CLUSTER.replace(
            "[cluster]\n", '[cluster]\nprevious_secret = "x"\nprevious_secret_file = "s"\n'
        ),
        [
            "cluster.toml: cluster.previous_secret_file: set together with "
            "cluster.previous_secret (keep only one of them)"
        ],
    ),
    (
        "previous-secret-file-missing",
        CLUSTER.replace("[cluster]\n", '[cluster]\nprevious_secret_file = "old.txt"\n'),
        ["cluster.toml: cluster.previous_secret_file: /...old.txt: not found (point it at..."],
    ),
    (
        "duplicate-job",
        CLUSTER + jobs("backup", "a", "b", "backup"),
        ['cluster.toml: jobs[3].name: duplicate job name "backup" (first defined at jobs[0])'],
    ),
    (
        "duplicate-address",
        CLUSTER.replace('api = "127.0.0.1:8102"', 'api = "127.0.0.1:8101"'),
        [
            "cluster.toml: cluster.nodes.b.api: 127.0.0.1:8101 is already used by "
            "cluster.nodes.a.api (give every raft and api address its own port)"
        ],
    ),
    (
        "raft-equals-api",
        CLUSTER.replace('api = "127.0.0.1:8103"', 'api = "127.0.0.1:7103"'),
        [
            "cluster.toml: cluster.nodes.c.api: 127.0.0.1:7103 is already used by "
            "cluster.nodes.c.raft (give every raft and api address its own port)"
        ],
    ),
    (
        "toml-syntax",
        CLUSTER + "[[jobs]]\nname = backup\n",
        [
            "cluster.toml: line 14, column 8: Invalid value (fix the TOML syntax, see https://toml.io)"
        ],
    ),
    (
        "toml-duplicate-key",
        CLUSTER + '[cluster.nodes.a]\nraft = "127.0.0.1:1"\n',
        ["cluster.toml: line 13, column 17: Cannot declare ('cluster', 'nodes', 'a') twice..."],
    ),
    (
        "unknown-job-key",
        CLUSTER + job(schedul='"x"'),
        ['cluster.toml: jobs[0].schedul: unknown key (did you mean "schedule"?)'],
    ),
    (
        "unknown-top-key",
        CLUSTER + '[[job]]\nname = "x"\n',
        ['cluster.toml: job: unknown key (did you mean "jobs"?)'],
    ),
    (
        "unknown-node-key-no-match",
        CLUSTER.replace("[cluster.nodes.c]\n", "[cluster.nodes.c]\nzzz = 1\n"),
        [
            "cluster.toml: cluster.nodes.c.zzz: unknown key "
            "(known keys: raft, api, tags, data_dir, max_starting)"
        ],
    ),
    (
        "unknown-cluster-key",
        CLUSTER.replace("[cluster]\n", "[cluster]\nhistroy = 5\n"),
        ['cluster.toml: cluster.histroy: unknown key (did you mean "history"?)'],
    ),
    (
        "command-string",
        CLUSTER + job(command='"/bin/backup --full"'),
        [
            "cluster.toml: jobs[0].command: expected a list of strings, got a string "
            '(e.g. command = ["/usr/local/bin/backup", "--full"]; for shell syntax use '
            '["sh", "-c", "..."])'
        ],
    ),
    (
        "command-not-strings",
        CLUSTER + job(command='["sleep", 5]'),
        ["cluster.toml: jobs[0].command: expected a list of strings, got other values (e.g..."],
    ),
    (
        "command-empty",
        CLUSTER + job(command="[]"),
        ["cluster.toml: jobs[0].command: empty (give at least the program to run..."],
    ),
    (
        "command-missing",
        CLUSTER + job(command="OMIT"),
        ['cluster.toml: jobs[0].command: missing (e.g. command = ["/usr/local/bin/backup"...'],
    ),
    (
        "name-missing",
        CLUSTER + job(name="OMIT"),
        ['cluster.toml: jobs[0].name: missing (give the job a name, e.g. name = "backup")'],
    ),
    (
        "name-invalid",
        CLUSTER + job("nightly backup"),
        [
            'cluster.toml: jobs[0].name: "nightly backup" is not a valid job name (a letter or '
            "digit, then up to 63 letters, digits, '.', '_' or '-')"
        ],
    ),
    (
        "overlap",
        CLUSTER + job(overlap='"queue"'),
        [
            'cluster.toml: jobs[0].overlap: "queue" is not allowed (use "allow", "skip", '
            '"buffer_one", "buffer_all", "cancel_other" or "terminate_other")'
        ],
    ),
    (
        "retry-backoff-cap",
        CLUSTER + job(retry_backoff='"1m"', retry_backoff_max='"30s"'),
        [
            "cluster.toml: jobs[0].retry_backoff_max: 30s is shorter than retry_backoff (60s; "
            "the cap must be at least the first backoff)"
        ],
    ),
    (
        "retry-other-node",
        CLUSTER + job(retry_other_node='"yes"'),
        [
            "cluster.toml: jobs[0].retry_other_node: expected true or false, got a string "
            "(write true or false, no quotes)"
        ],
    ),
    (
        "retries-too-many",
        CLUSTER + job(retries="1000"),
        ["cluster.toml: jobs[0].retries: 1000 is too many (at most 100)"],
    ),
    (
        "catchup-mode",
        CLUSTER + job(catchup_mode='"first"'),
        [
            'cluster.toml: jobs[0].catchup_mode: "first" is not allowed (use "all", "latest" '
            'or "none": run every fire within catchup, only the latest, or none that is late)'
        ],
    ),
    (
        "catchup-mode-type",
        CLUSTER + job(catchup_mode="1"),
        [
            "cluster.toml: jobs[0].catchup_mode: expected a string, got an integer "
            "(put it in double quotes)"
        ],
    ),
    (
        "jitter-too-long",
        CLUSTER + job(jitter='"2d"'),
        [
            "cluster.toml: jobs[0].jitter: 172800s is too long (at most 1d; jitter delays each "
            "fire by a fixed offset below it, to spread jobs that share a schedule)"
        ],
    ),
    (
        "jitter-not-a-duration",
        CLUSTER + job(jitter='"soon"'),
        [
            'cluster.toml: jobs[0].jitter: "soon" is not a duration (write e.g. "500ms", '
            '"30s", "5m", "1h30m", "2d", or a number of seconds)'
        ],
    ),
    (
        "timezone",
        CLUSTER + job(timezone='"Mars/Base"'),
        [
            "cluster.toml: jobs[0].timezone: unknown timezone 'Mars/Base' "
            "(use an IANA name such as Europe/Berlin)"
        ],
    ),
    (
        "negative-timeout",
        CLUSTER + job(timeout='"-5s"'),
        ['cluster.toml: jobs[0].timeout: "-5s" is negative (durations are 0 or more)'],
    ),
    (
        "zero-timeout",
        CLUSTER + job(timeout="0"),
        [
            "cluster.toml: jobs[0].timeout: 0s is too short "
            "(at least 1ms; omit timeout for no limit)"
        ],
    ),
    (
        "negative-catchup",
        CLUSTER + job(catchup="-1"),
        ["cluster.toml: jobs[0].catchup: -1 is negative (durations are 0 or more)"],
    ),
    (
        "negative-retries",
        CLUSTER + job(retries="-1"),
        ["cluster.toml: jobs[0].retries: -1 is negative (use 0 or more)"],
    ),
    (
        "retries-type",
        CLUSTER + job(retries='"3"'),
        [
            "cluster.toml: jobs[0].retries: expected an integer, got a string "
            "(write a whole number, no quotes)"
        ],
    ),
    (
        "duration-without-unit",
        CLUSTER + job(lease='"30"'),
        [
            'cluster.toml: jobs[0].lease: "30" is not a duration (add a unit: "30s" for '
            'seconds, "30ms" for milliseconds)'
        ],
    ),
    (
        "lease-too-short",
        CLUSTER.replace("[cluster]\n", '[cluster]\nlease = "200ms"\n'),
        [
            "cluster.toml: cluster.lease: 200ms is too short (at least 1s; a lease must "
            "outlive a renewal round trip)"
        ],
    ),
    (
        "tags-type",
        CLUSTER + job(tags="{ role = 1 }"),
        [
            "cluster.toml: jobs[0].tags: expected a table of strings, got other values "
            '(e.g. tags = { role = "db" })'
        ],
    ),
    (
        "env-reserved",
        CLUSTER + job(env='{ RAFTCRON_FENCE = "1" }'),
        [
            "cluster.toml: jobs[0].env.RAFTCRON_FENCE: reserved (raftcron sets the "
            "RAFTCRON_* variables itself; pick another name)"
        ],
    ),
    (
        "host-port-malformed",
        CLUSTER.replace('raft = "127.0.0.1:7101"', 'raft = "127.0.0.1"'),
        [
            'cluster.toml: cluster.nodes.a.raft: "127.0.0.1" is not host:port '
            '(write "host:port", e.g. "10.0.0.1:7101")'
        ],
    ),
    (
        "port-out-of-range",
        CLUSTER.replace('api = "127.0.0.1:8102"', 'api = "127.0.0.1:70000"'),
        [
            'cluster.toml: cluster.nodes.b.api: "127.0.0.1:70000": port 70000 is out of range '
            "(use 1-65535)"
        ],
    ),
    (
        "raft-unspecified",
        CLUSTER.replace('raft = "127.0.0.1:7101"', 'raft = "0.0.0.0:7101"'),
        ['cluster.toml: cluster.nodes.a.raft: "0.0.0.0:7101": other nodes cannot connect...'],
    ),
    (
        "ipv6",
        CLUSTER.replace('raft = "127.0.0.1:7101"', 'raft = "[::1]:7101"'),
        [
            'cluster.toml: cluster.nodes.a.raft: "[::1]:7101": IPv6 addresses are not '
            "supported (use IPv4 or a host name)"
        ],
    ),
    (
        "raft-missing",
        CLUSTER.replace('raft = "127.0.0.1:7102"\n', ""),
        ['cluster.toml: cluster.nodes.b.raft: missing (raft = "host:port")'],
    ),
    (
        "node-name",
        CLUSTER.replace("[cluster.nodes.c]", '[cluster.nodes."c d"]'),
        ['cluster.toml: cluster.nodes."c d": "c d" is not a valid node name (a letter or...'],
    ),
    (
        "no-nodes",
        f'[cluster]\nsecret = "{SECRET}"\n[cluster.nodes]\n',
        ["cluster.toml: cluster.nodes: no nodes (at least one is needed; add one table per..."],
    ),
    (
        "nodes-missing",
        f'[cluster]\nsecret = "{SECRET}"\n',
        ["cluster.toml: cluster.nodes: missing (add one table per server, e.g. [cluster..."],
    ),
    (
        "cluster-missing",
        job(),
        ["cluster.toml: cluster: missing (add a [cluster] table with secret or secret_file..."],
    ),
    (
        "shared-data-dir",
        CLUSTER.replace(
            'api = "127.0.0.1:8103"\n', 'api = "127.0.0.1:8103"\ndata_dir = "raftcron-data/a"\n'
        ),
        ["cluster.toml: cluster.nodes.c.data_dir: /...raftcron-data/a is also the data_dir of..."],
    ),
    (
        "tls-cert-without-key",
        CLUSTER + '[api]\ntls_cert = "cluster.toml"\n',
        [
            "cluster.toml: api.tls_cert: set without api.tls_key (set both, or neither for "
            "plain HTTP)"
        ],
    ),
    (
        "tls-files-missing",
        CLUSTER + '[api]\ntls_cert = "c.pem"\ntls_key = "k.pem"\n',
        [
            "cluster.toml: api.tls_cert: /...c.pem: not found (give the path of a PEM file)",
            "cluster.toml: api.tls_key: /...k.pem: not found (give the path of a PEM file)",
        ],
    ),
    (
        "token-file-missing",
        CLUSTER + '[[api.tokens]]\nrole = "admin"\ntoken_file = "admin.token"\n',
        ["cluster.toml: api.tokens[0].token_file: /...admin.token: not found (write at least..."],
    ),
    (
        "token-short",
        CLUSTER + '[[api.tokens]]\nrole = "read"\ntoken = "abc"\n',
        [
            "cluster.toml: api.tokens[0].token: too short (3 characters; use at least 16 "
            "random characters; generate one with: openssl rand -base64 32)"
        ],
    ),
    (
        "token-role",
        CLUSTER + '[[api.tokens]]\nrole = "root"\ntoken = "0123456789abcdefgh"\n',
        ['cluster.toml: api.tokens[0].role: "root" is not a role (use "admin" or "read")'],
    ),
    (
        "token-duplicate",
        CLUSTER
        + '[[api.tokens]]\nrole = "read"\ntoken = "0123456789abcdefgh"\n'
        + '[[api.tokens]]\nrole = "admin"\ntoken = "0123456789abcdefgh"\n',
        ["cluster.toml: api.tokens[1]: same token as api.tokens[0] (give every token its..."],
    ),
    (
        "public-api-open",
        CLUSTER.replace('api = "127.0.0.1:8101"', 'api = "10.1.2.3:8101"'),
        [
            "cluster.toml: api.tokens: none, but cluster.nodes.a.api listens on 10.1.2.3, not "
            'loopback (add [[api.tokens]] with role = "admin" or "read", or set '
            "api.insecure = true to serve the API without tokens)",
            "cluster.toml: api.tls_cert: not set, but cluster.nodes.a.api listens on 10.1.2.3...",
        ],
    ),
    (
        "insecure-type",
        CLUSTER + '[api]\ninsecure = "yes"\n',
        [
            "cluster.toml: api.insecure: expected true or false, got a string "
            "(write true or false, no quotes)"
        ],
    ),
    (
        "jobs-not-array",
        "jobs = 5\n" + CLUSTER,
        ["cluster.toml: jobs: expected an array of tables, got an integer (write [[jobs]] tables)"],
    ),
    (
        "all-errors-at-once",
        '[cluster]\nsecret = "x"\nlease = "soon"\n'
        + NODES.replace('api = "127.0.0.1:8102"', 'api = "127.0.0.1:8101"')
        + job(schedule='"61 * * * *"', overlap='"never"'),
        [
            "cluster.toml: cluster.secret: too short...",
            'cluster.toml: cluster.lease: "soon" is not a duration...',
            "cluster.toml: cluster.nodes.b.api: 127.0.0.1:8101 is already used by...",
            'cluster.toml: jobs[0].schedule: "61 * * * *" is not a cron expression...',
            'cluster.toml: jobs[0].overlap: "never" is not allowed...',
        ],
    ),
]


def _matches(message: str, expected: str) -> bool:
    """Exact, except: a trailing "..." matches any rest, "/..." any absolute path head."""
    pattern = re.escape(expected).replace(r"/\.\.\.", r"/\S*")
    if pattern.endswith(r"\.\.\."):
        pattern = pattern[: -len(r"\.\.\.")] + ".*"
    return re.fullmatch(pattern, message, re.DOTALL) is not None


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in ERRORS])
def test_error_messages(in_tmp: Path, text: str, expected: list[str]) -> None:
    got = errors_of(text)
    assert len(got) == len(expected), got
    for message, want in zip(got, expected, strict=True):
        assert _matches(message, want), f"\n got: {message}\nwant: {want}"
        # The documented shape: <file>: <key>: <problem> (<fix>); a cron error's fix is
        # whatever the schedule parser says.
        assert message.startswith("cluster.toml: ")
        assert message.endswith(")") or "is not a cron expression" in message


def test_unknown_node_names_the_known_ones(in_tmp: Path) -> None:
    cfg = load_text(CLUSTER)
    with pytest.raises(ConfigError) as info:
        cfg.node("d")
    assert str(info.value) == "cluster.toml: --node d: not in cluster.nodes (known: a, b, c)"


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        pytest.param(
            lambda p: None,
            "cluster.toml: not found (check the path; without --config raftcron runs one local "
            "node)",
            id="missing",
        ),
        pytest.param(
            lambda p: p.mkdir(),
            "cluster.toml: is a directory (give the path of the TOML file)",
            id="directory",
        ),
        pytest.param(
            lambda p: p.write_bytes(b'[cluster]\nsecret = "\xff"\n'),
            "cluster.toml: byte 20 is not UTF-8 (save the file as UTF-8)",
            id="not-utf8",
        ),
    ],
)
def test_file_errors(in_tmp: Path, setup: Any, expected: str) -> None:
    setup(in_tmp / "cluster.toml")
    with pytest.raises(ConfigError) as info:
        load_config("cluster.toml")
    assert info.value.errors == [expected]


def test_unreadable_file(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Path("cluster.toml").write_text(CLUSTER)

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ConfigError) as info:
        load_config("cluster.toml")
    assert str(info.value) == (
        "cluster.toml: cannot read: Permission denied (check the permissions)"
    )


def test_parse_config_names_the_given_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(NODES, tmp_path / "x.toml")
    assert info.value.errors[0].startswith(f"{tmp_path / 'x.toml'}: cluster.secret: missing")


@pytest.mark.parametrize(
    "text",
    [
        "cluster = 3",
        "api = []\n" + CLUSTER,
        CLUSTER + "[api]\ntokens = 'x'\n",
        CLUSTER + "[api]\ntokens = [1, {role = 2, token = 3}]\n",
        CLUSTER + "jobs = [1, 'x', {}]\n",
        CLUSTER.replace('raft = "127.0.0.1:7101"', "raft = 7101"),
        CLUSTER.replace('raft = "127.0.0.1:7101"', 'raft = ":"'),
        CLUSTER.replace('raft = "127.0.0.1:7101"', 'raft = "a b:7101"'),
        CLUSTER.replace('[cluster.nodes.a]\nraft = "127.0.0.1:7101"\napi = "127.0.0.1:8101"\n', "")
        + "[cluster.nodes]\na = 1\n",
        '[cluster]\nsecret = 1979-05-27T07:32:00Z\nnodes = "a"\nhistory = 1.5\n',
        '[cluster]\nsecret_file = ""\nlease = true\n' + NODES,
        CLUSTER + job(timeout="inf", catchup="nan", lease="1e300", env="{ '' = 'x' }", cwd='""'),
        CLUSTER + job(schedule="3", timezone="[]", tags='"db"', command='[""]'),
    ],
)
def test_garbage_raises_only_config_error(in_tmp: Path, text: str) -> None:
    errors = errors_of(text)
    assert errors
    assert all(e.startswith("cluster.toml: ") for e in errors)


# ------------------------------------------------------------------------------ durations


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("500ms", 500),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h30m", 5_400_000),
        ("2d", 172_800_000),
        ("1d2h3m4s5ms", 93_784_005),
        ("1.5h", 5_400_000),
        (".5s", 500),
        (" 10s ", 10_000),
        ("0s", 0),
        ("-0s", 0),
        (30, 30_000),
        (0, 0),
        (1.5, 1_500),
        (0.1, 100),
        (0.0004, 0),
    ],
)
def test_durations(value: object, ms: int) -> None:
    assert parse_duration(value, "jobs[0].timeout") == ms


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("30", 'x.lease: "30" is not a duration (add a unit: "30s" for seconds, "30ms"...'),
        ("1h30", 'x.lease: "1h30" is not a duration (write e.g. "500ms", "30s", "5m"...'),
        ("5x", 'x.lease: "5x" is not a duration (write e.g. "500ms"...'),
        ("", 'x.lease: "" is not a duration...'),
        ("h", 'x.lease: "h" is not a duration...'),
        ("1 h", 'x.lease: "1 h" is not a duration...'),
        ("-5s", 'x.lease: "-5s" is negative (durations are 0 or more)'),
        (-1, "x.lease: -1 is negative (durations are 0 or more)"),
        (-0.5, "x.lease: -0.5 is negative (durations are 0 or more)"),
        (float("nan"), "x.lease: nan is not a duration..."),
        (float("inf"), "x.lease: inf is not a duration..."),
        ("99999d", 'x.lease: "99999d" is too long (at most 3650d)'),
        (True, "x.lease: expected a duration, got a boolean..."),
        ([1], "x.lease: expected a duration, got an array..."),
        (None, "x.lease: expected a duration, got null..."),
    ],
)
def test_bad_durations(value: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, "x.lease")
    (got,) = info.value.errors
    assert _matches(got, message), got


# ------------------------------------------------------------------------------ API bodies


def test_job_spec_from_request_body_reads_well() -> None:
    with pytest.raises(ConfigError) as info:
        job_spec_from_mapping(
            {"schedule": "61 * * * *", "command": "echo hi", "timeout": "5", "cwd": "rel"},
            "request body",
        )
    assert info.value.errors == [
        'request body: name: missing (give the job a name, e.g. name = "backup")',
        'request body: schedule: "61 * * * *" is not a cron expression: '
        "minute must be 0-59, got 61",
        "request body: command: expected a list of strings, got a string "
        '(e.g. command = ["/usr/local/bin/backup", "--full"]; for shell syntax use '
        '["sh", "-c", "..."])',
        'request body: timeout: "5" is not a duration (add a unit: "5s" for seconds, '
        '"5ms" for milliseconds)',
        'request body: cwd: "rel" is relative (give an absolute path; there is no config '
        "file to resolve it against)",
    ]


def test_job_spec_from_mapping_defaults_and_json_null() -> None:
    spec = job_spec_from_mapping(
        {
            "name": "x",
            "schedule": "@hourly",
            "command": ["true"],
            "timeout": None,
            "lease": None,
            "tags": None,
            "cwd": "/srv",
        },
        "request body",
        default_lease_ms=12_000,
    )
    assert spec == JobSpec(
        name="x", schedule="@hourly", command=("true",), lease_ms=12_000, cwd="/srv"
    )


def test_job_spec_from_mapping_rejects_non_tables() -> None:
    with pytest.raises(ConfigError) as info:
        job_spec_from_mapping([1, 2], "request body")  # type: ignore[arg-type]
    assert info.value.errors == [
        "request body: expected a table of job keys, got an array (give name, schedule and "
        "command at least)"
    ]


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(["30s", "* * * * *", "UTC", "allow", "skip", "Europe/Berlin"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from([*JOB_KEYS, "bogus"]), _VALUES))
def test_job_spec_from_mapping_raises_only_config_error(raw: dict[str, Any]) -> None:
    try:
        spec = job_spec_from_mapping(raw, "jobs[0]")
    except ConfigError as exc:
        assert exc.errors
        assert all(e.startswith("jobs[0]") for e in exc.errors)
    else:
        assert spec.name == raw["name"]


# ------------------------------------------------------------------------------ single node


def test_single_node_config_creates_and_reuses_its_secret(tmp_path: Path) -> None:
    data_dir = tmp_path / "deep" / "raftcron-data"
    cfg = single_node_config(data_dir)
    secret_file = data_dir / "secret"
    assert stat.S_IMODE(os.stat(secret_file).st_mode) == 0o600
    assert secret_file.read_text().strip() == cfg.cluster.secret
    assert len(cfg.cluster.secret) >= 32
    (node,) = cfg.cluster.nodes
    assert node.name == "local"
    assert str(node.raft) == "127.0.0.1:7100"
    assert str(node.api) == "127.0.0.1:8100"
    assert node.data_dir == data_dir.resolve()
    assert cfg.jobs == ()
    assert cfg.api.tokens == ()
    assert cfg.node("local") is node

    again = single_node_config(data_dir)
    assert again.cluster.secret == cfg.cluster.secret
    assert single_node_config(tmp_path / "other").cluster.secret != cfg.cluster.secret


def test_single_node_config_rejects_a_damaged_secret(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("short\n")
    (tmp_path / "secret").chmod(0o600)
    with pytest.raises(ConfigError) as info:
        single_node_config(tmp_path)
    assert str(info.value).startswith(f"{tmp_path.resolve() / 'secret'}: too short (5 characters")


def test_shutdown_drain_and_max_apply_lag(in_tmp: Path) -> None:
    cfg = load_text(CLUSTER + job())
    assert cfg.cluster.shutdown_drain_ms == 8_000  # below Docker's 10 s stop timeout
    assert cfg.cluster.max_apply_lag_ms == 5_000
    text = CLUSTER.replace(
        "[cluster]\n", '[cluster]\nshutdown_drain = "30s"\nmax_apply_lag = "2s"\n'
    )
    cfg = load_text(text + job())
    assert (cfg.cluster.shutdown_drain_ms, cfg.cluster.max_apply_lag_ms) == (30_000, 2_000)
    assert load_text(CLUSTER.replace("[cluster]\n", "[cluster]\nshutdown_drain = 0\n") + job())


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('max_apply_lag = "100ms"', "cluster.max_apply_lag: 100ms is too short (at least 1s"),
        ('shutdown_drain = "soon"', "cluster.shutdown_drain:"),
    ],
)
def test_shutdown_drain_and_max_apply_lag_errors(in_tmp: Path, line: str, error: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(CLUSTER.replace("[cluster]\n", f"[cluster]\n{line}\n") + job())
    assert any(error in e for e in info.value.errors), info.value.errors
