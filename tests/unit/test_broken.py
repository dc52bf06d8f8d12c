"""One job cannot stop the others: a job whose computation raises on the leader is marked
``broken`` (a replicated flag with its reason, committed by ``MarkBroken``), its fires are
recorded as missed with ``broken: ...``, every other job keeps firing, and a ``PUT`` or a
resume clears it. Also: a backfill rate of 5e-324 no longer raises anywhere (finding 5)."""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import msgpack
import pytest

from raftcron.clock import FakeClock
from raftcron.core import commands as c
from raftcron.core import planner
from raftcron.core.model import (
    LAST_MS,
    MISSED,
    TRIGGER_SCHEDULE,
    Backfill,
    Job,
    backfill_ready_ms,
)
from raftcron.core.planner import NodeInfo, next_due_ms, plan
from raftcron.core.state import Ok, Rejected, Result, State, job_errors_counts
from raftcron.raft.node import Machine
from raftcron.scheduler.leader import Leader, LeaseTracker
from tests.helpers import spec

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z
S = 1000
NODES = (NodeInfo(name="a"),)


def state_with(*names: str) -> State:
    st = State()
    for name in names:
        assert st.apply(c.PutJob(at_ms=T0, spec=spec(name))) == Ok("created")
    return st


def mark(st: State, job: str, reason: str = "plan: OverflowError: x", at: int = T0) -> Result:
    updated = st.jobs[job].updated_ms
    cmd = c.MarkBroken(at_ms=at, job=job, updated_ms=updated, reason=reason)
    _, res = st.apply_bytes(c.encode(cmd))  # through the wire, like an entry
    return res


# --------------------------------------------------------------------------- the flag


def test_mark_broken_sets_the_flag_counts_it_and_is_idempotent() -> None:
    st = state_with("bad")
    assert mark(st, "bad", at=T0 + 5 * S) == Ok(True)
    job = st.jobs["bad"]
    assert job.broken == "plan: OverflowError: x" and job.broken_ms == T0 + 5 * S
    assert mark(st, "bad", "another") == Ok(False)  # the first reason stays
    assert st.jobs["bad"].broken == "plan: OverflowError: x"
    assert job_errors_counts(st.counters.extra) == [("bad", 1)]
    res = st.apply(c.MarkBroken(at_ms=T0, job="gone", updated_ms=0, reason="r"))
    assert isinstance(res, Rejected) and res.code == "unknown_job"


def test_a_mark_computed_before_a_change_of_the_job_is_stale() -> None:
    st = state_with("bad")
    before = st.jobs["bad"].updated_ms
    st.apply(c.PutJob(at_ms=T0 + S, spec=spec("bad", "*/2 * * * * *")))  # fixed meanwhile
    res = st.apply(c.MarkBroken(at_ms=T0 + 2 * S, job="bad", updated_ms=before, reason="r"))
    assert isinstance(res, Rejected) and res.code == "stale"
    assert st.jobs["bad"].broken == ""


def test_a_put_clears_it_even_with_the_same_spec_and_so_does_resume() -> None:
    st = state_with("bad")
    mark(st, "bad")
    assert st.apply(c.PutJob(at_ms=T0 + S, spec=spec("bad"))) == Ok("updated")
    assert st.jobs["bad"].broken == "" and st.jobs["bad"].broken_ms == 0
    assert st.apply(c.PutJob(at_ms=T0 + 2 * S, spec=spec("bad"))) == Ok("unchanged")
    mark(st, "bad")
    st.apply(c.SetPaused(at_ms=T0 + 3 * S, name="bad", paused=True, note="n"))
    assert st.jobs["bad"].broken  # a pause leaves it
    st.apply(c.SetPaused(at_ms=T0 + 4 * S, name="bad", paused=False))
    assert st.jobs["bad"].broken == "" and not st.jobs["bad"].paused
    mark(st, "bad")  # a resume of a job that is not paused clears it too
    st.apply(c.SetPaused(at_ms=T0 + 5 * S, name="bad", paused=False))
    assert st.jobs["bad"].broken == ""


def test_a_config_sync_of_an_unchanged_spec_leaves_it_a_changed_one_clears_it() -> None:
    st = State()
    st.apply(c.SyncConfig(at_ms=T0, specs=(spec("cfg"),), history=10, partial=True))
    mark(st, "cfg")
    st.apply(c.SyncConfig(at_ms=T0 + S, specs=(spec("cfg"),), history=10))  # full sync
    assert st.jobs["cfg"].broken
    st.apply(c.SyncConfig(at_ms=T0 + 2 * S, specs=(spec("cfg", "0 * * * *"),), history=10))
    assert st.jobs["cfg"].broken == ""


def test_the_flag_survives_snapshots_and_old_rows_still_load() -> None:
    st = state_with("bad", "good")
    plain = st.snapshot()
    mark(st, "bad", at=T0 + 7 * S)
    again = State.restore(st.snapshot())
    assert again.jobs["bad"].broken == st.jobs["bad"].broken
    assert again.jobs["bad"].broken_ms == T0 + 7 * S
    assert again.digest() == st.digest()
    # A job that was never broken encodes exactly as before the fields existed ...
    assert State.restore(plain).snapshot() == plain
    # ... and a snapshot written before them (rows of 6 and 12 fields) loads with defaults.
    raw = msgpack.unpackb(plain, raw=False, strict_map_key=False)
    assert all(len(row) <= 12 for row in raw["jobs"])
    assert State.restore(plain).jobs["bad"].broken == ""


def test_a_failing_apply_is_a_rejection_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    st = state_with("j")

    def boom(*_: Any) -> Result:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(State, "_mark_broken", boom)
    res = st.apply(c.MarkBroken(at_ms=T0, job="j", updated_ms=T0, reason="r"))
    assert res == Rejected("apply_failed", "ZeroDivisionError: a bug")


# --------------------------------------------------------------------------- finding 5


@pytest.mark.parametrize("rate", [5e-324, 0.0, -1.0, math.nan, 1e-300])
def test_backfill_pacing_never_raises(rate: float) -> None:
    bf = Backfill(id="b", from_ms=0, to_ms=1, cursor_ms=0, total=2, done=1, rate=rate, last_ms=T0)
    assert backfill_ready_ms(bf) == LAST_MS  # never: not an OverflowError
    assert backfill_ready_ms(Backfill(**{**_fields(bf), "rate": 2.0})) == T0 + 500


def _fields(bf: Backfill) -> dict[str, Any]:
    return {f: getattr(bf, f) for f in bf.__slots__}


def test_a_5e_324_backfill_does_not_stop_a_job_created_later() -> None:
    """The audit's case: a backfill at rate 5e-324 made the leader's pacing raise
    OverflowError; a job created later never fired and nothing was recorded."""
    clock = FakeClock(wall_ms=T0)
    raft = _Raft(state_with("bf"))
    raft.state.apply(c.PutJob(at_ms=T0, spec=spec("bf", "0 * * * *")))  # hourly
    frm, to = T0 - 3 * 3_600_000, T0 - 1
    cmd = c.StartBackfill(at_ms=T0, job="bf", id="tiny", from_ms=frm, to_ms=to, rate=5e-324)
    assert isinstance(raft.state.apply(cmd), Ok)
    leader = _leader(raft, clock)
    clock.advance(1)
    asyncio.run(_steps(leader, clock, 1))  # claims the first backfill fire
    [first] = [r for r in _runs(raft) if r.job == "bf"]
    assert first.trigger == "backfill"
    at = clock.wall_ms()  # it ran and ended: the pacing decides when the next one may go
    raft.state.apply(c.Start(at_ms=at, run_id=first.id, fence=first.fence, node="a", token="t"))
    done = c.Complete(at_ms=at, run_id=first.id, fence=first.fence, node="a",
                      status="succeeded", exit_code=0, started_ms=at, finished_ms=at)  # fmt: skip
    raft.state.apply(done)
    leader.jobs_changed(["bf"])
    raft.state.apply(c.PutJob(at_ms=clock.wall_ms(), spec=spec("later")))
    leader.jobs_changed(["later"])
    asyncio.run(_steps(leader, clock, 3))
    assert any(r.job == "later" and r.trigger == TRIGGER_SCHEDULE for r in _runs(raft))


# --------------------------------------------------------------------------- planner


def test_plan_takes_a_raising_job_out_and_plans_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    st = state_with("a-first", "bad", "z-last")
    real = planner.due

    def due(job: Job, now_ms: int) -> Any:
        if job.spec.name == "bad":
            raise OverflowError("cannot convert float infinity to integer")
        return real(job, now_ms)

    monkeypatch.setattr(planner, "due", due)
    jobs = list(st.jobs.values())
    errors: list[tuple[Job, str]] = []
    p = plan(jobs, T0 + 2 * S, NODES, {}, errors=errors)
    assert {f.job for f in p.fires} == {"a-first", "z-last"}
    assert [(j.spec.name, why) for j, why in errors] == [
        ("bad", "OverflowError: cannot convert float infinity to integer")
    ]
    with pytest.raises(OverflowError):  # without errors=, as before: the caller's problem
        plan(jobs, T0 + 2 * S, NODES, {})


def test_a_broken_jobs_fires_are_missed_with_the_reason_and_nothing_else_goes() -> None:
    st = state_with("bad")
    st.apply(c.Plan(at_ms=T0 + S, fires=(c.Fire(job="bad", scheduled_at_ms=T0 + S, node="a",
                                                trigger="manual"),)))  # fmt: skip
    mark(st, "bad", "next fire: OverflowError: x")
    job = st.jobs["bad"]
    assert next_due_ms(job, busy=False) == T0 + S  # its next scheduled fire, nothing sooner
    p = plan([job], T0 + 5 * S, NODES, {})
    assert p.fires == ()
    [m] = p.missed
    assert (m.first_ms, m.last_ms, m.count) == (T0 + S, T0 + 5 * S, 5)
    assert m.reason == "broken: next fire: OverflowError: x" and m.status == MISSED
    st.apply(p)
    rec = st.runs[f"bad@{T0 + S}"]
    assert rec.status == MISSED and rec.reason.startswith("broken: ") and rec.count == 5
    # paused and broken: recorded as paused, as any paused job's fires
    st.apply(c.SetPaused(at_ms=T0 + 6 * S, name="bad", paused=True))
    [m] = plan([st.jobs["bad"]], T0 + 8 * S, NODES, {}).missed
    assert m.status == "paused"


# --------------------------------------------------------------------------- the leader


class _Raft:
    """Commits every proposal at once through a real Machine (encode -> apply_bytes)."""

    def __init__(self, state: State) -> None:
        self.machine = Machine(state)
        self.state = state
        self.proposed: list[c.Command] = []

    async def propose(self, cmd: c.Command, timeout: float) -> Result:  # noqa: ASYNC109
        self.proposed.append(cmd)
        return self.machine.apply(c.encode(cmd))


def _leader(raft: _Raft, clock: FakeClock) -> Leader:
    return Leader(
        node="a",
        term=1,
        raft=raft,  # type: ignore[arg-type]
        clock=clock,
        leases=LeaseTracker(clock),
        config_jobs=(),
        history=10,
        live_nodes=lambda: list(NODES),
        election_timeout=0.9,
    )


async def _steps(leader: Leader, clock: FakeClock, seconds: int) -> None:
    """What the schedule loop does, one pass per simulated second (no real waiting)."""
    for _ in range(seconds):
        await leader._refresh()
        if leader._breaking:
            await leader._mark_broken()
        now = clock.wall_ms()
        names = leader._pop_due(now)
        if names:
            await leader._fire(names, now)
            await leader._refresh()
        clock.advance(1)


def _runs(raft: _Raft) -> list[Any]:
    return raft.machine.read(lambda s: list(s.runs.values()))


def test_the_leader_marks_a_raising_job_broken_and_keeps_the_others_firing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import raftcron.scheduler.leader as leader_mod

    clock = FakeClock(wall_ms=T0)
    raft = _Raft(state_with("bad", "good"))
    real = leader_mod.next_due_ms

    def next_due(job: Job, busy: bool, live: Any = None) -> int:
        if job.spec.name == "bad" and not job.broken:
            raise OverflowError("cannot convert float infinity to integer")
        return real(job, busy, live)

    monkeypatch.setattr(leader_mod, "next_due_ms", next_due)
    leader = _leader(raft, clock)
    clock.advance(1)
    with caplog.at_level(logging.WARNING, logger="raftcron.scheduler.leader"):
        asyncio.run(_steps(leader, clock, 3))
    bad = raft.state.jobs["bad"]
    assert bad.broken == "next fire: OverflowError: cannot convert float infinity to integer"
    assert any(
        r.levelno == logging.WARNING and "job=bad is broken" in r.getMessage()
        for r in caplog.records
    )
    assert job_errors_counts(raft.state.counters.extra) == [("bad", 1)]
    # a job created after it keeps firing; the broken job's fires are recorded as missed
    raft.state.apply(c.PutJob(at_ms=clock.wall_ms(), spec=spec("later")))
    leader.jobs_changed(["later"])
    asyncio.run(_steps(leader, clock, 3))
    granted = {r.job for r in _runs(raft) if r.status == "claimed"}
    assert {"good", "later"} <= granted and "bad" not in granted
    missed = [r for r in _runs(raft) if r.job == "bad"]
    assert missed and all(r.status == MISSED for r in missed)
    assert all(r.reason.startswith("broken: next fire: OverflowError") for r in missed)
    # only one mark was proposed, however often the job was looked at
    assert sum(isinstance(p, c.MarkBroken) for p in raft.proposed) == 1
