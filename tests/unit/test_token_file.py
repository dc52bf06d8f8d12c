"""Tokens from files for the CLI (issue 13 item 5): ``--token-file`` on every client verb and
on ``raftcron lock`` (one option parser), ``RAFTCRON_TOKEN_FILE``, and the file's mode
checked like the agent's secret. A live cluster test sends requests with them."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftcron.cli import build_parser
from raftcron.clientopts import TokenFileError, token_from

TOKEN = "admin-Xq3vJ8pL0wZr7TkN2b"


def token_file(tmp_path: Path, text: str = TOKEN + "\n", mode: int = 0o600) -> str:
    path = tmp_path / "admin.token"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


def ns(**kw: str | None) -> argparse.Namespace:
    return argparse.Namespace(**{"token": None, "token_file": None, **kw})


def test_where_the_token_comes_from(tmp_path: Path) -> None:
    path = token_file(tmp_path)
    assert token_from(ns(token_file=path), {}) == TOKEN  # stripped
    assert token_from(ns(token="cli"), {"RAFTCRON_TOKEN": "env"}) == "cli"
    assert token_from(ns(token_file=path), {"RAFTCRON_TOKEN": "env"}) == TOKEN
    assert token_from(ns(), {"RAFTCRON_TOKEN": "env", "RAFTCRON_TOKEN_FILE": path}) == "env"
    assert token_from(ns(), {"RAFTCRON_TOKEN_FILE": path}) == TOKEN
    assert token_from(ns(), {}) is None


@pytest.mark.parametrize(
    ("mode", "text", "message"),
    [
        (0o644, TOKEN, "mode 0644 lets its group or others read it (it holds a token; run: chmod"),
        (0o640, TOKEN, "mode 0640 lets its group or others read it"),
        (0o600, "\n", "empty (write the API token into it)"),
    ],
)
def test_a_token_file_others_can_read_or_an_empty_one_is_refused(
    tmp_path: Path, mode: int, text: str, message: str
) -> None:
    path = token_file(tmp_path, text, mode)
    for args, env, where in (
        (ns(token_file=path), {}, "--token-file"),
        (ns(), {"RAFTCRON_TOKEN_FILE": path}, "RAFTCRON_TOKEN_FILE"),
    ):
        with pytest.raises(TokenFileError) as info:
            token_from(args, env)
        assert str(info.value).startswith(f"{where}: {path}: {message}")
    with pytest.raises(TokenFileError, match="not found"):
        token_from(ns(token_file=str(tmp_path / "nope")), {})
    with pytest.raises(TokenFileError, match="--token and --token-file given together"):
        token_from(ns(token="x", token_file=path), {})


def _verbs(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Every leaf verb of the parser with its option strings."""
    out: dict[str, list[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out |= _verbs(sub, (*prefix, name))
    if not out and prefix:
        out[" ".join(prefix)] = [o for a in parser._actions for o in a.option_strings]
    return out


def test_every_verb_that_talks_to_the_api_takes_token_file() -> None:
    verbs = _verbs(build_parser())
    # they talk to no API (jobs import: it only converts files)
    local = {"agent", "dev", "check-config", "init", "jobs import crontab", "jobs import dkron"}
    local |= {"snapshot restore"}  # offline: it writes a data dir
    talking = {v: opts for v, opts in verbs.items() if v not in local}
    assert "lock" in talking and "status" in talking and "jobs apply" in talking
    # (drain, undrain, leader transfer: 3; runs show|logs|kill, jobs export, version: 5;
    # reload: 1; snapshot save: 1; members list|add|remove: 3, where add's --api is the new
    # member's address and the cluster's is --cluster-api)
    assert len(talking) == 24, sorted(talking)
    for verb, opts in talking.items():
        assert {"--api", "--token", "--token-file", "--cacert"} <= set(opts), verb


def test_lock_reads_its_token_file_before_and_after_name(tmp_path: Path) -> None:
    from raftcron.lockcmd import _options

    path = token_file(tmp_path)
    for words in (
        ["lock", "--token-file", path, "n", "--", "true"],
        ["lock", "n", "--token-file", path, "--", "true"],
    ):
        opts = _options(build_parser(only_lock=True).parse_args(words))
        assert (opts.name, opts.token, opts.argv) == ("n", TOKEN, ["true"])


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftcron", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_a_loose_token_file_is_a_usage_error_on_client_verbs_and_lock(tmp_path: Path) -> None:
    path = token_file(tmp_path, mode=0o644)
    for args in (
        ("status", "--api", "http://127.0.0.1:9", "--token-file", path),
        ("lock", "n", "--api", "http://127.0.0.1:9", "--token-file", path, "--", "true"),
        ("lock", "n", "--token-file", path, "--api", "http://127.0.0.1:9", "--", "true"),
    ):
        out = run_cli(*args)
        assert out.returncode == 2, out
        assert f"chmod 600 {path}" in out.stderr and "Traceback" not in out.stderr
    out = run_cli("jobs", "list", "--api", "http://127.0.0.1:9", env={"RAFTCRON_TOKEN_FILE": path})
    assert out.returncode == 2 and out.stderr.startswith("error: RAFTCRON_TOKEN_FILE: ")
