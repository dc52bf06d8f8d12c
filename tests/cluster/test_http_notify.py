"""HTTP jobs, notify webhooks and dead-man's-switch pings on real agents, against a local
aiohttp server on 127.0.0.1 (run in a thread of the test process).

* An HTTP job triggered through the API: the request carries the run's fence and id, the
  ledger records the status code and the body's tail; an unexpected status is a failure.
* Webhooks: failure and recovered from the node that ran the job (the job's own notify,
  and the cluster's [notify] default for a job without one), with the run's fence and
  node; pings /start, then the plain URL or /fail, in order.
* From the leader: missed fires after a full outage, and a run whose executor was
  killed with -9 in the middle of its request, expired as lost.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.cluster.harness import Cluster, wait_for

pytestmark = pytest.mark.cluster

FINAL = ("succeeded", "failed", "timed_out", "lost", "missed", "skipped")
YEARLY = "0 0 1 1 *"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An aiohttp server on 127.0.0.1 in its own thread and loop; records every request.
    ``status[path]`` is the status it answers there (default 200); ``hang`` paths are
    answered only when the server stops."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.status: dict[str, int] = {}
        self.hang: set[str] = set()
        self.url = ""
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10), "the receiver did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()

        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            with self._lock:
                self.seen.append(Seen(request.method, request.path, dict(request.headers), body))
            if request.path in self.hang:
                assert self._stop is not None
                await self._stop.wait()
            return web.Response(status=self.status.get(request.path, 200), text="pong")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def at(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == path]

    def paths(self, prefix: str) -> list[str]:
        with self._lock:
            return [s.path for s in self.seen if s.path.startswith(prefix)]


def final_run(cl: Cluster, node: str, rid: str, timeout: float = 60) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        run: dict[str, Any] = cl.get(node, f"/v1/runs/{rid}")
        return run if run["status"] in FINAL else None

    return wait_for(f"{rid} to finish", done, timeout, interval=0.2)


def trigger(cl: Cluster, node: str, job: str) -> str:
    status, body = cl.request(node, "POST", f"/v1/jobs/{job}/trigger", {})
    assert status == 202 and body["status"] == "claimed", body
    rid: str = body["run"]
    return rid


def put(cl: Cluster, node: str, name: str, job: dict[str, Any]) -> None:
    status, body = cl.request(node, "PUT", f"/v1/jobs/{name}", job)
    assert status in (200, 201), body


def hooks(rx: Receiver, path: str, event: str, rid: str) -> list[dict[str, Any]]:
    return [b for b in (s.json() for s in rx.at(path)) if (b["event"], b["run_id"]) == (event, rid)]


def test_http_job_webhooks_and_pings(tmp_path: Path, make_cluster: list[Cluster]) -> None:
    with Receiver() as rx:
        cl = Cluster(
            tmp_path,
            extra_toml=f'[notify]\nwebhooks = ["{rx.url}/default"]\ntimeout = "3s"\n',
        )
        make_cluster.append(cl)
        cl.start()
        leader = cl.wait_leader(60)

        # 1. An HTTP job: the fence travels in a header, the status code is the exit code.
        put(
            cl,
            leader,
            "hook",
            {
                "schedule": YEARLY,
                "http": {
                    "url": rx.url + "/ok",
                    "method": "POST",
                    "headers": {"X-Token": "t"},
                    "body": "hello",
                    "expect": [200, 201],
                },
                "ping_url": rx.url + "/ping/hook",
                "notify": [{"url": rx.url + "/own", "on": ["failure", "recovered"]}],
            },
        )
        both = {"schedule": YEARLY, "command": ["true"], "http": {"url": rx.url}}
        status, body = cl.request(leader, "PUT", "/v1/jobs/both", both)
        assert status == 400 and body["error"]["message"] == (
            "request body: http: set together with command (a job runs either a command or "
            "an HTTP request; keep one of them)"
        )
        spec = cl.get(leader, "/v1/jobs/hook")["spec"]
        assert "command" not in spec and spec["http"]["url"] == rx.url + "/ok"
        rid = trigger(cl, leader, "hook")
        run = final_run(cl, leader, rid)
        assert (run["status"], run["exit_code"]) == ("succeeded", 200), run
        assert run["output"] == "HTTP 200 OK\npong"
        (req,) = rx.at("/ok")
        assert (req.method, req.body, req.headers["X-Token"]) == ("POST", b"hello", "t")
        assert req.headers["X-Raftcron-Fence"] == str(run["fence"])
        assert req.headers["X-Raftcron-Run-Id"] == rid
        assert req.headers["X-Raftcron-Node"] == run["node"]
        assert req.headers["X-Raftcron-Job"] == "hook"
        wait_for("both pings", lambda: len(rx.paths("/ping/hook")) == 2, 20)
        assert rx.paths("/ping/hook") == ["/ping/hook/start", "/ping/hook"]
        assert rx.at("/own") == [] and rx.at("/default") == []  # success after nothing

        # 2. An unexpected status fails the run; the cluster default webhook says so.
        rx.status["/flaky"] = 500
        put(
            cl,
            leader,
            "flaky",
            {
                "schedule": YEARLY,
                "http": {"url": rx.url + "/flaky", "expect": 200},
                "ping_url": rx.url + "/ping/flaky",
            },
        )
        rid = trigger(cl, leader, "flaky")
        run = final_run(cl, leader, rid)
        assert (run["status"], run["exit_code"]) == ("failed", 500), run
        assert run["reason"] == "HTTP 500, expected 200"
        (fail,) = wait_for("the failure webhook", lambda: hooks(rx, "/default", "failure", rid), 20)
        assert (fail["job"], fail["status"], fail["exit_code"]) == ("flaky", "failed", 500)
        assert (fail["fence"], fail["node"]) == (run["fence"], run["node"])
        assert fail["output_tail"] == "HTTP 500 Internal Server Error\npong"
        sent = next(s for s in rx.at("/default") if s.json()["run_id"] == rid)
        assert sent.headers["Idempotency-Key"] == f"{rid}/failure"
        wait_for("/fail ping", lambda: "/ping/flaky/fail" in rx.paths("/ping/flaky"), 20)
        assert rx.paths("/ping/flaky") == ["/ping/flaky/start", "/ping/flaky/fail"]

        # 3. The next success is "recovered".
        rx.status["/flaky"] = 200
        rid2 = trigger(cl, leader, "flaky")
        assert final_run(cl, leader, rid2)["status"] == "succeeded"
        (rec,) = wait_for("recovered", lambda: hooks(rx, "/default", "recovered", rid2), 20)
        assert rec["status"] == "succeeded" and rec["exit_code"] == 200
        wait_for("the success ping", lambda: rx.paths("/ping/flaky")[-1:] == ["/ping/flaky"], 20)

        # The executor node counted what it sent.
        def sent_on(node: str) -> float:
            text = cl.open(cl.members[node].api + "/metrics", timeout=5).read().decode()
            for line in text.splitlines():
                if line.startswith('raftcron_notifications_total{kind="webhook",result="sent"}'):
                    return float(line.split()[-1])
            return 0.0

        assert sum(sent_on(n) for n in cl.members) >= 2


def test_leader_tells_missed_and_lost(tmp_path: Path, make_cluster: list[Cluster]) -> None:
    with Receiver() as rx:
        rx.hang.add("/hang")
        tick = {
            "name": "tick",
            "schedule": "* * * * * */5",
            "command": ["true"],
            "catchup_mode": "none",
            "notify": {"url": rx.url + "/missed", "on": ["missed"]},
        }
        hang = {
            "name": "hang",
            "schedule": YEARLY,
            "http": {"url": rx.url + "/hang"},
            "lease": "3s",
            "timeout": "5m",
            "notify": {"url": rx.url + "/lost", "on": ["failure"]},
        }
        cl = Cluster(tmp_path, [tick, hang])
        make_cluster.append(cl)
        cl.start()
        leader = cl.wait_leader(60)
        wait_for(
            "tick to run",
            lambda: any(r["status"] == "succeeded" for r in cl.runs(leader, "tick")),
            60,
        )

        # 1. A full outage: fires more than 1 s late are missed (catchup_mode = "none");
        # the new leader commits the record and tells.
        cl.stop()
        down = time.time()
        wait_for(
            "an outage of 6 s (a 5 s fire at least 1 s late)", lambda: time.time() > down + 6, 10
        )
        cl.start()
        leader = cl.wait_leader(60)
        missed = wait_for("the missed webhook", lambda: [s.json() for s in rx.at("/missed")], 60)[0]
        assert (missed["event"], missed["job"], missed["status"]) == ("missed", "tick", "missed")
        ledger = cl.get(leader, f"/v1/runs/{missed['run_id']}")
        assert ledger["status"] == "missed" and missed["count"] == ledger.get("count", 1)

        # 2. kill -9 the node running an HTTP request: the leader expires it as lost.
        rid = trigger(cl, leader, "hang")
        wait_for("the request in flight", lambda: rx.at("/hang"), 30)
        run = cl.get(leader, f"/v1/runs/{rid}")
        assert run["status"] == "running", run
        victim = run["node"]
        cl.signal(victim, signal.SIGKILL)
        survivor = next(n for n in cl.members if n != victim)
        (lost,) = wait_for("the lost webhook", lambda: hooks(rx, "/lost", "failure", rid), 60)
        assert (lost["status"], lost["node"], lost["fence"]) == ("lost", victim, run["fence"])
        assert final_run(cl, survivor, rid)["status"] == "lost"
