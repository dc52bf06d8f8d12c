"""Job semantics in the pure core (issue 6): overlap buffers, catch-up modes, the paused
status and deterministic jitter. Planner and ``apply`` are driven together, the way the
leader drives them, with a fake "now": no clock, no network."""

from __future__ import annotations

import subprocess
import sys

import msgpack
import pytest

from raftcron.config import ConfigError, job_spec_from_mapping
from raftcron.core import commands as c
from raftcron.core.model import (
    BUFFER_ALL_LIMIT,
    BUFFERED,
    MISSED,
    PAUSED,
    SKIPPED,
    TRIGGER_BUFFERED,
    Job,
    jitter_offset_ms,
    run_id,
)
from raftcron.core.planner import NodeInfo, due, next_due_ms, plan
from raftcron.core.state import Ok, PlanOutcome, Rejected, State, manual_run_id, outcome_key
from raftcron.timefmt import rfc3339
from tests.helpers import Sim, spec

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z, a whole minute
S = 1000
NODES = [NodeInfo(name="a"), NodeInfo(name="b")]


def r(t: int) -> str:
    return run_id("j", t)


def kinds(out: PlanOutcome) -> list[str]:
    return (
        ["granted"] * len(out.granted)
        + ["skipped"] * len(out.skipped)
        + ["buffered"] * len(out.buffered)
        + ["paused"] * len(out.paused)
    )


# --------------------------------------------------------------------------- overlap


@pytest.mark.parametrize(
    ("overlap", "while_a_runs", "runs_after_a"),
    [
        # fires B, C, D fall due while A runs; then A ends and whatever waited runs
        ("allow", ["granted", "granted", "granted"], []),
        ("skip", ["skipped", "skipped", "skipped"], []),
        ("buffer_one", ["buffered", "skipped", "skipped"], [2]),
        ("buffer_all", ["buffered", "buffered", "buffered"], [2, 3, 4]),
    ],
)
def test_overlap_policies(overlap: str, while_a_runs: list[str], runs_after_a: list[int]) -> None:
    sim = Sim.of(overlap=overlap)
    assert sim.tick(T0 + 1 * S).granted[0][0] == r(T0 + S)  # A
    seen = [kinds(sim.tick(T0 + k * S)) for k in (2, 3, 4)]
    assert seen == [[k] for k in while_a_runs]
    if overlap == "skip":
        assert "overlap=skip: j@1800000001000 is still running" in sim.s.runs[r(T0 + 2 * S)].reason
    if overlap == "buffer_one":
        why = sim.s.runs[r(T0 + 3 * S)].reason
        assert why == "overlap=buffer_one: j@1800000002000 is already buffered behind " + r(T0 + S)
    # A ends between two cron fires; each buffered fire runs once, in order, right after
    # the run before it ends, keeping its own scheduled_at (its identity)
    sim.end(r(T0 + S), T0 + 4 * S + 100)
    order = []
    now = T0 + 4 * S + 100
    for _ in range(len(runs_after_a)):
        out = sim.tick(now)
        assert len(out.granted) == 1, out
        rid = out.granted[0][0]
        run = sim.s.runs[rid]
        assert run.trigger == TRIGGER_BUFFERED and run.reason.startswith("schedule fire buffered")
        assert f"(overlap={overlap})" in run.reason
        order.append((run.scheduled_at_ms - T0) // S)
        assert sim.tick(now + 1).granted == ()  # one at a time: the job is busy again
        now += 10
        sim.end(rid, now)
        assert "buffered" in sim.s.runs[rid].reason  # the completion keeps the note
    assert order == runs_after_a
    assert sim.job.buffered == ()
    assert sim.tick(now).granted == ()  # nothing left


def test_buffered_fires_keep_their_order_behind_new_ones_between_runs() -> None:
    """A job with a buffer is busy even when no run is live (the moment between a run's end
    and the buffered claim): a new fire queues behind, it never jumps ahead."""
    sim = Sim.of(overlap="buffer_all")
    sim.tick(T0 + S)
    sim.tick(T0 + 2 * S)  # buffered
    sim.end(r(T0 + S), T0 + 2 * S + 500)
    # a plan made before the leader saw the end: only the new cron fire, no buffered claim
    late = c.Plan(at_ms=T0 + 3 * S, fires=(c.Fire(job="j", scheduled_at_ms=T0 + 3 * S,
                                                   node="a", trigger="schedule"),))  # fmt: skip
    out = sim.apply(late)
    assert kinds(out) == ["buffered"]
    assert "j@1800000002000 was buffered" in out.buffered[0][1]
    assert [rid for rid, _ in sim.job.buffered] == [r(T0 + 2 * S), r(T0 + 3 * S)]


def test_buffered_claims_are_checked_by_apply() -> None:
    sim = Sim.of(overlap="buffer_one")
    sim.tick(T0 + S)
    sim.tick(T0 + 2 * S)

    def claim(t: int, node: str = "a") -> PlanOutcome:
        f = c.Fire(job="j", scheduled_at_ms=t, node=node, trigger=TRIGGER_BUFFERED)
        return sim.apply(c.Plan(at_ms=T0 + 3 * S, fires=(f,)))

    assert claim(T0 + 2 * S).rejected == (("j", T0 + 2 * S, "busy"),)  # A still runs
    sim.end(r(T0 + S), T0 + 2 * S + 500)
    assert claim(T0 + 9 * S).rejected == (("j", T0 + 9 * S, "not_buffered"),)
    # no node matches any more: the buffered fire is recorded, not dropped
    out = claim(T0 + 2 * S, node="")
    assert out.skipped[0][0] == r(T0 + 2 * S) and "unschedulable" in out.skipped[0][1]
    assert sim.status(r(T0 + 2 * S)) == SKIPPED and sim.job.buffered == ()
    assert claim(T0 + 2 * S).rejected == (("j", T0 + 2 * S, "not_buffered"),)


def test_buffer_all_is_bounded_and_overflow_is_recorded() -> None:
    sim = Sim.of(overlap="buffer_all", catchup_ms=3_600_000)
    sim.tick(T0 + S)
    out = sim.tick(T0 + (BUFFER_ALL_LIMIT + 5) * S)  # 104 fires at once (a catch-up)
    assert len(out.buffered) == BUFFER_ALL_LIMIT and len(out.skipped) == 4
    assert "the buffer is full (100 fires wait" in out.skipped[0][1]
    assert len(sim.job.buffered) == BUFFER_ALL_LIMIT
    assert {sim.status(rid) for rid, _ in sim.job.buffered} == {BUFFERED}
    assert sim.s.live_runs() == [sim.s.runs[r(T0 + S)]]  # buffered runs hold no lease


@pytest.mark.parametrize(
    ("overlap", "first", "second"),
    [
        ("allow", "granted", "granted"),
        ("skip", "skipped", "skipped"),
        ("buffer_one", "buffered", "skipped"),
        ("buffer_all", "buffered", "buffered"),
    ],
)
def test_manual_triggers_obey_the_overlap_policy(overlap: str, first: str, second: str) -> None:
    sim = Sim.of(overlap=overlap)
    sim.tick(T0 + S)
    assert kinds(sim.trigger(T0 + 1500)) == [first]
    assert kinds(sim.trigger(T0 + 1600)) == [second]
    # a repeat of a trigger is recognised whatever happened to it
    again = sim.trigger(T0 + 1500)
    assert again.rejected == (("j", T0 + 1500, "duplicate"),)
    if first == "buffered":
        m = manual_run_id("j", T0 + 1500)
        assert sim.status(m) == BUFFERED
        assert sim.s.runs[m].reason.startswith("manual fire buffered: due while j@")
        sim.end(r(T0 + S), T0 + 1700)
        out = sim.tick(T0 + 1700)
        assert out.granted[0][0] == m  # the manual fire's own id, run after A
        assert sim.s.runs[m].scheduled_at_ms == T0 + 1500


def test_pausing_records_buffered_fires_as_paused_and_deleting_as_skipped() -> None:
    sim = Sim.of(overlap="buffer_all")
    sim.tick(T0 + S)
    sim.tick(T0 + 3 * S)  # two buffered
    sim.s.apply(c.SetPaused(at_ms=T0 + 3500, name="j", paused=True, note="db upgrade"))
    assert sim.job.buffered == ()
    for t in (T0 + 2 * S, T0 + 3 * S):
        run = sim.s.runs[r(t)]
        assert run.status == PAUSED
        assert run.reason.startswith("job is paused: db upgrade (it was buffered); schedule")
    sim.s.apply(c.SetPaused(at_ms=T0 + 3600, name="j", paused=False))
    sim.tick(T0 + 4 * S)
    assert sim.job.buffered == ((r(T0 + 4 * S), T0 + 4 * S),)
    assert sim.s.apply(c.DeleteJob(at_ms=T0 + 4500, name="j")) == Ok("deleted")
    assert sim.status(r(T0 + 4 * S)) == SKIPPED
    assert sim.s.runs[r(T0 + 4 * S)].reason.startswith("job deleted while this fire was buffered")


def test_changing_the_policy_leaves_buffered_fires_to_run() -> None:
    sim = Sim.of(overlap="buffer_one")
    sim.tick(T0 + S)
    sim.tick(T0 + 2 * S)
    sim.s.apply(c.PutJob(at_ms=T0 + 2100, spec=spec(overlap="allow")))
    assert sim.job.buffered != ()
    sim.end(r(T0 + S), T0 + 2200)
    assert sim.tick(T0 + 2200).granted[0][0] == r(T0 + 2 * S)


def test_next_due_is_now_when_a_buffered_fire_can_go() -> None:
    sim = Sim.of(overlap="buffer_one")
    sim.tick(T0 + S)
    sim.tick(T0 + 2 * S)
    assert next_due_ms(sim.job, busy=True) == T0 + 3 * S
    sim.end(r(T0 + S), T0 + 2500)
    assert sim.s.buffer_ready(r(T0 + S)) == "j"
    assert next_due_ms(sim.job, busy=False) == 0


# --------------------------------------------------------------------------- catch-up


def _j(mode: str, watermark: int = T0, **kw: object) -> Job:
    return Job(spec=spec(catchup_ms=5 * S, catchup_mode=mode, **kw), watermark_ms=watermark)


@pytest.mark.parametrize(
    ("mode", "now", "runs", "missed", "reason"),
    [
        # one fire, on time: every mode runs it
        ("all", T0 + S + 200, [1], None, ""),
        ("latest", T0 + S + 200, [1], None, ""),
        ("none", T0 + S + 200, [1], None, ""),
        # under a second late is never missed, whatever the mode
        ("none", T0 + S + 999, [1], None, ""),
        # ten fires due at once (an election): catchup = 5s
        ("all", T0 + 10 * S, [6, 7, 8, 9, 10], (1, 5, 5), "older than the catch-up window"),
        ("latest", T0 + 10 * S, [10], (1, 9, 9), "superseded by the later fire j@1800000010000"),
        ("none", T0 + 10 * S, [10], (1, 9, 9), "more than 1s late"),
        ("none", T0 + 10 * S + 500, [10], (1, 9, 9), "catchup_mode=none"),
        # all inside the window: latest still runs only the newest
        ("all", T0 + 3 * S, [1, 2, 3], None, ""),
        ("latest", T0 + 3 * S, [3], (1, 2, 2), "2 fire(s) superseded"),
        ("none", T0 + 3 * S, [3], (1, 2, 2), "2 fire(s) more than 1s late"),
    ],
)
def test_catchup_modes(
    mode: str, now: int, runs: list[int], missed: tuple[int, int, int] | None, reason: str
) -> None:
    fires, miss = due(_j(mode), now)
    assert [(t - T0) // S for t in fires] == runs
    if missed is None:
        assert miss is None
    else:
        assert miss is not None and miss.status == MISSED
        first, last, count = missed
        assert (miss.first_ms, miss.count) == (T0 + first * S, count)
        assert miss.last_ms >= T0 + last * S and miss.last_ms < T0 + runs[0] * S
        assert reason in miss.reason


def test_latest_names_both_reasons_in_one_record() -> None:
    fires, miss = due(_j("latest"), T0 + 10 * S)
    assert fires == [T0 + 10 * S] and miss is not None
    assert miss.reason == (
        "5 fire(s) older than the catch-up window (catchup=5s) when the scheduler reached "
        "them; 4 fire(s) superseded by the later fire j@1800000010000 (catchup_mode=latest)"
    )


def test_latest_with_more_fires_than_a_batch_still_runs_only_the_newest() -> None:
    sim = Sim.of(catchup_ms=3_600_000, catchup_mode="latest")
    now = T0 + 2500 * S
    granted: list[str] = []
    missed = 0
    for _ in range(5):
        out = sim.tick(now)
        granted += [g[0] for g in out.granted]
        missed += sum(sim.s.runs[m].count for m in out.missed)
    assert granted == [r(now)] and missed == 2499
    assert sim.job.watermark_ms == now


def test_catchup_modes_through_apply_keep_every_fire_accounted_for() -> None:
    for mode in ("all", "latest", "none"):
        sim = Sim.of(catchup_ms=5 * S, catchup_mode=mode)
        out = sim.tick(T0 + 10 * S)
        missed = sum(sim.s.runs[m].count for m in out.missed)
        assert missed + len(out.granted) == 10, mode
        assert sim.job.watermark_ms == T0 + 10 * S


# --------------------------------------------------------------------------- paused


def test_paused_fires_are_one_growing_record_per_pause() -> None:
    sim = Sim.of()
    sim.s.apply(c.SetPaused(at_ms=T0, name="j", paused=True, note="maintenance"))
    for k in range(1, 6):
        out = sim.tick(T0 + k * S)
        assert kinds(out) == ["paused"] and out.paused == (r(T0 + S),)
    rec = sim.s.runs[r(T0 + S)]
    assert (rec.status, rec.count, rec.last_scheduled_ms) == (PAUSED, 5, T0 + 5 * S)
    assert rec.reason == "job is paused: maintenance"
    assert sim.s.counters.extra[outcome_key("j", PAUSED)] == 5
    assert len(sim.s.history["j"]) == 1
    # a manual run in between ends the aggregate; so does a new pause
    sim.trigger(T0 + 5500)
    sim.end(manual_run_id("j", T0 + 5500), T0 + 5600)
    assert sim.tick(T0 + 6 * S).paused == (r(T0 + 6 * S),)
    assert sim.tick(T0 + 7 * S).paused == (r(T0 + 6 * S),)
    sim.s.apply(c.SetPaused(at_ms=T0 + 7500, name="j", paused=True, note="again"))
    assert sim.tick(T0 + 8 * S).paused == (r(T0 + 8 * S),)
    assert sim.s.runs[r(T0 + 6 * S)].count == 2
    assert sim.s.counters.extra[outcome_key("j", PAUSED)] == 8
    # resuming does not back-fill
    sim.s.apply(c.SetPaused(at_ms=T0 + 8500, name="j", paused=False))
    assert [g[0] for g in sim.tick(T0 + 9 * S).granted] == [r(T0 + 9 * S)]


def test_a_long_pause_with_no_leader_is_one_paused_record_not_missed() -> None:
    sim = Sim.of(catchup_ms=5 * S)
    sim.s.apply(c.SetPaused(at_ms=T0, name="j", paused=True))
    out = sim.tick(T0 + 3600 * S)
    assert out.paused == (r(T0 + S),) and out.missed == ()
    rec = sim.s.runs[r(T0 + S)]
    assert (rec.count, rec.last_scheduled_ms) == (3600, T0 + 3600 * S)
    assert sim.job.watermark_ms == T0 + 3600 * S


def test_a_paused_record_planned_before_a_resume_is_refused_and_replanned() -> None:
    sim = Sim.of()
    sim.s.apply(c.SetPaused(at_ms=T0, name="j", paused=True))
    stale = plan(list(sim.s.jobs.values()), T0 + 2 * S, NODES, {})
    assert stale.missed[0].status == PAUSED
    sim.s.apply(c.SetPaused(at_ms=T0 + 2100, name="j", paused=False))
    out = sim.apply(stale)
    assert out.rejected == (("j", T0 + S, "not_paused"),)
    assert [g[0] for g in sim.tick(T0 + 2200).granted] == [r(T0 + S), r(T0 + 2 * S)]


def test_a_fire_planned_before_a_pause_is_recorded_as_paused() -> None:
    sim = Sim.of()
    stale = plan(list(sim.s.jobs.values()), T0 + S, NODES, {})
    sim.s.apply(c.SetPaused(at_ms=T0 + 1001, name="j", paused=True))
    assert sim.apply(stale).paused == (r(T0 + S),)
    assert sim.status(r(T0 + S)) == PAUSED


def test_a_manual_trigger_of_a_paused_job_still_runs() -> None:
    sim = Sim.of()
    sim.s.apply(c.SetPaused(at_ms=T0, name="j", paused=True))
    assert kinds(sim.trigger(T0 + 500)) == ["granted"]


# --------------------------------------------------------------------------- jitter


def test_jitter_offset_is_a_stable_hash_of_the_name() -> None:
    assert jitter_offset_ms("backup", 60_000) == 30_680  # the same on every node, forever
    assert jitter_offset_ms("backup", 0) == 0
    offsets = {jitter_offset_ms(f"job-{i}", 10_000) for i in range(200)}
    assert all(0 <= o < 10_000 for o in offsets) and len(offsets) > 150  # spread out
    # not Python's salted hash(): another interpreter with another seed agrees
    code = (
        "from raftcron.core.model import jitter_offset_ms; print(jitter_offset_ms('backup', 60000))"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": seed},
        )  # fmt: skip
        assert out.stdout.strip() == "30680"


@pytest.mark.parametrize(
    ("late", "runs", "trigger"),
    [
        (-1, [], ""),  # scheduled_at has passed, but not scheduled_at + offset
        (0, [1], "schedule"),
        (900, [1], "schedule"),
        (1500, [1], "catchup"),  # lateness counts from scheduled_at + offset
    ],
)
def test_jitter_delays_the_claim_not_the_identity(late: int, runs: list[int], trigger: str) -> None:
    job = Job(spec=spec(schedule="* * * * *", jitter_ms=60_000, name="backup"), watermark_ms=T0)
    offset = jitter_offset_ms("backup", 60_000)
    fire_at = T0 + 60 * S
    assert next_due_ms(job, busy=False) == fire_at + offset
    p = plan([job], fire_at + offset + late, NODES, {})
    assert [(f.scheduled_at_ms - T0) // (60 * S) for f in p.fires] == runs
    assert [f.trigger for f in p.fires] == ([trigger] if runs else [])
    assert p.missed == ()


def test_jitter_counts_the_catchup_window_from_the_delayed_time() -> None:
    job = Job(spec=spec(jitter_ms=10_000, catchup_ms=2 * S, name="backup"), watermark_ms=T0)
    offset = jitter_offset_ms("backup", 10_000)
    fires, miss = due(job, T0 + 5 * S + offset)
    assert [(t - T0) // S for t in fires] == [4, 5]
    assert miss is not None and miss.count == 3 and miss.last_ms == T0 + 3 * S


# --------------------------------------------------------------------------- wire


def test_new_spec_fields_round_trip_and_old_encodings_still_decode() -> None:
    new = spec(catchup_mode="latest", jitter_ms=1500, overlap="buffer_all")
    cmd = c.PutJob(at_ms=T0, spec=new)
    assert c.decode(c.encode(cmd)) == cmd
    # a spec that uses none of them encodes as before the keys existed
    plain = c.spec_to_wire(spec())
    assert "catchup_mode" not in plain and "jitter_ms" not in plain
    old = msgpack.packb({"v": 1, "t": "put_job", "at": T0, "spec": plain, "source": "api"})
    decoded = c.decode(old)
    assert isinstance(decoded, c.PutJob)
    assert (decoded.spec.catchup_mode, decoded.spec.jitter_ms) == ("all", 0)
    # a plan with a five-element missed row (before statuses) decodes as "missed"
    row = ["j", T0, T0 + S, 2, "old"]
    old_plan = msgpack.packb({"v": 1, "t": "plan", "at": T0, "fires": [], "missed": [row]})
    decoded_plan = c.decode(old_plan)
    assert isinstance(decoded_plan, c.Plan) and decoded_plan.missed[0].status == MISSED
    paused = c.Missed(job="j", first_ms=T0, last_ms=T0, count=1, reason="p", status=PAUSED)
    assert c.decode(c.encode(c.Plan(at_ms=T0, missed=(paused,)))) == c.Plan(
        at_ms=T0, missed=(paused,)
    )


def test_snapshots_keep_buffers_and_paused_aggregates_and_read_old_rows() -> None:
    sim = Sim.of(overlap="buffer_all")
    sim.tick(T0 + S)
    sim.tick(T0 + 3 * S)
    sim.trigger(T0 + 3500)
    sim.s.apply(c.PutJob(at_ms=T0, spec=spec(name="p")))
    sim.s.apply(c.SetPaused(at_ms=T0 + 3600, name="p", paused=True))
    sim.tick(T0 + 5 * S)
    back = State.restore(sim.s.snapshot())
    assert back.digest() == sim.s.digest()
    assert back.jobs["j"].buffered == sim.job.buffered and len(back.jobs["j"].buffered) == 5
    rec = back.runs[run_id("p", T0 + 4 * S)]  # p was created at cluster time T0 + 3.5s
    assert (rec.count, rec.last_scheduled_ms) == (2, T0 + 5 * S)
    # a snapshot written before these fields: 16-field run rows, 6-field job rows
    raw = msgpack.unpackb(State.restore(Sim.of().s.snapshot()).snapshot(), raw=False)
    raw["runs"] = [["j@1", "j", 1, "succeeded", "schedule", 1, 1, "a", 1, 1, 2, 0, "", "", 1, "t"]]
    old = State.restore(msgpack.packb(raw, use_bin_type=True))
    assert old.runs["j@1"].last_scheduled_ms is None and old.jobs["j"].buffered == ()


def test_rejections_of_a_plan_are_values_for_garbage_statuses() -> None:
    sim = Sim.of()
    bad = c.Missed(job="j", first_ms=T0 + S, last_ms=T0 + S, count=1, reason="x", status="nope")
    out = sim.apply(c.Plan(at_ms=T0 + S, missed=(bad,)))
    assert out.rejected == (("j", T0 + S, "bad_status"),)
    assert isinstance(sim.s.apply(c.DeleteJob(at_ms=T0, name="zz")), Rejected)


# --------------------------------------------------------------------------- DST keys

BERLIN_SPRING = 1_774_746_000_000  # 2026-03-29T01:00:00Z: 02:00 CET -> 03:00 CEST
BERLIN_FALL = 1_792_890_000_000  # 2026-10-25T01:00:00Z: 03:00 CEST -> 02:00 CET


@pytest.mark.parametrize(
    ("start", "keys", "runs_utc"),
    [
        # 02:30 local does not exist on 2026-03-29: shift runs it at 03:00 CEST (01:00Z)
        (BERLIN_SPRING, {}, ["2026-03-29T01:00:00Z"]),
        (BERLIN_SPRING, {"dst_gap": "skip"}, []),
        # 02:30 local happens twice on 2026-10-25: 00:30Z (CEST) and 01:30Z (CET)
        (BERLIN_FALL, {}, ["2026-10-25T00:30:00Z"]),
        (BERLIN_FALL, {"dst_repeat": "twice"}, ["2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z"]),
    ],
)
def test_dst_keys_decide_the_fires_the_leader_claims(
    start: int, keys: dict[str, str], runs_utc: list[str]
) -> None:
    day = start - 6 * 3_600_000  # the evening before, local
    sim = Sim()
    job = spec(schedule="30 2 * * *", timezone="Europe/Berlin", **keys)
    assert sim.s.apply(c.PutJob(at_ms=day, spec=job)) == Ok("created")
    claimed: list[int] = []
    for now in range(day, start + 4 * 3_600_000, 60_000):  # the leader looks every minute
        for rid, _, _ in sim.tick(now).granted:
            claimed.append(sim.s.runs[rid].scheduled_at_ms)
            sim.end(rid, now)
    assert [rfc3339(t) for t in claimed] == runs_utc
    assert all(r.status != MISSED for r in sim.s.runs.values())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("dst_gap", "later", '"later" is not allowed (use "shift" or "skip"'),
        ("dst_repeat", "both", '"both" is not allowed (use "once" or "twice"'),
    ],
)
def test_dst_keys_are_validated_naming_the_key(key: str, value: str, message: str) -> None:
    table = {"name": "j", "schedule": "30 2 * * *", "command": ["true"], key: value}
    with pytest.raises(ConfigError) as err:
        job_spec_from_mapping(table, "jobs[0]", default_lease_ms=30_000)
    assert f"jobs[0].{key}: {message}" in str(err.value)
    ok = job_spec_from_mapping({**table, key: "skip" if key == "dst_gap" else "twice"}, "j")
    assert getattr(ok, key) in ("skip", "twice")


def test_dst_keys_round_trip_and_default_specs_encode_as_before() -> None:
    job = spec(timezone="Europe/Berlin", dst_gap="skip", dst_repeat="twice")
    wire = c.spec_to_wire(job)
    assert (wire["dst_gap"], wire["dst_repeat"]) == ("skip", "twice")
    assert c.spec_from_wire(wire) == job
    assert "dst_gap" not in c.spec_to_wire(spec()) and "dst_repeat" not in c.spec_to_wire(spec())
