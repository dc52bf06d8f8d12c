"""config_hash: of the parsed file, not its bytes; secrets and host-local paths left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raftcron.config import parse_config
from raftcron.confighash import HASH_CHARS, canonical, config_hash

SECRET = "0123456789abcdef-not-a-real-secret"
TOKEN = "tok-0123456789abcdef-admin"

BASE = f"""
[cluster]
secret = "{SECRET}"
history = 50
[cluster.nodes.a]
raft = "127.0.0.1:7101"
api = "127.0.0.1:8101"
data_dir = "data/a"
tags = {{ zone = "x", role = "db" }}
[cluster.nodes.b]
raft = "127.0.0.1:7102"
api = "127.0.0.1:8102"
data_dir = "data/b"

[[api.tokens]]
token = "{TOKEN}"
role = "admin"

[notify]
webhooks = ["http://127.0.0.1:9/hook"]

[[jobs]]
name = "backup"
schedule = "0 3 * * *"
command = ["/bin/true"]
timeout = "30s"
env = {{ A = "1", B = "2" }}

[[jobs]]
name = "report"
schedule = "*/5 * * * *"
command = ["echo", "hi"]
"""

# The same configuration written differently: other key and table order, whitespace,
# comments, the jobs in the other order, a duration as another spelling, dotted keys.
SAME = f"""
# the cluster
[cluster]
history = 50   # runs kept per job
secret = "{SECRET}"

[cluster.nodes.b]
data_dir = "data/b"
api = "127.0.0.1:8102"
raft = "127.0.0.1:7102"

[cluster.nodes.a]
tags.role = "db"
tags.zone = "x"
api  =  "127.0.0.1:8101"
raft = "127.0.0.1:7101"
data_dir = "data/a"

[notify]
webhooks = [ "http://127.0.0.1:9/hook" ]

[[api.tokens]]
role = "admin"
token = "{TOKEN}"

[[jobs]]
command = ["echo", "hi"]
schedule = "*/5 * * * *"
name = "report"

[[jobs]]
env = {{ B = "2", A = "1" }}
timeout = "30000ms"
name = "backup"
command = [ "/bin/true" ]
schedule = "0 3 * * *"
"""


def hash_of(text: str, tmp_path: Path, name: str = "cluster.toml") -> str:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return config_hash(parse_config(text, path))


def test_the_hash_is_short_hex(tmp_path: Path) -> None:
    h = hash_of(BASE, tmp_path)
    assert len(h) == HASH_CHARS and set(h) <= set("0123456789abcdef"), h


def test_stable_under_key_order_whitespace_comments_and_job_order(tmp_path: Path) -> None:
    assert BASE != SAME
    assert hash_of(SAME, tmp_path) == hash_of(BASE, tmp_path)


def test_the_same_file_in_another_directory_has_the_same_hash(tmp_path: Path) -> None:
    # data_dir is relative: it resolves to another path, which only that host cares about
    assert hash_of(BASE, tmp_path / "one") == hash_of(BASE, tmp_path / "two" / "deeper")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ('schedule = "0 3 * * *"', 'schedule = "0 4 * * *"'),  # a job's schedule
        ('command = ["echo", "hi"]', 'command = ["echo", "ho"]'),  # a job's command
        ('timeout = "30s"', 'timeout = "31s"'),  # a job's key
        ('A = "1"', 'A = "9"'),  # a job's env value
        ('name = "report"', 'name = "report2"'),  # a job renamed
        ("history = 50", "history = 51"),  # a [cluster] setting
        ('role = "db"', 'role = "web"'),  # a node's tags
        ('api = "127.0.0.1:8102"', 'api = "127.0.0.1:8109"'),  # a node's address
        ("9/hook", "9/hook2"),  # a [notify] setting
        ('role = "admin"', 'role = "read"'),  # which token roles exist
    ],
)
def test_a_change_changes_the_hash(tmp_path: Path, old: str, new: str) -> None:
    assert old in BASE
    changed = BASE.replace(old, new, 1)
    assert hash_of(changed, tmp_path / "new") != hash_of(BASE, tmp_path / "old")


def test_a_job_added_changes_the_hash(tmp_path: Path) -> None:
    more = BASE + '\n[[jobs]]\nname = "extra"\nschedule = "* * * * *"\ncommand = ["true"]\n'
    assert hash_of(more, tmp_path / "new") != hash_of(BASE, tmp_path / "old")


def test_secret_and_token_values_are_not_part_of_it(tmp_path: Path) -> None:
    rotated = BASE.replace(SECRET, "fedcba9876543210-another-secret").replace(
        TOKEN, "tok-fedcba9876543210-rotated"
    )
    assert hash_of(rotated, tmp_path / "new") == hash_of(BASE, tmp_path / "old")
    cfg = parse_config(BASE, tmp_path / "c.toml")
    text = json.dumps(canonical(cfg))
    assert SECRET not in text and TOKEN not in text
    assert "data/a" not in text  # host-local paths neither


def test_a_secret_file_instead_of_an_inline_secret_is_the_same_configuration(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "file" / "secret"
    secret.parent.mkdir(parents=True)
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    from_file = BASE.replace(f'secret = "{SECRET}"', f'secret_file = "{secret}"')
    assert hash_of(from_file, tmp_path / "file") == hash_of(BASE, tmp_path / "inline")


def test_extra_jobs_count_like_the_files_own(tmp_path: Path) -> None:
    from dataclasses import replace

    cfg = parse_config(BASE, tmp_path / "c.toml")
    report = next(j for j in cfg.jobs if j.name == "report")
    without = replace(cfg, jobs=tuple(j for j in cfg.jobs if j.name != "report"))
    assert config_hash(without, (*without.jobs, report)) == config_hash(cfg)
    assert config_hash(without) != config_hash(cfg)
