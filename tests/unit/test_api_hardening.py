"""The API against an attacker and a careless operator, in process (the real app and the
real server class on a loopback port; writes are applied to the node's state machine
directly instead of through Raft).

* Read tokens see job secrets redacted with one marker, admin sees them; a PUT carrying
  the marker is refused naming the key (``jobs apply`` goes through the same PUT).
* The audit's 500s are 400s: a fence or a backfill ``from`` too big for msgpack, a
  ``from`` of "¹", a backfill rate of 5e-324, years before 1970 and an env key of
  100,000 characters; years before 1000 print with four digits.
* aiohttp's own errors (a 10,000-character job name, a header too long, garbage, a body
  too large) are JSON, with no traceback in the log; a client that never finishes its
  request head is cut off after the header timeout; connections are capped.
* A pause note with a newline does not forge a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from raftcron.api import app as api
from raftcron.api import server
from raftcron.api.http import REDACTED, ApiProblem
from raftcron.config import ApiConfig, ApiToken, ClusterConfig, Config, HostPort, NodeConfig
from raftcron.core import commands as c
from raftcron.core.model import HttpSpec, JobSpec, NotifyTarget, Run
from raftcron.core.state import Ok, Rejected
from raftcron.node import Node
from raftcron.timefmt import rfc3339

ADMIN = "admin-token-0123456789abcdef"
READ = "read-token-0123456789abcdef"
T0 = 1_800_000_000_000

SECRET_JOB = JobSpec(
    name="db-backup",
    schedule="0 3 * * *",
    command=("backup",),
    env=(("DB_PASSWORD", "hunter2-very-secret"), ("MODE", "full")),
    notify=(NotifyTarget(url="https://hooks.example.com/services/T0/B0/XYZSECRET"),),
    ping_url="https://hc-ping.com/0b1e5c4a-ping-uuid",
)
HTTP_JOB = JobSpec(
    name="hook",
    schedule="* * * * *",
    command=(),
    http=HttpSpec(
        url="https://user:pa55word@api.example.com/run?key=querysecret",
        headers=(("Authorization", "Bearer header-secret-xyz"),),
    ),
)


def _node(tmp_path: Path, tokens: bool = True) -> Node:
    me = NodeConfig(
        name="a",
        raft=HostPort(host="127.0.0.1", port=1),
        api=HostPort(host="127.0.0.1", port=2),
        tags=(),
        data_dir=tmp_path,
    )
    api_cfg = ApiConfig(
        tokens=(ApiToken(role="admin", token=ADMIN), ApiToken(role="read", token=READ))
        if tokens
        else ()
    )
    cfg = Config(
        path=tmp_path / "c.toml",
        cluster=ClusterConfig(secret="x" * 20, nodes=(me,)),
        api=api_cfg,
        jobs=(),
    )
    return Node(cfg, "a")


def _apply(node: Node, cmd: c.Command) -> Any:
    return node.machine.apply(c.encode(cmd))


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    """A node whose writes commit at once on its own state machine (no Raft)."""
    n = _node(tmp_path)

    async def propose(node: Node, cmd: c.Command) -> Ok:
        res = _apply(node, cmd)
        if isinstance(res, Rejected):
            raise ApiProblem(409, res.code, res.message)
        assert isinstance(res, Ok)
        return res

    monkeypatch.setattr(api, "_propose", propose)
    for spec in (SECRET_JOB, HTTP_JOB):
        _apply(n, c.PutJob(at_ms=T0, spec=spec))
    yield n


Call = Callable[..., Awaitable[tuple[int, dict[str, str], Any]]]


def serve(node: Node, body: Callable[[int], Awaitable[None]]) -> None:
    """Serve ``node``'s API with the real server class on a free loopback port and run
    ``body(port)`` against it."""

    async def main() -> None:
        runner = server.ApiRunner(api.build_app(node))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            await body(port)
        finally:
            await runner.cleanup()

    asyncio.run(main())


async def http(
    port: int, method: str, path: str, body: Any = None, token: str | None = ADMIN
) -> tuple[int, dict[str, str], Any]:
    head = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close"]
    data = b"" if body is None else json.dumps(body).encode()
    if token:
        head.append(f"Authorization: Bearer {token}")
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
    return await raw(port, ("\r\n".join(head) + "\r\n\r\n").encode() + data)


async def raw(port: int, data: bytes) -> tuple[int, dict[str, str], Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    resp = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, payload = resp.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    assert headers.get("content-type", "").startswith("application/json"), resp[:300]
    return status, headers, orjson.loads(payload)


# --------------------------------------------------------------------------- redaction


def test_a_read_token_sees_secrets_redacted_and_admin_sees_them(node: Node) -> None:
    _apply(node, c.Plan(at_ms=T0 + 60_000, fires=(c.Fire(job="db-backup",
           scheduled_at_ms=T0 + 60_000, node="a", trigger="manual"),)))  # fmt: skip
    run = node.machine.read(lambda s: s.runs[f"db-backup@{T0 + 60_000}~manual"])
    _apply(node, c.Start(at_ms=T0, run_id=run.id, fence=run.fence, node="a", token="t"))
    _apply(node, c.Complete(
        at_ms=T0, run_id=run.id, fence=run.fence, node="a", status="failed", exit_code=1,
        started_ms=T0, finished_ms=T0, output="DB_PASSWORD=hunter2-very-secret\nMODE=full\n",
        reason="exit 1: login failed for hunter2-very-secret",
    ))  # fmt: skip

    async def body(port: int) -> None:
        _, _, read_jobs = await http(port, "GET", "/v1/jobs", token=READ)
        _, _, admin_jobs = await http(port, "GET", "/v1/jobs", token=ADMIN)
        read = {j["name"]: j for j in read_jobs["jobs"]}
        admin = {j["name"]: j for j in admin_jobs["jobs"]}
        spec = read["db-backup"]["spec"]
        assert spec["env"] == {"DB_PASSWORD": REDACTED, "MODE": REDACTED}
        assert spec["notify"] == [{"url": REDACTED, "on": list(admin["db-backup"]["spec"]
                                                               ["notify"][0]["on"])}]  # fmt: skip
        assert spec["ping_url"] == REDACTED
        assert spec["command"] == ["backup"] and spec["schedule"] == "0 3 * * *"
        hook = read["hook"]["spec"]["http"]
        assert hook["url"] == REDACTED and hook["headers"] == {"Authorization": REDACTED}
        assert admin["db-backup"]["spec"]["env"]["DB_PASSWORD"] == "hunter2-very-secret"
        assert admin["hook"]["spec"]["http"]["headers"]["Authorization"].endswith("xyz")
        # the one-job view, and the runs (a job that printed its own env)
        _, _, one = await http(port, "GET", "/v1/jobs/hook", token=READ)
        assert one["spec"]["http"]["url"] == REDACTED
        _, _, runs = await http(port, "GET", "/v1/runs?output=1", token=READ)
        text = orjson.dumps(runs).decode()
        assert "hunter2" not in text and REDACTED in runs["runs"][0]["output"]
        _, _, one_run = await http(port, "GET", f"/v1/runs/{run.id}", token=READ)
        assert "hunter2" not in orjson.dumps(one_run).decode()
        _, _, admin_run = await http(port, "GET", f"/v1/runs/{run.id}", token=ADMIN)
        assert "hunter2-very-secret" in admin_run["output"]
        for secret in ("hunter2", "XYZSECRET", "ping-uuid", "pa55word", "querysecret",
                       "header-secret"):  # fmt: skip
            assert secret not in orjson.dumps(read_jobs).decode()

    serve(node, body)


def test_an_http_job_url_without_credentials_stays_visible(node: Node) -> None:
    plain = JobSpec(name="plain", schedule="* * * * *", command=(),
                    http=HttpSpec(url="https://api.example.com/health"))  # fmt: skip
    _apply(node, c.PutJob(at_ms=T0, spec=plain))

    async def body(port: int) -> None:
        _, _, job = await http(port, "GET", "/v1/jobs/plain", token=READ)
        assert job["spec"]["http"]["url"] == "https://api.example.com/health"

    serve(node, body)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"env": {"DB_PASSWORD": REDACTED}}, "env.DB_PASSWORD"),
        ({"ping_url": REDACTED}, "ping_url"),
        ({"notify": [{"url": REDACTED}]}, "notify[0].url"),
        ({"notify": [f"https://x.example/{REDACTED}"]}, "notify[0]"),
    ],
)
def test_a_put_carrying_the_marker_is_refused_naming_the_key(
    node: Node, table: dict[str, Any], key: str
) -> None:
    job = {"schedule": "0 3 * * *", "command": ["backup"], **table}

    async def body(port: int) -> None:
        status, _, err = await http(port, "PUT", "/v1/jobs/db-backup", job)
        assert status == 400 and err["error"]["code"] == "invalid", err
        assert f"request body: {key}: {REDACTED}" in err["error"]["message"], err
        # the job kept its real values
        _, _, now = await http(port, "GET", "/v1/jobs/db-backup")
        assert now["spec"]["env"]["DB_PASSWORD"] == "hunter2-very-secret"

    serve(node, body)


def test_the_read_view_put_back_by_an_admin_is_refused(node: Node) -> None:
    async def body(port: int) -> None:
        _, _, view = await http(port, "GET", "/v1/jobs/db-backup", token=READ)
        status, _, err = await http(port, "PUT", "/v1/jobs/db-backup", view["spec"])
        assert status == 400 and REDACTED in err["error"]["message"], err

    serve(node, body)


def test_an_open_api_shows_everything(tmp_path: Path) -> None:
    n = _node(tmp_path, tokens=False)
    _apply(n, c.PutJob(at_ms=T0, spec=SECRET_JOB))

    async def body(port: int) -> None:
        _, _, job = await http(port, "GET", "/v1/jobs/db-backup", token=None)
        assert job["spec"]["env"]["DB_PASSWORD"] == "hunter2-very-secret"

    serve(n, body)


# --------------------------------------------------------------------------- 400, not 500


@pytest.mark.parametrize(
    ("method", "path", "payload", "needle"),
    [
        ("DELETE", "/v1/locks/x?fence=20627615106075882655055872", None, "fence"),
        ("DELETE", "/v1/locks/x?fence=%C2%B9", None, "fence"),
        ("POST", "/v1/locks/x/renew", {"fence": 2**63}, "fence"),
        ("POST", "/v1/jobs/db-backup/backfill",
         {"from": "99999999999999999999999", "to": "2026-01-01T00:00:00Z"}, "from"),
        ("POST", "/v1/jobs/db-backup/backfill",
         {"from": "0267-01-01T00:00:00Z", "to": "0268-01-01T00:00:00Z"}, "1970"),
        ("POST", "/v1/jobs/db-backup/backfill",
         {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "rate": 5e-324}, "rate"),
        ("POST", "/v1/jobs/db-backup/backfill",
         {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "rate": 1e300}, "rate"),
        ("GET", "/v1/jobs/db-backup/next?from=%C2%B9", None, "from"),
        ("GET", "/v1/jobs/db-backup/next?from=-1", None, "1970"),
        ("GET", "/v1/jobs/db-backup/next?count=%C2%B9", None, "count"),
        ("GET", "/v1/runs?before=%C2%B9", None, "before"),
        ("POST", "/v1/jobs/db-backup/trigger", {"scheduled_at": "99999999999999999999999"},
         "scheduled_at"),
        ("PUT", "/v1/jobs/big", {"schedule": "* * * * *", "command": ["x"],
                                 "env": {"K" * 100_000: "v"}}, "characters long"),
        ("PUT", "/v1/jobs/big", {"schedule": "* * * * *", "command": ["x" * 70_000]},
         "characters long"),
        ("PUT", "/v1/jobs/big", {"schedule": "* * * * *", "command": ["x"],
                                 "tags": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {
                                     "i": {"j": {"k": {"l": {"m": {"n": {"o": {"p": {
                                         "q": {"r": "s"}}}}}}}}}}}}}}}}}}}, "nested"),
    ],
)  # fmt: skip
def test_the_audits_500s_are_400s(
    node: Node, method: str, path: str, payload: Any, needle: str
) -> None:
    async def body(port: int) -> None:
        status, _, err = await http(port, method, path, payload)
        assert status == 400 and err["error"]["code"] == "invalid", err
        assert needle in err["error"]["message"], err

    serve(node, body)


@pytest.mark.parametrize(
    ("ms", "text"),
    [(-54_700_000_000_000, "0236-08-17T03:33:20Z"), (-1500, "1969-12-31T23:59:58.500Z"),
     (253_402_300_799_999, "9999-12-31T23:59:59.999Z"), (0, "1970-01-01T00:00:00Z")],
)  # fmt: skip
def test_every_year_prints_with_four_digits(ms: int, text: str) -> None:
    assert rfc3339(ms) == text
    view = api.run_json(Run(id="j@1", job="j", scheduled_at_ms=ms, status="missed"))
    assert view["scheduled_at"] == text


# --------------------------------------------------------------------------- the server


def test_aiohttps_own_errors_are_json_without_a_traceback(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(port: int) -> None:
        name = "j" * 10_000
        line = f"GET /v1/jobs/{name} HTTP/1.1\r\nHost: x\r\n\r\n"
        status, _, err = await raw(port, line.encode())
        assert status == 400 and err["error"]["code"] == "bad_request", err
        assert "request line" in err["error"]["message"]
        status, _, err = await raw(
            port, b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"y" * 10_000 + b"\r\n\r\n"
        )
        assert status == 431 and err["error"]["code"] == "request_header_fields_too_large", err
        many = b"".join(b"X-%d: 1\r\n" % i for i in range(300))
        status, _, err = await raw(port, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        assert status in (400, 431) and "error" in err, err
        status, _, err = await raw(port, b"\x16\x03\x01 not http at all\r\n\r\n")
        assert status == 400 and err["error"]["code"] == "bad_request", err
        big = {"schedule": "* * * * *", "command": ["x"], "body": "z" * (2 << 20)}
        status, _, err = await http(port, "PUT", "/v1/jobs/huge", big)
        assert status == 413 and "error" in err, err

    with caplog.at_level(logging.DEBUG):
        serve(node, body)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]


def test_a_client_that_never_finishes_its_request_head_is_cut_off(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "HEADER_TIMEOUT_S", 0.5)

    async def body(port: int) -> None:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        t0 = loop.time()
        writer.write(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n")  # no blank line: never done
        try:
            for _ in range(6):  # a byte now and then keeps nothing alive
                await asyncio.sleep(0.2)
                writer.write(b"X")
                await writer.drain()
        except ConnectionError:
            pass  # (the server closed it while we were still sending)
        try:
            got = await asyncio.wait_for(reader.read(), 10)
        except ConnectionError:
            got = b""  # (reset: it was closed while bytes were in flight)
        assert got == b"" and loop.time() - t0 < 5  # closed by the server, no response
        writer.close()
        # a client that does finish gets its answer
        status, _, st = await http(port, "GET", "/health", token=None)
        assert status == 503 and st["status"] == "no_leader"

    serve(node, body)


def test_connections_beyond_the_cap_are_closed_at_once(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "MAX_CONNECTIONS", 5)

    async def body(port: int) -> None:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, not held
        writer.close()
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)
        status, _, _ = await http(port, "GET", "/v1/status")
        assert status == 200

    serve(node, body)


# --------------------------------------------------------------------------- logs


def test_a_pause_note_with_a_newline_does_not_forge_a_log_line(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    forged = "disk full\n2027-01-15 08:00:00 CRITICAL [a] raftcron.node: node a: forged"

    async def body(port: int) -> None:
        status, _, job = await http(port, "POST", "/v1/jobs/db-backup/pause", {"note": forged})
        assert status == 200 and job["pause_note"] == forged  # stored as given
        status, _, _ = await http(port, "POST", f"/v1/runs/{'x%0Ay'}/kill", {"reason": forged})
        assert status == 404

    with caplog.at_level(logging.INFO):
        serve(node, body)
    lines = [r.getMessage() for r in caplog.records if "paused through the API" in r.getMessage()]
    assert lines and all("\n" not in ln for ln in lines), lines
    assert "disk full\\n2027" in lines[0]
    assert all("\n" not in r.getMessage() for r in caplog.records)


def test_the_agents_log_format_keeps_every_record_on_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from raftcron import cli

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        cli._setup_logging("info", False, "a")
        logger = logging.getLogger("raftcron.test")
        logger.info("note: %s", "disk full\n2027-01-15 08:00:00 CRITICAL [a] x: forged\r")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("with a traceback: %s", "a\nb")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capsys.readouterr().err.splitlines()
    assert err[0].endswith("note: disk full\\n2027-01-15 08:00:00 CRITICAL [a] x: forged\\r")
    assert (
        err[1].endswith("with a traceback: a\\nb")
        and err[2] == "Traceback (most recent call last):"
    )


def test_a_body_that_does_not_arrive_in_time_is_a_json_408(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raftcron.api import http as api_http

    monkeypatch.setattr(api_http, "BODY_TIMEOUT_S", 0.3)

    async def body(port: int) -> None:
        head = (
            "PUT /v1/jobs/slow HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {ADMIN}\r\nContent-Length: 100\r\n\r\n" + '{"schedule": '
        )
        status, headers, err = await raw(port, head.encode())  # (then nothing more)
        assert status == 408 and err["error"]["code"] == "request_timeout", err
        assert headers.get("connection") == "close"

    serve(node, body)


def test_the_documents_links_name_operations_it_has(tmp_path: Path) -> None:
    from openapi_spec_validator import validate

    from raftcron.api import openapi

    doc = openapi.document(api.build_app(_node(tmp_path)))
    validate(doc)
    ids = {op["operationId"] for item in doc["paths"].values() for op in item.values()}
    links = [
        link
        for item in doc["paths"].values()
        for op in item.values()
        for resp in op["responses"].values()
        for link in resp.get("links", {}).values()
    ]
    assert len(links) >= 12
    assert {link["operationId"] for link in links} <= ids
    put = doc["paths"]["/v1/jobs/{name}"]["put"]["responses"]
    assert put["201"]["links"]["GetJob"]["parameters"] == {"name": "$request.path.name"}
    assert all(
        "default" in op["responses"] for item in doc["paths"].values() for op in item.values()
    )
