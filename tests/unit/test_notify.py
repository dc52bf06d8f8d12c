"""Notifications and pings: which events, which URLs, what body, retries and bounds; then
the executor and the leader's apply stream driving them, against a local server."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from raftcron.clock import SystemClock
from raftcron.config import NotifyConfig
from raftcron.core import commands as c
from raftcron.core.model import HttpSpec, JobSpec, NotifyTarget, Run
from raftcron.core.state import State
from raftcron.executor.runner import Executor
from raftcron.notify import (
    Message,
    Notifier,
    completion_events,
    event_body,
    is_late,
    ping_url,
    previous_completion,
    targets,
)
from raftcron.raft.node import Machine
from tests.helpers import FakeRaft
from tests.unit.recorder import recorder
from tests.unit.test_http_executor import T0, run_job

HOOK = "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(
    ("status", "previous", "events"),
    [
        ("failed", None, ("failure",)),
        ("timed_out", "succeeded", ("failure",)),
        ("lost", "failed", ("failure",)),
        ("succeeded", "failed", ("recovered",)),
        ("succeeded", "lost", ("recovered",)),
        ("succeeded", "succeeded", ()),
        ("succeeded", None, ()),
        ("missed", "failed", ()),
    ],
)
def test_completion_events(status: str, previous: str | None, events: tuple[str, ...]) -> None:
    assert completion_events(status, previous) == events


def test_previous_completion_skips_the_run_itself_and_non_completions() -> None:
    s = State()
    runs = [
        Run(id="j@1", job="j", scheduled_at_ms=1, status="failed"),
        Run(id="j@2", job="j", scheduled_at_ms=2, status="missed"),
        Run(id="j@3", job="j", scheduled_at_ms=3, status="skipped"),
        Run(id="j@4", job="j", scheduled_at_ms=4, status="succeeded"),
    ]
    for r in runs:
        s.runs[r.id] = r
    s.history["j"] = tuple(r.id for r in runs)
    assert previous_completion(s, runs[3]) == "failed"
    assert previous_completion(s, runs[0]) is None


def test_is_late() -> None:
    assert is_late(T0 + 61_000, T0, "schedule", 60_000)
    assert is_late(T0 + 61_000, T0, "catchup", 60_000)
    assert not is_late(T0 + 60_000, T0, "schedule", 60_000)
    assert not is_late(T0 + 600_000, T0, "buffered", 60_000)  # waited on purpose


def test_targets_job_overrides_the_cluster_default() -> None:
    default = NotifyConfig(
        webhooks=(NotifyTarget(url="http://d/all"), NotifyTarget(url="http://d/f", on=("failure",)))
    )
    plain = JobSpec(name="j", schedule="@daily", command=("true",))
    assert targets(plain, default, "failure") == ["http://d/all", "http://d/f"]
    assert targets(plain, default, "late") == ["http://d/all"]
    own = JobSpec(
        name="j", schedule="@daily", command=("true",), notify=(NotifyTarget(url="http://j"),)
    )
    assert targets(own, default, "missed") == ["http://j"]
    off = JobSpec(name="j", schedule="@daily", command=("true",), notify=())
    assert targets(off, default, "failure") == []


@pytest.mark.parametrize(
    ("phase", "status", "code", "suffix"),
    [
        ("start", "", None, "/start"),
        ("end", "succeeded", 0, ""),
        ("end", "failed", 3, "/3"),
        ("end", "failed", 255, "/255"),
        ("end", "failed", -9, "/fail"),  # killed by a signal
        ("end", "failed", None, "/fail"),  # an HTTP job without a response
        ("end", "timed_out", None, "/fail"),
        ("end", "lost", None, "/fail"),
    ],
)
def test_ping_urls(phase: str, status: str, code: int | None, suffix: str) -> None:
    assert (
        ping_url("https://hc-ping.com/u", phase, status, code) == "https://hc-ping.com/u" + suffix
    )


def test_event_body() -> None:
    run = Run(
        id="j@1800000000000",
        job="j",
        scheduled_at_ms=T0,
        status="failed",
        fence=7,
        node="b",
        started_ms=T0 + 1500,
        finished_ms=T0 + 2000,
        exit_code=2,
        output="x" * 5000 + "tail",
        reason="",
    )
    body = event_body("failure", run)
    assert body == {
        "event": "failure",
        "job": "j",
        "run_id": "j@1800000000000",
        "node": "b",
        "fence": 7,
        "status": "failed",
        "exit_code": 2,
        "scheduled_at": "2027-01-15T08:00:00Z",
        "started_at": "2027-01-15T08:00:01.500Z",
        "finished_at": "2027-01-15T08:00:02Z",
        "output_tail": ("x" * 5000 + "tail")[-4096:],
        "reason": "",
        "attempt": 1,
        "trigger": "schedule",
        "count": 1,
    }


# ------------------------------------------------------------------ delivery


def notifier(
    config: NotifyConfig | None = None, machine: Any = None, leader: bool = True, **kw: Any
) -> tuple[Notifier, dict[tuple[str, str], int], list[float]]:
    counts: dict[tuple[str, str], int] = {}
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)

    def count(kind: str, result: str) -> None:
        counts[kind, result] = counts.get((kind, result), 0) + 1

    n = Notifier(
        node="a",
        config=config or NotifyConfig(timeout_ms=2_000, retries=3),
        machine=cast(Machine, machine),
        is_leader=lambda: leader,
        count=count,
        sleep=sleep,
        **kw,
    )
    return n, counts, slept


def msg(url: str) -> Message:
    return Message("webhook", url, b"{}", {"Idempotency-Key": "j@1/failure"}, "j@1/failure")


def test_retries_with_backoff_until_delivered() -> None:
    async def go() -> Any:
        async with recorder() as rec:
            rec.replies["/h"] = [(500, b"", 0.0), (503, b"", 0.0), (200, b"", 0.0)]
            n, counts, slept = notifier()
            assert n.submit(msg(rec.url + "/h"))
            await rec.wait("3 attempts", lambda: len(rec.seen) == 3)
            await n.close()
            return rec, counts, slept

    rec, counts, slept = asyncio.run(go())
    assert [s.headers["Idempotency-Key"] for s in rec.seen] == ["j@1/failure"] * 3
    assert slept == [0.5, 1.0]
    assert counts == {("webhook", "sent"): 1}


def test_a_client_error_is_not_retried_and_backoff_is_capped() -> None:
    async def go() -> Any:
        async with recorder() as rec:
            rec.replies["/gone"] = [(404, b"", 0.0)]
            rec.replies["/down"] = [(500, b"", 0.0)]
            cfg = NotifyConfig(timeout_ms=2_000, retries=6)
            n, counts, slept = notifier(cfg, backoff_cap=3.0)
            n.submit(msg(rec.url + "/gone"))
            n.submit(msg(rec.url + "/down"))
            await n.close(grace=10)
            return rec, counts, slept

    rec, counts, slept = asyncio.run(go())
    assert rec.paths().count("/gone") == 1 and rec.paths().count("/down") == 7
    assert slept == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert counts == {("webhook", "failed"): 2}


def test_a_slow_receiver_times_out_and_the_pending_bound_drops() -> None:
    async def go() -> Any:
        async with recorder() as rec:
            rec.replies["/slow"] = [(200, b"", 5.0)]
            n, counts, _ = notifier(NotifyConfig(timeout_ms=200, retries=0), max_pending=2)
            results = [n.submit(msg(rec.url + "/slow")) for _ in range(3)]
            assert n.pending() == 2
            await n.close(grace=3)
            return results, counts

    results, counts = asyncio.run(go())
    assert results == [True, True, False]
    assert counts == {("webhook", "dropped"): 1, ("webhook", "failed"): 2}


# ------------------------------------------------------------------ from the executor


def test_executor_runs_send_pings_in_order_and_failure_then_recovered(tmp_path: Path) -> None:
    """An HTTP job whose endpoint fails once, then succeeds: /start, /fail, a failure
    webhook; then /start, the plain ping URL and a recovered webhook."""

    async def go() -> Any:
        async with recorder() as rec:
            rec.replies["/job"] = [(500, b"boom", 0.0), (200, b"fine", 0.0)]
            spec = JobSpec(
                name="hook",
                schedule="* * * * *",
                command=(),
                http=HttpSpec(url=rec.url + "/job"),
                notify=(NotifyTarget(url=rec.url + "/hook", on=("failure", "recovered")),),
                ping_url=rec.url + "/ping",
            )
            raft = FakeRaft()
            n, counts, _ = notifier(machine=raft.machine)
            await run_job(tmp_path, spec, raft, tell=n.executor_event)
            fire = c.Fire(job="hook", scheduled_at_ms=T0 + 2000, node="a", trigger="schedule")
            raft.machine.apply(c.encode(c.Plan(at_ms=T0 + 2000, fires=(fire,))))

            ex = Executor(
                node="a",
                raft=raft,  # type: ignore[arg-type]
                clock=SystemClock(),
                data_dir=tmp_path,
                tell=n.executor_event,
            )
            ex.caught_up()
            ex.on_granted(f"hook@{T0 + 2000}", 2, "a")
            await asyncio.wait_for(asyncio.gather(*list(ex._tasks)), 30)
            await rec.wait("everything", lambda: len(rec.seen) >= 8)
            await n.close()
            return rec, counts

    rec, counts = asyncio.run(go())
    pings = [s.path for s in rec.seen if s.path.startswith("/ping")]
    assert pings == ["/ping/start", "/ping/fail", "/ping/start", "/ping"]
    assert rec.paths().count("/job") == 2
    hooks = [s for s in rec.seen if s.path == "/hook"]
    bodies = [orjson.loads(h.body) for h in hooks]
    assert [b["event"] for b in bodies] == ["failure", "recovered"]
    fail = bodies[0]
    assert (fail["status"], fail["exit_code"], fail["fence"], fail["node"]) == (
        "failed",
        500,
        1,
        "a",
    )
    assert (
        fail["run_id"] == f"hook@{T0 + 1000}"
        and fail["output_tail"] == "HTTP 500 Internal Server Error\nboom"
    )
    assert hooks[0].headers["Idempotency-Key"] == f"hook@{T0 + 1000}/failure"
    assert hooks[1].headers["X-Raftcron-Event"] == "recovered"
    ping_fail = next(s for s in rec.seen if s.path == "/ping/fail")
    assert ping_fail.method == "POST" and b"boom" in ping_fail.body
    assert counts == {("ping", "sent"): 4, ("webhook", "sent"): 2}


def test_a_failing_command_pings_its_exit_code(tmp_path: Path) -> None:
    async def go() -> Any:
        async with recorder() as rec:
            spec = JobSpec(
                name="cmd",
                schedule="* * * * *",
                command=("sh", "-c", "echo oops; exit 3"),
                ping_url=rec.url + "/p",
            )
            raft = FakeRaft()
            n, _, _ = notifier(machine=raft.machine)
            await run_job(tmp_path, spec, raft, tell=n.executor_event)
            await n.close(grace=5)
            return rec

    rec = asyncio.run(go())
    assert rec.paths() == ["/p/start", "/p/3"]
    assert rec.seen[1].body == b"oops\n"


def test_late_start_is_told_by_the_executor_node() -> None:
    async def go() -> Any:
        async with recorder() as rec:
            raft = FakeRaft()
            spec = JobSpec(
                name="j",
                schedule="* * * * *",
                command=("true",),
                notify=(NotifyTarget(url=rec.url + "/h"),),
            )
            raft.machine.apply(c.encode(c.PutJob(at_ms=T0, spec=spec)))
            due = T0 + 60_000
            fire = c.Fire(job="j", scheduled_at_ms=due, node="a", trigger="catchup")
            raft.machine.apply(c.encode(c.Plan(at_ms=due, fires=(fire,))))
            n, _, _ = notifier(NotifyConfig(late_after_ms=60_000), machine=raft.machine)
            on_time = {"due_ms": due, "started_ms": due + 60_000, "trigger": "catchup"}
            n.executor_event("started", f"j@{due}", on_time)
            late = {"due_ms": due, "started_ms": due + 61_000, "trigger": "catchup"}
            n.executor_event("started", f"j@{due}", late)
            await n.close(grace=5)
            return rec

    rec = asyncio.run(go())
    (hook,) = rec.seen
    body = orjson.loads(hook.body)
    assert (body["event"], body["status"], body["started_at"]) == (
        "late",
        "running",
        "2027-01-15T08:02:01Z",
    )


# ------------------------------------------------------------------ from the leader


@pytest.mark.parametrize("leader", [True, False])
def test_the_leader_tells_missed_and_lost_records(leader: bool) -> None:
    async def go() -> Any:
        async with recorder() as rec:
            m = Machine()
            spec = JobSpec(
                name="j",
                schedule="* * * * *",
                command=("true",),
                notify=(NotifyTarget(url=rec.url + "/h", on=("missed", "failure")),),
            )
            m.apply(c.encode(c.PutJob(at_ms=T0, spec=spec)))
            n, _, _ = notifier(machine=m, leader=leader)
            miss = c.Missed(job="j", first_ms=T0, last_ms=T0 + 60_000, count=2, reason="outage")
            fire = c.Fire(job="j", scheduled_at_ms=T0 + 120_000, node="b", trigger="schedule")
            plan = c.Plan(at_ms=T0 + 121_000, fires=(fire,), missed=(miss,))
            n.on_commit(plan, m.apply(c.encode(plan)))
            rid = f"j@{T0 + 120_000}"
            expire = c.Expire(at_ms=T0 + 200_000, run_id=rid, fence=1, reason="no renewal")
            n.on_commit(expire, m.apply(c.encode(expire)))
            await n.close(grace=5)
            return rec

    rec = asyncio.run(go())
    bodies = [orjson.loads(s.body) for s in rec.seen]
    if not leader:
        assert bodies == []
        return
    assert sorted((b["event"], b["status"]) for b in bodies) == [
        ("failure", "lost"),
        ("missed", "missed"),
    ]
    missed = next(b for b in bodies if b["event"] == "missed")
    assert missed["count"] == 2 and "outage" in missed["reason"]
    lost = next(b for b in bodies if b["event"] == "failure")
    assert (lost["node"], lost["fence"], lost["reason"]) == ("b", 1, "no renewal")
