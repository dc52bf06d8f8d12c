"""Embedded Python jobs: the in-process executor against one state machine (no Raft), the
decorator's validation, and the replicated job set (``source = "embedded"``)."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from raftcron.clock import SystemClock
from raftcron.config import ConfigError, parse_config
from raftcron.core import commands as c
from raftcron.core.lease import margin_for, safe_deadline
from raftcron.core.model import JobSpec, Run, run_id
from raftcron.core.state import Ok, State
from raftcron.embed import Cluster, RunContext
from raftcron.executor.inproc import registered
from raftcron.executor.runner import Executor
from tests.helpers import FakeRaft

T0 = 1_800_000_000_000
SCHEDULED = T0 + 1000


def embedded_spec(fn: Any, name: str = "j", **kw: Any) -> JobSpec:
    return JobSpec(
        name=name, schedule="* * * * * *", command=(), call=registered(name, fn).call, **kw
    )


class Harness:
    def __init__(self, tmp_path: Path, spec: JobSpec, fn: Any, raft: FakeRaft) -> None:
        self.raft = raft
        self.rid = run_id(spec.name, SCHEDULED)
        self.events: list[tuple[str, dict[str, Any]]] = []
        raft.machine.apply(c.encode(c.SyncConfig(at_ms=T0, specs=(spec,), history=10)))
        fire = c.Fire(job=spec.name, scheduled_at_ms=SCHEDULED, node="a", trigger="schedule")
        raft.machine.apply(c.encode(c.Plan(at_ms=T0, fires=(fire,), missed=())))
        self.ex = Executor(
            node="a",
            raft=raft,  # type: ignore[arg-type]
            clock=SystemClock(),
            data_dir=tmp_path,
            tell=lambda event, rid, fields: self.events.append((event, fields)),
        )
        if fn is not None:
            self.ex.inproc.register(registered(spec.name, fn))

    async def run(self, limit: float = 30.0) -> Run:
        self.ex.caught_up()
        self.ex.on_granted(self.rid, 1, "a")
        await asyncio.wait_for(asyncio.gather(*list(self.ex._tasks)), limit)
        return self.raft.machine.read(lambda s: s.runs[self.rid])

    def completed(self) -> dict[str, Any]:
        done = [f for e, f in self.events if e == "completed"]
        assert len(done) == 1, self.events
        return done[0]


def run_job(
    tmp_path: Path, fn: Any, raft: FakeRaft | None = None, **kw: Any
) -> tuple[Run, Harness]:
    h = Harness(tmp_path, embedded_spec(fn, **kw), fn, raft or FakeRaft())
    return asyncio.run(h.run()), h


# ---------------------------------------------------------------- outcomes


def test_an_async_job_gets_its_run_context_and_succeeds(tmp_path: Path) -> None:
    seen: list[RunContext] = []

    async def job(run: RunContext) -> str:
        seen.append(run)
        assert run.still_valid() and not run.cancelled and run.lease_remaining() > 0
        run.log("hello from the job")
        await asyncio.sleep(0)
        return "sent 3 reminders"

    run, h = run_job(tmp_path, job)
    assert (run.status, run.exit_code, run.fence, run.node) == ("succeeded", 0, 1, "a")
    assert run.output == "hello from the job\nsent 3 reminders"
    ctx = seen[0]
    assert (ctx.job, ctx.run_id, ctx.fence, ctx.node, ctx.attempt) == ("j", h.rid, 1, "a", 1)
    assert ctx.scheduled_at == datetime.fromtimestamp(SCHEDULED / 1000, tz=UTC)
    assert ctx.scheduled_at_ms == SCHEDULED and ctx.trigger == "schedule"
    # the fenced start committed before the job ran, the completion carried the fence
    kinds = [type(cmd).__name__ for cmd in h.raft.proposed]
    assert kinds == ["Start", "Complete"]
    assert h.completed() == {"status": "succeeded", "accepted": True}


def test_a_sync_job_runs_in_a_thread_of_its_own(tmp_path: Path) -> None:
    threads: list[str] = []

    def job() -> None:  # no argument: fine too
        threads.append(threading.current_thread().name)

    run, h = run_job(tmp_path, job)
    assert run.status == "succeeded"
    assert threads == [f"raftcron {h.rid}"]


@pytest.mark.parametrize("is_async", [True, False])
def test_an_exception_fails_the_run_with_the_traceback(tmp_path: Path, is_async: bool) -> None:
    def boom(run: RunContext) -> None:
        run.log("about to fail")
        raise ValueError("no database")

    async def aboom(run: RunContext) -> None:
        boom(run)

    run, _ = run_job(tmp_path, aboom if is_async else boom)
    assert (run.status, run.exit_code) == ("failed", 1)
    assert run.reason == "ValueError: no database"
    assert run.output.startswith("about to fail\nTraceback (most recent call last):")
    assert run.output.rstrip().endswith("ValueError: no database")
    assert "in boom" in run.output


def test_a_timeout_cancels_an_async_job(tmp_path: Path) -> None:
    cleaned: list[bool] = []

    async def slow(run: RunContext) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned.append(run.still_valid())

    t = time.monotonic()
    run, _ = run_job(tmp_path, slow, timeout_ms=300)
    assert time.monotonic() - t < 10
    assert run.status == "timed_out"
    assert run.reason == "timeout after 0.3s: the task was cancelled"
    assert cleaned == [False]  # it unwound, and saw that it may not write any more


def test_a_timeout_tells_a_sync_job_which_may_stop(tmp_path: Path) -> None:
    ticks: list[int] = []

    def loop(run: RunContext) -> None:
        while not run.wait_cancelled(0.02):
            ticks.append(1)
        assert not run.still_valid()

    run, _ = run_job(tmp_path, loop, timeout_ms=300)
    assert run.status == "timed_out"
    assert run.reason == "timeout after 0.3s: the thread stopped"
    assert ticks


def test_a_refused_renewal_cancels_the_job_at_once(tmp_path: Path) -> None:
    """The leader expired the lease (e.g. this node was cut off): the next renewal is
    refused as stale and the task is cancelled; the run stays recorded as the leader's
    ``lost``, and the late completion is refused."""
    cancelled = asyncio.Event()
    raft = FakeRaft()

    async def job(run: RunContext) -> None:
        # what the leader does when it hears no renewal: expire the lease
        lease = raft.machine.read(lambda s: s.leases[run.run_id])
        expire = c.Expire(
            at_ms=T0 + 5000,
            run_id=run.run_id,
            fence=run.fence,
            renewals=lease.renewals,
            reason="lease expired (test)",
        )
        assert raft.machine.apply(c.encode(expire)) == Ok("lost")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    t = time.monotonic()
    run, h = run_job(tmp_path, job, raft=raft, lease_ms=6000)
    # at the first renewal (a period: about 1.9 s), not near the lease deadline (4.2 s)
    assert time.monotonic() - t < 3.5
    assert cancelled.is_set()
    assert (run.status, run.reason) == ("lost", "lease expired (test)")
    assert h.completed() == {"status": "lost", "accepted": False}
    assert raft.machine.read(lambda s: s.counters.stale_rejections) >= 2  # renew, complete


@pytest.mark.parametrize("is_async", [True, False])
def test_without_committed_renewals_the_node_fences_itself(tmp_path: Path, is_async: bool) -> None:
    """Cut off from the leader (no renewal commits), the node gives up before its local
    lease deadline: an async job is cancelled, a sync one told; the run is recorded
    ``lost``, never ``succeeded``."""
    window = safe_deadline(3000, margin_for(3000))  # 2.8 s; cancelled at 2.1 s
    stopped_at: list[float] = []
    stopped = threading.Event()
    t0 = time.monotonic()

    async def ajob(run: RunContext) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            stopped_at.append(time.monotonic() - t0)
            stopped.set()

    def sjob(run: RunContext) -> None:
        # the thread is told, not stopped: the run may be recorded before it wakes up
        run.wait_cancelled(60)
        stopped_at.append(time.monotonic() - t0)
        stopped.set()
        time.sleep(0.3)  # it ends later anyway: nothing waits for it

    run, _ = run_job(
        tmp_path, ajob if is_async else sjob, raft=FakeRaft(drop_renewals=True), lease_ms=3000
    )
    assert run.status == "lost"
    assert run.reason.startswith("the lease ran out (no committed renewal)")
    assert stopped.wait(10)
    assert stopped_at[0] < window
    want = "the task was cancelled" if is_async else "the sync job's thread could not be stopped"
    assert run.reason.endswith(want)


def test_a_node_without_the_callable_fails_the_run_loudly(tmp_path: Path) -> None:
    async def job() -> None:
        pass

    h = Harness(tmp_path, embedded_spec(job), None, FakeRaft())
    run = asyncio.run(h.run())
    assert run.status == "failed"
    assert "node a has no Python callable for embedded job 'j'" in run.reason


def test_stopping_the_executor_cancels_a_running_async_job(tmp_path: Path) -> None:
    cancelled: list[bool] = []

    async def job(run: RunContext) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(run.cancelled)
            raise

    async def main() -> None:
        h = Harness(tmp_path, embedded_spec(job), job, FakeRaft())
        h.ex.caught_up()
        h.ex.on_granted(h.rid, 1, "a")
        for _ in range(200):
            if h.raft.machine.read(lambda s: s.runs[h.rid].status) == "running":
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        await asyncio.wait_for(h.ex.stop(), 5)
        for _ in range(100):
            if cancelled:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert cancelled == [True]


# ---------------------------------------------------------------- the decorator

CONFIG = """
[cluster]
secret = "test-secret-0123456789abcdef"
lease = "12s"
[cluster.nodes.a]
raft = "127.0.0.1:17101"
api = "127.0.0.1:18101"
[[jobs]]
name = "from-file"
schedule = "@daily"
command = ["true"]
"""


def cluster(tmp_path: Path) -> Cluster:
    return Cluster(parse_config(CONFIG, tmp_path / "cluster.toml"), "a")


async def send_reminders(run: RunContext) -> None:
    pass


def test_the_decorator_validates_like_a_jobs_table(tmp_path: Path) -> None:
    cl = cluster(tmp_path)
    deco = cl.job("*/5 * * * *", name="send-reminders", timeout="1m", overlap="skip")
    assert deco(send_reminders) is send_reminders
    (spec,) = cl.jobs
    assert spec == JobSpec(
        name="send-reminders",
        schedule="*/5 * * * *",
        command=(),
        call="tests.unit.test_embed:send_reminders",
        timeout_ms=60_000,
        overlap="skip",
        lease_ms=12_000,  # the cluster's default lease
    )

    @cl.job("0 3 * * *", tags={"role": "app"}, retries=2)
    def nightly() -> None:
        pass

    assert cl.jobs[1].name == "nightly" and cl.jobs[1].tags == (("role", "app"),)
    assert cl.jobs[1].retries == 2

    with pytest.raises(ConfigError) as err:
        cl.job("61 * * * *", name="bad name!", overlap="sometimes", command=["x"])(nightly)
    text = str(err.value)
    assert "job 'bad name!': command: not for an embedded job" in text
    with pytest.raises(ConfigError) as err:
        cl.job("61 * * * *", name="bad name!", overlap="sometimes")(nightly)
    text = str(err.value)
    assert "job 'bad name!': name:" in text
    assert "job 'bad name!': schedule:" in text
    assert "job 'bad name!': overlap:" in text
    with pytest.raises(ConfigError, match="already defined"):
        cl.job("* * * * *", name="from-file")(nightly)
    with pytest.raises(ConfigError, match="already defined"):
        cl.job("* * * * *")(nightly)
    with pytest.raises(ConfigError, match="takes 2 arguments"):
        cl.job("* * * * *", name="two")(lambda a, b: None)


def test_jobs_cannot_be_added_once_started(tmp_path: Path) -> None:
    cl = cluster(tmp_path)
    cl.node = object()  # type: ignore[assignment]  # what start() sets
    with pytest.raises(RuntimeError, match="before start"):
        cl.job("* * * * *")(send_reminders)


# ---------------------------------------------------------------- the replicated job set


def test_the_spec_names_its_callable_on_the_wire() -> None:
    spec = embedded_spec(send_reminders)
    assert c.spec_from_wire(c.spec_to_wire(spec)) == spec
    plain = JobSpec(name="j", schedule="@daily", command=("true",))
    assert "call" not in c.spec_to_wire(plain)  # older encodings stay byte for byte


def test_embedded_jobs_are_reconciled_with_their_own_source() -> None:
    s = State()
    emb = embedded_spec(send_reminders, name="e")
    file_job = JobSpec(name="f", schedule="@daily", command=("true",))
    s.apply(c.PutJob(at_ms=T0, spec=JobSpec(name="api", schedule="@daily", command=("true",))))
    assert s.apply(c.SyncConfig(at_ms=T0, specs=(file_job, emb), history=10)) == Ok(("f", "e"))
    assert {n: j.source for n, j in s.jobs.items()} == {
        "api": "api",
        "f": "config",
        "e": "embedded",
    }
    # a leader whose process no longer registers it removes it; API jobs stay
    assert s.apply(c.SyncConfig(at_ms=T0, specs=(file_job,), history=10)) == Ok(("e",))
    assert sorted(s.jobs) == ["api", "f"]


class Sender:
    async def __call__(self, run: RunContext) -> None:
        pass


async def with_extra(run: RunContext, extra: int) -> None:
    pass


def test_callables_are_named_the_same_in_every_process() -> None:
    """``call`` is part of the replicated spec: it must not carry an address."""
    obj = registered("o", Sender())
    assert (obj.call, obj.is_async, obj.takes_run) == ("tests.unit.test_embed:Sender", True, True)
    part = registered("p", functools.partial(with_extra, extra=1))
    assert (part.call, part.is_async, part.takes_run) == (
        "tests.unit.test_embed:with_extra",
        True,
        True,
    )
