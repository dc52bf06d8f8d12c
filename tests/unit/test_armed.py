"""Armed fires (docs/design.md, "Armed fires"): a fire reserved for a node ahead of its
time, its start committed in the lead, and the plan at the due time still deciding.

The state machine driven directly, then the executor over one in-process state machine
(tests/unit/test_reattach.py), where the plan at the due time is applied by the test.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from raftcron.clock import FakeClock, SystemClock
from raftcron.core import commands as c
from raftcron.core.model import (
    ARM_GRACE_MS,
    ARM_MAX_LEAD_MS,
    CLAIMED,
    LOST,
    PAUSED,
    RUNNING,
    SUCCEEDED,
    HttpSpec,
    run_id,
)
from raftcron.core.planner import NodeInfo, arm_fires, plan
from raftcron.core.results import Reject
from raftcron.core.runs import ArmOutcome
from raftcron.core.state import Ok, PlanOutcome, Rejected, State
from raftcron.executor import rundir
from raftcron.executor.runner import Executor
from tests.helpers import FakeRaft, spec
from tests.unit.test_broken import _leader, _Raft
from tests.unit.test_held_start import held_socket
from tests.unit.test_reattach import completes, executions, job, until

T0 = 1_800_000_000_000
DUE = T0 + 10_000  # the armed fire's time
NODES = [NodeInfo(name="a"), NodeInfo(name="b")]


def fresh(**kw: Any) -> State:
    s = State()
    assert s.apply(c.PutJob(at_ms=T0, spec=spec(**kw))) == Ok("created")
    return s


def fire(node: str = "a", t: int = DUE, job: str = "j") -> c.Fire:
    return c.Fire(job=job, scheduled_at_ms=t, node=node, trigger="schedule")


def arm(s: State, *fires: c.Fire, at: int = DUE - 800) -> ArmOutcome:
    res = s.apply(c.Arm(at_ms=at, fires=fires))
    assert isinstance(res, Ok) and isinstance(res.value, ArmOutcome)
    return res.value


def claim(s: State, node: str = "a", at: int = DUE + 3) -> PlanOutcome:
    res = s.apply(c.Plan(at_ms=at, fires=(fire(node),)))
    assert isinstance(res, Ok) and isinstance(res.value, PlanOutcome)
    return res.value


def start(s: State, fence: int, token: str = "t1", node: str = "a") -> object:
    return s.apply(
        c.Start(at_ms=DUE - 700, run_id=run_id("j", DUE), fence=fence, node=node, token=token)
    )


RID = run_id("j", DUE)


# -- the state machine


def test_a_fire_started_ahead_is_running_at_its_grant_under_the_reserved_fence() -> None:
    s = fresh()
    (armed,) = arm(s, fire()).armed
    assert armed == (RID, 1, "a") and RID not in s.runs  # no record: only a reservation
    assert start(s, 1) == Ok(1)
    assert start(s, 1) == Ok(1)  # a retry of the same start
    again = start(s, 1, token="t2")  # another attempt (a restarted agent) never counts
    assert isinstance(again, Rejected) and again.code == Reject.ALREADY_STARTED
    assert s.runs.get(RID) is None
    out = claim(s)
    assert out.granted == ((RID, 1, "a"),)
    run = s.runs[RID]
    assert (run.status, run.fence, run.start_token, run.started_ms) == (RUNNING, 1, "t1", DUE + 3)
    assert s.leases[RID].renewals == 1 and s.armed == {}


def test_a_fire_armed_but_not_started_ahead_is_claimed_and_its_start_commits_after() -> None:
    s = fresh()
    arm(s, fire())
    assert claim(s).granted == ((RID, 1, "a"),)
    assert s.runs[RID].status == CLAIMED
    assert start(s, 1) == Ok(1) and s.runs[RID].status == RUNNING


@pytest.mark.parametrize("how", ["other_node", "too_late"])
def test_a_claim_elsewhere_or_too_late_gets_a_fresh_fence_and_the_armed_start_is_stale(
    how: str,
) -> None:
    s = fresh()
    arm(s, fire())
    assert start(s, 1) == Ok(1)
    node = "b" if how == "other_node" else "a"
    out = claim(s, node=node, at=DUE + 3 if node == "b" else DUE + ARM_GRACE_MS + 1)
    assert out.granted == ((RID, 2, node),)
    assert s.runs[RID].status == CLAIMED and s.armed == {}
    late = start(s, 1)  # the armed node's start can never count for the new claim
    assert isinstance(late, Rejected) and late.code == Reject.STALE_FENCE


@pytest.mark.parametrize("what", ["pause", "change", "delete"])
def test_a_pause_change_or_delete_inside_the_lead_drops_the_reservation(what: str) -> None:
    s = fresh()
    arm(s, fire())
    assert start(s, 1) == Ok(1)
    if what == "pause":
        s.apply(c.SetPaused(at_ms=DUE - 500, name="j", paused=True))
    elif what == "change":
        s.apply(c.PutJob(at_ms=DUE - 500, spec=spec(command=("false",))))
    else:
        s.apply(c.DeleteJob(at_ms=DUE - 500, name="j"))
    assert s.armed == {}
    if what == "pause":
        s.apply(
            c.Plan(
                at_ms=DUE + 3,
                missed=(
                    c.Missed(
                        job="j", first_ms=DUE, last_ms=DUE, count=1, reason="p", status=PAUSED
                    ),
                ),
            )
        )
        assert s.runs[RID].status == PAUSED
    if what == "change":  # claimed afresh: a new fence, the old start is stale
        assert claim(s).granted == ((RID, 2, "a"),)
        assert s.runs[RID].status == CLAIMED


def test_a_decided_fire_leaves_no_reservation_behind() -> None:
    """Missed by the plan, or its time long past: the plan's sweep drops it."""
    s = fresh()
    arm(s, fire(), fire(t=DUE + 1000))
    s.apply(
        c.Plan(
            at_ms=DUE + 3,
            missed=(c.Missed(job="j", first_ms=DUE, last_ms=DUE, count=1, reason="late"),),
        )
    )
    assert list(s.armed) == [run_id("j", DUE + 1000)]
    s.apply(c.Plan(at_ms=DUE + 1000 + ARM_GRACE_MS + 1))
    assert s.armed == {}


@pytest.mark.parametrize(
    ("kw", "f", "at", "code"),
    [
        ({}, fire(t=DUE), DUE, Reject.NOT_AHEAD),  # due already
        ({}, fire(t=DUE), DUE - ARM_MAX_LEAD_MS - 1, Reject.NOT_AHEAD),
        ({}, fire(job="nope"), DUE - 800, Reject.UNKNOWN_JOB),
        ({"count": 2}, fire(), DUE - 800, Reject.NOT_ARMABLE),
        ({"lease_ms": 2_000}, fire(), DUE - 800, Reject.NOT_ARMABLE),
        (
            {"command": (), "http": HttpSpec(url="http://127.0.0.1:1/")},
            fire(),
            DUE - 800,
            Reject.NOT_ARMABLE,
        ),
        (
            {},
            c.Fire(job="j", scheduled_at_ms=DUE, node="a", trigger="retry"),
            DUE - 800,
            Reject.NOT_ARMABLE,
        ),
        ({}, fire(node=""), DUE - 800, Reject.NOT_ARMABLE),
        ({}, fire(t=T0), T0 - 800, Reject.ALREADY_CONSIDERED),
    ],
)
def test_arm_refuses_what_may_not_be_armed(
    kw: dict[str, Any], f: c.Fire, at: int, code: Reject
) -> None:
    s = fresh(**kw)
    out = arm(s, f, at=at)
    assert out.armed == () and out.rejected == ((f.job, f.scheduled_at_ms, code),)
    assert s.armed == {}


def test_arm_refuses_a_paused_job_a_drained_member_and_a_second_arm() -> None:
    s = fresh()
    s.apply(c.Drain(at_ms=T0, node="b", drain=True))
    assert arm(s, fire(node="b")).rejected == (("j", DUE, Reject.DRAINED),)
    arm(s, fire())
    assert arm(s, fire()).rejected == (("j", DUE, Reject.DUPLICATE),)
    p = fresh()
    p.apply(c.SetPaused(at_ms=T0, name="j", paused=True))
    assert arm(p, fire()).rejected == (("j", DUE, Reject.NOT_ARMABLE),)


def test_snapshots_keep_reservations_and_a_state_without_one_encodes_as_before() -> None:
    s = fresh()
    before = s.snapshot()
    arm(s, fire())
    assert start(s, 1) == Ok(1)
    restored = State.restore(s.snapshot())
    assert restored.armed == s.armed and restored.digest() == s.digest()
    claim(s)
    assert s.armed == {}
    s2 = fresh()
    assert s2.snapshot() == before  # (no "armed" key while nothing is armed)


def test_the_planner_arms_the_next_fire_and_the_plan_prefers_the_armed_node() -> None:
    s = fresh()
    job = s.jobs["j"]
    # every second: the fire at T0+1000 is due within the lead at T0+300, not at T0+100
    assert arm_fires([job], T0 + 100, 800, NODES, {}) == []
    (f,) = arm_fires([job], T0 + 300, 800, NODES, {})
    assert (f.scheduled_at_ms, f.trigger) == (T0 + 1000, "schedule")
    other = "b" if f.node == "a" else "a"
    assert arm_fires([job], T0 + 300, 800, NODES, {}, busy={"j"}) == []
    # the plan at the due time takes the armed node even where load says otherwise
    rid = run_id("j", T0 + 1000)
    load = {f.node: 5}
    assert plan([job], T0 + 1000, NODES, load).fires[0].node == other
    assert plan([job], T0 + 1000, NODES, load, armed={rid: f.node}).fires[0].node == f.node
    # ... unless it no longer qualifies (drained, or gone from the live nodes)
    drained = plan([job], T0 + 1000, NODES, {}, drained={f.node}, armed={rid: f.node})
    assert drained.fires[0].node == other


# -- the executor


def executor_on(raft: FakeRaft, data: Path, node: str) -> Executor:
    ex = Executor(node=node, raft=raft, clock=SystemClock(), data_dir=data)  # type: ignore[arg-type]
    ex.caught_up()
    return ex


def put(raft: FakeRaft, tmp_path: Path, seconds: float = 0.0) -> None:
    raft.machine.apply(c.encode(c.PutJob(at_ms=T0, spec=job(tmp_path, seconds))))


def arm_for(raft: FakeRaft, ex: Executor, node: str = "a") -> None:
    """The leader's Arm, committed and seen by ``ex`` as the node's apply stream would."""
    cmd = c.Arm(at_ms=DUE - 800, fires=(fire(node),))
    res = raft.machine.apply(c.encode(cmd))
    assert isinstance(res, Ok) and isinstance(res.value, ArmOutcome)
    for rid, fence, on in res.value.armed:
        ex.on_armed(rid, fence, on)


def commit_plan(
    raft: FakeRaft, *executors: Executor, node: str = "a", at: int = DUE + 3
) -> PlanOutcome:
    """The plan at ``at``, committed; each executor's armed runs get their go from another
    thread, as from the Raft thread that applied it (node.py, ``_observe``)."""
    res = raft.machine.apply(c.encode(c.Plan(at_ms=at, fires=(fire(node),))))
    assert isinstance(res, Ok) and isinstance(res.value, PlanOutcome)
    for ex in executors:
        t = threading.Thread(target=ex.go_armed, args=(res.value.granted, res.value.stopping))
        t.start()
        t.join()
    return res.value


def tell_loop(ex: Executor, outcome: PlanOutcome) -> None:
    """What the node's loop does with a committed plan (node.py, ``_react``)."""
    for rid, fence, on in outcome.granted:
        ex.on_granted(rid, fence, on)
    ex.check_armed()


def plan_due(raft: FakeRaft, *executors: Executor, node: str = "a") -> PlanOutcome:
    """The plan at the due time, committed and seen by every executor (its Raft thread,
    then its loop)."""
    outcome = commit_plan(raft, *executors, node=node)
    for ex in executors:
        tell_loop(ex, outcome)
    return outcome


def status(raft: FakeRaft) -> str:
    return str(raft.machine.read(lambda s: s.runs[RID].status))


def armed_token(raft: FakeRaft) -> str:
    a = raft.machine.read(lambda s: s.armed_fire(RID))
    return "" if a is None else a.token


@pytest.mark.parametrize("loop_hears", ["at_once", "after_the_job_ran"])
def test_the_armed_executor_starts_ahead_and_runs_the_job_only_on_the_grant(
    tmp_path: Path, loop_hears: str
) -> None:
    """Nothing runs before the plan; the go leaves from the Raft thread that applied the
    grant, so the job runs even while the loop has not heard of it yet (then the loop
    carries on: one start, one completion)."""
    raft = FakeRaft()
    data = tmp_path / "data"
    put(raft, tmp_path)

    async def go() -> None:
        ex = executor_on(raft, data, "a")
        arm_for(raft, ex)
        await until("the start ahead and the held watchdog", lambda: RID in ex._ready_go)
        assert armed_token(raft) != ""
        await asyncio.sleep(0.5)
        assert executions(tmp_path) == []  # held: nothing before the plan
        assert RID not in raft.machine.read(lambda s: s.runs)
        outcome = commit_plan(raft, ex)
        assert outcome.granted == ((RID, 1, "a"),)
        if loop_hears == "after_the_job_ran":
            await until("the job to run", lambda: executions(tmp_path) != [])
        tell_loop(ex, outcome)
        await until("the run to succeed", lambda: status(raft) == SUCCEEDED)
        await asyncio.gather(*list(ex._tasks))
        await ex.stop()

    asyncio.run(go())
    assert executions(tmp_path) == [f"{RID} 1"]
    assert len(completes(raft, RID)) == 1
    starts = [p for p in raft.proposed if isinstance(p, c.Start)]
    assert len(starts) == 1  # the start ahead was the run's one start
    run = raft.machine.read(lambda s: s.runs[RID])
    assert run.started_ms is not None and run.started_ms >= DUE


@pytest.mark.parametrize("how", ["other_node", "too_late"])
def test_no_go_leaves_from_the_raft_thread_for_a_grant_to_another_node_or_fence(
    tmp_path: Path, how: str
) -> None:
    raft = FakeRaft()
    data = tmp_path / "data"
    put(raft, tmp_path)
    node = "b" if how == "other_node" else "a"
    at = DUE + 3 if how == "other_node" else DUE + ARM_GRACE_MS + 1

    async def go() -> None:
        a, b = executor_on(raft, data / "a", "a"), executor_on(raft, data / "b", "b")
        arm_for(raft, a)
        await until("its go ready for the Raft thread", lambda: RID in a._ready_go)
        assert commit_plan(raft, a, b, node=node, at=at).granted == ((RID, 2, node),)
        await asyncio.sleep(0.5)
        assert executions(tmp_path) == []  # a's held job did not get the go
        await a.stop()
        await b.stop()

    asyncio.run(go())
    assert executions(tmp_path) == []


@pytest.mark.parametrize("how", ["paused", "claimed_elsewhere"])
def test_a_fire_decided_otherwise_dismisses_the_held_watchdog(tmp_path: Path, how: str) -> None:
    raft = FakeRaft()
    data = tmp_path / "data"
    put(raft, tmp_path)

    async def go() -> None:
        ex = executor_on(raft, data, "a")
        arm_for(raft, ex)
        await until("the start ahead to commit", lambda: armed_token(raft) != "")
        if how == "paused":
            raft.machine.apply(c.encode(c.SetPaused(at_ms=DUE - 300, name="j", paused=True)))
            ex.check_armed()
        else:
            assert plan_due(raft, ex, node="b").granted == ((RID, 2, "b"),)
        await until("the armed run to end here", lambda: not ex._active)
        await until("the run dir to go", lambda: rundir.RunDirs(data).entries() == [])
        await ex.stop()

    asyncio.run(go())
    assert executions(tmp_path) == []
    assert [p for p in raft.proposed if isinstance(p, c.Complete)] == []


def test_an_armed_node_that_dies_in_the_lead_the_fire_runs_once_elsewhere(
    tmp_path: Path,
) -> None:
    """Node a armed and started ahead, then its agent died (stop: its held watchdog exits
    at EOF without starting the job). The plan at the due time places the fire on b with a
    fresh fence: it runs there once, a's start never counts."""
    raft = FakeRaft()
    put(raft, tmp_path)

    async def go() -> None:
        a = executor_on(raft, tmp_path / "a", "a")
        b = executor_on(raft, tmp_path / "b", "b")
        arm_for(raft, a)
        await until("the start ahead to commit", lambda: armed_token(raft) != "")
        await until("a's held watchdog", lambda: rundir.RunDirs(tmp_path / "a").entries())
        await a.stop()
        assert plan_due(raft, a, b, node="b").granted == ((RID, 2, "b"),)
        await until("the run to succeed", lambda: status(raft) == SUCCEEDED)
        await asyncio.gather(*list(b._tasks))
        await b.stop()

    asyncio.run(go())
    assert executions(tmp_path) == [f"{RID} 2"]


def test_an_armed_node_that_dies_after_its_grant_is_recorded_lost_never_run(
    tmp_path: Path,
) -> None:
    """The plan granted the fire to a (running at once: its start committed ahead) just
    as a's agent stopped. The restarted agent finds the held watchdog that never started
    the job and records the run lost; the job never ran, and never runs twice."""
    raft = FakeRaft()
    data = tmp_path / "data"
    put(raft, tmp_path)

    async def go() -> None:
        a = executor_on(raft, data, "a")
        arm_for(raft, a)
        await until("the start ahead to commit", lambda: armed_token(raft) != "")
        await until("a's held watchdog to listen", lambda: held_socket(data) is not None)
        await a.stop()
        plan_due(raft)  # (seen by no executor: the agent is down)
        assert status(raft) == RUNNING
        again = executor_on(raft, data, "a")
        await until("the run to be recorded", lambda: status(raft) == LOST)
        await asyncio.gather(*list(again._tasks))
        await again.stop()

    asyncio.run(go())
    assert executions(tmp_path) == []
    run = raft.machine.read(lambda s: s.runs[RID])
    assert "never started" in run.reason


# -- the leader


def _finish(s: State, at: int) -> None:
    """Every live run starts and succeeds at once (a quick job: the next fire is idle)."""
    for rid, lease in list(s.leases.items()):
        for cmd in (
            c.Start(at_ms=at, run_id=rid, fence=lease.fence, node=lease.holder, token="t"),
            c.Complete(
                at_ms=at,
                run_id=rid,
                fence=lease.fence,
                node=lease.holder,
                status=SUCCEEDED,
                exit_code=0,
                started_ms=at,
                finished_ms=at,
            ),
        ):
            assert isinstance(s.apply(cmd), Ok)


async def _lead(levels: dict[str, int], seconds: int = 3) -> tuple[State, list[c.Command]]:
    """The real scheduler loop's steps every 100 ms of fake time over an every-second job."""
    s = fresh()
    raft = _Raft(s)
    clock = FakeClock(wall_ms=T0)
    leader = _leader(raft, clock)
    leader.levels = lambda: levels
    for _ in range(seconds * 10):
        await leader._refresh()
        now = clock.wall_ms()
        names = leader._pop_due(now)
        if names:
            await leader._fire(names, now)
            _finish(s, now)
            leader.jobs_changed(names)
        arm_now = leader._pop_arm(now)
        if arm_now:
            await leader._arm(arm_now, now)
        clock.advance(0.1)
    return s, raft.proposed


def test_the_leader_arms_each_fire_once_ahead_and_its_plan_takes_the_reservation() -> None:
    s, proposed = asyncio.run(_lead({"a": 5}))
    arms = [cmd for cmd in proposed if isinstance(cmd, c.Arm)]
    armed = [(f.scheduled_at_ms, cmd.at_ms) for cmd in arms for f in cmd.fires]
    assert [t for t, _ in armed] == [T0 + 1000, T0 + 2000, T0 + 3000]  # once each
    assert all(t - 800 <= at < t for t, at in armed)
    runs = [s.runs[run_id("j", t)] for t in (T0 + 1000, T0 + 2000)]
    assert [r.status for r in runs] == [SUCCEEDED, SUCCEEDED]
    # each claimed under its reservation's fence (arm k took fence k): no fresh fence
    assert [r.fence for r in runs] == [1, 2] and s.counters.fence == 3


def test_the_leader_arms_nothing_until_every_member_is_at_level_5() -> None:
    s, proposed = asyncio.run(_lead({"a": 5, "b": 4}))
    assert not any(isinstance(cmd, c.Arm) for cmd in proposed)
    assert s.runs[run_id("j", T0 + 1000)].status == SUCCEEDED and s.armed == {}


def test_a_node_prepares_at_most_max_starting_armed_runs_the_rest_start_as_any_claim(
    tmp_path: Path,
) -> None:
    raft = FakeRaft()
    data = tmp_path / "data"
    put(raft, tmp_path)
    later = DUE + 1000

    async def go() -> None:
        ex = Executor(node="a", raft=raft, clock=SystemClock(), data_dir=data, max_starting=1)  # type: ignore[arg-type]
        ex.caught_up()
        res = raft.machine.apply(c.encode(c.Arm(at_ms=DUE - 800, fires=(fire(), fire(t=later)))))
        assert isinstance(res, Ok) and isinstance(res.value, ArmOutcome)
        for rid, fence, on in res.value.armed:
            ex.on_armed(rid, fence, on)
        assert list(ex._active) == [RID]  # the second is not prepared ahead
        await until("the start ahead to commit", lambda: armed_token(raft) != "")
        assert plan_due(raft, ex).granted == ((RID, 1, "a"),)
        await until("the run to succeed", lambda: status(raft) == SUCCEEDED)
        # the other: claimed under its reserved fence, started after its grant as ever
        out = raft.machine.apply(c.encode(c.Plan(at_ms=later + 3, fires=(fire(t=later),))))
        assert isinstance(out, Ok) and out.value.granted == ((run_id("j", later), 2, "a"),)
        ex.on_granted(run_id("j", later), 2, "a")
        await until(
            "the second run to succeed",
            lambda: raft.machine.read(lambda s: s.runs[run_id("j", later)].status) == SUCCEEDED,
        )
        await asyncio.gather(*list(ex._tasks))
        await ex.stop()

    asyncio.run(go())
    assert executions(tmp_path) == [f"{RID} 1", f"{run_id('j', later)} 2"]


def test_one_pass_of_the_leader_arms_at_most_64_fires_the_rest_are_granted_as_ever() -> None:
    s = State()
    for k in range(70):
        assert isinstance(s.apply(c.PutJob(at_ms=T0, spec=spec(name=f"j{k:02}"))), Ok)
    raft = _Raft(s)
    clock = FakeClock(wall_ms=T0 + 300)  # the fires at T0 + 1000 are within the lead
    leader = _leader(raft, clock)
    leader.levels = lambda: {"a": 5}

    async def go() -> None:
        await leader._refresh()
        names = leader._pop_arm(clock.wall_ms())
        assert len(names) == 64
        await leader._arm(names, clock.wall_ms())
        assert leader._pop_arm(clock.wall_ms()) == []  # the other 6: not armed, not again

    asyncio.run(go())
    assert len(s.armed) == 64
