"""Job dependencies in the pure core (issue 6 item 6): ``after`` with ``on``, fan-in,
retries, chains, manual triggers, pause/delete of the child, cycles, snapshots. Planner and
``apply`` are driven together the way the leader drives them (every plan through the wire),
with a fake "now" carried in the commands: no clock, no network."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import msgpack
import pytest

from raftcron.api import app as api
from raftcron.config import ConfigError, parse_config
from raftcron.config import job_spec_from_mapping as from_table
from raftcron.core import commands as c
from raftcron.core.model import (
    CLAIMED,
    DEPENDENCY_WAIT_LIMIT,
    FAILED,
    KILLED,
    LOST,
    MISSED,
    PAUSED,
    PENDING,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    TRIGGER_DEPENDENCY,
    JobSpec,
    dependency_run_id,
    due_ms,
    fire_variant,
    jitter_offset_ms,
    run_id,
)
from raftcron.core.planner import NEVER_MS, NodeInfo, next_due_ms
from raftcron.core.state import (
    Ok,
    PlanOutcome,
    Rejected,
    State,
    dependency_cycle,
    dependency_decision,
    manual_run_id,
)
from tests import helpers
from tests.helpers import spec as job_spec

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z, a whole hour
S = 1000
MIN = 60 * S
HOUR = 60 * MIN
T = T0 + HOUR  # the parents' first hourly fire
NODES = [NodeInfo(name="a"), NodeInfo(name="b")]
HOURLY = "0 * * * *"


def spec(name: str, **kw: object) -> JobSpec:
    """Hourly; a job that runs only ``after`` others has no schedule."""
    kw.setdefault("schedule", "" if kw.get("after") else HOURLY)
    return job_spec(name, **kw)


class Sim(helpers.Sim):
    """Several jobs in one state machine; every job of it is hourly unless it runs after."""

    def put(self, name: str, **kw: object) -> None:
        res = self.s.apply(c.PutJob(at_ms=T0, spec=spec(name, **kw)))
        assert isinstance(res, Ok), res


def dep(job: str, t: int = T, variant: str = "") -> str:
    return dependency_run_id(job, t, variant)


def settle_parent(sim: Sim, status: str) -> None:
    """Give the parent "p" one fire at T that ends with ``status``."""
    if status in (SUCCEEDED, FAILED, TIMED_OUT, KILLED):
        assert [g[0] for g in sim.tick(T).granted] == [run_id("p", T)]
        sim.end(run_id("p", T), T + S, status)
    elif status == LOST:
        sim.tick(T)
        lease = sim.s.leases[run_id("p", T)]
        expire = c.Expire(at_ms=T + 40 * S, run_id=run_id("p", T), fence=lease.fence,
                          reason="lease expired: test", renewals=lease.renewals)  # fmt: skip
        assert sim.s.apply(expire) == Ok(LOST)
    elif status == SKIPPED:  # no node matches: unschedulable
        assert [r for r, _ in sim.tick(T, nodes=[]).skipped] == [run_id("p", T)]
    elif status == MISSED:  # the scheduler reached the fire too late (catchup_mode = none)
        assert sim.tick(T + 5 * S).missed == (run_id("p", T),)
    elif status == PAUSED:
        sim.s.apply(c.SetPaused(at_ms=T - S, name="p", paused=True))
        assert sim.tick(T).paused == (run_id("p", T),)


# --------------------------------------------------------------------------- on


@pytest.mark.parametrize(
    ("on", "parent", "runs"),
    [
        ("success", SUCCEEDED, True),
        ("success", FAILED, False),
        ("success", TIMED_OUT, False),
        ("success", LOST, False),
        ("success", KILLED, False),
        ("success", SKIPPED, False),
        ("success", MISSED, False),
        ("success", PAUSED, False),
        ("failure", SUCCEEDED, False),
        ("failure", FAILED, True),
        ("failure", KILLED, True),
        ("failure", SKIPPED, True),
        ("failure", MISSED, True),
        ("always", SUCCEEDED, True),
        ("always", FAILED, True),
        ("always", LOST, True),
        ("always", MISSED, True),
    ],
)
def test_on_decides_from_the_parents_settled_outcome(on: str, parent: str, runs: bool) -> None:
    sim = Sim()
    sim.put("p", catchup_mode="none")
    sim.put("c", after=("p",), on=on)
    settle_parent(sim, parent)
    child = sim.run(dep("c"))
    assert child.scheduled_at_ms == T and child.trigger == TRIGGER_DEPENDENCY
    assert child.parents == (run_id("p", T),)
    if not runs:  # never silently: a skipped record naming the parents' outcomes
        assert child.status == SKIPPED
        assert child.reason.startswith(f"on={on} needs ")
        assert child.reason.endswith(f"{run_id('p', T)} {parent}")
        assert sim.s.jobs["c"].deps == ()
        return
    assert child.status == PENDING and child.reason == f"after {run_id('p', T)} {parent} (on={on})"
    assert sim.s.jobs["c"].deps == ((dep("c"), T),)
    assert next_due_ms(sim.s.jobs["c"], busy=False) == 0  # the scheduler looks at once
    out = sim.tick(T + 2 * S)
    assert [g[0] for g in out.granted] == [dep("c")]
    child = sim.run(dep("c"))
    assert child.status == CLAIMED and child.fence > 0 and child.node in ("a", "b")
    assert child.parents == (run_id("p", T),) and child.reason.startswith("after ")
    assert not sim.s.jobs["c"].deps
    # granted once: a repeat of the claim is refused
    again = c.Fire(job="c", scheduled_at_ms=T, node="a", trigger=TRIGGER_DEPENDENCY)
    assert sim.apply(c.Plan(at_ms=T + 3 * S, fires=(again,))).rejected == (("c", T, "not_pending"),)


@pytest.mark.parametrize(
    ("on", "outcomes", "runs"),
    [
        ("success", [SUCCEEDED, SUCCEEDED], True),
        ("success", [SUCCEEDED, FAILED], False),
        ("failure", [SUCCEEDED, SUCCEEDED], False),
        ("failure", [SUCCEEDED, KILLED], True),
        ("failure", [MISSED, SKIPPED], True),
        ("always", [FAILED, FAILED], True),
    ],
)
def test_dependency_decision(on: str, outcomes: list[str], runs: bool) -> None:
    settled = [(f"p{i}", f"p{i}@1", st) for i, st in enumerate(outcomes)]
    assert dependency_decision(on, settled)[0] is runs


# --------------------------------------------------------------------------- fan-in


def test_fan_in_waits_for_the_late_parent_of_the_same_fire() -> None:
    sim = Sim()
    sim.put("x")
    sim.put("y")
    sim.put("c", after=("y", "x"))
    granted = {g[0] for g in sim.tick(T).granted}
    assert granted == {run_id("x", T), run_id("y", T)}
    sim.end(run_id("x", T), T + S)
    # y has not settled the fire yet: nothing recorded, the fan-in waits
    assert dep("c") not in sim.s.runs
    (w,) = sim.s.jobs["c"].waiting
    assert (w.scheduled_at_ms, w.settled) == (T, (("x", run_id("x", T), SUCCEEDED),))
    # x's next fire settles an hour later: a different fire, waiting beside it
    sim.tick(T + HOUR)
    sim.end(run_id("x", T + HOUR), T + HOUR + S)
    assert [w.scheduled_at_ms for w in sim.s.jobs["c"].waiting] == [T, T + HOUR]
    # y's late run of T settles it: the child runs for T with both parents' run ids, in
    # the order of after
    sim.end(run_id("y", T), T + HOUR + 2 * S)
    child = sim.run(dep("c"))
    assert child.status == PENDING and child.parents == (run_id("y", T), run_id("x", T))
    assert [w.scheduled_at_ms for w in sim.s.jobs["c"].waiting] == [T + HOUR]
    assert [g[0] for g in sim.tick(T + HOUR + 3 * S).granted] == [dep("c")]


def test_fan_in_failure_of_one_parent_skips_a_success_child_once_all_settled() -> None:
    sim = Sim()
    sim.put("x")
    sim.put("y")
    sim.put("c", after=("x", "y"))
    sim.tick(T)
    sim.end(run_id("x", T), T + S, FAILED)
    assert dep("c") not in sim.s.runs  # y is still running: not settled
    sim.end(run_id("y", T), T + 2 * S)
    child = sim.run(dep("c"))
    assert child.status == SKIPPED
    assert child.reason == (
        f"on=success needs every parent to succeed: {run_id('x', T)} failed, "
        f"{run_id('y', T)} succeeded"
    )


def test_fan_in_waits_are_bounded_and_recorded_when_dropped() -> None:
    sim = Sim()
    sim.put("x", schedule="* * * * *")  # every minute; y only hourly
    sim.put("y")
    sim.put("c", after=("x", "y"))
    for k in range(1, DEPENDENCY_WAIT_LIMIT + 2):
        t = T0 + k * 60 * S
        out = sim.tick(t)
        for rid, _, _ in out.granted:
            if rid.startswith("x@"):
                sim.end(rid, t + S)
    waiting = sim.s.jobs["c"].waiting
    assert len(waiting) == DEPENDENCY_WAIT_LIMIT
    dropped = sim.run(dep("c", T0 + 60 * S))  # the oldest
    assert dropped.status == SKIPPED and dropped.parents == (run_id("x", T0 + 60 * S),)
    assert dropped.reason.startswith(f"more than {DEPENDENCY_WAIT_LIMIT} fires of the parents")
    assert dropped.reason.endswith("still waiting for y")


# --------------------------------------------------------------------------- retries


def test_a_pending_retry_is_not_settled_its_last_attempt_decides() -> None:
    sim = Sim()
    sim.put("p", retries=1, retry_backoff_ms=0)
    sim.put("c", after=("p",))
    sim.tick(T)
    sim.end(run_id("p", T), T + S, FAILED)
    assert sim.run(run_id("p", T) + ".2").status == PENDING
    assert dep("c") not in sim.s.runs  # the failed attempt has a retry: not settled
    assert [g[0] for g in sim.tick(T + S).granted] == [run_id("p", T) + ".2"]
    sim.end(run_id("p", T) + ".2", T + 2 * S)
    child = sim.run(dep("c"))
    assert child.status == PENDING and child.parents == (run_id("p", T) + ".2",)


def test_a_child_retry_keeps_its_parents_and_settles_its_own_children() -> None:
    sim = Sim()
    sim.put("p")
    sim.put("c", after=("p",), retries=1, retry_backoff_ms=0)
    sim.put("g", after=("c",), on="always")
    sim.tick(T)
    sim.end(run_id("p", T), T + S)
    sim.tick(T + S)
    sim.end(dep("c"), T + 2 * S, FAILED)
    retry = sim.run(dep("c") + ".2")
    assert retry.status == PENDING and retry.parents == (run_id("p", T),)
    assert dep("g") not in sim.s.runs
    sim.tick(T + 2 * S)
    sim.end(dep("c") + ".2", T + 3 * S, FAILED)
    assert sim.run(dep("g")).parents == (dep("c") + ".2",)  # the last attempt
    assert fire_variant(sim.run(dep("c") + ".2")) == ""


# --------------------------------------------------------------------------- chains


def test_a_chain_runs_each_child_once_per_parent_fire_with_its_parents_run_id() -> None:
    sim = Sim()
    sim.put("a")
    sim.put("b", after=("a",))
    sim.put("c", after=("b",))
    for k in (1, 2):  # two fires of a
        t = T0 + k * HOUR
        sim.tick(t)
        sim.end(run_id("a", t), t + S)
        assert [g[0] for g in sim.tick(t + S).granted] == [dep("b", t)]
        sim.end(dep("b", t), t + 2 * S)
        assert [g[0] for g in sim.tick(t + 2 * S).granted] == [dep("c", t)]
        sim.end(dep("c", t), t + 3 * S)
        assert sim.run(dep("b", t)).parents == (run_id("a", t),)
        assert sim.run(dep("c", t)).parents == (dep("b", t),)
        assert sim.run(dep("c", t)).scheduled_at_ms == t
    assert len(sim.runs_of("b")) == len(sim.runs_of("c")) == 2


def test_a_skipped_link_settles_the_rest_of_the_chain_in_the_same_apply() -> None:
    sim = Sim()
    sim.put("a")
    sim.put("b", after=("a",))  # on = success
    sim.put("c", after=("b",), on="failure")
    sim.tick(T)
    sim.end(run_id("a", T), T + S, FAILED)
    assert sim.run(dep("b")).status == SKIPPED
    assert sim.run(dep("c")).status == PENDING  # b did not succeed: c (on=failure) runs
    assert sim.run(dep("c")).parents == (dep("b"),)


def test_a_manual_trigger_of_a_parent_fires_its_dependents() -> None:
    sim = Sim()
    sim.put("a")
    sim.put("b", after=("a",))
    sim.put("c", after=("b",))
    at = T0 + 1234
    sim.trigger(job="a", at=at)
    sim.end(manual_run_id("a", at), at + S)
    b = dep("b", at, "~manual")
    assert b == f"b@{at}~manual~after"
    assert [g[0] for g in sim.tick(at + S).granted] == [b]
    sim.end(b, at + 2 * S)
    assert sim.run(dep("c", at, "~manual")).parents == (b,)
    # a manual trigger of the child itself runs it alone, without parents
    sim.trigger(job="b", at=at + 5 * S)
    assert sim.run(manual_run_id("b", at + 5 * S)).parents == ()


# --------------------------------------------------------------------------- child state


def test_a_paused_child_records_the_fire_as_paused() -> None:
    sim = Sim()
    sim.put("p")
    sim.put("c", after=("p",))
    sim.s.apply(c.SetPaused(at_ms=T0, name="c", paused=True, note="deploy"))
    sim.tick(T)
    sim.end(run_id("p", T), T + S)
    paused = sim.run(dep("c"))
    assert paused.status == PAUSED and paused.reason == "job is paused: deploy"


def test_pausing_or_deleting_a_child_ends_its_waiting_dependency_fires_on_the_record() -> None:
    for change, status in (
        (c.SetPaused(at_ms=T + 2 * S, name="c", paused=True), PAUSED),
        (c.DeleteJob(at_ms=T + 2 * S, name="c"), SKIPPED),
    ):
        sim = Sim()
        sim.put("p")
        sim.put("c", after=("p",))
        sim.tick(T)
        sim.end(run_id("p", T), T + S)
        assert sim.run(dep("c")).status == PENDING
        assert isinstance(sim.s.apply(change), Ok)
        assert sim.run(dep("c")).status == status


def test_the_childs_overlap_policy_applies_to_a_dependency_fire() -> None:
    sim = Sim()
    sim.put("p")
    sim.put("c", after=("p",), overlap="skip")
    sim.trigger(job="c", at=T - 10 * S)  # a run of c is live
    sim.tick(T)
    sim.end(run_id("p", T), T + S)
    out = sim.tick(T + S)
    assert [rid for rid, _ in out.skipped] == [dep("c")]
    child = sim.run(dep("c"))
    assert child.status == SKIPPED and child.reason.startswith("overlap=skip: ")
    assert child.parents == (run_id("p", T),)


def test_killing_a_waiting_dependency_fire_records_it() -> None:
    sim = Sim()
    sim.put("p")
    sim.put("c", after=("p",))
    sim.tick(T)
    sim.end(run_id("p", T), T + S)
    assert sim.s.apply(c.Kill(at_ms=T + 2 * S, run_id=dep("c"), reason="no")) == Ok(KILLED)
    assert sim.s.jobs["c"].deps == () and sim.run(dep("c")).status == KILLED


def test_a_dependent_job_has_no_fires_of_its_own_and_no_backfill() -> None:
    sim = Sim()
    sim.put("p")
    sim.put("c", after=("p",))
    assert next_due_ms(sim.s.jobs["c"], busy=False) == NEVER_MS
    assert {g[0] for g in sim.tick(T + 5 * HOUR).granted} == {run_id("p", T + 5 * HOUR)}
    res = sim.s.apply(
        c.StartBackfill(at_ms=T + 5 * HOUR, job="c", id="x", from_ms=T0, to_ms=T, rate=1.0)
    )
    assert isinstance(res, Rejected) and res.code == "bad_backfill"


# --------------------------------------------------------------------------- cycles


@pytest.mark.parametrize(
    ("existing", "put", "cycle"),
    [
        ({}, ("a", ("a",)), ["a", "a"]),
        ({"b": ("a",)}, ("a", ("b",)), ["a", "b", "a"]),
        ({"b": ("a",), "c": ("b",)}, ("a", ("c",)), ["a", "c", "b", "a"]),
        ({"b": ("a",), "c": ("b",)}, ("d", ("c",)), []),  # a chain, no cycle
        ({"b": ("x",), "c": ("b", "x")}, ("x", ("q",)), []),  # a diamond, no cycle
    ],
)
def test_put_job_refuses_a_cycle(
    existing: dict[str, tuple[str, ...]], put: tuple[str, tuple[str, ...]], cycle: list[str]
) -> None:
    sim = Sim()
    for name, after in existing.items():
        sim.put(name, after=after)
    new = spec(put[0], after=put[1])
    assert dependency_cycle(sim.s.jobs, new) == cycle
    res = sim.s.apply(c.PutJob(at_ms=T0, spec=new))
    if cycle:
        assert isinstance(res, Rejected) and res.code == "dependency_cycle"
        assert " -> ".join(cycle) in res.message
    else:
        assert isinstance(res, Ok)


def test_the_core_does_not_loop_on_a_cycle_that_sneaked_in() -> None:
    # a config sync does not check (the file is validated); the core must still end
    sim = Sim()
    specs = (spec("a", after=("b",), on="always"), spec("b", after=("a",), on="always"))
    assert isinstance(sim.s.apply(c.SyncConfig(at_ms=T0, specs=specs, history=1)), Ok)
    sim.trigger(job="a", at=T)
    sim.s.apply(c.Kill(at_ms=T + S, run_id=manual_run_id("a", T), reason="x"))
    lease = sim.s.leases[manual_run_id("a", T)]
    sim.s.apply(c.Complete(at_ms=T + S, run_id=manual_run_id("a", T), fence=lease.fence,
                           node="a", status=KILLED, exit_code=None, started_ms=None,
                           finished_ms=T + S))  # fmt: skip
    granted = []
    for _ in range(4):  # each link runs once, then the cycle meets an id it already made
        out = sim.tick(T + 2 * S)
        granted += [g[0] for g in out.granted]
        for rid in granted[-len(out.granted) :] if out.granted else ():
            sim.end(rid, T + 3 * S, FAILED)
    assert granted == [f"b@{T}~manual~after", f"a@{T}~manual~after"]
    assert all(not j.deps for j in sim.s.jobs.values())


@pytest.mark.parametrize(
    ("jobs", "error"),
    [
        ('name="a"\nafter=["b"]\n[[jobs]]\nname="b"\nafter=["a"]',
         'jobs[0].after: a -> b -> a is a cycle'),
        ('name="a"\nafter=["nope"]', 'jobs[0].after: "nope" is not a job in this file'),
        ('name="a"\nafter=["a"]', 'jobs[0].after: "a" is the job itself'),
        ('name="a"\nafter=["b"]\nschedule="* * * * *"\n[[jobs]]\nname="b"\nschedule="* * * * *"',
         "jobs[0].schedule: set together with after"),
        ('name="a"\nschedule="* * * * *"\non="failure"', "jobs[0].on: only applies with after"),
        ('name="a"\nafter=["b"]\non="sometimes"\n[[jobs]]\nname="b"\nschedule="* * * * *"',
         'jobs[0].on: "sometimes" is not allowed'),
        ('name="a"\nafter=[]', "jobs[0].after: empty"),
    ],
)  # fmt: skip
def test_config_validates_after_and_on(jobs: str, error: str) -> None:
    tables = jobs.replace("[[jobs]]", '[[jobs]]\ncommand = ["true"]')
    text = (
        '[cluster]\nsecret = "test-secret-0123456789abcdef"\n'
        '[cluster.nodes.a]\nraft = "127.0.0.1:7101"\napi = "127.0.0.1:8101"\n'
        f'[[jobs]]\ncommand = ["true"]\n{tables}\n'
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(text, Path("/etc/raftcron.toml"))
    assert f"/etc/raftcron.toml: {error}" in str(exc.value)


def test_config_accepts_a_dependent_job_without_schedule() -> None:
    text = (
        '[cluster]\nsecret = "test-secret-0123456789abcdef"\n'
        '[cluster.nodes.a]\nraft = "127.0.0.1:7101"\napi = "127.0.0.1:8101"\n'
        '[[jobs]]\nname = "c"\nafter = ["a", "b"]\non = "always"\ncommand = ["true"]\n'
        '[[jobs]]\nname = "a"\nschedule = "@daily"\ncommand = ["true"]\n'
        '[[jobs]]\nname = "b"\nafter = "a"\ncommand = ["true"]\n'
    )
    jobs = {j.name: j for j in parse_config(text, Path("/x.toml")).jobs}
    assert (jobs["c"].schedule, jobs["c"].after, jobs["c"].on) == ("", ("a", "b"), "always")
    assert (jobs["b"].after, jobs["b"].on) == (("a",), "success")


# --------------------------------------------------------------------------- encodings


def test_snapshot_round_trip_keeps_dependency_state() -> None:
    sim = Sim()
    sim.put("x")
    sim.put("y")
    sim.put("c", after=("x", "y"), on="always")
    sim.put("d", after=("x",))
    sim.tick(T)
    sim.end(run_id("x", T), T + S)  # c waits for y; d has a dependency fire queued
    assert sim.s.jobs["c"].waiting and sim.s.jobs["d"].deps
    data = sim.s.snapshot()
    back = State.restore(data)
    assert back.snapshot() == data and back.digest() == sim.s.digest()
    assert back.jobs == sim.s.jobs and back.runs == sim.s.runs
    assert back.children == sim.s.children == {"x": ("c", "d"), "y": ("c",)}
    assert back.runs[dep("d")].parents == (run_id("x", T),)
    # the restored copy goes on exactly like the original
    for state in (sim.s, back):
        lease = state.leases[run_id("y", T)]
        state.apply(c.Start(at_ms=T + 2 * S, run_id=run_id("y", T), fence=lease.fence,
                         node=lease.holder, token="t"))  # fmt: skip
        state.apply(c.Complete(at_ms=T + 2 * S, run_id=run_id("y", T), fence=lease.fence,
                            node=lease.holder, status=FAILED, exit_code=1, started_ms=T,
                            finished_ms=T + 2 * S))  # fmt: skip
    assert back.digest() == sim.s.digest()
    assert back.runs[dep("c")].parents == (run_id("x", T), run_id("y", T))


def test_encodings_without_dependencies_are_unchanged() -> None:
    plain = spec("j")
    wire = c.spec_to_wire(plain)
    assert "after" not in wire and "on" not in wire
    assert c.spec_from_wire(wire) == plain
    child = spec("k", after=("j",), on="failure")
    assert c.spec_from_wire(c.spec_to_wire(child)) == child
    sim = Sim()
    sim.put("j")
    sim.tick(T)
    snap = msgpack.unpackb(sim.s.snapshot(), raw=False, strict_map_key=False)
    assert [len(row) for row in snap["jobs"]] == [6]  # no trailing deps/waiting fields
    assert [len(row) for row in snap["runs"]] == [16]  # no last_scheduled_ms, no parents


def test_changing_after_records_the_waiting_fan_in_fires_as_skipped() -> None:
    sim = Sim()
    sim.put("x")
    sim.put("y")
    sim.put("c", after=("x", "y"))
    sim.tick(T)
    sim.end(run_id("x", T), T + S)
    assert sim.s.jobs["c"].waiting
    sim.put("c", after=("x",))
    assert sim.s.jobs["c"].waiting == () and sim.s.children == {"x": ("c",)}
    dropped = sim.run(dep("c"))
    assert dropped.status == SKIPPED and dropped.reason.startswith("the job's after changed")
    sim.end(run_id("y", T), T + 2 * S)  # y is not a parent any more: nothing happens
    assert sim.run(dep("c")).status == SKIPPED


# --------------------------------------------------------------------------- the API


@pytest.mark.parametrize(
    "table",
    [
        {"name": "c", "after": ["a"], "command": ["true"]},
        {"name": "d", "after": ["a", "b"], "on": "always", "command": ["x"], "retries": 2},
        {"name": "e", "after": ["a"], "on": "failure", "http": {"url": "http://h/x"}},
    ],
)
def test_a_dependent_jobs_spec_table_round_trips(table: dict[str, object]) -> None:
    spec = from_table(table, "t")
    again = api.spec_table(spec)
    assert "schedule" not in again and again["after"] == table["after"]
    assert from_table(again, "t") == spec


def test_the_api_shows_parents_and_dependency_fires() -> None:
    sim = Sim()
    sim.put("p")
    sim.put("c", after=("p",))
    sim.tick(T)
    sim.end(run_id("p", T), T + S)
    body = api.run_json(sim.run(dep("c")))
    assert body["parents"] == [run_id("p", T)] and body["trigger"] == TRIGGER_DEPENDENCY
    assert "parents" not in api.run_json(sim.run(run_id("p", T)))
    job = api.job_json(sim.s.jobs["c"], T + S, None, [])
    assert (job["after"], job["on"], job["dependency_fires"]) == (["p"], "success", [dep("c")])
    assert job["next_fire"] is None and api.next_fires(sim.s.jobs["c"], T, 5) == []
    assert api._cursor(dep("c", 77, "~manual") + ".2", {}.get) == (
        77,
        dep("c", 77, "~manual") + ".2",
    )


def test_an_embedded_job_can_run_after_another(tmp_path: Path) -> None:
    from raftcron.embed import Cluster

    cfg = parse_config(
        '[cluster]\nsecret = "test-secret-0123456789abcdef"\n'
        '[cluster.nodes.a]\nraft = "127.0.0.1:7101"\napi = "127.0.0.1:8101"\n',
        tmp_path / "c.toml",
    )
    cl = Cluster(cfg, "a")

    @cl.job("0 3 * * *")
    def extract() -> None:
        pass

    @cl.job(after=["extract"], on="failure")
    def alert() -> None:
        pass

    assert (cl.jobs[1].schedule, cl.jobs[1].after, cl.jobs[1].on) == ("", ("extract",), "failure")
    with pytest.raises(ConfigError) as err:
        cl.job()(alert)
    assert "schedule: missing" in str(err.value)


# --------------------------------------------------------------------------- replicas


def _random_stream(rng: random.Random) -> list[bytes]:
    """A command stream that exercises dependencies: plain and dependent jobs (cycles
    too, through a config sync, which does not check them), fires, dependency claims,
    runs ending, pause, delete, kill. Built against a state so that claims and
    completions name real runs and fences."""
    s = State()
    out: list[bytes] = []
    names = ["a", "b", "c", "d"]
    now = T0

    def put(cmd: c.Command) -> None:
        data = c.encode(cmd)
        out.append(data)
        s.apply_bytes(data)

    for _ in range(rng.randint(10, 120)):
        now += rng.choice([0, 1, 500, 1000])
        k = rng.random()
        job = rng.choice(names)
        if k < 0.10:
            put(c.PutJob(at_ms=now, spec=spec(job, retries=rng.randint(0, 1), retry_backoff_ms=0)))
        elif k < 0.25:
            after = tuple(rng.sample(names, rng.randint(1, 3)))
            on = rng.choice(["success", "failure", "always"])
            new = spec(job, after=after, on=on, retries=rng.randint(0, 1), retry_backoff_ms=0,
                       overlap=rng.choice(["allow", "skip", "buffer_one"]))  # fmt: skip
            if rng.random() < 0.2:  # unchecked: may close a cycle
                put(c.SyncConfig(at_ms=now, specs=(new,), history=rng.randint(2, 6), partial=True))
            else:
                put(c.PutJob(at_ms=now, spec=new))
        elif k < 0.45:
            node = rng.choice(["n1", "n2", "n2", ""])
            trigger = rng.choice(["manual", "manual", "schedule"])
            at = now if trigger == "manual" else T0 + 1000 * rng.randint(1, 5)
            put(c.Plan(at_ms=now, fires=(c.Fire(job=job, scheduled_at_ms=at, node=node,
                                                trigger=trigger),)))  # fmt: skip
        elif k < 0.55:
            fires = [
                c.Fire(job=j.spec.name, scheduled_at_ms=t, node=rng.choice(["n1", "n2", ""]),
                       trigger=TRIGGER_DEPENDENCY)
                for j in s.jobs.values() for _, t in j.deps
            ]  # fmt: skip
            fires += [
                c.Fire(job=j.spec.name, scheduled_at_ms=p.scheduled_at_ms, node="n1",
                       trigger="retry", attempt=p.attempt)
                for j in s.jobs.values() for p in j.retry
            ]  # fmt: skip
            put(c.Plan(at_ms=now, fires=tuple(fires)))
        elif k < 0.85 and s.leases:
            rid = rng.choice(sorted(s.leases))
            lz = s.leases[rid]
            put(c.Start(at_ms=now, run_id=rid, fence=lz.fence, node=lz.holder, token="t"))
            if rng.random() < 0.1:
                put(c.Expire(at_ms=now, run_id=rid, fence=lz.fence, reason="e", renewals=1))
            else:
                put(c.Complete(at_ms=now, run_id=rid, fence=lz.fence, node=lz.holder,
                               status=rng.choice([SUCCEEDED, SUCCEEDED, FAILED, KILLED]),
                               exit_code=None, started_ms=now, finished_ms=now))  # fmt: skip
        elif k < 0.92:
            put(c.SetPaused(at_ms=now, name=job, paused=rng.random() < 0.5))
        elif k < 0.95:
            put(c.DeleteJob(at_ms=now, name=job))
        else:
            waiting = sorted(r.id for r in s.runs.values() if r.status == PENDING)
            if waiting:
                put(c.Kill(at_ms=now, run_id=rng.choice(waiting), reason="k"))
        assert s.settled == []
    return out


def test_random_dependency_streams_agree_across_snapshots_and_never_run_a_fire_twice() -> None:
    seen: Counter[str] = Counter()
    for seed in range(300):
        rng = random.Random(seed)
        data = _random_stream(rng)
        reference = State()
        granted: list[str] = []
        for d in data:
            _, res = reference.apply_bytes(d)
            if isinstance(res, Ok) and isinstance(res.value, PlanOutcome):
                granted += [g[0] for g in res.value.granted]
        assert len(granted) == len(set(granted)), seed  # every run id granted once
        cuts = set(rng.sample(range(len(data)), min(3, len(data))))
        replica = State()
        for i, d in enumerate(data):
            if i in cuts:
                replica = State.restore(replica.snapshot())
                assert replica.children == _children(replica), seed
            replica.apply_bytes(d)
        assert replica.digest() == reference.digest(), seed
        assert reference.children == _children(reference), seed
        for r in reference.runs.values():
            if r.trigger == TRIGGER_DEPENDENCY or r.parents:
                seen[r.status] += 1
                seen["fan-in"] += len(r.parents) > 1
    # the streams did exercise dependency fires of every kind
    assert seen[SUCCEEDED] and seen[SKIPPED] and seen[PENDING] and seen["fan-in"], seen


def _children(s: State) -> dict[str, tuple[str, ...]]:
    out: dict[str, set[str]] = {}
    for name, job in s.jobs.items():
        for parent in job.spec.after:
            out.setdefault(parent, set()).add(name)
    return {p: tuple(sorted(k)) for p, k in out.items()}


def test_a_dependency_run_is_due_when_it_was_claimed_not_at_its_parents_time() -> None:
    sim = Sim()
    sim.put("p", jitter_ms=5000)
    sim.put("c", after=("p",))
    sim.tick(T + 10 * S)
    sim.end(run_id("p", T), T + 30 * MIN)  # a parent that ran for half an hour
    sim.tick(T + 30 * MIN + 20)
    child = sim.run(dep("c"))
    assert due_ms(child, sim.s.jobs["c"].spec) == T + 30 * MIN + 20
    parent = sim.run(run_id("p", T))
    assert due_ms(parent, sim.s.jobs["p"].spec) == T + jitter_offset_ms("p", 5000)


@pytest.mark.parametrize(
    ("outcomes", "child_runs"),
    [
        ((SUCCEEDED, SUCCEEDED), True),  # every instance of the parent's fire succeeded
        ((SUCCEEDED, FAILED), False),  # one did not: on=success is not met
    ],
)
def test_a_parent_with_count_settles_once_all_its_instances_have(
    outcomes: tuple[str, str], child_runs: bool
) -> None:
    sim = Sim()
    sim.put("p", count=2)
    sim.put("c", after=("p",))
    out = sim.tick(T)
    ids = sorted(g[0] for g in out.granted)
    assert ids == [run_id("p", T), f"{run_id('p', T)}~2"]
    sim.end(ids[0], T + S, outcomes[0])
    assert "c" not in {r.job for r in sim.s.runs.values()}  # instance 2 still runs
    sim.end(ids[1], T + 2 * S, outcomes[1])
    child = sim.run(dep("c"))  # one dependency fire for the whole parent fire
    assert child.parents == (run_id("p", T),)
    assert (child.status == PENDING) is child_runs
    assert [r.id for r in sim.runs_of("c")] == [dep("c")]
