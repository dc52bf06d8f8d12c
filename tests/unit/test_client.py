"""raftcron.client against a scripted HTTP server: request shapes (including the lock
contract), error mapping, timeouts, tokens; sync and async give the same answers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from raftcron import clientopts
from raftcron.client import (
    DEFAULT_API,
    ApiError,
    ApiUnavailable,
    AsyncClient,
    Client,
    LockGrant,
)
from tests.cluster.harness import free_ports


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Script:
    """What the fake server answers: (status, body bytes, delay) per request, in order."""

    replies: list[tuple[int, bytes, float]] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    def reply(self, status: int, body: Any, delay: float = 0.0) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.replies.append((status, data, delay))


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            script.seen.append(
                Seen(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    json.loads(raw) if raw else None,
                )
            )
            status, data, delay = script.replies.pop(0) if script.replies else (200, b"{}", 0)
            time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout test)

        do_GET = do_PUT = do_POST = do_DELETE = _any

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()
    httpd.server_close()
    t.join(5)


RUN = {
    "id": "j@1000",
    "job": "j",
    "scheduled_at": "1970-01-01T00:00:01Z",
    "scheduled_at_ms": 1000,
    "fence": 3,
    "node": "b",
    "status": "succeeded",
    "trigger": "schedule",
    "attempt": 1,
    "started_at": None,
    "finished_at": None,
    "exit_code": 0,
    "reason": "",
}


def test_requests_carry_token_json_and_quoted_names(server: tuple[str, Script]) -> None:
    url, script = server
    c = Client(url + "/", token="s3cret-token-value")
    script.reply(201, {"job": "a b/c", "result": "created"})
    res = c.put_job("a b/c", {"schedule": "* * * * *", "command": ["true"]})
    assert res.result == "created"
    seen = script.seen[-1]
    assert (seen.method, seen.path) == ("PUT", "/v1/jobs/a%20b%2Fc")
    assert seen.headers["authorization"] == "Bearer s3cret-token-value"
    assert seen.headers["content-type"] == "application/json"
    assert seen.body == {"schedule": "* * * * *", "command": ["true"]}
    assert "s3cret" not in repr(c)

    script.reply(200, {"runs": [RUN], "next": "j@1000", "total": 9})
    page = c.runs(job="j", status="failed,lost", limit=1, before="j@2000")
    assert script.seen[-1].path == "/v1/runs?job=j&status=failed%2Clost&limit=1&before=j%402000"
    assert page.next == "j@1000" and page.total == 9 and page.runs[0].fence == 3

    script.reply(200, {"job": "j", "timezone": "UTC", "fires": []})
    c.next_fires("j", "2026-03-29T00:00:00+02:00", 3)
    assert script.seen[-1].path == "/v1/jobs/j/next?from=2026-03-29T00%3A00%3A00%2B02%3A00&count=3"

    script.reply(202, {"run": "j@5~manual", "job": "j", "status": "skipped", "reason": "overlap"})
    t = c.trigger("j")
    assert (t.status, t.reason, t.duplicate) == ("skipped", "overlap", False)
    assert script.seen[-1].body == {}

    script.reply(202, {"run": "j@5~manual.2", "job": "j", "status": "running",
                       "result": "killing", "reason": "killed through the API: x"})  # fmt: skip
    k = c.kill("j@5~manual.2", reason="x", hard=True)
    assert (script.seen[-1].method, script.seen[-1].path) == (
        "POST",
        "/v1/runs/j%405~manual.2/kill",
    )
    assert script.seen[-1].body == {"reason": "x", "hard": True}
    assert (k.run, k.result, k.status) == ("j@5~manual.2", "killing", "running")


def test_lock_contract(server: tuple[str, Script]) -> None:
    url, script = server
    c = Client(url, timeout=2)
    script.reply(200, {"lock": "db", "fence": 41, "holder": "h1", "ttl_ms": 30000})
    assert c.lock_acquire("db", 30, "10s", holder="h1", request="r-1") == LockGrant(
        name="db", fence=41, holder="h1", ttl_ms=30000
    )
    assert (script.seen[-1].method, script.seen[-1].path) == ("POST", "/v1/locks/db")
    assert script.seen[-1].body == {"ttl": 30, "wait": "10s", "holder": "h1", "request": "r-1"}

    script.reply(200, {"lock": "db", "fence": 41, "ttl_ms": 30000})
    grant = c.lock_renew("db", 41)
    assert grant.fence == 41 and script.seen[-1].body == {"fence": 41}
    assert script.seen[-1].path == "/v1/locks/db/renew"

    script.reply(200, {"lock": "db", "released": True})
    assert c.lock_release("db", 41) is None
    assert (script.seen[-1].method, script.seen[-1].path) == ("DELETE", "/v1/locks/db?fence=41")

    script.reply(409, {"error": {"code": "locked", "message": "db is held by h2"}})
    with pytest.raises(ApiError) as err:
        c.lock_acquire("db", "30s", 0)
    assert (err.value.status, err.value.code) == (409, "locked")

    script.reply(409, {"error": {"code": "stale_fence", "message": "fence 41 is not current"}})
    with pytest.raises(ApiError) as err:
        c.lock_renew("db", 41)
    assert err.value.code == "stale_fence"

    script.reply(200, {"locks": [{"lock": "db", "fence": 42, "holder": "h2", "ttl_ms": 5000}]})
    (info,) = c.locks()
    assert (info.name, info.fence, info.holder) == ("db", 42, "h2")


def test_lock_wait_extends_the_request_timeout(server: tuple[str, Script]) -> None:
    url, script = server
    c = Client(url, timeout=0.3)
    script.reply(200, {"lock": "x", "fence": 1, "holder": "h", "ttl_ms": 1000}, delay=0.8)
    assert c.lock_acquire("x", 1, wait_s=2).fence == 1  # 0.3 s + 2 s wait > 0.8 s
    script.reply(200, {}, delay=0.8)
    with pytest.raises(ApiUnavailable, match="timed out"):
        c.status()


def test_errors(server: tuple[str, Script]) -> None:
    url, script = server
    c = Client(url)
    script.reply(404, {"error": {"code": "unknown_job", "message": "no job named 'x'"}})
    with pytest.raises(ApiError) as err:
        c.job("x")
    assert (err.value.status, err.value.code, err.value.message) == (
        404,
        "unknown_job",
        "no job named 'x'",
    )
    script.reply(502, b"<html>bad gateway</html>")
    with pytest.raises(ApiError) as err:
        c.jobs()
    assert err.value.status == 502 and err.value.code == "http" and "bad gateway" in str(err.value)
    script.reply(200, b"not json")
    with pytest.raises(ApiError, match="not JSON"):
        c.status()
    (port,) = free_ports(1)
    with pytest.raises(ApiUnavailable, match="refused"):
        Client(f"http://127.0.0.1:{port}").status()
    with pytest.raises(ValueError):
        Client("ftp://example.org")


def test_async_client_same_answers(server: tuple[str, Script]) -> None:
    url, script = server

    async def main() -> None:
        async with AsyncClient(url, token="tok-0123456789abcdef", timeout=0.5) as c:
            script.reply(200, {"runs": [RUN], "next": None, "total": 1})
            page = await c.runs(job="j")
            assert page.runs[0].id == "j@1000" and page.next is None
            assert script.seen[-1].headers["authorization"] == "Bearer tok-0123456789abcdef"
            script.reply(200, {"lock": "db", "fence": 7, "holder": "me", "ttl_ms": 1})
            assert (await c.lock_acquire("db", 1, 0, "me")).fence == 7
            assert script.seen[-1].body == {"ttl": 1, "wait": 0, "holder": "me"}
            script.reply(409, {"error": {"code": "config_job", "message": "in the file"}})
            with pytest.raises(ApiError) as err:
                await c.delete_job("cfg")
            assert err.value.code == "config_job"
            script.reply(200, {}, delay=1.0)
            with pytest.raises(ApiUnavailable, match="timed out"):
                await c.status()
        (port,) = free_ports(1)
        async with AsyncClient(f"http://127.0.0.1:{port}") as dead:
            with pytest.raises(ApiUnavailable):
                await dead.status()

    asyncio.run(main())


def test_cli_and_client_import_no_aiohttp() -> None:
    code = (
        "import sys, raftcron.cli, raftcron.client; "
        "sys.exit(1 if any(m.split('.')[0] == 'aiohttp' for m in sys.modules) else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0
    assert clientopts.DEFAULT_API == DEFAULT_API


# --------------------------------------------------------------------------- raftcron lock


def _lock_calls(c: Any, script: Script) -> list[Any]:
    """The three lock calls against the scripted server; what each saw or raised."""
    out: list[Any] = []
    script.reply(200, {"lock": "a b", "fence": 41, "holder": "h1", "ttl_ms": 30000})
    g = c.lock_acquire("a b", 30.0, 1.5, "h1", request="r-1")
    out.append((g.fence, g.ttl_ms))
    script.reply(200, {"lock": "a b", "fence": 41, "ttl_ms": 30000})
    c.lock_renew("a b", 41)
    script.reply(200, {"lock": "a b", "released": True})
    out.append(c.lock_release("a b", 41))
    script.reply(409, {"error": {"code": "stale_fence", "message": "fence 41 is not current"}})
    with pytest.raises(ApiError) as err:
        c.lock_renew("a b", 41)
    out.append((err.value.status, err.value.code, err.value.message))
    script.reply(502, b"<html>bad gateway</html>")
    with pytest.raises(ApiError) as err:
        c.lock_release("a b", 41)
    out.append((err.value.status, err.value.code, err.value.message))
    keep = ("authorization", "content-type", "accept", "user-agent")
    out += [
        (s.method, s.path, s.body, {k: v for k, v in s.headers.items() if k in keep})
        for s in script.seen
    ]
    script.seen.clear()
    return out


def test_lock_command_plain_http_client_matches_client(server: tuple[str, Script]) -> None:
    from raftcron import lockcmd

    url, script = server
    plain = lockcmd._Api(url, "tok-0123456789abcdef", None).client
    assert isinstance(plain, lockcmd._PlainClient)
    assert _lock_calls(plain, script) == _lock_calls(
        Client(url, token="tok-0123456789abcdef"), script
    )
    plain.timeout = 0.3
    script.reply(200, {}, delay=0.8)
    with pytest.raises(ApiUnavailable, match="timed out"):
        plain.lock_renew("x", 1)
    (port,) = free_ports(1)
    with pytest.raises(ApiUnavailable, match="refused"):
        lockcmd._PlainClient(f"http://127.0.0.1:{port}", None).lock_release("x", 1)
    assert not isinstance(lockcmd._Api("https://127.0.0.1:1", None, None).client, type(plain))


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", b"{}"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}trailing", b"{}"),
        (b"HTTP/1.0 201 Created\r\n\r\n[1, 2]", b"[1, 2]"),  # ends with the stream
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;x=y\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n",
            b"[1,2]",
        ),
        (b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", b""),
    ],
)
def test_plain_http_reads_every_body_framing(raw: bytes, body: bytes) -> None:
    import socket

    from raftcron.wire import PlainHttp

    srv = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            got.append(conn.recv(65536))
            for i in range(0, len(raw), 7):  # dribble: framing must not depend on packets
                conn.sendall(raw[i : i + 7])
                time.sleep(0.001)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    http = PlainHttp("127.0.0.1", srv.getsockname()[1])
    status, _, data = http.request("POST", "/v1/x", b"{}", {"Accept": "application/json"}, 5)
    t.join(5)
    srv.close()
    assert data == body and status == int(raw.split()[1])
    assert got[0].startswith(b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"Connection: close" in got[0] and got[0].endswith(b"\r\n\r\n{}")


def test_lock_command_imports_stay_lean() -> None:
    """`raftcron lock` parses its options and builds its API client without http.client,
    the general client, the config machinery, dataclasses or typing (a one-shot CLI
    call should start fast; see docs/benchmarks.md)."""
    code = (
        "import sys; before = set(sys.modules)\n"
        "from raftcron import cli, lockcmd\n"
        "argv = ['lock', 'n', '--ttl', '5s', '--', 'true']\n"
        "args = cli.build_parser(only_lock=True).parse_args(argv)\n"
        "opts = lockcmd._options(args); api = lockcmd._Api('http://127.0.0.1:1', None, None)\n"
        "new = set(sys.modules) - before\n"
        "bad = {'http.client', 'raftcron.client', 'raftcron.config', 'dataclasses', 'typing',\n"
        "       'aiohttp', 'ssl', 'logging', 'tomllib', 'secrets'} & new\n"
        "print(sorted(bad)); sys.exit(1 if bad or opts.ttl_ms != 5000 else 0)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
