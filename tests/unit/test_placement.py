"""Where a job runs (issue 6 item 5) in the pure core: ``count`` instances per fire,
``max_parallel`` per node, and fires no node can take recorded as unschedulable. The
planner and ``apply`` are driven together the way the leader drives them (every plan
through the wire), with a fake "now": no clock, no network."""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from raftcron.api.app import spec_table
from raftcron.clock import FakeClock
from raftcron.config import ConfigError, job_spec_from_mapping, parse_config
from raftcron.core import commands as c
from raftcron.core.model import (
    BUFFERED,
    COUNT_ALL,
    FAILED,
    KILLED,
    PAUSED,
    PENDING,
    SKIPPED,
    SUCCEEDED,
    TRIGGER_MANUAL,
    TRIGGER_RETRY,
    Run,
    fire_of,
    instance_run_id,
    retry_run_id,
    run_id,
)
from raftcron.core.planner import (
    NodeInfo,
    instances_of,
    next_due_ms,
    place,
    placement_fires,
    plan,
)
from raftcron.core.runkey import RunKey
from raftcron.core.state import (
    Ok,
    State,
    _run_row,
    manual_run_id,
)
from raftcron.metrics import NodeMetrics
from raftcron.raft.node import Machine, RaftStatus
from tests.helpers import Sim, spec

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z, a whole minute
S = 1000
DB = (("role", "db"),)


def nodes(n: int, db: int = 0) -> list[NodeInfo]:
    """``n`` live nodes a, b, c...; the first ``db`` of them tagged role=db."""
    return [NodeInfo(name="abcde"[i], tags=DB if i < db else ()) for i in range(n)]


def r(t: int, k: int = 1) -> str:
    return instance_run_id(run_id("j", t), k)


# --------------------------------------------------------------------------- count


@pytest.mark.parametrize(
    ("count", "live", "db", "tags", "placed", "shortfall"),
    [
        # count, live nodes, of them tagged role=db, job tags, instances placed, not placed
        (1, 1, 0, (), 1, 0),
        (1, 3, 0, (), 1, 0),
        (2, 1, 0, (), 1, 1),
        (2, 2, 0, (), 2, 0),
        (2, 3, 0, (), 2, 0),
        (3, 3, 0, (), 3, 0),
        (3, 1, 0, (), 1, 2),
        (3, 3, 1, DB, 1, 2),
        (2, 3, 0, DB, 0, 2),
        (COUNT_ALL, 1, 0, (), 1, 0),
        (COUNT_ALL, 2, 0, (), 2, 0),
        (COUNT_ALL, 3, 0, (), 3, 0),
        (COUNT_ALL, 3, 2, DB, 2, 0),
        (COUNT_ALL, 3, 0, DB, 0, 1),  # nobody matches: one unschedulable record
    ],
)
def test_each_fire_runs_count_instances_on_distinct_nodes(
    count: int, live: int, db: int, tags: tuple[tuple[str, str], ...], placed: int, shortfall: int
) -> None:
    sim = Sim.of(nodes(live, db), count=count, tags=tags, overlap="skip")
    out = sim.tick(T0 + S)
    t = T0 + S
    want = max(count, 1) if count else max(1, placed)
    assert [g[0] for g in out.granted] == [r(t, k) for k in range(1, placed + 1)]
    assert len({g[2] for g in out.granted}) == placed, "every instance on its own node"
    fences = [g[1] for g in out.granted]
    assert fences == sorted(set(fences)), "each instance its own, rising fence"
    for k, (rid, fence, node) in enumerate(out.granted, start=1):
        run = sim.run(rid)
        assert (run.instance, run.instances, run.fence, run.node) == (k, want, fence, node)
        assert sim.s.leases[rid].fence == fence
        if tags:
            assert dict(next(n.tags for n in sim.nodes if n.name == node)) == dict(DB)
    if shortfall:
        [(rid, why)] = out.skipped
        assert rid == r(t, placed + 1)
        rec = sim.run(rid)
        assert (rec.status, rec.count, rec.instance, rec.instances) == (
            SKIPPED,
            shortfall,
            placed + 1,
            want,
        )
        assert why.startswith("unschedulable: "), why
        if want == 1:
            assert (
                why == f"unschedulable: no live node matches tags {{{'role=db' if tags else ''}}}"
            )
        else:
            assert f"of {want} not placed: {placed} distinct live node(s) match tags" in why
        assert sim.unschedulable() == shortfall
    else:
        assert out.skipped == () and sim.unschedulable() == 0
    assert sim.job.watermark_ms == t


def test_instances_of_counts_matching_live_nodes_for_all() -> None:
    assert instances_of(spec(count=COUNT_ALL, tags=DB), nodes(3, 2)) == 2
    assert instances_of(spec(count=COUNT_ALL, tags=DB), nodes(3, 0)) == 1
    assert instances_of(spec(count=5), nodes(1)) == 5


def test_apply_checks_instances_of_a_fire() -> None:
    """Instance K > 1 only behind its instance 1 in the same plan; no duplicates; never
    two instances of a fire on one node; instance 1 moving the watermark never refuses
    instance 2."""
    sim = Sim.of(nodes(3), count=3)
    t = T0 + S

    def fire(k: int, node: str, t: int = t) -> c.Fire:
        return c.Fire(
            job="j", scheduled_at_ms=t, node=node, trigger="schedule", instance=k, instances=3
        )

    out = sim.apply(c.Plan(at_ms=t, fires=(fire(2, "b"),)))
    assert out.rejected == (("j", t, "no_first_instance"),) and out.granted == ()
    out = sim.apply(c.Plan(at_ms=t, fires=(fire(1, "a"), fire(2, "b"), fire(2, "c"), fire(3, "a"))))
    assert [g[0] for g in out.granted] == [r(t), r(t, 2)]
    assert out.rejected == (("j", t, "duplicate"),)
    assert out.skipped == (
        (r(t, 3), f"unschedulable: a already runs {r(t)}, an instance of the same fire"),
    )
    # a repeat of the plan (an unknown outcome retried) changes nothing
    again = sim.apply(c.Plan(at_ms=t, fires=(fire(1, "a"), fire(2, "b"))))
    assert again.granted == () and [x[2] for x in again.rejected] == ["duplicate", "duplicate"]
    # an instance can never be added to a fire later
    t2 = t + S
    assert len(sim.apply(c.Plan(at_ms=t2, fires=(fire(1, "c", t2),))).granted) == 1
    late = sim.apply(c.Plan(at_ms=t2, fires=(fire(2, "b", t2),)))
    assert late.rejected == (("j", t2, "no_first_instance"),)
    four = c.Fire(
        job="j", scheduled_at_ms=t + 5 * S, node="a", trigger="schedule", instance=4, instances=3
    )
    bad = sim.apply(c.Plan(at_ms=t, fires=(four,)))
    assert bad.rejected == (("j", t + 5 * S, "bad_instance"),)


@pytest.mark.parametrize(
    ("overlap", "second_fire"),
    [
        # a second fire falls due while both instances of the first run
        ("allow", ["granted", "granted"]),
        ("skip", ["skipped", "skipped"]),
        ("buffer_one", ["buffered", "buffered"]),
        ("buffer_all", ["buffered", "buffered"]),
        ("cancel_other", ["buffered", "buffered"]),
    ],
)
def test_overlap_is_per_fire_not_per_instance(overlap: str, second_fire: list[str]) -> None:
    """Instance 2 is never skipped, buffered or stopped because instance 1 of the same
    fire is live; a later fire sees all of them as the live run."""
    sim = Sim.of(nodes(3), count=2, overlap=overlap, schedule="* * * * * */10")
    t1, t2 = T0 + 10 * S, T0 + 20 * S
    first = sim.tick(t1)
    assert [g[0] for g in first.granted] == [r(t1), r(t1, 2)] and first.skipped == ()
    out = sim.tick(t2)
    got = {rid: "granted" for rid, _, _ in out.granted}
    got |= {rid: "skipped" for rid, _ in out.skipped}
    got |= {rid: "buffered" for rid, _ in out.buffered}
    assert [got[r(t2)], got[r(t2, 2)]] == second_fire
    if overlap == "skip":
        assert all(f"overlap=skip: {r(t1)} is still running" == why for _, why in out.skipped)
    if overlap == "cancel_other":
        assert sorted(out.stopping) == [r(t1), r(t1, 2)]
        assert all(sim.s.leases[x].kill for x in (r(t1), r(t1, 2)))
    if second_fire[0] == "buffered":
        assert [b[0] for b in sim.job.buffered] == [r(t2), r(t2, 2)]
        for x in (r(t1), r(t1, 2)):  # the first fire ends (stopped, for cancel_other)
            sim.end(x, t2 + S, KILLED if overlap == "cancel_other" else SUCCEEDED)
        out = sim.tick(t2 + 2 * S)
        assert [g[0] for g in out.granted] == [r(t2), r(t2, 2)], "a fire's instances go together"
        assert out.granted[0][2] != out.granted[1][2]
        assert sim.job.buffered == ()


def test_buffer_one_keeps_one_fire_with_all_its_instances() -> None:
    sim = Sim.of(nodes(2), count=2, overlap="buffer_one", schedule="* * * * * */10")
    t1, t2, t3 = T0 + 10 * S, T0 + 20 * S, T0 + 30 * S
    sim.tick(t1)
    assert len(sim.tick(t2).buffered) == 2
    third = sim.tick(t3)
    assert [x[0] for x in third.skipped] == [r(t3), r(t3, 2)]
    assert all(f"{r(t2)} is already buffered" in why for _, why in third.skipped)


# --------------------------------------------------------------------------- max_parallel


def test_max_parallel_limits_live_runs_per_node() -> None:
    """overlap=allow, max_parallel=1 on two nodes: two fires run side by side on different
    nodes; the third finds both full and is skipped as unschedulable, naming the limit;
    once a run ends its node takes the next fire."""
    sim = Sim.of(nodes(2), max_parallel=1)
    t = [T0 + k * S for k in range(1, 5)]
    ones = [sim.tick(x) for x in t[:2]]
    assert sorted(o.granted[0][2] for o in ones) == ["a", "b"]
    full = sim.tick(t[2])
    assert full.granted == ()
    [(rid, why)] = full.skipped
    assert rid == r(t[2]) and why == (
        "unschedulable: no live node matches tags {} with fewer than max_parallel=1 live "
        "run(s) of the job"
    )
    assert sim.unschedulable() == 1
    sim.end(r(t[0]), t[2] + 1)
    nxt = sim.tick(t[3])
    assert nxt.granted[0][2] == ones[0].granted[0][2]


def test_apply_rechecks_max_parallel_of_a_stale_plan() -> None:
    sim = Sim.of(nodes(2), max_parallel=2)
    for k in (1, 2):
        t = T0 + k * S
        out = sim.apply(
            c.Plan(
                at_ms=t, fires=(c.Fire(job="j", scheduled_at_ms=t, node="a", trigger="schedule"),)
            )
        )
        assert len(out.granted) == 1
    t = T0 + 3 * S
    out = sim.apply(
        c.Plan(at_ms=t, fires=(c.Fire(job="j", scheduled_at_ms=t, node="a", trigger="schedule"),))
    )
    [(_, why)] = out.skipped
    assert why.startswith("unschedulable: a already runs max_parallel=2 live run(s) of j")
    # the planner puts the next fire on b instead
    assert sim.tick(T0 + 4 * S).granted[0][2] == "b"


def test_count_with_max_parallel_places_what_fits() -> None:
    sim = Sim.of(nodes(3), count=COUNT_ALL, max_parallel=1, schedule="* * * * * */10")
    t1, t2 = T0 + 10 * S, T0 + 20 * S
    assert len(sim.tick(t1).granted) == 3
    sim.end(r(t1, 2), t1 + S)
    out = sim.tick(t2)  # two nodes still full: one instance placed, two recorded
    assert len(out.granted) == 1 and out.granted[0][2] == sim.run(r(t1, 2)).node
    [(rid, why)] = out.skipped
    assert rid == r(t2, 2) and sim.run(rid).count == 2
    assert "instances 2-3 of 3 not placed" in why and "max_parallel=1" in why


# --------------------------------------------------------------------------- retries, manual


def test_each_instance_retries_itself() -> None:
    """Instance 2 fails: its retry is ``j@ms~2.2`` (instance 2 of 2), runs beside the
    still-live instance 1 of the same fire even with overlap=skip, and never on its node."""
    sim = Sim.of(nodes(2), count=2, overlap="skip", retries=1, retry_backoff_ms=0)
    t = T0 + S
    sim.tick(t)
    sim.end(r(t, 2), t + 1, FAILED)
    retry = retry_run_id(r(t, 2), 1)
    assert retry == f"j@{t}~2.2" and fire_of(retry) == r(t)
    pending = sim.run(retry)
    assert (pending.status, pending.instance, pending.instances) == (PENDING, 2, 2)
    assert [p.instance for p in sim.job.retry] == [2]
    out = sim.tick(t + 2)
    assert [g[0] for g in out.granted] == [retry]
    assert out.granted[0][2] != sim.run(r(t)).node, "not beside its sibling instance"
    assert sim.run(retry).attempt == 2 and sim.run(retry).trigger == TRIGGER_RETRY


def test_retry_of_an_instance_waits_for_another_fire() -> None:
    """overlap=skip: a retry runs beside its own fire's instances, never beside another
    fire's run; both instances of one fire retry together."""
    sim = Sim.of(
        nodes(3),
        count=2,
        overlap="skip",
        retries=1,
        retry_backoff_ms=15 * S,
        schedule="* * * * * */10",
    )
    t1, t2 = T0 + 10 * S, T0 + 20 * S
    sim.tick(t1)
    for k in (1, 2):
        sim.end(r(t1, k), t1 + 1, FAILED)
    assert len(sim.tick(t2).granted) == 2  # the next fire runs; the retries are not due
    assert sim.tick(t1 + 17 * S).granted == (), "due, but fire t2 is still live"
    for k in (1, 2):
        sim.end(r(t2, k), t1 + 18 * S)
    out = sim.tick(t1 + 19 * S)
    assert sorted(g[0] for g in out.granted) == [f"{r(t1)}.2", f"{r(t1, 2)}.2"]
    assert out.granted[0][2] != out.granted[1][2]


def test_a_manual_trigger_fires_every_instance() -> None:
    sim = Sim.of(nodes(3), count=COUNT_ALL, retries=1, retry_backoff_ms=0)
    at = T0 + 500
    out = sim.trigger(at, node=None)
    m = manual_run_id("j", at)
    assert [g[0] for g in out.granted] == [m, f"{m}~2", f"{m}~3"]
    assert {sim.run(x).trigger for x, _, _ in out.granted} == {TRIGGER_MANUAL}
    again = sim.trigger(at, node=None)
    assert again.granted == () and {x[2] for x in again.rejected} == {"duplicate"}
    sim.end(f"{m}~3", at + 1, FAILED)
    assert f"{m}~3.2" in sim.s.runs and fire_of(f"{m}~3.2") == m


def test_backfill_runs_every_instance_of_each_fire() -> None:
    sim = Sim(nodes(2))
    now = T0 + 3 * 3600 * S
    assert sim.s.apply(c.PutJob(at_ms=now, spec=spec(count=2, schedule="0 * * * *"))) == Ok(
        "created"
    )
    assert isinstance(
        sim.s.apply(c.StartBackfill(at_ms=now, job="j", id="x", from_ms=T0, to_ms=T0, rate=1.0)),
        Ok,
    )
    out = sim.tick(now)
    base = f"j@{T0}~backfill-x"
    assert [g[0] for g in out.granted] == [base, f"{base}~2"]
    assert out.granted[0][2] != out.granted[1][2]
    assert sim.job.backfill is None
    assert sim.run(f"{base}~2").reason == "backfill x: fire 1 of 1"


def test_a_paused_fire_is_one_record_whatever_its_count() -> None:
    sim = Sim.of(nodes(3), count=3)
    assert sim.s.apply(c.SetPaused(at_ms=T0, name="j", paused=True)) == Ok(True)
    t = T0 + S
    chosen, n = place(sim.job.spec, r(t), sim.nodes, {})
    out = sim.apply(
        c.Plan(at_ms=t, fires=tuple(placement_fires(sim.job.spec, t, "schedule", chosen, n)))
    )
    assert out.paused == (r(t),) and out.granted == () and out.rejected == ()
    assert sim.run(r(t)).status == PAUSED and sim.run(r(t)).count == 1


@pytest.mark.parametrize(
    "rid",
    [
        "j@1800000000000",
        "j@1800000000000~2",
        "j@1800000000000~2.3",
        "j@1800000000000.2",
        "j@1800000000000~manual",
        "j@1800000000000~manual~3",
        "j@1800000000000~manual~3.2",
        "j@1800000000000~backfill-x1",
        "j@1800000000000~backfill-x1~2",
        "j@1800000000000~backfill-12~2.4",
    ],
)
def test_every_run_id_shape_still_parses(rid: str) -> None:
    key = RunKey.parse(rid)
    assert key is not None and key.scheduled_at_ms == 1_800_000_000_000
    assert "~" not in fire_of(rid).replace("~manual", "").replace("~backfill-", "")[-2:]
    assert fire_of(rid) in (
        "j@1800000000000",
        "j@1800000000000~manual",
        "j@1800000000000~backfill-x1",
        "j@1800000000000~backfill-12",
    )


# --------------------------------------------------------------------------- encodings


def test_fire_wire_is_unchanged_without_instances() -> None:
    one = c.Plan(at_ms=T0, fires=(c.Fire(job="j", scheduled_at_ms=T0, node="a", trigger="s"),))
    body = msgpack.unpackb(c.encode(one))
    assert body["fires"] == [["j", T0, "a", "s", 1]]
    two = c.Fire(job="j", scheduled_at_ms=T0, node="b", trigger="s", instance=2, instances=3)
    enc = c.encode(c.Plan(at_ms=T0, fires=(two,)))
    assert msgpack.unpackb(enc)["fires"] == [["j", T0, "b", "s", 1, 2, 3]]
    assert c.decode(enc) == c.Plan(at_ms=T0, fires=(two,))
    assert c.decode(c.encode(one)) == one


def test_spec_wire_is_unchanged_without_count_or_max_parallel() -> None:
    plain = c.spec_to_wire(spec())
    assert not {"count", "max_parallel"} & set(plain)
    for s in (spec(count=COUNT_ALL), spec(count=4, max_parallel=2), spec(max_parallel=1)):
        assert c.spec_from_wire(c.spec_to_wire(s)) == s
    assert c.spec_from_wire(plain) == spec()


def test_snapshot_round_trip_with_instances() -> None:
    sim = Sim.of(nodes(3), count=COUNT_ALL, retries=2, retry_backoff_ms=60 * S)
    t = T0 + S
    sim.tick(t)
    sim.end(r(t, 3), t + 1, FAILED)
    sim.nodes = nodes(1)
    sim.s.apply(c.PutJob(at_ms=t, spec=spec(count=3, retries=2, retry_backoff_ms=60 * S)))
    sim.tick(t + S)  # one placed, two unschedulable
    restored = State.restore(sim.s.snapshot())
    assert restored.digest() == sim.s.digest()
    assert restored.runs == sim.s.runs and restored.jobs == sim.s.jobs
    assert restored.live == sim.s.live
    assert [p.instance for p in restored.jobs["j"].retry] == [3]
    # a run without instances encodes exactly as before instances existed (16 fields)
    assert len(_run_row(Run(id="x", job="j", scheduled_at_ms=1, status=BUFFERED))) == 16
    row = _run_row(sim.run(r(t, 2)))
    assert row[-4:] == [None, [], 2, 3]  # last_scheduled_ms, parents, instance, instances


def test_unschedulable_is_a_metric_per_job() -> None:
    sim = Sim.of(nodes(2), count=3, tags=DB)
    sim.tick(T0 + S)  # nothing matches: one record covering 3 instances
    m = NodeMetrics(
        node="a",
        clock=FakeClock(),
        machine=Machine(sim.s),
        raft_status=lambda: RaftStatus(self_addr="127.0.0.1:7101"),
        executor_active=lambda: 0,
        version="t",
        process=False,
    )
    text = m.exposition().decode()
    assert 'raftcron_unschedulable_total{job="j"} 3.0' in text
    assert 'raftcron_fires_total{job="j",outcome="skipped"} 3.0' in text


@pytest.mark.parametrize(
    ("keys", "want"),
    [
        ({}, (1, None)),
        ({"count": 3}, (3, None)),
        ({"count": "all", "max_parallel": 2}, (COUNT_ALL, 2)),
        ({"count": 0}, "jobs[0].count: 0 is out of range (use a whole number of instances"),
        (
            {"count": "two"},
            "jobs[0].count: expected a whole number of instances per fire from "
            '1 to 100, or "all", got "two"',
        ),
        ({"count": 101}, "jobs[0].count: 101 is out of range"),
        ({"max_parallel": 0}, "jobs[0].max_parallel: 0 is too small (use 1 or more)"),
        ({"max_parallel": "1"}, "jobs[0].max_parallel: expected an integer"),
    ],
)
def test_config_keys(keys: dict[str, object], want: object) -> None:
    raw = {"name": "j", "schedule": "* * * * *", "command": ["true"], **keys}
    if isinstance(want, tuple):
        got = job_spec_from_mapping(raw, "jobs[0]")
        assert (got.count, got.max_parallel) == want
        assert spec_table(got).get("count", 1) == keys.get("count", 1)  # PUT-able back
        return
    with pytest.raises(ConfigError) as exc:
        job_spec_from_mapping(raw, "jobs[0]")
    assert len(exc.value.errors) == 1 and exc.value.errors[0].startswith(str(want))


@pytest.mark.parametrize(
    ("job", "error"),
    [
        ("count = 3\n", None),
        ('count = "all"\ntags = { role = "db" }\n', None),
        (
            "count = 4\n",
            "jobs[0].count: 4 instances per fire, but only 3 node(s) in "
            '[cluster.nodes] match tags {} (lower count, use count = "all", or '
            "tag more nodes)",
        ),
        (
            'count = 2\ntags = { role = "db" }\n',
            "jobs[0].count: 2 instances per fire, but "
            "only 1 node(s) in [cluster.nodes] match tags "
            "{role=db}",
        ),
    ],
)
def test_the_file_needs_count_nodes(tmp_path: Path, job: str, error: str | None) -> None:
    """The file lists every node, so a count no node set can ever satisfy is an error."""
    text = (
        '[cluster]\nsecret = "0123456789abcdef0123"\n'
        + "".join(
            f'[cluster.nodes.{n}]\nraft = "127.0.0.1:710{i}"\napi = "127.0.0.1:810{i}"\n'
            + ('tags = { role = "db" }\n' if n == "a" else "")
            for i, n in enumerate("abc")
        )
        + '[[jobs]]\nname = "j"\nschedule = "* * * * *"\ncommand = ["true"]\n'
        + job
    )
    if error is None:
        assert parse_config(text, tmp_path / "c.toml").jobs[0].count in (3, COUNT_ALL)
        return
    with pytest.raises(ConfigError) as exc:
        parse_config(text, tmp_path / "c.toml")
    [only] = exc.value.errors
    assert only.startswith(f"{tmp_path / 'c.toml'}: {error}"), only


# --------------------------------------------------------------------------- property


@settings(max_examples=300, deadline=None)
@example(  # a retry planned blind to its live sibling instance: apply keeps them apart
    count=2, cap=None, overlap="allow", retries=1, steps=[("tick", 2), ("fail", 2), ("blind", 1)]
)
@example(  # a fire planned blind to max_parallel
    count=1, cap=1, overlap="allow", retries=0, steps=[("tick", 1), ("blind", 1)]
)
@given(
    count=st.sampled_from([1, 2, 3, COUNT_ALL]),
    cap=st.sampled_from([None, 1, 2]),
    overlap=st.sampled_from(["allow", "skip", "buffer_one", "buffer_all", "cancel_other"]),
    retries=st.integers(0, 2),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["tick", "tick", "blind", "end", "fail", "expire", "trigger", "cut"]),
            st.integers(1, 3),  # live nodes for a tick or trigger / which live run to end
        ),
        max_size=40,
    ),
)
def test_instances_stay_apart_and_replicas_agree(
    count: int, cap: int | None, overlap: str, retries: int, steps: list[tuple[str, int]]
) -> None:
    """Whatever ticks, ends, losses and triggers happen, with live nodes coming and going
    and snapshots at random points: the instances of a fire are never live on one node,
    no node runs more than max_parallel, a job that forbids overlap never has two fires
    live, fences never repeat, and a replica restored from snapshots agrees."""
    kw = dict(
        count=count,
        max_parallel=cap,
        overlap=overlap,
        retries=retries,
        retry_backoff_ms=0,
        schedule="* * * * * *",
    )
    sim = Sim.of(nodes(3), **kw)
    replica = State.restore(sim.s.snapshot())
    now = T0
    log: list[bytes] = []

    def through(cmd: c.Command) -> None:
        data = c.encode(cmd)
        log.append(data)
        sim.s.apply_bytes(data)

    for action, n in steps:
        now += 1000  # a new fire at every tick
        live = sorted(sim.s.live.get("j", ()))
        if action == "tick":
            sim.nodes = nodes(n)
            through(
                plan(
                    list(sim.s.jobs.values()),
                    now,
                    sim.nodes,
                    sim.s.load_by_node(),
                    frozenset(sim.s.live),
                    sim.s.live_by_job(),
                )
            )
        elif action == "blind":  # a plan from a view without the live runs: apply re-checks
            sim.nodes = nodes(n)
            through(plan(list(sim.s.jobs.values()), now, sim.nodes, {}, frozenset(sim.s.live)))
        elif action == "trigger":
            sim.nodes = nodes(n)
            chosen, k = place(
                sim.job.spec,
                manual_run_id("j", now),
                sim.nodes,
                {},
                {
                    on: sum(1 for _, x in sim.s.live_by_job().get("j", ()) if x == on)
                    for on in "abc"
                },
            )
            fires = placement_fires(sim.job.spec, now, TRIGGER_MANUAL, chosen, k)
            through(c.Plan(at_ms=now, fires=tuple(fires)))
        elif action in ("end", "fail", "expire") and live:
            rid = live[n % len(live)]
            run, lease = sim.s.runs[rid], sim.s.leases[rid]
            if action == "expire":
                through(
                    c.Expire(
                        at_ms=now,
                        run_id=rid,
                        fence=lease.fence,
                        reason="e",
                        renewals=lease.renewals,
                    )
                )
            else:
                status = SUCCEEDED if action == "end" else FAILED
                through(
                    c.Complete(
                        at_ms=now,
                        run_id=rid,
                        fence=lease.fence,
                        node=run.node,
                        status=status,
                        exit_code=0,
                        started_ms=now,
                        finished_ms=now,
                    )
                )
        elif action == "cut":
            replica = State.restore(replica.snapshot())
        for data in log:
            replica.apply_bytes(data)
        log.clear()
        # invariants
        runs = [sim.s.runs[r] for r in sim.s.live.get("j", ())]
        by_fire: dict[str, list[str]] = {}
        per_node: dict[str, int] = {}
        for run in runs:
            by_fire.setdefault(fire_of(run.id), []).append(run.node)
            per_node[run.node] = per_node.get(run.node, 0) + 1
        for on in by_fire.values():
            assert len(on) == len(set(on)), by_fire
        if cap is not None:
            assert max(per_node.values(), default=0) <= cap, per_node
        if overlap != "allow":
            assert len(by_fire) <= 1, by_fire
        fences = [lz.fence for lz in sim.s.leases.values()]
        assert len(fences) == len(set(fences))
        assert replica.digest() == sim.s.digest()


def test_the_scheduler_wakes_for_a_retry_beside_its_own_fire() -> None:
    sim = Sim.of(
        nodes(2), count=2, overlap="skip", retries=1, retry_backoff_ms=5 * S, schedule="0 0 1 1 *"
    )
    out = sim.trigger(T0 + S, node=None)
    m = out.granted[0][0]
    sim.end(f"{m}~2", T0 + 2 * S, FAILED)
    due = T0 + 7 * S
    assert next_due_ms(sim.job, True, {m}) == due, "only its own fire is live"
    assert next_due_ms(sim.job, True, {m, "j@1"}) > due, "another fire is live"
    assert next_due_ms(sim.job, True) > due  # (no detail: as before)
