"""The dashboard at ``/``, loaded in Debian's headless Chromium.

The page is rendered by its own JS (fetch + DOM), so these tests let Chromium run it
(``--virtual-time-budget``) and read back the DOM it built (``--dump-dom``): what a person
would see, checked against the API. Rows carry ``data-*`` attributes with the raw values;
the tests check those and the visible cell text.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from raftcron.api import dashboard
from tests.cluster.harness import SINK_CMD, Cluster, wait_for

pytestmark = pytest.mark.cluster

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium), "
    "as .ci/run does, to run the dashboard tests",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_profiles = count()


def chromium(tmp: Path, url: str, *extra: str, timeout: float = 90.0) -> bytes:
    """Run Chromium once with a fresh profile; return its stdout. Ended by its own PID
    (process group) if it hangs."""
    profile = tmp / f"chromium-profile-{next(_profiles)}"
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"chromium did not finish within {timeout}s: {cmd}") from None
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {err.decode()[-2000:]}"
    return out


@dataclass
class Row:
    attrs: dict[str, str]
    cells: list[str] = field(default_factory=list)


class Page(HTMLParser):
    """The parts of the rendered dashboard the tests look at."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.body: dict[str, str] = {}
        self.by_kind: dict[str, list[Row]] = {}
        self.ids: dict[str, str] = {}
        self._row: Row | None = None
        self._cell: list[str] | None = None
        self._capture: list[tuple[str, int, list[str]]] = []  # (id, depth, text)
        self._depth = 0
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("meta", "link", "br", "img", "input"):
            return
        self._depth += 1
        if tag == "body":
            self.body = a
        if tag == "tr" and a.get("class") in ("member", "job", "run"):
            self._row = Row(a)
            self.by_kind.setdefault(a["class"], []).append(self._row)
        if tag == "td" and self._row is not None:
            self._cell = []
        if "id" in a:
            self._capture.append((a["id"], self._depth, []))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.cells.append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "tr":
            self._row = None
        while self._capture and self._capture[-1][1] == self._depth:
            ident, _, text = self._capture.pop()
            self.ids[ident] = " ".join("".join(text).split())
        self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        for _, _, text in self._capture:
            text.append(data)

    @property
    def state(self) -> str:
        return self.body.get("data-state", "")

    def rows(self, kind: str) -> list[Row]:
        return self.by_kind.get(kind, [])


def load(tmp: Path, url: str) -> Page:
    dom = chromium(tmp, url, "--virtual-time-budget=5000", "--dump-dom").decode()
    (tmp / "last-dom.html").write_text(dom)
    page = Page(dom)
    assert int(page.body.get("data-polls", "0")) >= 1, f"the page's JS never ran: {dom[:2000]}"
    return page


@needs_chromium
def test_dashboard_shows_members_leader_jobs_and_runs(
    tmp_path: Path, make_cluster: list[Cluster]
) -> None:
    sink = tmp_path / "sink.txt"
    job = {
        "name": "tick",
        "schedule": "* * * * * *",
        "command": ["sh", "-c", SINK_CMD.format(sink=sink)],
        "lease": "5s",
    }
    cl = Cluster(tmp_path, [job])
    make_cluster.append(cl)
    cl.start()
    leader = cl.wait_leader(60)
    wait_for(
        "5 succeeded runs",
        lambda: sum(r["status"] == "succeeded" for r in cl.runs(leader, "tick", 50)) >= 5,
        30,
    )
    follower = next(n for n in cl.members if n != leader)

    for name in (follower, leader):  # any member serves it; a follower first
        page = load(tmp_path, cl.members[name].api + "/")
        ledger = cl.runs(name, limit=1000)
        by_id = {r["id"]: r for r in ledger}
        assert page.state == "ok", page.ids.get("banners")
        assert page.ids["self-node"] == name
        assert page.ids["leader-name"] == leader

        members = {r.attrs["data-member"]: r for r in page.rows("member")}
        assert sorted(members) == ["a", "b", "c"]
        assert [n for n, r in members.items() if r.attrs["data-role"] == "leader"] == [leader]
        assert members[leader].cells[1] == "leader"
        for n, r in members.items():
            assert r.cells[0].startswith(n)
            assert r.attrs["data-healthy"] == "true" and r.cells[2] == "healthy", r
        assert "(this node)" in members[name].cells[0]

        jobs = {r.attrs["data-job"]: r for r in page.rows("job")}
        assert list(jobs) == ["tick"]
        assert jobs["tick"].cells[0] == "tick"
        assert jobs["tick"].attrs["data-last-status"] == "succeeded"
        assert jobs["tick"].cells[3].startswith("succeeded")

        runs = page.rows("run")
        assert len(runs) >= 5
        shown = [r.attrs["data-run-id"] for r in runs]
        # the newest runs, in the API's order (newest first)
        assert shown == [rid for rid in (r["id"] for r in ledger) if rid in set(shown)]
        for row in runs:
            api = by_id[row.attrs["data-run-id"]]
            assert row.attrs["data-node"] == api["node"] and row.cells[2] == api["node"]
            assert int(row.attrs["data-fence"]) == api["fence"]
            assert row.cells[3] == str(api["fence"])
            assert row.cells[1] == "tick"
        finished = [r for r in runs if r.attrs["data-status"] == "succeeded"]
        assert len(finished) >= 4
        for row in finished:
            assert row.cells[4] == "succeeded"
            assert row.cells[5].endswith(("ms", "s")), row.cells  # a duration
            assert row.cells[6] == "exit 0"
        fences = [int(r.attrs["data-fence"]) for r in runs]
        assert fences == sorted(fences, reverse=True)

    shot = tmp_path / "dashboard.png"
    chromium(
        tmp_path,
        cl.members[leader].api + "/",
        "--window-size=1280,900",
        "--hide-scrollbars",
        "--virtual-time-budget=1500",
        f"--screenshot={shot}",
    )
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000, len(png)

    # A drained member shows as such (and the others as taking runs).
    code, body = cl.request(leader, "POST", f"/v1/members/{follower}/drain")
    assert code == 200, body
    page = load(tmp_path, cl.members[leader].api + "/")
    members = {r.attrs["data-member"]: r for r in page.rows("member")}
    assert members[follower].attrs["data-drain"] in ("draining", "drained")
    assert members[follower].cells[5] == members[follower].attrs["data-drain"]
    assert all(members[n].attrs["data-drain"] == "" for n in members if n != follower)

    # Lose the majority: the survivor's page says there is no leader, and who is down.
    survivor = follower
    for n in cl.alive():
        if n != survivor:
            cl.kill(n)
    wait_for(
        f"{survivor}'s /health to say no leader",
        lambda: cl.request(survivor, "GET", "/health")[0] == 503,
        30,
    )
    page = load(tmp_path, cl.members[survivor].api + "/")
    assert page.state == "no-leader"
    assert "No leader" in page.ids["banner-warn"]
    # pysyncobj: a node cut off from everyone keeps naming the last leader it knew
    assert page.ids["leader-name"] == "none" or page.ids["leader-name"].endswith("(unreachable)")
    members = {r.attrs["data-member"]: r for r in page.rows("member")}
    down = sorted(n for n, r in members.items() if r.attrs["data-healthy"] == "false")
    assert down == sorted(n for n in cl.members if n != survivor)
    assert all(members[n].cells[2] == "unreachable" for n in down)
    assert page.rows("run"), "the last committed runs are still shown"


@needs_chromium
def test_dashboard_with_api_tokens(tmp_path: Path, make_cluster: list[Cluster]) -> None:
    """With tokens configured the page still loads; its data needs the token in the URL."""
    read = "read-token-for-the-dashboard-0123"
    tokens = f'[[api.tokens]]\nrole = "read"\ntoken = "{read}"\n'
    cl = Cluster(tmp_path, size=1, extra_toml=tokens, token=read)
    make_cluster.append(cl)
    cl.start()
    cl.wait_leader(60)
    url = cl.members["a"].api + "/"

    page = load(tmp_path, url)
    assert page.state == "unauthorized"
    assert "needs a token" in page.ids["banner-bad"] and "#token=" in page.ids["banner-bad"]
    assert page.rows("member") == []

    page = load(tmp_path, url + "#token=not-" + read)
    assert page.state == "unauthorized"
    assert "refused this token" in page.ids["banner-bad"]

    page = load(tmp_path, url + "#token=" + read)
    assert page.state == "ok", page.ids.get("banners")
    assert [r.attrs["data-member"] for r in page.rows("member")] == ["a"]
    assert page.ids["leader-name"] == "a"


# -- the page against a stand-in API: tokens, a dead node, last_run from /v1/jobs


STATUS: dict[str, Any] = {
    "node": "b",
    "role": "follower",
    "leader": "a",
    "term": 4,
    "commit_index": 120,
    "fence": 42,
    "config_hash": "0123abcd4567ef89",
    "config_drift": ["c"],
    "members": [
        {"name": "a", "role": "leader", "healthy": True, "self": False, "api": "http://x:1"},
        {"name": "b", "role": "follower", "healthy": True, "self": True, "api": "http://x:2"},
        {"name": "c", "role": "follower", "healthy": False, "self": False, "api": "http://x:3"},
    ],
}
JOBS = {
    "jobs": [
        {
            "name": "backup",
            "schedule": "0 3 * * *",
            "timezone": "Europe/Berlin",
            "next_fire": "2099-01-01T02:00:00Z",
            "paused": False,
            # the shape the API may add: the job's latest finished run
            "last_run": {"status": "failed", "finished_at": "2026-01-01T03:00:05Z"},
        },
        {
            "name": "report",
            "schedule": "@daily",
            "timezone": "UTC",
            "next_fire": "2099-01-01T00:00:00Z",
            "paused": True,
        },
    ]
}
REPORT_RUNS = {
    "runs": [
        {
            "id": "report@1",
            "job": "report",
            "scheduled_at": "2026-01-01T00:00:00Z",
            "fence": 7,
            "node": "c",
            "status": "timed_out",
            "started_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:10:00Z",
            "exit_code": None,
            "reason": "timeout 10m",
        }
    ],
    "total": 1,
}


class StandIn:
    """A tiny HTTP server with the dashboard at / and canned /v1 answers."""

    def __init__(self, token: str | None = None, die_after: int | None = None) -> None:
        self.token = token
        self.die_after = die_after  # /v1/status answers before the "node" goes away
        self.status_calls = 0
        self.paths: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                stand_in.paths.append(self.path)
                if self.path == "/":
                    self.send(200, dashboard.PAGE, "text/html; charset=utf-8", dashboard.HEADERS)
                    return
                auth = self.headers.get("Authorization")
                if stand_in.token is not None and auth != f"Bearer {stand_in.token}":
                    err = {"error": {"code": "unauthorized", "message": "token required"}}
                    self.send(401, json.dumps(err).encode())
                    return
                if self.path == "/v1/status":
                    stand_in.status_calls += 1
                    if (
                        stand_in.die_after is not None
                        and stand_in.status_calls > stand_in.die_after
                    ):
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)  # a dead node: no answer at all
                        return
                    body: Any = STATUS
                elif self.path == "/v1/jobs":
                    body = JOBS
                elif self.path.startswith("/v1/runs?limit=5&job=report"):
                    body = REPORT_RUNS
                elif self.path.startswith("/v1/runs"):
                    body = {"runs": [], "total": 0}
                else:
                    self.send(404, b'{"error": {"code": "not_found", "message": "no"}}')
                    return
                self.send(200, json.dumps(body).encode())

            def send(
                self,
                code: int,
                body: bytes,
                ctype: str = "application/json",
                headers: dict[str, str] | None = None,
            ) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@needs_chromium
def test_token_from_url_is_sent_as_bearer(tmp_path: Path) -> None:
    with StandIn(token="s3cret") as api:
        page = load(tmp_path, api.url)
        assert page.state == "unauthorized"
        assert "needs a token" in page.ids["banner-bad"]
        assert "#token=" in page.ids["banner-bad"]

        page = load(tmp_path, api.url + "#token=s3cret")
        assert page.state == "ok"
        assert sorted(r.attrs["data-member"] for r in page.rows("member")) == ["a", "b", "c"]


@needs_chromium
def test_follower_view_jobs_last_outcome_and_health(tmp_path: Path) -> None:
    with StandIn() as api:
        page = load(tmp_path, api.url)
    assert page.state == "ok"
    assert page.ids["self-node"] == "b" and page.ids["leader-name"] == "a"
    assert page.ids["config-hash"] == "0123abcd4567ef89" and "(drift: c)" in page.ids["facts"]
    members = {r.attrs["data-member"]: r for r in page.rows("member")}
    assert members["a"].attrs["data-role"] == "leader"
    assert members["c"].cells[2] == "unreachable"
    assert members["b"].cells[3] == "—", "a follower does not know the lag"
    assert "measured by the leader" in page.ids["members-note"]
    jobs = {r.attrs["data-job"]: r for r in page.rows("job")}
    # last_run from /v1/jobs is used as is
    assert jobs["backup"].attrs["data-last-status"] == "failed"
    assert "Europe/Berlin" in jobs["backup"].cells[1]
    # a job without last_run and not among the recent runs is asked about on its own
    assert jobs["report"].attrs["data-last-status"] == "timed_out"
    assert jobs["report"].attrs["data-paused"] == "true" and "paused" in jobs["report"].cells[0]
    assert any(p.startswith("/v1/runs?limit=5&job=report") for p in api.paths)
    assert "No runs yet" in page.ids["runs-card"]


@needs_chromium
def test_unreachable_api_keeps_last_data_under_a_banner(tmp_path: Path) -> None:
    with StandIn(die_after=1) as api:
        page = load(tmp_path, api.url)
        assert api.status_calls >= 2, "the page did not poll again"
    assert page.state == "unreachable"
    assert "API unreachable" in page.ids["banner-bad"]
    assert "Showing data from" in page.ids["banner-bad"]
    assert len(page.rows("member")) == 3, "the last good data stays on screen"
