"""Retries, kills and the overlap policies cancel_other / terminate_other in the pure core
(issue 6). Planner and ``apply`` are driven together the way the leader drives them, with
a fake "now" carried in the commands: no clock, no network."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftcron.core import commands as c
from raftcron.core.model import (
    BUFFERED,
    CLAIMED,
    FAILED,
    KILLED,
    LOST,
    PAUSED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    TRIGGER_BUFFERED,
    TRIGGER_RETRY,
    JobSpec,
    retry_backoff_ms,
    retry_run_id,
)
from raftcron.core.planner import NodeInfo, choose_node, next_due_ms, plan
from raftcron.core.state import Ok, PlanOutcome, Rejected, State, manual_run_id
from tests.helpers import Sim, spec
from tests.unit.test_job_semantics import NODES, T0, S, kinds, r

MIN = 60 * S


def start(sim: Sim, rid: str, at: int) -> None:
    run = sim.s.runs[rid]
    assert run.status == CLAIMED, run
    cmd = c.Start(at_ms=at, run_id=rid, fence=run.fence, node=run.node, token="t")
    assert sim.s.apply(cmd) == Ok(run.fence)


def end(sim: Sim, rid: str, at: int, status: str, code: int | None = None) -> None:
    """Start (if needed) and complete ``rid`` with ``status`` at cluster time ``at``."""
    if sim.s.runs[rid].status == CLAIMED:
        start(sim, rid, at)
    run = sim.s.runs[rid]
    done = c.Complete(
        at_ms=at, run_id=rid, fence=run.fence, node=run.node, status=status,
        exit_code=code, started_ms=at, finished_ms=at,
    )  # fmt: skip
    assert sim.s.apply(done) == Ok(status)


def expire(sim: Sim, rid: str, at: int) -> None:
    lease = sim.s.leases[rid]
    cmd = c.Expire(at_ms=at, run_id=rid, fence=lease.fence, reason="lease expired: test",
                   renewals=lease.renewals)  # fmt: skip
    assert sim.s.apply(cmd) == Ok(LOST)


def hourly(**kw: object) -> Sim:
    """A job whose next cron fire is far away: only the fires a test makes happen."""
    return Sim.of(schedule="0 * * * *", **kw)


def trigger(sim: Sim, at: int, node: str = "a") -> PlanOutcome:
    f = c.Fire(job="j", scheduled_at_ms=at, node=node, trigger="manual")
    return sim.apply(c.Plan(at_ms=at, fires=(f,)))


# --------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    ("status", "retries", "retried"),
    [
        (SUCCEEDED, 2, False),
        (FAILED, 2, True),
        (TIMED_OUT, 2, True),
        (LOST, 2, True),  # the executor said so (e.g. the watchdog stopped it at the lease)
        (KILLED, 2, False),  # a killed run never retries
        (FAILED, 0, False),  # retries = 0 (the default)
    ],
)
def test_which_outcomes_retry(status: str, retries: int, retried: bool) -> None:
    sim = hourly(retries=retries)
    first = manual_run_id("j", T0 + S)
    assert kinds(trigger(sim, T0 + S)) == ["granted"]
    end(sim, first, T0 + 2 * S, status, 1 if status == FAILED else None)
    nxt = first + ".2"
    assert (nxt in sim.s.runs) == retried
    assert len(sim.job.retry) == int(retried)
    if retried:
        run = sim.s.runs[nxt]
        assert (run.status, run.trigger, run.attempt) == (PENDING, TRIGGER_RETRY, 2)
        assert run.scheduled_at_ms == T0 + S  # the fire's identity is kept
        assert run.reason.startswith(f"retry 1 of {retries}: {first} {status}")


@pytest.mark.parametrize(
    ("backoff", "cap", "failed_attempt", "wait"),
    [
        (10 * S, 10 * MIN, 1, 10 * S),
        (10 * S, 10 * MIN, 2, 20 * S),
        (10 * S, 10 * MIN, 3, 40 * S),
        (10 * S, 10 * MIN, 7, 10 * MIN),  # 640 s, capped
        (10 * S, 15 * S, 2, 15 * S),
        (0, 10 * MIN, 5, 0),  # no backoff: retried at once
        (1, 10 * MIN, 100, 10 * MIN),  # a huge exponent is still capped
    ],
)
def test_backoff_doubles_up_to_the_cap(
    backoff: int, cap: int, failed_attempt: int, wait: int
) -> None:
    s = JobSpec(name="j", schedule="* * * * *", command=("x",), retry_backoff_ms=backoff,
                retry_backoff_max_ms=cap)  # fmt: skip
    assert retry_backoff_ms(s, failed_attempt) == wait


def test_retries_are_due_after_the_backoff_and_run_until_exhausted() -> None:
    sim = hourly(retries=2, retry_backoff_ms=5 * S, retry_backoff_max_ms=60 * S)
    base = manual_run_id("j", T0)
    trigger(sim, T0)
    end(sim, base, T0 + S, FAILED, 3)
    assert sim.job.retry[0].due_ms == T0 + 6 * S  # finish (cluster time) + 5 s
    assert next_due_ms(sim.job, busy=False) == T0 + 6 * S
    assert sim.tick(T0 + 6 * S - 1).granted == ()  # not before it is due
    out = sim.tick(T0 + 6 * S)
    assert [g[0] for g in out.granted] == [base + ".2"] and sim.job.retry == ()
    assert sim.s.runs[base + ".2"].reason == (
        f"retry 1 of 2: {base} failed (exit code 3); due 5s after it ended"
    )
    end(sim, base + ".2", T0 + 7 * S, TIMED_OUT)
    assert sim.job.retry[0].due_ms == T0 + 17 * S  # doubled: 10 s
    out = sim.tick(T0 + 17 * S)
    assert [g[0] for g in out.granted] == [base + ".3"]
    assert sim.s.runs[base + ".3"].reason.startswith(f"retry 2 of 2: {base}.2 timed_out")
    end(sim, base + ".3", T0 + 18 * S, FAILED, 1)
    assert sim.job.retry == () and base + ".4" not in sim.s.runs  # 1 + 2 attempts in all
    # a repeat of the retry claim is refused: each attempt is granted once
    again = c.Fire(job="j", scheduled_at_ms=T0, node="a", trigger=TRIGGER_RETRY, attempt=3)
    assert sim.apply(c.Plan(at_ms=T0 + 19 * S, fires=(again,))).rejected == (
        ("j", T0, "not_pending"),
    )


def test_a_lost_run_retries_and_a_scheduled_fire_keeps_its_id_scheme() -> None:
    sim = Sim.of(retries=1, retry_backoff_ms=0, schedule="* * * * * 0")  # every minute
    out = sim.tick(T0 + MIN)
    assert out.granted[0][0] == r(T0 + MIN)
    expire(sim, r(T0 + MIN), T0 + MIN + 40 * S)
    assert sim.s.runs[r(T0 + MIN)].status == LOST
    out = sim.tick(T0 + MIN + 40 * S)
    assert [g[0] for g in out.granted] == [r(T0 + MIN) + ".2"]
    assert retry_run_id(r(T0 + MIN) + ".2", 2) == r(T0 + MIN) + ".3"
    assert sim.job.watermark_ms == T0 + MIN  # a retry is not a new fire


@pytest.mark.parametrize(
    ("nodes", "other_node", "expected"),
    [
        (["a", "b", "c"], True, {"b", "c"}),  # another node matches: the failed one is avoided
        (["a"], True, {"a"}),  # only the failed node is live: it runs there again
        (["a", "b"], False, None),  # without retry_other_node: least loaded, any node
    ],
)
def test_retry_on_another_node(
    nodes: list[str], other_node: bool, expected: set[str] | None
) -> None:
    sim = hourly(retries=1, retry_backoff_ms=0, retry_other_node=other_node)
    trigger(sim, T0, node="a")
    end(sim, manual_run_id("j", T0), T0 + S, FAILED, 1)
    assert sim.job.retry[0].avoid == ("a" if other_node else "")
    live = [NodeInfo(name=n) for n in nodes]
    p = plan(list(sim.s.jobs.values()), T0 + S, live, {}, frozenset())
    assert [f.trigger for f in p.fires] == [TRIGGER_RETRY]
    if expected is not None:
        assert p.fires[0].node in expected
    out = sim.apply(p)
    assert out.granted[0][2] == p.fires[0].node


def test_choose_node_avoids_only_when_another_node_matches_the_tags() -> None:
    s = JobSpec(name="j", schedule="* * * * *", command=("x",), tags=(("role", "db"),))
    nodes = [NodeInfo(name="a", tags=(("role", "db"),)), NodeInfo(name="b")]
    assert choose_node(s, "j@1", nodes, {}, avoid="a") == "a"  # b does not match
    nodes.append(NodeInfo(name="c", tags=(("role", "db"),)))
    assert choose_node(s, "j@1", nodes, {}, avoid="a") == "c"


@pytest.mark.parametrize(
    ("overlap", "then"),
    [
        ("allow", "runs beside"),
        ("skip", "waits"),
        ("buffer_one", "waits"),
        ("buffer_all", "waits"),
        # the newest fire wins: what waited (a retry too) is superseded
        ("cancel_other", "superseded"),
        ("terminate_other", "superseded"),
    ],
)
def test_a_due_retry_waits_for_a_live_run_unless_overlap_allows(overlap: str, then: str) -> None:
    sim = hourly(retries=1, retry_backoff_ms=0, overlap=overlap)
    first = manual_run_id("j", T0)
    trigger(sim, T0)
    end(sim, first, T0 + S, FAILED, 1)
    # before the retry is claimed, another manual fire starts a run
    second = manual_run_id("j", T0 + 1500)
    assert kinds(trigger(sim, T0 + 1500)) == ["granted"]
    out = sim.tick(T0 + 2 * S)
    if then == "runs beside":
        assert [g[0] for g in out.granted] == [first + ".2"]
        return
    if then == "superseded":
        assert sim.s.runs[first + ".2"].status == SKIPPED and sim.job.retry == ()
        assert sim.s.runs[first + ".2"].reason.startswith(f"overlap={overlap}: superseded by")
        return
    assert out.granted == () and out.rejected == ()  # not even proposed
    assert next_due_ms(sim.job, busy=True) > T0 + 2 * S
    assert sim.s.runs[first + ".2"].status == PENDING
    end(sim, second, T0 + 3 * S, SUCCEEDED, 0)
    assert next_due_ms(sim.job, busy=False) <= T0 + 3 * S
    assert [g[0] for g in sim.tick(T0 + 3 * S).granted] == [first + ".2"]


def test_apply_refuses_a_retry_beside_a_live_run_or_before_it_is_due() -> None:
    sim = hourly(retries=1, retry_backoff_ms=10 * S, overlap="skip")
    trigger(sim, T0)
    end(sim, manual_run_id("j", T0), T0 + S, FAILED, 1)
    f = c.Fire(job="j", scheduled_at_ms=T0, node="a", trigger=TRIGGER_RETRY, attempt=2)
    assert sim.apply(c.Plan(at_ms=T0 + 5 * S, fires=(f,))).rejected == (("j", T0, "not_due"),)
    trigger(sim, T0 + 6 * S)
    assert sim.apply(c.Plan(at_ms=T0 + 11 * S, fires=(f,))).rejected == (("j", T0, "busy"),)
    # no node matches any more: recorded as skipped, not dropped
    end(sim, manual_run_id("j", T0 + 6 * S), T0 + 12 * S, SUCCEEDED, 0)
    nobody = c.Fire(job="j", scheduled_at_ms=T0, node="", trigger=TRIGGER_RETRY, attempt=2)
    out = sim.apply(c.Plan(at_ms=T0 + 12 * S, fires=(nobody,)))
    assert out.skipped[0][0] == manual_run_id("j", T0) + ".2"
    assert sim.s.runs[manual_run_id("j", T0) + ".2"].status == SKIPPED


@pytest.mark.parametrize(
    ("when", "status", "reason"),
    [
        ("pause before", None, "no retry: job is paused: deploy"),
        ("pause while pending", PAUSED, "job is paused: deploy (this retry was pending)"),
        ("delete while pending", SKIPPED, "job deleted while this retry was pending"),
    ],
)
def test_pause_and_delete_end_retries_on_the_record(
    when: str, status: str | None, reason: str
) -> None:
    sim = hourly(retries=1, retry_backoff_ms=10 * S)
    first = manual_run_id("j", T0)
    trigger(sim, T0)
    pause = c.SetPaused(at_ms=T0 + S, name="j", paused=True, note="deploy")
    if when == "pause before":
        sim.s.apply(pause)
    end(sim, first, T0 + 2 * S, FAILED, 1)
    if when == "pause before":
        assert first + ".2" not in sim.s.runs
        assert sim.s.runs[first].reason.endswith(reason)
        return
    if when == "pause while pending":
        sim.s.apply(c.SetPaused(at_ms=T0 + 3 * S, name="j", paused=True, note="deploy"))
        assert sim.job.retry == ()
    else:
        sim.s.apply(c.DeleteJob(at_ms=T0 + 3 * S, name="j"))
    run = sim.s.runs[first + ".2"]
    assert run.status == status and run.reason.startswith(reason)


# --------------------------------------------------------------------------- kill


def kill(sim: Sim, rid: str, at: int, hard: bool = False) -> Ok | Rejected:
    res = sim.s.apply_bytes(c.encode(c.Kill(at_ms=at, run_id=rid, reason="ops: stop", hard=hard)))[
        1
    ]
    return res


@pytest.mark.parametrize(
    ("state", "result", "status_after"),
    [
        ("claimed", Ok("killing"), CLAIMED),
        ("running", Ok("killing"), RUNNING),
        ("buffered", Ok(KILLED), KILLED),  # no process: ended at once
        ("pending", Ok(KILLED), KILLED),
        ("succeeded", Rejected("not_running"), SUCCEEDED),
        ("unknown", Rejected("unknown_run"), None),
    ],
)
def test_kill_by_run_state(state: str, result: Ok | Rejected, status_after: str | None) -> None:
    sim = hourly(retries=1, retry_backoff_ms=10 * S, overlap="buffer_one")
    a = manual_run_id("j", T0)
    trigger(sim, T0)
    target = {"claimed": a, "running": a, "succeeded": a, "unknown": "j@1"}.get(state, "")
    if state == "running":
        start(sim, a, T0 + 100)
    elif state == "succeeded":
        end(sim, a, T0 + 100, SUCCEEDED, 0)
    elif state == "buffered":
        target = manual_run_id("j", T0 + 500)
        assert kinds(trigger(sim, T0 + 500)) == ["buffered"]
    elif state == "pending":
        end(sim, a, T0 + 100, FAILED, 1)
        target = a + ".2"
    res = kill(sim, target, T0 + S)
    assert type(res) is type(result)
    if isinstance(res, Rejected):
        assert isinstance(result, Rejected) and res.code == result.code
    else:
        assert res == result
    if status_after is not None:
        assert sim.s.runs[target].status == status_after
    if status_after == KILLED:
        assert sim.job.buffered == () and sim.job.retry == ()
        assert sim.s.runs[target].reason.startswith("ops: stop (before it started)")
    if result == Ok("killing"):
        lease = sim.s.leases[target]
        assert (lease.kill, lease.kill_hard) == ("ops: stop", False)
        assert kill(sim, target, T0 + S) == Ok("killing")  # a repeat changes nothing
        assert kill(sim, target, T0 + S, hard=True) == Ok("killing")
        assert sim.s.leases[target].kill_hard  # but hard upgrades a soft request


def test_a_killed_run_is_recorded_and_never_retried() -> None:
    sim = hourly(retries=3, retry_backoff_ms=0)
    a = manual_run_id("j", T0)
    trigger(sim, T0)
    start(sim, a, T0 + 100)
    assert kill(sim, a, T0 + S) == Ok("killing")
    end(sim, a, T0 + 2 * S, KILLED)
    assert sim.s.runs[a].status == KILLED and sim.job.retry == ()
    assert kill(sim, a, T0 + 3 * S) == Ok(KILLED)  # a repeat after the end: still fine
    # a run asked to stop that ended otherwise (the race) is not retried either
    b = manual_run_id("j", T0 + 5 * S)
    trigger(sim, T0 + 5 * S)
    kill(sim, b, T0 + 6 * S)
    end(sim, b, T0 + 7 * S, FAILED, 143)
    assert sim.job.retry == () and sim.s.runs[b].reason.endswith("no retry: it was asked to stop")


def test_a_kill_whose_executor_is_gone_is_decided_by_the_lease() -> None:
    sim = hourly(retries=3, retry_backoff_ms=0)
    a = manual_run_id("j", T0)
    trigger(sim, T0)
    start(sim, a, T0 + 100)
    kill(sim, a, T0 + S)
    expire(sim, a, T0 + 40 * S)
    run = sim.s.runs[a]
    assert run.status == LOST and "it had been asked to stop: ops: stop" in run.reason
    assert sim.job.retry == () and sim.s.live == {}
    assert kinds(trigger(sim, T0 + 41 * S)) == ["granted"]  # the job is not blocked


# --------------------------------------------------------------------------- cancel_other


@pytest.mark.parametrize(("overlap", "hard"), [("cancel_other", False), ("terminate_other", True)])
@pytest.mark.parametrize("how", ["schedule", "manual"])
def test_cancel_and_terminate_other(overlap: str, hard: bool, how: str) -> None:
    sim = Sim.of(overlap=overlap, schedule="* * * * * 0")
    a = r(T0 + MIN)
    assert sim.tick(T0 + MIN).granted[0][0] == a
    start(sim, a, T0 + MIN + 100)
    t = T0 + 2 * MIN if how == "schedule" else T0 + MIN + 5 * S
    if how == "schedule":
        new, out = r(t), sim.tick(t)
    else:
        new, out = manual_run_id("j", t), trigger(sim, t)
    # the new fire waits; the live run is asked to stop (SIGKILL at once for terminate)
    assert kinds(out) == ["buffered"] and out.stopping == (a,)
    assert sim.s.runs[new].status == BUFFERED
    assert f"waiting for {a} to stop (overlap={overlap})" in sim.s.runs[new].reason
    lease = sim.s.leases[a]
    assert lease.kill == f"overlap={overlap}: stopped for the newer {how} fire {new}"
    assert lease.kill_hard == hard
    # never two at once: nothing starts until the old run's end is committed
    assert sim.tick(t + 500).granted == ()
    end(sim, a, t + 600, KILLED)
    assert sim.s.runs[a].status == KILLED and sim.job.retry == ()
    out = sim.tick(t + 600)
    assert [g[0] for g in out.granted] == [new]
    assert sim.s.runs[new].trigger == TRIGGER_BUFFERED


def test_cancel_other_keeps_only_the_newest_waiting_fire() -> None:
    sim = hourly(overlap="cancel_other", retries=1, retry_backoff_ms=60 * S)
    a, b, c2 = (manual_run_id("j", T0 + k * S) for k in (0, 1, 2))
    trigger(sim, T0)
    assert kinds(trigger(sim, T0 + S)) == ["buffered"]
    assert kinds(trigger(sim, T0 + 2 * S)) == ["buffered"]
    assert sim.s.runs[b].status == SKIPPED
    assert sim.s.runs[b].reason.startswith(
        f"overlap=cancel_other: superseded by the newer fire {c2}"
    )
    assert sim.job.buffered == ((c2, T0 + 2 * S),)
    # the stopped run ended as killed: no retry of it
    end(sim, a, T0 + 3 * S, KILLED)
    assert sim.job.retry == ()
    assert [g[0] for g in sim.tick(T0 + 3 * S).granted] == [c2]
    # a pending retry is superseded by a newer fire too
    end(sim, c2, T0 + 4 * S, FAILED, 1)
    assert sim.s.runs[c2 + ".2"].status == PENDING
    d = manual_run_id("j", T0 + 5 * S)
    assert kinds(trigger(sim, T0 + 5 * S)) == ["granted"]
    assert sim.s.runs[c2 + ".2"].status == SKIPPED and sim.job.retry == ()
    assert sim.s.live == {"j": frozenset({d})}


def test_a_cancel_with_no_live_run_grants_at_once() -> None:
    sim = hourly(overlap="terminate_other")
    assert kinds(trigger(sim, T0)) == ["granted"]
    end(sim, manual_run_id("j", T0), T0 + S, SUCCEEDED, 0)
    out = trigger(sim, T0 + 2 * S)
    assert kinds(out) == ["granted"] and out.stopping == ()


# --------------------------------------------------------------------------- wire


def test_new_fields_round_trip_and_old_encodings_still_decode() -> None:
    new = spec(retries=3, retry_backoff_ms=2 * S, retry_backoff_max_ms=30 * S,
               retry_other_node=True, overlap="terminate_other")  # fmt: skip
    cmd = c.PutJob(at_ms=T0, spec=new)
    assert c.decode(c.encode(cmd)) == cmd
    plain = c.spec_to_wire(spec(retries=2))
    assert not {"retry_backoff_ms", "retry_backoff_max_ms", "retry_other_node"} & set(plain)
    soft = c.Kill(at_ms=T0, run_id="j@1", reason="x")
    hard = c.Kill(at_ms=T0, run_id="j@1", reason="", hard=True)
    for k in (soft, hard):
        assert c.decode(c.encode(k)) == k
    assert "hard" not in msgpack.unpackb(c.encode(c.Kill(at_ms=T0, run_id="j@1", reason="x")))


def test_snapshots_keep_pending_retries_and_stop_requests() -> None:
    sim = hourly(retries=2, retry_backoff_ms=10 * S, retry_other_node=True)
    trigger(sim, T0)
    end(sim, manual_run_id("j", T0), T0 + S, FAILED, 1)
    trigger(sim, T0 + 2 * S)
    kill(sim, manual_run_id("j", T0 + 2 * S), T0 + 3 * S, hard=True)
    back = State.restore(sim.s.snapshot())
    assert back.digest() == sim.s.digest()
    assert back.jobs["j"].retry == sim.job.retry and len(back.jobs["j"].retry) == 1
    assert back.leases[manual_run_id("j", T0 + 2 * S)].kill_hard
    # leases without a stop request encode as before the fields existed
    plain = hourly()
    trigger(plain, T0)
    raw = msgpack.unpackb(plain.s.snapshot(), raw=False)
    assert len(raw["leases"][0]) == 6 and len(raw["jobs"][0]) == 6
    assert NODES  # (shared fixture: the planner's live nodes)


# --------------------------------------------------------------------------- property

POLICIES = {
    "x": "allow",
    "y": "skip",
    "z": "cancel_other",
    "w": "terminate_other",
    "v": "buffer_one",
}
ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["tick", "tick", "trigger", "end", "end", "expire", "kill", "pause"]),
        st.sampled_from(sorted(POLICIES)),
        st.sampled_from([SUCCEEDED, FAILED, FAILED, TIMED_OUT, LOST, KILLED]),
        st.integers(0, 2),  # which run / node
        st.integers(100, 3000),  # how much cluster time passes
    ),
    max_size=80,
)


@settings(max_examples=120, deadline=None)
@given(actions=ACTIONS, cuts=st.lists(st.integers(0, 200), max_size=4))
def test_a_random_leader_keeps_the_promises_and_replicas_agree(
    actions: list[tuple[str, str, str, int, int]], cuts: list[int]
) -> None:
    """The leader's loop, with random completions, expiries, kills, pauses and triggers:
    a job whose overlap is not "allow" never has two live runs, every pending retry is
    accounted for, killed runs never retry, and a replica that applies the same bytes with
    snapshots at random points ends in the same state."""
    s = State()
    log: list[bytes] = []
    now = T0
    nodes = [NodeInfo(name=n) for n in ("a", "b", "c")]

    def do(cmd: c.Command) -> object:
        data = c.encode(cmd)
        log.append(data)
        return s.apply_bytes(data)[1]

    for name, overlap in POLICIES.items():
        do(c.PutJob(at_ms=now, spec=JobSpec(
            name=name, schedule="*/2 * * * * *", command=("x",), overlap=overlap, retries=2,
            retry_backoff_ms=1000, retry_other_node=True,
        )))  # fmt: skip
    for kind, job, status, k, dt in actions:
        now += dt
        live = sorted(s.live.get(job, ()))
        if kind == "tick":
            busy = frozenset(s.live)
            do(plan(list(s.jobs.values()), now, nodes, s.load_by_node(), busy))
        elif kind == "trigger":
            f = c.Fire(job=job, scheduled_at_ms=now, node=nodes[k].name, trigger="manual")
            do(c.Plan(at_ms=now, fires=(f,)))
        elif kind in ("end", "expire") and live:
            run = s.runs[live[k % len(live)]]
            if kind == "expire":
                lz = s.leases[run.id]
                do(c.Expire(at_ms=now, run_id=run.id, fence=lz.fence, reason="e",
                            renewals=lz.renewals))  # fmt: skip
            else:
                end_ = c.Complete(
                    at_ms=now, run_id=run.id, fence=run.fence, node=run.node, status=status,
                    exit_code=None, started_ms=now, finished_ms=now,
                )  # fmt: skip
                do(end_)
        elif kind == "kill":
            waiting = [p.run for p in s.jobs[job].retry] + [b for b, _ in s.jobs[job].buffered]
            targets = live + waiting
            if targets:
                do(c.Kill(at_ms=now, run_id=targets[k % len(targets)], reason="k", hard=k == 1))
        elif kind == "pause":
            do(c.SetPaused(at_ms=now, name=job, paused=not s.jobs[job].paused))
        for name, overlap in POLICIES.items():
            if overlap != "allow":
                assert len(s.live.get(name, ())) <= 1, (name, s.live)
        pending = sorted(x.id for x in s.runs.values() if x.status == PENDING)
        assert pending == sorted(p.run for j in s.jobs.values() for p in j.retry)
        for x in s.runs.values():
            if x.attempt > 1:
                base = x.id.rsplit(".", 1)[0]
                prev = s.runs.get(base if x.attempt == 2 else f"{base}.{x.attempt - 1}")
                assert prev is None or prev.status in (FAILED, TIMED_OUT, LOST), (x, prev)
            assert x.attempt <= 3
    replica = State()
    for i, data in enumerate(log):
        if i in cuts:
            replica = State.restore(replica.snapshot())
        replica.apply_bytes(data)
    assert replica.digest() == s.digest()
