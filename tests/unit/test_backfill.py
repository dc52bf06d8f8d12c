"""Backfill in the pure core: a past range of a job's fires, run again one at a time at a
bounded rate, recorded with trigger ``backfill``; driven the way the leader drives it."""

from __future__ import annotations

import pytest

from raftcron.core import commands as c
from raftcron.core.model import (
    BACKFILL_MAX_FIRES,
    SKIPPED,
    TRIGGER_BACKFILL,
    backfill_run_id,
)
from raftcron.core.planner import next_due_ms
from raftcron.core.state import Ok, Rejected, State
from tests.helpers import Sim
from tests.unit.test_job_semantics import T0, S

M = 60 * S
NOW = T0 + 60 * M  # the backfilled range lies in the hour before


def minutely(**kw: object) -> Sim:
    """A job firing every minute, created at T0 and scheduled up to NOW (its fire at NOW
    has run): its next own fire is at NOW + 1 minute."""
    sim = Sim.of(schedule="* * * * *", **kw)
    for rid, _, _ in sim.tick(NOW).granted:
        sim.end(rid, NOW)
    assert sim.job.watermark_ms == NOW
    return sim


def start(sim: Sim, frm: int, to: int, rate: float = 1.0, bid: str = "b1") -> object:
    cmd = c.StartBackfill(at_ms=NOW, job="j", id=bid, from_ms=frm, to_ms=to, rate=rate)
    _, res = sim.s.apply_bytes(c.encode(cmd))  # through the wire, like an entry
    return res


def test_a_range_runs_one_fire_at_a_time_in_order_then_ends() -> None:
    sim = minutely()
    res = start(sim, T0 + 10 * M, T0 + 12 * M + 30 * S)  # fires at minutes 10, 11, 12
    assert isinstance(res, Ok) and res.value.total == 3
    ran: list[str] = []
    now = NOW
    while sim.job.backfill is not None:
        out = sim.tick(now)
        assert len(out.granted) <= 1
        for rid, _, _ in out.granted:
            ran.append(rid)
            assert sim.tick(now + 500).granted == ()  # not beside its own run
            sim.end(rid, now + 500)
        now += 1000
    assert ran == [backfill_run_id("j", T0 + m * M, "b1") for m in (10, 11, 12)]
    first = sim.s.runs[ran[0]]
    assert first.trigger == TRIGGER_BACKFILL and first.scheduled_at_ms == T0 + 10 * M
    assert first.reason == "backfill b1: fire 1 of 3"
    assert [rid for rid, _, _ in sim.tick(NOW + M).granted] == [f"j@{NOW + M}"]


def test_the_rate_bounds_claims_even_when_runs_are_instant() -> None:
    sim = minutely()
    assert isinstance(start(sim, T0, T0 + 9 * M, rate=0.5), Ok)  # one fire per 2 s
    claims: list[int] = []
    for now in range(NOW, NOW + 10 * S, 250):
        for rid, _, _ in sim.tick(now).granted:
            claims.append(now)
            sim.end(rid, now)
    assert claims == [NOW, NOW + 2 * S, NOW + 4 * S, NOW + 6 * S, NOW + 8 * S]
    assert next_due_ms(sim.job, busy=False) == NOW + 10 * S


def test_apply_refuses_a_backfill_claim_out_of_turn() -> None:
    sim = minutely()
    start(sim, T0, T0 + 5 * M)
    wrong = c.Fire(job="j", scheduled_at_ms=T0 + M, node="a", trigger=TRIGGER_BACKFILL)
    out = sim.apply(c.Plan(at_ms=NOW, fires=(wrong,)))
    assert out.rejected == (("j", T0 + M, "not_next"),)
    first = c.Fire(job="j", scheduled_at_ms=T0, node="a", trigger=TRIGGER_BACKFILL)
    assert len(sim.apply(c.Plan(at_ms=NOW, fires=(first,))).granted) == 1
    second = c.Fire(job="j", scheduled_at_ms=T0 + M, node="a", trigger=TRIGGER_BACKFILL)
    assert sim.apply(c.Plan(at_ms=NOW, fires=(second,))).rejected == (("j", T0 + M, "busy"),)


def test_scheduled_fires_go_first_and_a_backfill_never_makes_them_skip() -> None:
    sim = minutely(overlap="skip")
    start(sim, T0, T0 + 5 * M)
    out = sim.tick(NOW + M)  # the job's own fire at NOW + 1 minute is due too
    assert [rid for rid, _, _ in out.granted] == [f"j@{NOW + M}"]
    assert out.skipped == ()
    sim.end(f"j@{NOW + M}", NOW + M + 100)
    out = sim.tick(NOW + M + 200)
    assert [rid for rid, _, _ in out.granted] == [backfill_run_id("j", T0, "b1")]


def test_a_paused_job_holds_its_backfill_and_resumes_it() -> None:
    sim = minutely()
    start(sim, T0, T0 + M)
    sim.s.apply(c.SetPaused(at_ms=NOW, name="j", paused=True))
    assert sim.tick(NOW).granted == ()
    sim.s.apply(c.SetPaused(at_ms=NOW, name="j", paused=False))
    assert len(sim.tick(NOW + 100).granted) == 1


def test_with_no_node_the_fire_is_recorded_skipped_and_the_backfill_goes_on() -> None:
    sim = minutely(tags=(("role", "db"),))
    start(sim, T0, T0 + M)
    out = sim.tick(NOW)
    rid = backfill_run_id("j", T0, "b1")
    assert out.skipped and out.skipped[0][0] == rid
    assert sim.s.runs[rid].status == SKIPPED
    assert "unschedulable" in sim.s.runs[rid].reason and "backfill b1" in sim.s.runs[rid].reason
    assert sim.job.backfill is not None and sim.job.backfill.cursor_ms == T0


@pytest.mark.parametrize(
    ("frm", "to", "rate", "code"),
    [
        (T0, NOW + M, 1.0, "bad_backfill"),  # reaches into the future
        (T0 + 5 * M, T0, 1.0, "bad_backfill"),  # from after to
        (T0 + 1, T0 + 59 * S, 1.0, "bad_backfill"),  # no fire in the range
        (T0, T0 + M, 0.0, "bad_backfill"),
        (T0, T0 + M, 1000.0, "bad_backfill"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(frm: int, to: int, rate: float, code: str) -> None:
    sim = minutely()
    res = start(sim, frm, to, rate)
    assert isinstance(res, Rejected) and res.code == code and res.message
    assert sim.job.backfill is None


def test_one_backfill_per_job_a_repeated_request_is_the_same_one_and_cancel_ends_it() -> None:
    sim = minutely()
    first = start(sim, T0, T0 + 5 * M)
    assert start(sim, T0, T0 + 5 * M) == first  # same id: the same backfill
    other = start(sim, T0, T0 + 5 * M, bid="b2")
    assert isinstance(other, Rejected) and other.code == "backfill_running"
    assert isinstance(sim.s.apply(c.CancelBackfill(at_ms=NOW, job="j")), Ok)
    assert sim.job.backfill is None and sim.tick(NOW).granted == ()
    again = sim.s.apply(c.CancelBackfill(at_ms=NOW, job="j"))
    assert isinstance(again, Rejected) and again.code == "no_backfill"


def test_too_many_fires_must_be_split() -> None:
    sim = minutely()
    res = start(sim, NOW - (BACKFILL_MAX_FIRES + 1) * M, NOW - M)
    assert isinstance(res, Rejected) and "split" in res.message


def test_the_same_range_may_be_backfilled_again_and_snapshots_keep_progress() -> None:
    sim = minutely()
    start(sim, T0, T0 + 2 * M)
    rid = sim.tick(NOW).granted[0][0]
    restored = State.restore(sim.s.snapshot())
    assert restored.jobs["j"].backfill == sim.job.backfill
    assert restored.digest() == sim.s.digest()
    sim.end(rid, NOW)
    sim.s.apply(c.CancelBackfill(at_ms=NOW, job="j"))
    start(sim, T0, T0 + 2 * M, bid="b2")
    assert sim.tick(NOW + S).granted[0][0] == backfill_run_id("j", T0, "b2")
