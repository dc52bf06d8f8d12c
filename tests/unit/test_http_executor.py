"""The HTTP executor: the whole run path (fenced start, request, renewals, fenced
completion) against one in-process state machine and a local aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from raftcron.clock import SystemClock
from raftcron.core import commands as c
from raftcron.core.model import HttpSpec, JobSpec, Run, run_id
from raftcron.executor.http import expected, outcome_of_response
from raftcron.executor.runner import Executor
from tests.helpers import FakeRaft, free_ports
from tests.unit.recorder import Recorder, recorder

T0 = 1_800_000_000_000


async def run_job(
    tmp_path: Path, spec: JobSpec, raft: FakeRaft | None = None, tell: Any = None
) -> tuple[FakeRaft, Run]:
    raft = raft or FakeRaft()
    raft.machine.apply(c.encode(c.PutJob(at_ms=T0, spec=spec)))
    fire = c.Fire(job=spec.name, scheduled_at_ms=T0 + 1000, node="a", trigger="schedule")
    raft.machine.apply(c.encode(c.Plan(at_ms=T0, fires=(fire,), missed=())))
    rid = run_id(spec.name, T0 + 1000)
    ex = Executor(node="a", raft=raft, clock=SystemClock(), data_dir=tmp_path, tell=tell)  # type: ignore[arg-type]
    ex.caught_up()
    ex.on_granted(rid, 1, "a")
    await asyncio.wait_for(asyncio.gather(*list(ex._tasks)), 30)
    return raft, raft.machine.read(lambda s: s.runs[rid])


def http_job(url: str, **kw: Any) -> JobSpec:
    http = HttpSpec(url=url, **kw.pop("http", {}))
    return JobSpec(name="hook", schedule="* * * * *", command=(), http=http, **kw)


def test_success_sends_the_fence_and_records_status_and_body(tmp_path: Path) -> None:
    async def go() -> tuple[Recorder, Run]:
        async with recorder() as rec:
            rec.replies["/tick"] = [(200, b"done: " + b"x" * 70_000 + b"END", 0.0)]
            spec = http_job(
                rec.url + "/tick?a=1",
                http={"method": "POST", "headers": (("Authorization", "Bearer t"),), "body": "{}"},
            )
            _, run = await run_job(tmp_path, spec)
            return rec, run

    rec, run = asyncio.run(go())
    (req,) = rec.seen
    assert (req.method, req.path, req.body) == ("POST", "/tick?a=1", b"{}")
    h = req.headers
    assert h["X-Raftcron-Fence"] == "1" and h["X-Raftcron-Run-Id"] == run.id == f"hook@{T0 + 1000}"
    assert (h["X-Raftcron-Job"], h["X-Raftcron-Node"], h["X-Raftcron-Attempt"]) == (
        "hook",
        "a",
        "1",
    )
    assert h["X-Raftcron-Scheduled-At"] == "2027-01-15T08:00:01Z"
    assert h["Authorization"] == "Bearer t"
    assert (run.status, run.exit_code, run.reason) == ("succeeded", 200, "")
    assert run.output.startswith("HTTP 200 OK\n") and run.output.endswith("xEND")
    assert len(run.output.encode()) <= 64 * 1024  # the body's tail only


@pytest.mark.parametrize(
    ("reply", "expect", "status"),
    [(500, (), "failed"), (204, (200,), "failed"), (418, (418, 200), "succeeded")],
)
def test_expected_status_decides(
    tmp_path: Path, reply: int, expect: tuple[int, ...], status: str
) -> None:
    async def go() -> Run:
        async with recorder() as rec:
            rec.replies["/x"] = [(reply, b"teapot", 0.0)]
            _, run = await run_job(tmp_path, http_job(rec.url + "/x", http={"expect": expect}))
            return run

    run = asyncio.run(go())
    assert (run.status, run.exit_code) == (status, reply)
    if status == "failed":
        want = ", ".join(map(str, expect)) if expect else "2xx"
        assert run.reason == f"HTTP {reply}, expected {want}"


def test_timeout_aborts_the_request(tmp_path: Path) -> None:
    async def go() -> Run:
        async with recorder() as rec:
            rec.replies["/slow"] = [(200, b"late", 20.0)]
            _, run = await run_job(tmp_path, http_job(rec.url + "/slow", timeout_ms=300))
            return run

    t = time.monotonic()
    run = asyncio.run(go())
    assert (run.status, run.exit_code) == ("timed_out", None)
    assert "timeout of 0.3s" in run.reason
    assert time.monotonic() - t < 10


def test_a_refused_renewal_aborts_the_request_as_lost(tmp_path: Path) -> None:
    """Lease 1 s: the first renewal goes out after about 0.3 s and is refused as stale;
    the agent aborts the request at once (there is no watchdog process for HTTP)."""

    async def go() -> Run:
        async with recorder() as rec:
            rec.replies["/slow"] = [(200, b"late", 20.0)]
            raft = FakeRaft(refuse_renewals=True)
            _, run = await run_job(tmp_path, http_job(rec.url + "/slow", lease_ms=1000), raft)
            return run

    t = time.monotonic()
    run = asyncio.run(go())
    # the completion names the current fence and commits; the status says what happened
    assert run.status == "lost" and run.reason.startswith("lease lost"), run
    assert time.monotonic() - t < 5


def test_no_response_is_a_failure_without_exit_code(tmp_path: Path) -> None:
    (port,) = free_ports(1)  # nothing listens there
    run = asyncio.run(run_job(tmp_path, http_job(f"http://127.0.0.1:{port}/x")))[1]
    assert (run.status, run.exit_code) == ("failed", None)
    assert run.reason.startswith("no response: ") and run.output.startswith("error: ")


def test_outcome_mapping() -> None:
    assert expected(200, ()) and expected(299, ()) and not expected(301, ())
    assert expected(301, (301,)) and not expected(200, (301,))
    out = outcome_of_response(503, "Service Unavailable", b"busy", ())
    assert (out.status, out.exit_code, out.output) == (
        "failed",
        503,
        "HTTP 503 Service Unavailable\nbusy",
    )
    assert out.reason == "HTTP 503, expected 2xx"
