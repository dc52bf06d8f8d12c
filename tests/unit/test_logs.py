"""Logs (issue 16 item 5): UTC RFC 3339 timestamps with milliseconds in both formats;
``--log-json`` lines with the node, job, run id, fence, term and event fields, carried
as data (``LogCtx``, ``bound``, ``extra``), never re-read from the text; every API write
audited once with its token's name and never its value; tokens get a ``name`` key."""

from __future__ import annotations

import asyncio
import calendar
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raftcron import logs
from raftcron.api import app as api
from raftcron.api.auth import Authorizer
from raftcron.api.http import ApiProblem
from raftcron.config import ApiConfig, ApiToken, ConfigError, load_config
from raftcron.core import commands as c
from raftcron.core.model import Run
from raftcron.core.state import Ok, Rejected
from raftcron.executor.lease import run_ctx
from raftcron.node import Node
from tests.unit.test_api_hardening import ADMIN, READ, SECRET_JOB, T0, _apply, _node, http, serve

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
RUN = Run(
    id="backup@1800000000000",
    job="backup",
    scheduled_at_ms=1_800_000_000_000,
    status="running",
    fence=42,
)


def emit(fmt: logging.Formatter, fn: Any) -> list[str]:
    """Log through a handler with ``fmt`` while ``fn(logger)`` runs; the lines written."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(fmt)
    logger = logging.getLogger("raftcron.test.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        fn(logger)
    finally:
        logger.removeHandler(handler)
    return out.getvalue().splitlines()


# --------------------------------------------------------------------------- formats


def test_timestamps_are_utc_rfc3339_with_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Pacific/Chatham")  # +12:45/+13:45: no accident can hide it
    time.tzset()
    try:
        # 2026-12-07T05:01:02.345Z
        assert logs.utc_stamp(1_796_619_662.345678) == "2026-12-07T05:01:02.345Z"
        assert logs.utc_stamp(1_796_619_662.0) == "2026-12-07T05:01:02.000Z"
        text = emit(logs.TextFormatter("a"), lambda lg: lg.info("hello"))
        record = json.loads(emit(logs.JsonFormatter("a"), lambda lg: lg.info("hello"))[0])
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    stamp, level, node, name, msg = text[0].split(" ", 4)
    assert STAMP.match(stamp) and (level, node, name, msg) == (
        "INFO",
        "[a]",
        "raftcron.test.logs:",
        "hello",
    )
    assert STAMP.match(record["ts"]), record
    # the stamp is now, in UTC (whatever TZ says)
    assert abs(calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.time()) < 120


def test_json_lines_carry_run_fields_from_run_ctx_not_from_the_text() -> None:
    ctx = run_ctx(RUN, "b")
    assert ctx == "job=backup run=backup@1800000000000 fence=42 node=b"  # the text as before

    def body(lg: logging.Logger) -> None:
        lg.info("%s: finished %s", ctx, "succeeded", extra={"event": "run_finished"})
        lg.info("job=other run=x fence=1: looks like a run line, is not one")

    first, second = (json.loads(x) for x in emit(logs.JsonFormatter("b"), body))
    assert first["msg"] == f"{ctx}: finished succeeded"
    assert {k: first[k] for k in ("node", "job", "run_id", "fence", "event")} == {
        "node": "b",
        "job": "backup",
        "run_id": "backup@1800000000000",
        "fence": 42,
        "event": "run_finished",
    }
    assert set(first) == {"ts", "level", "logger", "msg", "node", "job", "run_id", "fence", "event"}
    # text is never parsed: a message that merely looks like a run line has only the node
    assert set(second) == {"ts", "level", "logger", "msg", "node"}


def test_bound_fields_reach_tasks_started_inside_and_extra_wins() -> None:
    def body(lg: logging.Logger) -> None:
        async def child() -> None:
            lg.info("in a task")

        async def main() -> None:
            with logs.bound(term=7, job="from-context"):
                await asyncio.create_task(child())
                lg.info("explicit", extra={"job": "from-extra", "event": "x"})
            lg.info("after the block")

        asyncio.run(main())

    a, b, after = (json.loads(x) for x in emit(logs.JsonFormatter("n"), body))
    assert (a["term"], a["job"]) == (7, "from-context")
    assert (b["term"], b["job"], b["event"]) == (7, "from-extra", "x")
    assert "term" not in after and "job" not in after


def test_json_keeps_a_traceback_and_user_text_on_one_line() -> None:
    def body(lg: logging.Logger) -> None:
        lg.info("note: %s", "disk full\n2027-01-15 08:00:00 CRITICAL forged\u2028x")
        try:
            raise ValueError("boom")
        except ValueError:
            lg.exception("failed")

    lines = emit(logs.JsonFormatter("a"), body)
    assert len(lines) == 2
    note, failed = (json.loads(x) for x in lines)
    assert note["msg"].startswith("note: disk full\n2027")  # one JSON string, one line
    assert "\u2028" not in lines[0]  # escaped as \\u2028 (ASCII output)
    assert failed["exc"].startswith("Traceback") and "ValueError: boom" in failed["exc"]


# --------------------------------------------------------------------------- token names


def _config(tmp_path: Path, tokens: str) -> Any:
    path = tmp_path / "cluster.toml"
    path.write_text(
        '[cluster]\nsecret = "0123456789abcdef-not-a-real-secret"\n'
        '[cluster.nodes.a]\nraft = "127.0.0.1:7101"\napi = "127.0.0.1:8101"\n' + tokens
    )
    return load_config(path)


def test_tokens_have_names_given_or_derived_from_their_position(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        '[[api.tokens]]\nrole = "admin"\ntoken = "admin-token-0123456789"\n'
        '[[api.tokens]]\nname = "grafana"\nrole = "read"\ntoken = "read-token-0123456789"\n'
        '[[api.tokens]]\nrole = "read"\ntoken = "other-token-0123456789"\n',
    )
    assert [t.name for t in cfg.api.tokens] == ["token-1", "grafana", "token-3"]
    assert "grafana" in repr(cfg.api.tokens) and "0123456789" not in repr(cfg.api.tokens)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (
            '[[api.tokens]]\nname = "ci"\nrole = "admin"\ntoken = "admin-token-0123456789"\n'
            '[[api.tokens]]\nname = "ci"\nrole = "read"\ntoken = "read-token-0123456789"\n',
            'api.tokens[1].name: "ci" is already the name of api.tokens[0] (give every token '
            "its own name: the audit log tells them apart by it)",
        ),
        (
            '[[api.tokens]]\nname = "ci/deploy"\nrole = "admin"\ntoken = "admin-token-012345"\n',
            "api.tokens[0].name: not a valid token name (use a letter or digit, then up to 63 "
            "letters, digits, '.', '_' or '-', e.g. name = \"ci\")",
        ),
        (
            '[[api.tokens]]\nname = "admin-token-0123456789"\nrole = "admin"\n'
            'token = "admin-token-0123456789"\n',
            "api.tokens[0].name: is the token itself (a name is logged with every write: pick "
            'one such as "ci" or "ops")',
        ),
    ],
    ids=["duplicate", "invalid", "the-token-itself"],
)
def test_bad_token_names_are_refused(tmp_path: Path, tokens: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, tokens)
    assert info.value.errors == [f"{tmp_path / 'cluster.toml'}: {message}"]
    assert "0123456789" not in str(info.value)


def test_the_authorizer_names_callers_without_their_token() -> None:
    authz = Authorizer.from_config(
        ApiConfig(
            tokens=(
                ApiToken(role="admin", token=ADMIN, name="ci"),
                ApiToken(role="read", token=READ),
            )
        )
    )
    assert authz.caller(f"Bearer {ADMIN}").token == "ci"
    read = authz.caller(f"Bearer {READ}")
    assert (read.role, read.token, read.label) == ("read", "token-2", "token-2")
    nobody = authz.caller("Bearer nope")
    assert (nobody.role, nobody.token, nobody.label) == (None, None, "unauthenticated")
    assert Authorizer().caller(None).label == "open-api"


# --------------------------------------------------------------------------- the audit


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    n = _node(tmp_path)

    async def propose(node: Node, cmd: c.Command) -> Ok:
        res = _apply(node, cmd)
        if isinstance(res, Rejected):
            raise ApiProblem(409, res.code, res.message)
        assert isinstance(res, Ok)
        return res

    monkeypatch.setattr(api, "_propose", propose)
    _apply(n, c.PutJob(at_ms=T0, spec=SECRET_JOB))
    yield n


def _audits(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == "audit"]


def test_every_api_write_is_audited_once_with_the_token_name(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    job = {"schedule": "0 4 * * *", "command": ["true"], "env": {"K": "v-secret-value"}}

    async def body(port: int) -> None:
        assert (await http(port, "PUT", "/v1/jobs/new", job))[0] == 201
        assert (await http(port, "POST", "/v1/jobs/new/pause", {"note": "n"}))[0] == 200
        assert (await http(port, "POST", "/v1/jobs/new/resume"))[0] == 200
        assert (await http(port, "POST", "/v1/jobs/new/pause", token=READ))[0] == 403
        assert (await http(port, "POST", "/v1/jobs/new/pause", token="x" * 20))[0] == 401
        assert (await http(port, "POST", "/v1/runs/nope/kill"))[0] == 404
        assert (await http(port, "DELETE", "/v1/jobs/new"))[0] == 200
        assert (await http(port, "GET", "/v1/jobs"))[0] == 200  # a read: not audited
        assert (await http(port, "GET", "/v1/whoami", token=READ))[2] == {
            "role": "read",
            "token": "token-2",
        }

    out = io.StringIO()
    as_json = logging.StreamHandler(out)  # formats in the logging call, as the agent's does
    as_json.setFormatter(logs.JsonFormatter("a"))
    logging.getLogger().addHandler(as_json)
    try:
        with caplog.at_level(logging.DEBUG):
            serve(node, body)
    finally:
        logging.getLogger().removeHandler(as_json)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    got = [
        (r.levelno, r.method, r.path, r.token, r.role, r.status, getattr(r, "job", None))  # type: ignore[attr-defined]
        for r in _audits(caplog)
    ]
    info = logging.INFO
    assert got == [
        (info, "PUT", "/v1/jobs/new", "token-1", "admin", 201, "new"),
        (info, "POST", "/v1/jobs/new/pause", "token-1", "admin", 200, "new"),
        (info, "POST", "/v1/jobs/new/resume", "token-1", "admin", 200, "new"),
        (info, "POST", "/v1/jobs/new/pause", "token-2", "read", 403, "new"),
        (info, "POST", "/v1/jobs/new/pause", "unauthenticated", None, 401, "new"),
        (info, "POST", "/v1/runs/nope/kill", "token-1", "admin", 404, None),
        (info, "DELETE", "/v1/jobs/new", "token-1", "admin", 200, "new"),
    ]
    kill = _audits(caplog)[5]
    assert kill.run_id == "nope"  # type: ignore[attr-defined]
    assert kill.getMessage() == "audit: POST /v1/runs/nope/kill by token-1 (admin) -> 404"
    # the handler's own line carries the job bound by the audit middleware
    paused = next(x for x in lines if "paused through the API" in x["msg"])
    assert (paused["job"], paused["node"]) == ("new", "a")
    audit = next(x for x in lines if x.get("event") == "audit" and x["status"] == 403)
    assert {k: audit[k] for k in ("token", "role", "method", "path", "job", "node")} == {
        "token": "token-2",
        "role": "read",
        "method": "POST",
        "path": "/v1/jobs/new/pause",
        "job": "new",
        "node": "a",
    }
    text = out.getvalue() + "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in (ADMIN, READ, "v-secret-value", "x" * 20):
        assert secret not in text


def test_lock_operations_are_audited_at_debug_only_and_only_job_paths_name_a_job(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(port: int) -> None:
        await http(port, "POST", "/v1/locks/nightly", {"ttl": "10s", "holder": "h"})
        await http(port, "POST", "/v1/members/zz/drain")

    with caplog.at_level(logging.DEBUG):
        serve(node, body)
    lock, member = _audits(caplog)
    assert lock.levelno == logging.DEBUG and lock.path == "/v1/locks/nightly"  # type: ignore[attr-defined]
    assert member.levelno == logging.INFO and member.path == "/v1/members/zz/drain"  # type: ignore[attr-defined]
    assert lock.job is None and member.job is None  # type: ignore[attr-defined]


def test_whoami_on_an_open_api(tmp_path: Path) -> None:
    async def body(port: int) -> None:
        assert (await http(port, "GET", "/v1/whoami", token=None))[2] == {
            "role": "admin",
            "token": None,
        }

    serve(_node(tmp_path, tokens=False), body)


def test_the_agent_log_setup_writes_json_with_the_node(capsys: pytest.CaptureFixture[str]) -> None:
    from raftcron import cli

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        cli._setup_logging("info", True, "node-a")
        logging.getLogger("raftcron.test").info("%s: x", run_ctx(RUN, "node-a"))
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    line = json.loads(capsys.readouterr().err.splitlines()[0])
    assert line["node"] == "node-a" and line["fence"] == 42 and STAMP.match(line["ts"])
