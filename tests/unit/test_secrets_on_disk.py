"""Secrets on disk (issue 13, item 3): secret and token files private to their owner, secrets
with enough entropy, and `check-config`/`agent` refusing what would leak one (exit 2, the
file, the key and the fix)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from raftcron.config import (
    ConfigError,
    load_config,
    secret_weakness,
    single_node_config,
)

STRONG = "Xq3vJ8pL0wZr7TkN2bYc5HdF"
NODE = '[cluster.nodes.a]\nraft = "127.0.0.1:17301"\napi = "127.0.0.1:18301"\n'


def raftcron(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftcron", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def private(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


# --------------------------------------------------------------------------- file modes


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_a_secret_file_others_can_read_is_refused_with_the_chmod_fix(
    tmp_path: Path, mode: int
) -> None:
    secret = private(tmp_path / "secret", STRONG + "\n", mode)
    cfg = tmp_path / "cluster.toml"
    cfg.write_text('[cluster]\nsecret_file = "secret"\n' + NODE)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    (msg,) = info.value.errors
    assert msg == (
        f"{cfg}: cluster.secret_file: {secret}: mode {mode:04o} lets its group or others read "
        f"it (it holds a secret; run: chmod 600 {secret})"
    )
    assert STRONG not in msg
    secret.chmod(0o600)
    assert load_config(cfg).cluster.secret == STRONG
    secret.chmod(0o400)
    assert load_config(cfg).cluster.secret == STRONG


def test_a_token_file_others_can_read_is_refused(tmp_path: Path) -> None:
    token = private(tmp_path / "admin.token", "admin-" + STRONG, 0o644)
    cfg = tmp_path / "cluster.toml"
    cfg.write_text(
        f'[cluster]\nsecret = "{STRONG}"\n{NODE}[[api.tokens]]\nrole = "admin"\n'
        'token_file = "admin.token"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(info.value) == (
        f"{cfg}: api.tokens[0].token_file: {token}: mode 0644 lets its group or others read "
        f"it (it holds a secret; run: chmod 600 {token})"
    )
    token.chmod(0o600)
    assert load_config(cfg).api.tokens[0].token == "admin-" + STRONG


def test_check_config_and_agent_exit_2_on_a_0644_secret(tmp_path: Path) -> None:
    """The audit's finding: a 0644 secret file passed check-config."""
    secret = private(tmp_path / "secret", STRONG, 0o644)
    cfg = tmp_path / "cluster.toml"
    cfg.write_text('[cluster]\nsecret_file = "secret"\n' + NODE)
    for args in (("check-config", str(cfg)), ("agent", "--config", str(cfg), "--node", "a")):
        out = raftcron(*args)
        assert out.returncode == 2, out
        assert out.stderr.startswith("error: ") and "Traceback" not in out.stderr
        assert f"chmod 600 {secret}" in out.stderr and STRONG not in out.stderr


# --------------------------------------------------------------------------- entropy


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (" " * 16, "contains white space"),
        ("a" * 16, "too little variety (1 different characters"),
        ("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "too little variety"),
        ("abababababababab", "too little variety (2 different characters"),
        ("abcdefabcdefabcdef", "repeats a short pattern"),
        ("xxxxxxxxxxxabcdefghij", "one character makes up half of it"),
        ("abcdefghijklmnop", "a run of consecutive characters"),
        ("correct horse battery", "contains white space"),
        ("short", "too short (5 characters"),
    ],
)
def test_weak_secrets_are_refused(value: str, problem: str) -> None:
    weak = secret_weakness(value)
    assert weak is not None and weak.startswith(problem), weak


@pytest.mark.parametrize(
    "value",
    [
        STRONG,
        "0123456789abcdef0123",  # what the test suite has always used
        "test-secret-0123456789abcdef",
        "d2d1b0f63b1c44d8",  # 16 hex characters: 64 random bits
        "q1Zb9+W/3fR0oYc2N5uXg7mL4kHs8DvT6eAjPiQrCwU=",  # openssl rand -base64 32
    ],
)
def test_random_looking_secrets_pass(value: str) -> None:
    assert secret_weakness(value) is None


def test_inline_weak_secret_says_how_to_generate_one(tmp_path: Path) -> None:
    """The audit's finding: 16 spaces or "aaaaaaaaaaaaaaaa" were accepted."""
    cfg = tmp_path / "cluster.toml"
    for weak in (" " * 16, "a" * 16):
        cfg.write_text(f'[cluster]\nsecret = "{weak}"\n' + NODE)
        out = raftcron("check-config", str(cfg))
        assert out.returncode == 2, out
        assert out.stderr.startswith(f"error: {cfg}: cluster.secret: ")
        assert "generate one with: openssl rand -base64 32" in out.stderr


def test_a_weak_secret_file_names_the_file_in_the_fix(tmp_path: Path) -> None:
    secret = private(tmp_path / "secret", "a" * 32 + "\n")
    cfg = tmp_path / "cluster.toml"
    cfg.write_text('[cluster]\nsecret_file = "secret"\n' + NODE)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(info.value) == (
        f"{cfg}: cluster.secret_file: too little variety (1 different characters; a random "
        "value of this length has many more; generate one with: openssl rand -base64 32 > "
        f"{secret}; chmod 600 {secret})"
    )


def test_a_weak_token_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "cluster.toml"
    cfg.write_text(
        f'[cluster]\nsecret = "{STRONG}"\n{NODE}[[api.tokens]]\nrole = "read"\n'
        'token = "0000000000000000000000"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(info.value).startswith(f"{cfg}: api.tokens[0].token: too little variety")


# --------------------------------------------------------------------------- single node


def test_single_node_creates_a_private_data_dir_and_refuses_a_loose_secret(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    single_node_config(data)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "secret").stat().st_mode) == 0o600
    (data / "secret").chmod(0o644)
    with pytest.raises(ConfigError) as info:
        single_node_config(data)
    assert str(info.value).endswith(f"run: chmod 600 {data.resolve() / 'secret'})")


def test_dev_creates_its_secret_and_data_dirs_private(tmp_path: Path) -> None:
    from raftcron.cli import _ensure_secret

    cfg = tmp_path / "cluster.toml"
    cfg.write_text('[cluster]\nsecret_file = "state/secret"\n' + NODE)
    _ensure_secret(cfg)
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state" / "secret").stat().st_mode) == 0o600
    assert load_config(cfg).cluster.secret  # and strong enough to load
