"""The replicated state machine, driven directly: no clock, no network."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftcron.core import commands as c
from raftcron.core.model import (
    CLAIMED,
    FAILED,
    LOST,
    MISSED,
    OUTPUT_KEEP,
    OVERLAP_POLICIES,
    PAUSED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    run_id,
)
from raftcron.core.state import Ok, PlanOutcome, Rejected, State, manual_run_id
from tests.helpers import spec

T0 = 1_800_000_000_000


def fire(job: str, t: int, node: str = "a", trigger: str = "schedule") -> c.Fire:
    return c.Fire(job=job, scheduled_at_ms=t, node=node, trigger=trigger)


def plan(
    st_: State, *fires: c.Fire, missed: tuple[c.Missed, ...] = (), at: int = T0
) -> PlanOutcome:
    res = st_.apply(c.Plan(at_ms=at, fires=fires, missed=missed))
    assert isinstance(res, Ok)
    assert isinstance(res.value, PlanOutcome)
    return res.value


def fresh(**kw: object) -> State:
    s = State()
    assert s.apply(c.PutJob(at_ms=T0, spec=spec(**kw))) == Ok("created")
    return s


def test_grant_start_complete_and_fences_rise() -> None:
    s = fresh()
    out = plan(s, fire("j", T0 + 1000), fire("j", T0 + 2000, node="b"))
    assert [(g[1], g[2]) for g in out.granted] == [(1, "a"), (2, "b")]
    rid = run_id("j", T0 + 1000)
    assert s.runs[rid].status == CLAIMED
    assert s.apply(c.Start(at_ms=T0 + 1001, run_id=rid, fence=1, node="a", token="t1")) == Ok(1)
    assert s.runs[rid].status == RUNNING
    # a retry of the same start is fine; a start by another attempt never runs it twice
    assert s.apply(c.Start(at_ms=T0 + 1002, run_id=rid, fence=1, node="a", token="t1")) == Ok(1)
    again = s.apply(c.Start(at_ms=T0 + 1003, run_id=rid, fence=1, node="a", token="t2"))
    assert isinstance(again, Rejected) and again.code == "already_started"
    done = c.Complete(
        at_ms=T0 + 1500,
        run_id=rid,
        fence=1,
        node="a",
        status=SUCCEEDED,
        exit_code=0,
        started_ms=T0 + 1001,
        finished_ms=T0 + 1500,
        output="hi",
    )
    assert s.apply(done) == Ok(SUCCEEDED)
    assert s.apply(done) == Ok(SUCCEEDED)  # a retry of the same completion is harmless
    assert s.runs[rid].status == SUCCEEDED and s.runs[rid].output == "hi"
    assert rid not in s.leases
    assert s.counters.stale_rejections == 0


@pytest.mark.parametrize(
    ("cmd", "code"),
    [
        (c.Start(at_ms=T0, run_id="j@1", fence=1, node="a", token="t"), "stale_fence"),
        (c.Renew(at_ms=T0, run_id="j@1", fence=1, node="a"), "stale_fence"),
        (
            c.Complete(
                at_ms=T0,
                run_id="j@1",
                fence=1,
                node="a",
                status=SUCCEEDED,
                exit_code=0,
                started_ms=None,
                finished_ms=T0,
            ),
            "stale_fence",
        ),
        (c.DeleteJob(at_ms=T0, name="nope"), "unknown_job"),
        (c.SetPaused(at_ms=T0, name="nope", paused=True), "unknown_job"),
    ],
)
def test_rejections_are_values(cmd: c.Command, code: str) -> None:
    s = fresh()
    res = s.apply(cmd)
    assert isinstance(res, Rejected) and res.code == code


def test_stale_completion_after_expiry_is_rejected_and_counted() -> None:
    s = fresh()
    plan(s, fire("j", T0 + 1000))
    rid = run_id("j", T0 + 1000)
    s.apply(c.Start(at_ms=T0, run_id=rid, fence=1, node="a", token="t"))
    assert s.apply(
        c.Expire(at_ms=T0 + 5000, run_id=rid, fence=1, reason="lease expired", renewals=1)
    ) == Ok(LOST)
    late = c.Complete(
        at_ms=T0 + 9000,
        run_id=rid,
        fence=1,
        node="a",
        status=SUCCEEDED,
        exit_code=0,
        started_ms=T0,
        finished_ms=T0 + 9000,
    )
    res = s.apply(late)
    assert isinstance(res, Rejected) and res.code == "stale_fence"
    assert s.runs[rid].status == LOST
    assert s.counters.stale_rejections == 1
    # the expiry itself is idempotent and not counted as a stale writer
    assert isinstance(s.apply(c.Expire(at_ms=T0, run_id=rid, fence=1, reason="x")), Rejected)
    assert s.counters.stale_rejections == 1


def test_fire_claimed_once_and_never_at_or_below_watermark() -> None:
    s = fresh()
    plan(s, fire("j", T0 + 1000))
    again = plan(s, fire("j", T0 + 1000))
    assert again.rejected == (("j", T0 + 1000, "duplicate"),)
    older = plan(s, fire("j", T0 + 500))
    assert older.rejected == (("j", T0 + 500, "already_considered"),)
    assert s.jobs["j"].watermark_ms == T0 + 1000
    assert s.counters.fence == 1


def test_overlap_skip_records_the_skipped_fire() -> None:
    s = fresh(overlap="skip")
    out = plan(s, fire("j", T0 + 1000), fire("j", T0 + 2000))
    assert len(out.granted) == 1
    assert out.skipped[0][0] == run_id("j", T0 + 2000)
    assert "still running" in out.skipped[0][1]
    assert s.runs[run_id("j", T0 + 2000)].status == SKIPPED


def test_paused_and_unschedulable_fires_are_recorded_not_dropped() -> None:
    s = fresh(tags=(("role", "db"),))
    s.apply(c.SetPaused(at_ms=T0, name="j", paused=True))
    out = plan(s, fire("j", T0 + 1000))
    assert out.paused == (run_id("j", T0 + 1000),) and not out.skipped
    assert s.runs[run_id("j", T0 + 1000)].reason == "job is paused"
    s.apply(c.SetPaused(at_ms=T0, name="j", paused=False))
    out = plan(s, fire("j", T0 + 2000, node=""))
    assert out.skipped[0][1].startswith("unschedulable")
    assert sorted(r.status for r in s.runs.values()) == [PAUSED, SKIPPED]


def test_missed_record_moves_watermark_before_claims() -> None:
    s = fresh()
    m = c.Missed(job="j", first_ms=T0 + 1000, last_ms=T0 + 5000, count=5, reason="too old")
    out = plan(s, fire("j", T0 + 6000), missed=(m,))
    assert out.missed == (run_id("j", T0 + 1000),)
    assert len(out.granted) == 1
    assert s.runs[run_id("j", T0 + 1000)].status == MISSED
    assert s.runs[run_id("j", T0 + 1000)].count == 5


def test_history_is_bounded_and_output_trimmed() -> None:
    s = fresh()
    s.apply(c.SyncConfig(at_ms=T0, specs=(spec(),), history=10))
    for i in range(1, 31):
        t = T0 + i * 1000
        out = plan(s, fire("j", t))
        rid, fence, _ = out.granted[0]
        s.apply(
            c.Complete(
                at_ms=t,
                run_id=rid,
                fence=fence,
                node="a",
                status=FAILED,
                exit_code=1,
                started_ms=t,
                finished_ms=t + 1,
                output=f"out{i}",
            )
        )
    assert len(s.runs) == 10
    kept = [s.runs[r] for r in s.history["j"]]
    assert [r.output != "" for r in kept].count(True) == OUTPUT_KEEP
    assert kept[-1].output == "out30"


def test_sync_config_deletes_removed_config_jobs_but_not_api_jobs() -> None:
    s = State()
    s.apply(c.PutJob(at_ms=T0, spec=spec("api-job"), source="api"))
    s.apply(c.SyncConfig(at_ms=T0, specs=(spec("a"), spec("b")), history=50))
    assert sorted(s.jobs) == ["a", "api-job", "b"]
    res = s.apply(c.SyncConfig(at_ms=T0, specs=(spec("a"),), history=50))
    assert res == Ok(("b",))
    assert sorted(s.jobs) == ["a", "api-job"]


def test_partial_syncs_in_batches_end_where_one_full_sync_ends() -> None:
    api = spec("api-job")
    before = [spec("keep"), spec("change"), spec("drop-1"), spec("drop-2")]
    after = [spec("keep"), spec("change", command=("false",)), spec("new-1"), spec("new-2")]

    def start() -> State:
        s = State()
        s.apply(c.PutJob(at_ms=T0, spec=api, source="api"))
        s.apply(c.SyncConfig(at_ms=T0, specs=tuple(before), history=50))
        return s

    full = start()
    full.apply(c.SyncConfig(at_ms=T0 + 1, specs=tuple(after), history=50))
    batched = start()
    puts, gone = batched.config_changes([*after, api])  # the file now also owns api-job
    assert [p.name for p in puts] == ["change", "new-1", "new-2", "api-job"]
    assert gone == ["drop-1", "drop-2"]
    changed: list[str] = []
    for i in range(0, 4, 2):  # two entries of two specs and one deletion each
        res = batched.apply(
            c.SyncConfig(
                at_ms=T0 + 1,
                specs=tuple(puts[i : i + 2]),
                history=50,
                partial=True,
                delete=tuple(gone[i // 2 : i // 2 + 1]),
            )
        )
        assert isinstance(res, Ok)
        changed.extend(res.value)
    assert sorted(changed) == ["api-job", "change", "drop-1", "drop-2", "new-1", "new-2"]
    assert batched.jobs["api-job"].source == "config"
    full.apply(c.SyncConfig(at_ms=T0 + 1, specs=(*after, api), history=50))
    assert full.digest() == batched.digest()
    # nothing left to change; a partial delete never touches a job the API owns
    assert batched.config_changes([*after, api]) == ([], [])
    batched.apply(c.PutJob(at_ms=T0 + 2, spec=spec("api-2"), source="api"))
    res = batched.apply(
        c.SyncConfig(at_ms=T0 + 2, specs=(), history=50, partial=True, delete=("api-2",))
    )
    assert res == Ok(()) and "api-2" in batched.jobs


def test_cluster_time_never_goes_backwards() -> None:
    s = fresh()
    s.apply(c.Barrier(at_ms=T0 + 10_000, node="a", nonce="1"))
    s.apply(c.Barrier(at_ms=T0, node="b", nonce="2"))
    assert s.now_ms == T0 + 10_000


def test_garbage_bytes_are_rejected_not_raised() -> None:
    s = State()
    for data in (b"", b"\x00\x01", c.encode(c.Barrier(at_ms=1, node="a", nonce="x"))[:-1]):
        cmd, res = s.apply_bytes(data)
        assert cmd is None and isinstance(res, Rejected) and res.code == "bad_command"


# --------------------------------------------------------------------------- replicas


def _commands() -> st.SearchStrategy[c.Command]:
    jobs = st.sampled_from(["a", "b", "c"])
    nodes = st.sampled_from(["n1", "n2", "n3", ""])
    # a few whole seconds often, so fires, completions, retries and kills meet the same runs
    t = st.one_of(
        st.integers(min_value=T0, max_value=T0 + 60_000),
        st.sampled_from([T0 + k * 1000 for k in range(4)]),
    )
    fence = st.integers(min_value=0, max_value=12)
    attempt = st.sampled_from([1, 1, 2, 3])
    rid = st.one_of(
        st.builds(lambda j, s, a: run_id(j, s, a), jobs, t, attempt),
        st.builds(
            lambda j, s, a: manual_run_id(j, s) + (f".{a}" if a > 1 else ""), jobs, t, attempt
        ),
    )
    status = st.sampled_from([SUCCEEDED, FAILED, LOST, "timed_out", "killed"])
    lock = st.sampled_from(["x", "y"])
    request = st.sampled_from(["r1", "r2", "r3", "r4", "r5"])
    starts = st.builds(
        lambda r, f, n, tok, at: c.Start(at_ms=at, run_id=r, fence=f, node=n, token=tok),
        rid,
        fence,
        nodes,
        st.sampled_from(["t1", "t2"]),
        t,
    )
    renews = st.builds(
        lambda r, f, n, at: c.Renew(at_ms=at, run_id=r, fence=f, node=n), rid, fence, nodes, t
    )
    completes = st.builds(
        lambda r, f, n, s_, at: c.Complete(
            at_ms=at,
            run_id=r,
            fence=f,
            node=n,
            status=s_,
            exit_code=0,
            started_ms=at,
            finished_ms=at,
            output="x",
        ),
        rid,
        fence,
        nodes,
        status,
        t,
    )
    return st.one_of(
        st.builds(
            lambda j, b, frm, n, at: c.StartBackfill(
                at_ms=at, job=j, id=b, from_ms=frm, to_ms=frm + n * 1000, rate=50.0
            ),
            jobs,
            st.sampled_from(["b1", "b2"]),
            st.integers(min_value=T0 - 10_000, max_value=T0),
            st.integers(min_value=0, max_value=5),
            t,
        ),
        st.builds(lambda j, at: c.CancelBackfill(at_ms=at, job=j), jobs, t),
        st.builds(
            lambda n, on, k, at: c.Drain(at_ms=at, node=n, drain=on, kind=k),
            st.sampled_from(["n1", "n2"]),
            st.booleans(),
            st.sampled_from(["operator", "shutdown"]),
            t,
        ),
        st.builds(
            lambda j, s, n, at: c.Plan(
                at_ms=at,
                fires=(c.Fire(job=j, scheduled_at_ms=s, node=n, trigger="backfill"),),
            ),
            jobs,
            st.integers(min_value=T0 - 10_000, max_value=T0),
            nodes,
            t,
        ),
        st.builds(
            lambda n, r, h, ttl, w, at: c.AcquireLock(
                at_ms=at, name=n, request=r, holder=h, ttl_ms=ttl, wait_ms=w
            ),
            lock,
            request,
            st.sampled_from(["h1", "h2"]),
            st.sampled_from([0, 1000, 30_000]),  # 0 is invalid: rejected, deterministically
            st.sampled_from([0, 0, 2000]),
            t,
        ),
        st.builds(lambda n, f, at: c.RenewLock(at_ms=at, name=n, fence=f), lock, fence, t),
        st.builds(lambda n, f, at: c.ReleaseLock(at_ms=at, name=n, fence=f), lock, fence, t),
        st.builds(
            lambda n, f, r, at: c.ExpireLock(at_ms=at, name=n, fence=f, renewals=r, reason="e"),
            lock,
            fence,
            st.integers(0, 2),
            t,
        ),
        st.builds(
            lambda n, r, at: c.CancelLockWait(at_ms=at, name=n, request=r, reason="w"),
            lock,
            request,
            t,
        ),
        st.builds(
            lambda j, ov, n, b, o, sc, at: c.PutJob(
                at_ms=at,
                spec=spec(
                    j, overlap=ov, retries=n, retry_backoff_ms=b, retry_other_node=o, schedule=sc
                ),
            ),
            jobs,
            st.sampled_from(list(OVERLAP_POLICIES)),
            st.integers(0, 2),
            st.sampled_from([0, 1000, 10_000]),
            st.booleans(),
            st.sampled_from(["* * * * * *", "* * * * * *", "@every 1s", "@every 3s"]),
            t,
        ),
        st.builds(
            lambda r, h, at: c.Kill(at_ms=at, run_id=r, reason="k", hard=h), rid, st.booleans(), t
        ),
        st.builds(lambda j, at: c.DeleteJob(at_ms=at, name=j), jobs, t),
        st.builds(lambda j, p, at: c.SetPaused(at_ms=at, name=j, paused=p), jobs, st.booleans(), t),
        st.builds(
            lambda fs, ms, at: c.Plan(at_ms=at, fires=tuple(fs), missed=tuple(ms)),
            st.lists(
                st.builds(
                    lambda j, t_, n, tr, a: c.Fire(
                        job=j, scheduled_at_ms=t_, node=n, trigger=tr, attempt=a
                    ),
                    jobs,
                    t,
                    nodes,
                    st.sampled_from(["schedule", "buffered", "manual", "retry"]),
                    attempt,
                ),
                max_size=4,
            ),
            st.lists(
                st.builds(
                    lambda j, t0, n, s_: c.Missed(
                        job=j, first_ms=t0, last_ms=t0 + n * 1000, count=n, reason="m", status=s_
                    ),
                    jobs,
                    t,
                    st.integers(1, 3),
                    st.sampled_from([MISSED, PAUSED]),
                ),
                max_size=2,
            ),
            t,
        ),
        starts,
        renews,
        completes,
        st.builds(
            lambda items: c.Lifecycle(at_ms=max(x.at_ms for x in items), items=tuple(items)),
            st.lists(st.one_of(starts, renews, completes), min_size=1, max_size=4),
        ),
        st.builds(
            lambda r, f, at: c.Expire(at_ms=at, run_id=r, fence=f, reason="e"), rid, fence, t
        ),
        st.builds(
            lambda h, at: c.SyncConfig(at_ms=at, specs=(spec("a"),), history=h),
            st.integers(1, 5),
            t,
        ),
        st.builds(
            lambda h, at, put, drop: c.SyncConfig(
                at_ms=at,
                specs=tuple(spec(n) for n in put),
                history=h,
                partial=True,
                delete=tuple(drop),
            ),
            st.integers(1, 5),
            t,
            st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True),
            st.lists(st.sampled_from(["a", "b"]), max_size=2, unique=True),
        ),
    )


@settings(max_examples=150, deadline=None)
@given(cmds=st.lists(_commands(), max_size=60), cuts=st.lists(st.integers(0, 60), max_size=4))
def test_replicas_with_snapshots_at_random_points_agree(
    cmds: list[c.Command], cuts: list[int]
) -> None:
    data = [c.encode(cmd) for cmd in cmds]
    reference = State()
    for d in data:
        reference.apply_bytes(d)
    # replica 2: restored from a snapshot at every cut point
    replica = State()
    for i, d in enumerate(data):
        if i in cuts:
            replica = State.restore(replica.snapshot())
        replica.apply_bytes(d)
    assert replica.digest() == reference.digest()
    # replica 3: decodes the same bytes after a round trip through the envelope
    third = State()
    for d in data:
        cmd = c.decode(d)
        assert cmd is not None and c.encode(cmd) == d
        third.apply(cmd)
    assert third.digest() == reference.digest()
    # the snapshot, packed row by row, is exactly msgpack's canonical packing of its map
    # (so its bytes, and every digest, are those of packing the whole map at once), with
    # every row in key order
    snap = reference.snapshot()
    body = msgpack.unpackb(snap, raw=False, strict_map_key=False)
    assert msgpack.packb(body, use_bin_type=True) == snap
    for key, name in (("jobs", lambda r: r[0]["name"]), ("runs", lambda r: r[0])):
        names = [name(row) for row in body[key]]
        assert names == sorted(names)
    # invariants
    fences = [lz.fence for lz in reference.leases.values()]
    fences += [lk.fence for lk in reference.locks.values()]
    assert len(fences) == len(set(fences))
    assert all(f <= reference.counters.fence for f in fences)
    for name, lk in reference.locks.items():
        queued = [w.request for w in lk.waiters]
        assert lk.name == name and lk.request not in queued and len(set(queued)) == len(queued)
        assert not any((name, r) in reference.lock_done for r in [lk.request, *queued])
    for job, ids in reference.live.items():
        assert all(reference.runs[r].job == job for r in ids)
        assert all(reference.runs[r].status in (CLAIMED, RUNNING) for r in ids)
    # every pending retry is on its job's list exactly once, and the list holds nothing else
    pending = [r.id for r in reference.runs.values() if r.status == PENDING]
    listed = [p.run for j in reference.jobs.values() for p in j.retry]
    assert sorted(pending) == sorted(listed)
    assert all(reference.runs[p].status == PENDING for p in listed)
    for rid_, lease in reference.leases.items():
        assert not reference.runs[rid_].final and lease.fence == reference.runs[rid_].fence


def test_expiry_decided_before_a_renewal_commits_is_refused() -> None:
    """Regression: a renewal committed between the leader's expiry decision and its Expire
    must win, or the executor keeps running a run the ledger calls lost."""
    s = fresh()
    plan(s, fire("j", T0 + 1000))
    rid = run_id("j", T0 + 1000)
    s.apply(c.Start(at_ms=T0, run_id=rid, fence=1, node="a", token="t"))
    seen = s.leases[rid].renewals  # what the leader saw when it decided
    assert s.apply(c.Renew(at_ms=T0 + 1, run_id=rid, fence=1, node="a")) == Ok(1)
    res = s.apply(c.Expire(at_ms=T0 + 2, run_id=rid, fence=1, reason="x", renewals=seen))
    assert isinstance(res, Rejected) and res.code == "renewed"
    assert s.runs[rid].status == RUNNING
    now = s.leases[rid].renewals
    assert s.apply(c.Expire(at_ms=T0 + 3, run_id=rid, fence=1, reason="x", renewals=now)) == Ok(
        LOST
    )


def test_deleting_a_job_keeps_its_run_history() -> None:
    s = fresh()
    plan(s, fire("j", T0 + 1000))
    rid = run_id("j", T0 + 1000)
    assert s.apply(c.Start(at_ms=T0 + 1001, run_id=rid, fence=1, node="a", token="t")) == Ok(1)
    done = c.Complete(
        at_ms=T0 + 1002, run_id=rid, fence=1, node="a", status=SUCCEEDED, exit_code=0,
        started_ms=T0 + 1001, finished_ms=T0 + 1002, output="", reason="",
    )  # fmt: skip
    assert s.apply(done) == Ok(SUCCEEDED)
    assert s.apply(c.DeleteJob(at_ms=T0 + 2000, name="j")) == Ok("deleted")
    assert "j" not in s.jobs
    assert s.runs[rid].status == SUCCEEDED
    # a run that was live when the job was deleted is kept when it completes
    live = run_id("j", T0 + 2000)
    s2 = fresh()
    plan(s2, fire("j", T0 + 2000))
    assert s2.apply(c.Start(at_ms=T0 + 2001, run_id=live, fence=1, node="a", token="t")) == Ok(1)
    assert s2.apply(c.DeleteJob(at_ms=T0 + 2002, name="j")) == Ok("deleted")
    done2 = c.Complete(
        at_ms=T0 + 2003, run_id=live, fence=1, node="a", status=SUCCEEDED, exit_code=0,
        started_ms=T0 + 2001, finished_ms=T0 + 2003,
    )  # fmt: skip
    assert s2.apply(done2) == Ok(SUCCEEDED)
    assert s2.runs[live].status == SUCCEEDED


def test_deleting_a_job_ends_its_granted_runs_that_have_not_started() -> None:
    """A run granted but still waiting to start (its node was busy) must not start after
    the delete was acknowledged (the chaos suite's P7 caught one 3.5 s later)."""
    s = fresh()
    plan(s, fire("j", T0 + 1000), fire("j", T0 + 2000))
    first, second = run_id("j", T0 + 1000), run_id("j", T0 + 2000)
    assert s.apply(c.Start(at_ms=T0 + 2001, run_id=first, fence=1, node="a", token="t")) == Ok(1)
    assert s.apply(c.DeleteJob(at_ms=T0 + 2002, name="j")) == Ok("deleted")
    waiting = s.runs[second]
    assert (waiting.status, waiting.reason) == (SKIPPED, "job deleted before this run started")
    assert second not in s.leases
    start = c.Start(at_ms=T0 + 2003, run_id=second, fence=2, node="a", token="t")
    assert isinstance(s.apply(start), Rejected)
    renew = c.Renew(at_ms=T0 + 2003, run_id=second, fence=2, node="a")
    assert isinstance(s.apply(renew), Rejected)
    assert s.runs[first].status == RUNNING  # the started one goes on under its lease


def test_restore_refuses_a_snapshot_of_another_version() -> None:
    snap = msgpack.unpackb(fresh().snapshot(), raw=False)
    snap["v"] = 999
    with pytest.raises(ValueError, match="unsupported snapshot version 999"):
        State.restore(msgpack.packb(snap, use_bin_type=True))
    del snap["v"]
    with pytest.raises(ValueError, match="unsupported snapshot version None"):
        State.restore(msgpack.packb(snap, use_bin_type=True))


def test_decoded_specs_share_their_strings() -> None:
    a, b = (c.decode(c.encode(c.PutJob(at_ms=T0, spec=spec(n), source="api"))) for n in "ab")
    assert isinstance(a, c.PutJob) and isinstance(b, c.PutJob)
    assert a.spec.command[0] is b.spec.command[0]
    assert a.spec.timezone is b.spec.timezone
