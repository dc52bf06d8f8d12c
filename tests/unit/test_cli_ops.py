"""The CLI as an etcdctl user expects it (issue 16 item 3), without a cluster: ``--api``
lists and fail-over (against a scripted server), ``--help`` on every verb, bare
``raftcron``, a closed stdout pipe, ``jobs export``'s TOML and refusal of a read token, and
what ``jobs apply`` reads (TOML or JSON, files or stdin). The live table is
tests/cluster/test_cli_ops.py."""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from raftcron import cli, cli_jobsfile, cli_runs
from raftcron.client import ApiError, ApiUnavailable, FailoverClient
from raftcron.clientopts import DEFAULT_API, api_urls
from raftcron.cliutil import CliError
from tests.cluster.harness import free_ports
from tests.unit.test_client import Script, server

__all__ = ["server"]  # the scripted HTTP server fixture

DEAD = f"http://127.0.0.1:{free_ports(1)[0]}"
STATUS = {"node": "a", "role": "leader", "leader": "a", "term": 1, "commit_index": 1}


def test_api_urls_is_one_url_or_a_comma_list() -> None:
    assert api_urls(None, {}) == [DEFAULT_API]
    assert api_urls("http://a:1/", {}) == ["http://a:1"]
    assert api_urls(" http://a:1, ,b:2/,", {"RAFTCRON_API": "x"}) == ["http://a:1", "b:2"]
    assert api_urls(None, {"RAFTCRON_API": "http://a:1,http://b:2"}) == [
        "http://a:1",
        "http://b:2",
    ]
    assert api_urls(",", {}) == [DEFAULT_API]


def test_a_dead_member_is_skipped_and_the_next_one_kept(server: tuple[str, Script]) -> None:
    url, script = server
    c = FailoverClient([DEAD, url], timeout=2.0)
    script.reply(200, STATUS)
    assert c.status().node == "a"
    assert c.answered.base_url == url
    script.reply(200, {"jobs": []})
    assert c.jobs() == []
    assert len(script.seen) == 2  # one request each: the dead one is not asked again first


def test_no_member_answers_names_each_one() -> None:
    other = f"http://127.0.0.1:{free_ports(1)[0]}"
    with pytest.raises(ApiUnavailable) as info:
        FailoverClient([DEAD, other], timeout=1.0).status()
    assert str(info.value).startswith(f"cannot reach the raftcron API at {DEAD}, {other} (")
    assert f"{DEAD}: " in info.value.reason and f"{other}: " in info.value.reason
    with pytest.raises(ApiUnavailable) as one:  # one member: the message it always had
        FailoverClient([DEAD], timeout=1.0).status()
    assert str(one.value).startswith(f"cannot reach the raftcron API at {DEAD} (")


def test_a_request_not_safe_to_repeat_is_never_sent_twice(server: tuple[str, Script]) -> None:
    url, script = server
    # The first member takes the trigger and answers too late: it may have fired. The
    # client must not fire again on the next member.
    script.reply(200, {}, delay=1.0)
    c = FailoverClient([url, url], timeout=0.3)
    with pytest.raises(ApiUnavailable):
        c.trigger("j")
    assert len(script.seen) == 1
    # a 503 after a proposal (timeout): unknown outcome, not repeated either
    script.replies.clear()
    script.reply(503, {"error": {"code": "timeout", "message": "no commit in 5s"}})
    with pytest.raises(ApiError) as info:
        FailoverClient([url, url], timeout=2.0).trigger("j")
    assert info.value.code == "timeout" and len(script.seen) == 2
    # 503 no_leader is answered before any proposal: the next member may take it
    script.reply(503, {"error": {"code": "no_leader", "message": "no leader"}})
    script.reply(200, {"run": "j@1~manual", "job": "j", "status": "claimed"})
    assert FailoverClient([url, url], timeout=2.0).trigger("j").status == "claimed"
    # a labelled trigger is safe to repeat: a late answer moves on to the next member
    script.reply(200, {}, delay=1.0)
    script.reply(200, {"run": "j@1", "job": "j", "status": "claimed", "duplicate": True})
    c = FailoverClient([url, url], timeout=0.3)
    assert c.trigger("j", "2026-01-01T00:00:00Z").duplicate is True


def test_a_repeatable_request_moves_on_after_a_late_answer(server: tuple[str, Script]) -> None:
    url, script = server
    script.reply(200, STATUS, delay=1.0)
    script.reply(200, {**STATUS, "node": "b"})
    assert FailoverClient([url, url], timeout=0.3).status().node == "b"


def _leaves(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Every verb and verb group of the parser, as argv words."""
    out = [list(prefix)] if prefix else []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _leaves(sub, (*prefix, name))
    return out


def test_every_verb_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    verbs = _leaves(cli.build_parser())
    assert ["runs", "show"] in verbs and ["version"] in verbs and ["jobs", "export"] in verbs
    for words in verbs:
        with pytest.raises(SystemExit) as info:
            cli.build_parser().parse_args([*words, "--help"])
        assert info.value.code == 0, words
        assert capsys.readouterr().out.startswith(f"usage: raftcron {' '.join(words)}"), words


def test_every_verb_that_prints_data_takes_o_json() -> None:
    parser = cli.build_parser()
    local = {"agent", "dev", "init", "check-config", "lock", "jobs import crontab"}
    local |= {"jobs import dkron", "jobs export"}  # -o toml|json: file formats
    for words in _leaves(parser):
        groups = (["jobs"], ["leader"], ["jobs", "import"], ["snapshot"], ["members"])
        if " ".join(words) in local or words in groups:
            continue
        args = parser.parse_args([*words, *_positionals(words), "-o", "json"])
        assert args.output == "json", words
    export = parser.parse_args(["jobs", "export", "-o", "json"])
    assert export.output == "json"


def _positionals(words: list[str]) -> list[str]:
    needs = {"jobs show": ["x"], "jobs apply": ["f"], "jobs delete": ["x"], "jobs pause": ["x"]}
    needs |= {"jobs resume": ["x"], "jobs next": ["x"], "jobs backfill": ["x"], "trigger": ["x"]}
    needs |= {"drain": ["b"], "undrain": ["b"], "runs show": ["r"], "runs logs": ["r"]}
    needs |= {"runs kill": ["r"], "reload": ["b"], "snapshot save": ["f"]}
    needs |= {"snapshot restore": ["f"], "members remove": ["x"]}
    needs |= {"members add": ["d", "--raft", "h:1", "--api", "h:2"]}
    return needs.get(" ".join(words), [])


def run(*args: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftcron", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
    )


def test_bare_raftcron_prints_the_verbs_and_exits_2() -> None:
    out = run()
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("usage: raftcron ")
    for verb in ("status", "jobs", "runs", "version", "lock", "drain"):
        assert f"\n    {verb} " in out.stderr, verb
    jobs = run("jobs")
    assert jobs.returncode == 2 and "export" in jobs.stderr and "apply" in jobs.stderr


def test_a_closed_pipe_ends_with_141_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[cluster]\nsecret = "0123456789abcdef0123"\n[cluster.nodes.a]\n'
        'raft = "127.0.0.1:17101"\napi = "127.0.0.1:18101"\n'
        + '[[jobs]]\nname = "x"\nschedule = "* * * * *"\ncommand = ["true"]\n'
    )
    # argparse drops a help text it cannot write (exit 0); our own output: 141
    for argv, code in ((["check-config", str(config)], 141), (["--help"], 0), (["jobs"], 2)):
        r, w = os.pipe()
        os.close(r)
        out = run(*argv, stdout=w)
        os.close(w)
        assert out.returncode == code, (argv, out.stderr)
        assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, argv
        assert out.stderr == "" or argv == ["jobs"], argv


@pytest.mark.parametrize(
    ("ms", "text"),
    [(0, "0ms"), (850, "850ms"), (12_345, "12.3s"), (245_000, "4m05s"), (7_380_000, "2h03m"),
     (273_600_000, "3d04h")],
)  # fmt: skip
def test_durations_in_the_runs_table(ms: int, text: str) -> None:
    assert cli_runs.duration_text(ms) == text


SPEC = {
    "name": "a job",
    "schedule": "0 3 * * *",
    "command": ["sh", "-c", 'echo "q" \\ $X\n\ttab'],
    "timezone": "Europe/Berlin",
    "retries": 2,
    "retry_other_node": False,
    "tags": {"zone": "eu", "odd key": "v"},
    "env": {"PGPASSWORD": 's3crét "x"', "EMPTY": ""},
    "notify": [{"url": "https://h/x", "on": ["failed"]}],
    "limits": {"cpu": 1.5, "tiny": 1e-05},
    "http": None,
}


def test_the_export_toml_reads_back_as_the_same_values() -> None:
    from raftcron.client import JobInfo

    job = JobInfo.from_json({"name": "a job", "spec": SPEC, "paused": True, "pause_note": "db"})
    text = cli_jobsfile.to_toml([job], ["header"])
    back = tomllib.loads(text)["jobs"]
    assert back == [{k: v for k, v in SPEC.items() if v is not None}]
    assert "# paused (db)" in text
    assert math.isinf(tomllib.loads("x = " + cli_jobsfile.toml_value(float("inf")))["x"])
    assert json.loads(cli_jobsfile.to_json([job])) == {"jobs": [SPEC]}


def _read(tmp_path: Path, name: str, text: str) -> list[dict[str, Any]]:
    path = tmp_path / name
    path.write_text(text)
    return cli_jobsfile.read_job_tables(str(path))[0]


def test_apply_reads_toml_or_json_files_and_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = {"name": "j", "schedule": "* * * * *", "command": ["true"], "cwd": "sub"}
    want = [{**job, "cwd": str(tmp_path / "sub")}]  # relative to the file, as before
    toml = '[[jobs]]\nname = "j"\nschedule = "* * * * *"\ncommand = ["true"]\ncwd = "sub"\n'
    assert _read(tmp_path, "a.toml", toml) == want
    assert _read(tmp_path, "noext", toml) == want  # [[jobs]] is not JSON
    assert _read(tmp_path, "b.json", json.dumps({"jobs": [job]})) == want
    assert _read(tmp_path, "c", json.dumps([job])) == want
    assert _read(tmp_path, "d", json.dumps(job)) == want
    view = {"name": "j", "next_fire": None, "spec": job, "paused": False}  # jobs show -o json
    assert _read(tmp_path, "e.json", json.dumps(view)) == want
    assert _read(tmp_path, "f.json", json.dumps([view])) == want
    monkeypatch.chdir(tmp_path)
    for text in (toml, json.dumps({"jobs": [job]})):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
        assert cli_jobsfile.read_job_tables("-") == (want, "stdin")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("x.json", "{nope", "x.json: not valid JSON: "),
        ("x.toml", "[[jobs]\n", "x.toml: not valid TOML: "),
        ("x.json", '{"jobs": {"name": "j"}}', "x.json: jobs: expected a list of jobs"),
        ("x.json", '{"other": 1}', 'x.json: no jobs (write {"jobs": [...]}, a list of jobs'),
        ("x.json", '[{"schedule": "* * * * *"}]', "x.json: [0].name: missing"),
        ("x.toml", "a = 1\n", "x.toml: no jobs (write [[jobs]] tables"),
    ],
)
def test_apply_names_the_file_and_the_fix(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    with pytest.raises(CliError) as info:
        _read(tmp_path, name, text)
    assert str(info.value).startswith(str(tmp_path / message)) or str(info.value).startswith(
        f"{tmp_path / name}{message[len(name) :]}"
    ), str(info.value)
    assert info.value.code == 2
    with pytest.raises(CliError, match="not found"):
        cli_jobsfile.read_job_tables(str(tmp_path / "missing.toml"))


def _export(url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["jobs", "export", "--api", url])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_export_refuses_a_read_token(
    server: tuple[str, Script], capsys: pytest.CaptureFixture[str]
) -> None:
    url, script = server
    job = {"name": "j", "source": "api", "next_fire": None, "spec": {"name": "j", "env": {}}}
    # where the cluster says who the token is (GET /v1/whoami)
    script.reply(200, {"role": "read", "token": "ci"})
    code, out, err = _export(url, capsys)
    assert (code, out) == (1, "")
    assert err.startswith("error: jobs export needs an admin token: this token has the read role")
    # where it cannot say (404): a value the cluster sent redacted gives the token away
    script.reply(404, {"error": {"code": "not_found", "message": "no route"}})
    secret = {**job, "spec": {"name": "j", "env": {"PW": "<redacted>"}}}
    script.reply(200, {"jobs": [secret]})
    code, out, err = _export(url, capsys)
    assert (code, out) == (1, "")
    assert "the cluster sent <redacted> for secrets of j" in err
    # an admin token: the jobs, as TOML
    script.reply(200, {"role": "admin", "token": "ops"})
    script.reply(200, {"jobs": [{**job, "spec": {"name": "j", "env": {"PW": "real"}}}]})
    code, out, err = _export(url, capsys)
    assert code == 0 and tomllib.loads(out)["jobs"] == [{"name": "j", "env": {"PW": "real"}}]
