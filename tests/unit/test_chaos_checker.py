"""The chaos checker against hand-made histories: a clean one passes, and the smallest
mutation that breaks each property P1-P7 is caught, named, and nothing else is reported.

The histories are built by :class:`Builder`, which plays the sink honestly: events are
ordered by ``t``, a write is accepted only above the highest fence accepted for its job, and
the ledger status follows the write (succeeded when accepted, failed when rejected, lost
without a write). Tests then mutate the result the way a bug would.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.checker import (
    History,
    HistoryError,
    Report,
    check,
    load,
    longest_gap,
    main,
    rfc3339,
    save,
)

Json = dict[str, Any]

BASE_T = 100.0  # observe start, sink monotonic seconds
BASE_WALL = 1_790_000_000_000  # the sink's wall ms at BASE_T (a whole second)
OFFSET_MS = BASE_WALL - BASE_T * 1000
SECONDS = 30
NODES = ("a", "b", "c")
ALLOW, SKIP, EPH, KEEP = "tick-allow", "tick-skip", "eph-1", "keep-1"
EVERY_SECOND: Json = {"schedule": "* * * * * *", "timezone": "UTC"}


def fire(k: int) -> int:
    """The k-th fire after the observe start, wall ms."""
    return BASE_WALL + k * 1000


def rid(job: str, k: int) -> str:
    return f"{job}@{fire(k)}"


def wall(t: float) -> int:
    return round(t * 1000 + OFFSET_MS)


@dataclass
class Exec:
    job: str
    at_ms: int
    node: str
    begin_t: float
    fence: int
    write_t: float | None  # None: never wrote
    end_t: float | None  # None: no end event
    run_id: str
    attempt: int = 1
    status: str | None = None  # None: follow the write
    ledger: bool = True


@dataclass
class Builder:
    execs: list[Exec] = field(default_factory=list)
    other: list[Json] = field(default_factory=list)  # nemesis and API events
    final_jobs: list[str] = field(default_factory=lambda: [ALLOW, SKIP])

    def execute(
        self,
        job: str,
        k: int,
        node: str,
        begin_t: float,
        *,
        hold: float = 0.3,
        write_t: float | None = -1.0,
        end_t: float | None = -1.0,
        fence: int | None = None,
        **kw: Any,
    ) -> Exec:
        """One execution of fire k; the write is at ``begin_t + hold`` and the end 10 ms
        later unless given (None: none). The fence defaults to the begin time in ms, so
        later grants always have higher fences."""
        wt = begin_t + hold if write_t == -1.0 else write_t
        et = (wt or begin_t + hold) + 0.01 if end_t == -1.0 else end_t
        e = Exec(
            job=job,
            at_ms=fire(k),
            node=node,
            begin_t=begin_t,
            fence=round(begin_t * 1000) if fence is None else fence,
            write_t=wt,
            end_t=et,
            run_id=kw.pop("run_id", rid(job, k)),
            **kw,
        )
        self.execs.append(e)
        return e

    def event(self, t: float, **fields: Any) -> None:
        self.other.append({"t": t, **fields})

    def nemesis(self, nid: int, kind: str, nodes: list[str], start: float, end: float) -> None:
        for phase, t in (("start", start), ("end", end)):
            name = f"test-{kind}"
            self.event(t, ev="nemesis", id=nid, name=name, kind=kind, phase=phase, nodes=nodes)

    def api(self, op: str, job: str, t: float, *, acked: bool = True) -> None:
        self.event(t, ev="attempt", op=op, job=job)
        if acked:
            self.event(t + 0.1, ev="ack", op=op, job=job)

    def build(self, observed: tuple[tuple[str, int], ...] = ((ALLOW, 3), (SKIP, 4))) -> History:
        """Render the sink as the real sink would record it, and ledgers consistent with it."""
        raw: list[tuple[float, int, Json]] = []  # (t, tiebreak, event without stamps)
        xs = {id(e): x for x, e in enumerate(self.execs, 1)}
        for e in self.execs:
            x = xs[id(e)]
            begin = {
                "ev": "begin",
                "x": x,
                "job": e.job,
                "scheduled_at_ms": e.at_ms,
                "run_id": e.run_id,
                "fence": e.fence,
                "node": e.node,
                "attempt": e.attempt,
            }
            raw.append((e.begin_t, 0, begin))
            if e.write_t is not None:
                raw.append((e.write_t, 1, {"ev": "write", "x": x, "fence": e.fence}))
            if e.end_t is not None:
                raw.append((e.end_t, 2, {"ev": "end", "x": x, "clean": True}))
        raw.extend((ev["t"], 3, {k: v for k, v in ev.items() if k != "t"}) for ev in self.other)
        raw.sort(key=lambda r: (r[0], r[1]))
        events: list[Json] = []
        highest: dict[str, int] = {}
        accepted: dict[int, bool] = {}
        for t, _, body in raw:
            if body["ev"] == "write":
                job = self.execs[body["x"] - 1].job
                ok = body["fence"] > highest.get(job, -1)
                if ok:
                    highest[job] = body["fence"]
                body["accepted"] = accepted[body["x"]] = ok
            events.append({**body, "t": round(t, 6), "wall_ms": wall(t)})
        ledger: list[Json] = []
        for x, e in enumerate(self.execs, 1):
            if not e.ledger:
                continue
            status = e.status or {True: "succeeded", False: "failed", None: "lost"}[accepted.get(x)]
            ledger.append(
                {
                    "id": e.run_id,
                    "job": e.job,
                    "scheduled_at": rfc3339(e.at_ms),
                    "fence": e.fence,
                    "node": e.node,
                    "status": status,
                    "attempt": e.attempt,
                    "started_at": rfc3339(wall(e.begin_t)),
                    "finished_at": None if e.end_t is None else rfc3339(wall(e.end_t)),
                    "exit_code": 0 if status == "succeeded" else None,
                }
            )
        by_id = {r["id"]: r for r in ledger}
        seen = [
            {"t": 110.0, "run": {**by_id[rid(j, k)], "scheduled_at_ms": fire(k)}}
            for j, k in observed
        ]
        return History(
            name="clean",
            seed=7,
            events=events,
            jobs={
                ALLOW: {**EVERY_SECOND, "overlap": "allow"},
                SKIP: {**EVERY_SECOND, "overlap": "skip"},
            },
            observe_start_t=BASE_T,
            observe_end_t=BASE_T + SECONDS,
            recovery_bound_s=9.5,
            spawn_bound_s=1.0,
            ledgers={n: copy.deepcopy(ledger) for n in NODES},
            final_jobs={n: list(self.final_jobs) for n in NODES},
            observed_runs=seen,
        )


def clean_builder(**overrides: dict[str, Any]) -> Builder:
    """30 s of two every-second jobs (allow, skip) on nodes a, b, c in turn (fire k on
    ``NODES[k % 3]``), plus the API workload: keep-1 put; eph-1 put, run and deleted (its
    runs stay in the ledger; one execution spawns within the spawn bound after the delete
    ack). ``overrides["tick-skip/10"]`` replaces keyword arguments of one fire."""
    b = Builder()
    for k in range(1, SECONDS + 1):
        for job, lag in ((ALLOW, 0.05), (SKIP, 0.06)):
            kw: dict[str, Any] = {"node": NODES[k % 3], **overrides.get(f"{job}/{k}", {})}
            b.execute(job, k, begin_t=BASE_T + k + lag, **kw)
    b.api("put_job", KEEP, 102.0)
    b.final_jobs.append(KEEP)
    b.api("put_job", EPH, 103.0)
    for k in range(4, 10):
        b.execute(EPH, k, NODES[k % 3], BASE_T + k + 0.07, hold=0.1)
    b.api("delete_job", EPH, 108.5)  # acked at 108.6; the fire-9 execution begins at 109.07
    return b


def clean() -> History:
    return clean_builder().build()


def begin(h: History, job: str, k: int) -> Json:
    return next(
        e
        for e in h.events
        if e["ev"] == "begin" and e["job"] == job and e["scheduled_at_ms"] == fire(k)
    )


def event_of(h: History, kind: str, x: int) -> Json:
    return next(e for e in h.events if e["ev"] == kind and e["x"] == x)


def drop_fire(h: History, job: str, k: int) -> None:
    """Remove one fire entirely: from the sink and from every ledger."""
    x = begin(h, job, k)["x"]
    h.events[:] = [e for e in h.events if e.get("x") != x or e["ev"] == "nemesis"]
    for runs in h.ledgers.values():
        runs[:] = [r for r in runs if r["id"] != rid(job, k)]


def add_ledger_run(h: History, run: Json, nodes: tuple[str, ...] = NODES) -> None:
    for n in nodes:
        h.ledgers[n].append(dict(run))


def only(report: Report, kind: str) -> str:
    """Assert ``report`` has violations of exactly one kind; return their text."""
    assert {v.kind for v in report.violations} == {kind}, report.violations
    return "\n".join(str(v) for v in report.violations)


# --------------------------------------------------------------------------- clean


def test_a_clean_history_passes_with_the_summary_line() -> None:
    report = check(clean())
    assert report.ok, report.violations
    assert report.fires == 2 * SECONDS + 6
    assert report.expected_fires == 2 * SECONDS
    assert report.line().startswith(
        "clean: fires=66 dup=0 stale_rejected=0 overlap=0 missed_outside=0 silent=0 "
        "lateness_p99=0.06s "
    )
    assert "recovery_bound=9.5s" in report.line()
    assert "grant=0 durable=0 deleted=0" in report.line()


def test_the_clock_offset_is_the_median_so_one_odd_event_does_not_shift_it() -> None:
    h = clean()
    h.events[-1]["wall_ms"] += 5_000
    assert check(h).ok


# --------------------------------------------------------------------------- P1 dup


def test_p1_a_second_begin_of_the_same_fire_is_a_duplicate() -> None:
    b = clean_builder()
    first = next(e for e in b.execs if e.job == ALLOW and e.at_ms == fire(5))
    b.execute(ALLOW, 5, "c", 105.5, fence=first.fence, write_t=None, ledger=False)
    report = check(b.build())
    text = only(report, "dup")
    assert report.count("dup") == 1 and "dup=1" in report.line()
    assert ALLOW in text and rfc3339(fire(5)) in text
    assert "node=c" in text and f"node={NODES[5 % 3]}" in text
    assert f"fence={first.fence}" in text and rid(ALLOW, 5) in text


def test_p1_retries_with_distinct_attempts_are_allowed_only_if_configured() -> None:
    b = clean_builder(**{f"{ALLOW}/5": {"status": "failed"}})
    b.execute(ALLOW, 5, "c", 105.5, attempt=2, run_id=rid(ALLOW, 5) + ".2", hold=0.1)
    h = b.build()
    assert only(check(h), "dup")
    h.jobs[ALLOW]["retries"] = 1
    assert check(h).ok


# --------------------------------------------------------------------------- P2 fence


def test_p2_an_accepted_fence_not_above_the_highest_is_caught() -> None:
    h = clean()
    x9, x10 = begin(h, ALLOW, 9)["x"], begin(h, ALLOW, 10)["x"]
    event_of(h, "write", x10)["fence"] = event_of(h, "write", x9)["fence"]
    text = only(check(h), "fence")
    assert ALLOW in text and rid(ALLOW, 10) in text and "accepted although" in text
    assert f"node={NODES[10 % 3]}" in text and rfc3339(fire(10)) in text


def test_p2_a_rejected_write_whose_fence_was_highest_is_caught() -> None:
    h = clean()
    event_of(h, "write", begin(h, ALLOW, 10)["x"])["accepted"] = False
    for runs in h.ledgers.values():  # the job exits non-zero when its write is rejected
        next(r for r in runs if r["id"] == rid(ALLOW, 10))["status"] = "failed"
    report = check(h)
    text = only(report, "fence")
    assert report.stale_rejected == 1
    assert "rejected although" in text and ALLOW in text and f"node={NODES[10 % 3]}" in text


def test_p2_a_pause_group_without_any_rejected_write_never_exercised_the_fence() -> None:
    b = clean_builder()
    b.nemesis(1, "pause-group", ["a"], 120.5, 120.9)
    text = only(check(b.build()), "fence")
    assert "never exercised under pause-group" in text and "a" in text


# --------------------------------------------------------------------------- P3 overlap


def test_p3_two_overlapping_skip_executions_are_caught() -> None:
    h = clean()
    event_of(h, "end", begin(h, SKIP, 10)["x"])["t"] = 111.2  # fire 11 began at 111.06
    text = only(check(h), "overlap")
    assert SKIP in text and rid(SKIP, 10) in text and rid(SKIP, 11) in text
    assert "node=b" in text and "node=c" in text


def test_p3_allow_jobs_may_overlap() -> None:
    h = clean()
    event_of(h, "end", begin(h, ALLOW, 10)["x"])["t"] = 115.0
    assert check(h).ok


def _frozen_on_b(kind: str, resume_t: float, allow_write_t: float) -> History:
    """Node b's agent and jobs frozen from 110.2 until ``resume_t`` while its fire-10
    executions (allow and skip) are running; the cluster runs fires 11-14 elsewhere."""
    frozen: dict[str, Any] = {"write_t": resume_t + 0.01, "end_t": resume_t + 0.02}
    moved = {f"{j}/13": {"node": "a"} for j in (ALLOW, SKIP)}  # b is frozen at fire 13
    b = clean_builder(
        **{f"{SKIP}/10": frozen, f"{ALLOW}/10": {**frozen, "write_t": allow_write_t}, **moved}
    )
    b.nemesis(1, kind, ["b"], 110.2, resume_t)
    return b.build()


def test_p3_a_frozen_skip_execution_whose_write_is_fenced_off_is_exempt() -> None:
    h = _frozen_on_b("pause-group", 115.0, 115.01)
    report = check(h)
    assert report.ok, report.violations
    assert report.stale_rejected == 2  # both of b's writes came back with old fences


def test_p3_the_exemption_needs_a_pause_group_of_that_node() -> None:
    h = _frozen_on_b("pause", 115.0, 115.01)  # the agent alone: its job was not frozen
    text = only(check(h), "overlap")
    assert rid(SKIP, 10) in text and "node=b" in text and "rejected" in text


def test_p3_a_frozen_execution_whose_write_came_first_is_exempt() -> None:
    # b resumes at 111.2 and its skip write (fence of 110.06) lands before fire 11's
    # (111.36): accepted, in fence order, which P2 checks. Its allow write comes late (stale).
    h = _frozen_on_b("pause-group", 111.2, 111.5)
    report = check(h)
    assert report.ok, report.violations
    assert report.stale_rejected == 1


def test_p3_a_frozen_execution_whose_write_broke_fence_order_is_caught_by_p2() -> None:
    h = _frozen_on_b("pause-group", 115.0, 115.01)
    for e in h.events:  # a broken resource: b's stale writes were accepted
        if e["ev"] == "write" and not e["accepted"]:
            e["accepted"] = True
    text = only(check(h), "fence")
    assert rid(SKIP, 10) in text and "node=b" in text


# --------------------------------------------------------------------------- P4 grant


def test_p4_an_execution_whose_run_is_in_no_ledger_has_no_grant() -> None:
    h = clean()
    for runs in h.ledgers.values():
        runs[:] = [r for r in runs if r["id"] != rid(ALLOW, 15)]
    text = only(check(h), "grant")
    assert "execution without a committed grant" in text
    assert ALLOW in text and rid(ALLOW, 15) in text and f"node={NODES[15 % 3]}" in text


def test_p4_an_execution_with_another_fence_than_its_grant_has_no_grant() -> None:
    h = clean()
    for runs in h.ledgers.values():
        next(r for r in runs if r["id"] == rid(SKIP, 15))["fence"] = 1
    text = only(check(h), "grant")
    assert rid(SKIP, 15) in text and "fence=1" in text


def test_p4_a_succeeded_ledger_run_without_a_sink_record_is_caught() -> None:
    h = clean()
    run = {
        "id": f"{KEEP}@{fire(20)}",
        "job": KEEP,
        "scheduled_at": rfc3339(fire(20)),
        "fence": 424242,
        "node": "b",
        "status": "succeeded",
    }
    add_ledger_run(h, run, ("a", "b"))
    text = only(check(h), "grant")
    assert "success without a sink record" in text and KEEP in text
    assert "fence=424242" in text and "a, b" in text and "node=b" in text


# --------------------------------------------------------------------------- P5 missed


def test_p5_a_missing_fire_outside_every_window_is_missed_outside() -> None:
    h = clean()
    drop_fire(h, ALLOW, 12)
    report = check(h)
    text = only(report, "missed_outside")
    assert report.count("missed_outside") == 1 and "missed_outside=1" in report.line()
    assert ALLOW in text and rfc3339(fire(12)) in text and "a, b, c" in text


def test_p5_consecutive_missing_fires_are_one_violation_with_a_count() -> None:
    h = clean()
    for k in (12, 13, 14):
        drop_fire(h, SKIP, k)
    report = check(h)
    only(report, "missed_outside")
    assert len(report.violations) == 1 and report.count("missed_outside") == 3
    assert "3 fires" in str(report.violations[0])


def _partition_around_fire_12() -> History:
    b = clean_builder()
    b.nemesis(1, "partition", ["a"], 111.5, 112.5)
    h = b.build()
    drop_fire(h, ALLOW, 12)
    return h


def test_p5_a_fire_in_a_window_that_no_ledger_records_is_silent() -> None:
    report = check(_partition_around_fire_12())
    text = only(report, "silent")
    assert report.count("silent") == 1 and "silent=1" in report.line()
    assert "neither ran nor recorded" in text and ALLOW in text and rfc3339(fire(12)) in text
    assert "partition a" in text


def test_p5_a_fire_in_a_window_recorded_as_missed_is_fine() -> None:
    h = _partition_around_fire_12()
    missed = {"id": rid(ALLOW, 12), "job": ALLOW, "scheduled_at": rfc3339(fire(12))}
    add_ledger_run(h, {**missed, "fence": None, "node": None, "status": "missed"}, ("c",))
    assert check(h).ok


def test_p5_an_aggregated_missed_record_covers_each_of_its_fires() -> None:
    b = clean_builder()
    b.nemesis(1, "kill", ["b"], 111.5, 113.5)
    h = b.build()
    for k in (12, 13, 14):
        drop_fire(h, ALLOW, k)
    assert check(h).count("silent") == 3
    run = {"id": rid(ALLOW, 12), "job": ALLOW, "scheduled_at": rfc3339(fire(12))}
    add_ledger_run(h, {**run, "fence": None, "node": None, "status": "missed", "count": 3})
    assert check(h).ok


def test_p5_a_window_starts_one_spawn_bound_early() -> None:
    b = clean_builder()
    b.nemesis(1, "kill", ["a"], 112.5, 113.0)  # fire 12 (wall of t=112) may be in flight
    h = b.build()
    drop_fire(h, ALLOW, 12)
    assert only(check(h), "silent")


def test_p5_the_recovery_bound_widens_the_window_after_its_end() -> None:
    b = clean_builder()
    b.nemesis(1, "kill", ["a"], 101.5, 102.5)
    h = b.build()
    drop_fire(h, ALLOW, 12)  # 9.5 s after the end: still inside
    assert only(check(h), "silent")
    h.recovery_bound_s = 9.0
    assert only(check(h), "missed_outside")


def test_p5_a_skip_job_fire_recorded_as_skipped_is_a_legitimate_skip() -> None:
    h = clean()
    for job in (ALLOW, SKIP):
        drop_fire(h, job, 12)
        run = {"id": rid(job, 12), "job": job, "scheduled_at": rfc3339(fire(12))}
        add_ledger_run(h, {**run, "fence": None, "node": None, "status": "skipped"})
    text = only(check(h), "missed_outside")  # only the allow job's skip is a miss
    assert ALLOW in text and SKIP not in text and "a: skipped" in text


def test_leader_transfers_are_no_fault_window_and_a_restart_is_one() -> None:
    """churn-leader logs every leader transfer (``transfer``): routine, so a fire missing
    after one is ``missed_outside``, and the event draws no warning. restart-rolling's
    faults are windows of kind ``restart``, known to the checker."""
    b = clean_builder()
    b.event(111.8, ev="transfer", source="a", to="b")
    h = b.build()
    drop_fire(h, ALLOW, 12)
    report = check(h)
    assert only(report, "missed_outside") and report.warnings == []
    b.nemesis(1, "restart", ["a"], 111.5, 112.5)
    h = b.build()
    drop_fire(h, ALLOW, 12)
    report = check(h)
    assert only(report, "silent") and "restart a" in str(report.violations[0])
    assert report.warnings == []


def test_p5_fires_at_the_observe_bounds_start_excluded_end_included() -> None:
    h = clean()
    drop_fire(h, SKIP, SECONDS)
    assert only(check(h), "missed_outside")
    h.observe_end_t -= 0.001
    assert check(h).ok


# --------------------------------------------------------------------------- P6 durable


def test_p6_an_observed_run_lost_by_one_node_after_power_loss_is_caught() -> None:
    b = clean_builder()
    b.nemesis(1, "power-loss", list(NODES), 115.0, 117.0)
    h = b.build()
    h.ledgers["c"] = [r for r in h.ledgers["c"] if r["id"] != rid(ALLOW, 3)]
    report = check(h)
    text = only(report, "durable")
    assert ALLOW in text and rid(ALLOW, 3) in text and "c: missing" in text
    assert report.violations[0].nodes == ("c",)


def test_p6_an_observed_run_whose_status_changed_is_caught() -> None:
    h = clean()
    next(r for r in h.ledgers["b"] if r["id"] == rid(SKIP, 4))["status"] = "lost"
    assert "b: lost" in only(check(h), "durable")


def test_p6_an_acked_put_job_missing_from_one_node_is_caught() -> None:
    b = clean_builder()
    b.api("put_job", "keep-2", 120.0)
    h = b.build()
    for n in ("a", "b"):
        h.final_jobs[n].append("keep-2")
    text = only(check(h), "durable")
    assert "keep-2" in text and "missing from the final jobs of c" in text


def test_p6_a_put_attempt_without_ack_or_a_later_delete_attempt_requires_nothing() -> None:
    b = clean_builder()
    b.api("put_job", "keep-2", 120.0, acked=False)
    b.api("put_job", "keep-3", 120.0)
    b.api("delete_job", "keep-3", 121.0, acked=False)
    h = b.build()
    h.final_jobs["a"].append("keep-3")
    assert check(h).ok


def test_p6_an_acked_delete_that_comes_back_is_caught() -> None:
    h = clean()
    h.final_jobs["b"].append(EPH)
    text = only(check(h), "durable")
    assert EPH in text and "still present on the final jobs of b" in text


# --------------------------------------------------------------------------- P7 deleted


def test_p7_an_execution_beyond_the_spawn_bound_after_a_delete_ack_is_caught() -> None:
    b = clean_builder()
    b.execute(EPH, 10, "b", 110.07, hold=0.1)  # ack at 108.6, bound 1 s
    report = check(b.build())
    text = only(report, "deleted")
    assert EPH in text and rid(EPH, 10) in text and "node=b" in text
    assert "deleted=1" in report.line()


def test_p7_a_re_put_job_may_run_again() -> None:
    b = clean_builder()
    b.api("put_job", EPH, 111.0)
    b.final_jobs.append(EPH)
    b.execute(EPH, 12, "b", 112.07, hold=0.1)  # a fresh grant, in the ledger again
    assert check(b.build()).ok


def test_p7_a_frozen_execution_fenced_off_after_the_delete_is_exempt() -> None:
    b = clean_builder()
    b.execute(EPH, 3, "c", 103.07, hold=0.1)  # an earlier eph execution, accepted
    b.nemesis(1, "pause-group", ["c"], 109.0, 111.0)
    late = b.execute(EPH, 10, "c", 110.07, write_t=111.01)
    late.fence = 103_000  # resumed with an old grant: its write is rejected
    assert check(b.build()).ok


# --------------------------------------------------------------------------- lateness


def test_lateness_p99_is_measured_and_early_fires_are_negative() -> None:
    h = clean()
    for e in h.events:
        if e["ev"] == "begin":
            e["scheduled_at_ms"] += 300  # every fire began 0.24-0.25 s early
            if e["job"] == EPH:
                e["scheduled_at_ms"] -= 300
    for runs in h.ledgers.values():
        runs.clear()
    report = check(h)
    assert report.lateness_p99_s == pytest.approx(-0.24)
    assert "lateness_p99=-0.24s" in report.line()


# --------------------------------------------------------------------------- files, main


def test_load_round_trips_through_files(tmp_path: Path) -> None:
    h = clean()
    save(h, tmp_path)
    again = load(tmp_path)
    assert again == h
    assert check(again).line() == check(h).line()


def test_load_also_reads_scheduled_at_with_fractions(tmp_path: Path) -> None:
    h = clean()
    run = {"id": "x@1", "job": KEEP, "scheduled_at": "2026-11-27T21:30:05.250Z"}
    add_ledger_run(h, {**run, "fence": 3, "node": "a", "status": "failed"})
    save(h, tmp_path)
    assert check(load(tmp_path)).ok


def test_a_truncated_last_sink_line_is_ignored_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    h = clean()
    save(h, tmp_path)
    with (tmp_path / "sink.jsonl").open("a") as f:
        f.write('{"ev":"end","x":9,"cle')
    again = load(tmp_path)
    assert again.events == h.events
    assert len(again.warnings) == 1 and "truncated" in again.warnings[0]
    assert main([str(tmp_path)]) == 0
    assert "truncated" in capsys.readouterr().err


def test_a_corrupt_line_before_the_last_is_an_error(tmp_path: Path) -> None:
    save(clean(), tmp_path)
    lines = (tmp_path / "sink.jsonl").read_text().splitlines(keepends=True)
    lines[3] = lines[3][:10] + "\n"
    (tmp_path / "sink.jsonl").write_text("".join(lines))
    with pytest.raises(HistoryError, match=r"sink\.jsonl:4"):
        load(tmp_path)
    assert main([str(tmp_path)]) == 2


def test_main_exit_codes_and_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    save(clean(), good)
    h = clean()
    h.name = "broken"
    drop_fire(h, ALLOW, 12)
    save(h, bad)

    assert main([str(good)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("clean: fires=66 dup=0")

    assert main([str(good), str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("broken: ") and "missed_outside=1" in out[1]
    assert out[2].startswith("    P5 missed_outside tick-allow: fire ")
    assert len(out) == 3

    assert main([str(tmp_path / "nowhere")]) == 2
    assert "cannot check" in capsys.readouterr().err
    assert main([]) == 2


def test_a_sink_event_missing_a_field_is_an_error() -> None:
    h = clean()
    del begin(h, ALLOW, 3)["fence"]
    with pytest.raises(HistoryError, match="fence"):
        check(h)


def test_history_json_is_plain_json(tmp_path: Path) -> None:
    save(clean(), tmp_path)
    body = json.loads((tmp_path / "history.json").read_text())
    assert body["observe"] == {"start_t": BASE_T, "end_t": BASE_T + SECONDS}
    assert set(body["ledgers"]) == set(NODES)


def test_longest_gap_between_begins_of_an_every_second_job() -> None:
    h = clean()
    assert longest_gap(h) == (ALLOW, pytest.approx(1.0))
    drop_fire(h, SKIP, 12)
    drop_fire(h, SKIP, 13)
    assert longest_gap(h) == (SKIP, pytest.approx(3.0))
    h.jobs = {ALLOW: {**EVERY_SECOND, "schedule": "* * * * * */2"}}
    assert longest_gap(h) is None
