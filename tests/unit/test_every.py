"""``@every <duration>`` in the pure core: anchored to the job's creation, planned and fenced
like any fire, the same on every replica, after a snapshot and under a new leader.

The planner and ``apply`` are driven together the way the leader drives them, with a fake
"now": no clock, no network. A "leader change" is a second State restored from the first
one's snapshot (what a follower that becomes leader holds) planning from there on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raftcron.api.app import job_json
from raftcron.config import job_spec_from_mapping
from raftcron.core import commands as c
from raftcron.core.model import (
    CLAIMED,
    MISSED,
    SKIPPED,
    SUCCEEDED,
    TRIGGER_CATCHUP,
    TRIGGER_SCHEDULE,
    Job,
    JobSpec,
    run_id,
)
from raftcron.core.planner import NodeInfo, next_due_ms, plan, schedule_of
from raftcron.core.state import Ok, PlanOutcome, Rejected, State
from raftcron.timefmt import rfc3339
from tests.helpers import spec as job_spec

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z
CREATED = T0 + 7_250  # the job is created at 08:00:07.250: its fires fall on :07
ANCHOR = T0 + 7_000
S = 1000
NODES = [NodeInfo(name="a"), NodeInfo(name="b")]


def spec(schedule: str = "@every 90s", **kw: Any) -> JobSpec:
    kw.setdefault("name", "j")
    return job_spec(schedule=schedule, **kw)


@dataclass
class Leader:
    """A replica that plans like the leader: every plan goes through the wire."""

    s: State = field(default_factory=State)

    @property
    def job(self) -> Job:
        return self.s.jobs["j"]

    def put(self, at: int, **kw: object) -> object:
        res = self.s.apply(c.PutJob(at_ms=at, spec=spec(**kw)))  # type: ignore[arg-type]
        assert isinstance(res, Ok), res
        return res.value

    def tick(self, now: int) -> PlanOutcome:
        busy = frozenset(self.s.live)
        p = plan(list(self.s.jobs.values()), now, NODES, self.s.load_by_node(), busy)
        _, res = self.s.apply_bytes(c.encode(p))
        assert isinstance(res, Ok) and isinstance(res.value, PlanOutcome), res
        return res.value

    def finish_all(self, at: int) -> None:
        """Every granted run starts and succeeds (fenced, like an executor)."""
        for rid, lease in sorted(self.s.leases.items()):
            run = self.s.runs[rid]
            if run.status != CLAIMED:
                continue
            node, fence = lease.holder, lease.fence
            for cmd in (
                c.Start(at_ms=at, run_id=rid, fence=fence, node=node, token=f"{rid}/t"),
                c.Complete(
                    at_ms=at,
                    run_id=rid,
                    fence=fence,
                    node=node,
                    status=SUCCEEDED,
                    exit_code=0,
                    started_ms=at,
                    finished_ms=at,
                ),
            ):
                assert isinstance(self.s.apply(cmd), Ok)

    def run_until(self, until: int, step: int = S) -> list[int]:
        """Tick every ``step`` ms up to ``until``, finishing runs; the granted fires."""
        granted: list[int] = []
        now = self.job.watermark_ms
        while now <= until:
            for rid, _, _ in self.tick(now).granted:
                granted.append(self.s.runs[rid].scheduled_at_ms)
            self.finish_all(now)
            now += step
        return granted

    def restored(self) -> Leader:
        """The next leader: a replica restored from this one's snapshot."""
        return Leader(State.restore(self.s.snapshot()))


def test_fires_count_from_the_creation_truncated_to_the_second() -> None:
    ld = Leader()
    assert ld.put(CREATED) == "created"
    assert ld.job.created_ms == CREATED
    granted = ld.run_until(CREATED + 300 * S)
    assert granted == [ANCHOR + 90 * S, ANCHOR + 180 * S, ANCHOR + 270 * S]
    runs = [ld.s.runs[run_id("j", t)] for t in granted]
    assert all(r.trigger == TRIGGER_SCHEDULE and r.status == SUCCEEDED for r in runs)
    fences = [r.fence for r in runs]
    assert fences == sorted(set(fences)) and fences[0] > 0  # fenced like any fire
    assert next_due_ms(ld.job, busy=False) == ANCHOR + 360 * S


def test_two_jobs_created_at_different_times_keep_their_own_phase() -> None:
    s = State()
    for name, at in (("x", T0 + 1_000), ("y", T0 + 31_500)):
        s.apply(c.PutJob(at_ms=at, spec=spec("@every 1m", name=name)))
    assert [schedule_of(j.spec, j.created_ms).next_after(T0 + 60 * S) for j in s.jobs.values()] == [
        T0 + 61_000,
        T0 + 91_000,
    ]


def test_a_new_leader_continues_the_same_fires_with_no_duplicate_and_no_gap() -> None:
    first = Leader()
    first.put(CREATED, schedule="@every 7s")
    before = first.run_until(CREATED + 40 * S)
    # the leader dies; the next one restores the replicated state and plans from there
    second = first.restored()
    assert second.job == first.job
    after = second.run_until(CREATED + 80 * S)
    fires = before + after
    assert fires == [ANCHOR + 7 * S * k for k in range(1, 12)]
    assert len(set(fires)) == len(fires)
    # the same commands give the same state on every replica
    assert second.s.digest() != first.s.digest()  # (it went on)
    third = first.restored()
    third.run_until(CREATED + 80 * S)
    assert third.s.digest() == second.s.digest()


def test_a_late_leader_catches_up_within_the_window_and_misses_the_rest() -> None:
    ld = Leader()
    ld.put(CREATED, schedule="@every 10s", catchup_ms=25_000)
    assert ld.run_until(CREATED + 15 * S) == [ANCHOR + 10 * S]
    # no leader for two minutes; the next one plans once at CREATED + 135 s
    nxt = ld.restored()
    out = nxt.tick(CREATED + 135 * S)
    claimed = sorted(nxt.s.runs[rid].scheduled_at_ms for rid, _, _ in out.granted)
    # the fires at +120 s and +130 s are within 25 s: claimed (catch-up), oldest first
    assert claimed == [ANCHOR + 120 * S, ANCHOR + 130 * S]
    assert {nxt.s.runs[run_id("j", t)].trigger for t in claimed} == {TRIGGER_CATCHUP}
    # +20 s .. +110 s: 10 fires older than the window, one missed record
    missed = [r for r in nxt.s.runs.values() if r.status == MISSED]
    assert [(m.scheduled_at_ms, m.count) for m in missed] == [(ANCHOR + 20 * S, 10)]
    # and the grid has not moved: the next fire is still on the creation's phase
    nxt.finish_all(CREATED + 135 * S)
    assert next_due_ms(nxt.job, busy=False) == ANCHOR + 140 * S


def test_catchup_latest_and_overlap_skip_apply_as_to_cron_fires() -> None:
    ld = Leader()
    ld.put(CREATED, schedule="@every 1s", catchup_mode="latest", overlap="skip")
    out = ld.tick(CREATED + 5 * S)  # five fires due: only the newest runs
    assert [rid for rid, _, _ in out.granted] == [run_id("j", ANCHOR + 5 * S)]
    out = ld.tick(CREATED + 6 * S)  # its run is still live: the next fire is skipped
    assert out.skipped and ld.s.runs[run_id("j", ANCHOR + 6 * S)].status == SKIPPED


def test_a_put_that_changes_the_schedule_keeps_the_anchor() -> None:
    ld = Leader()
    ld.put(CREATED, schedule="@every 1h")
    assert ld.run_until(CREATED + 2 * 3600 * S + 5 * S, step=60 * S) == [
        ANCHOR + 3600 * S,
        ANCHOR + 7200 * S,
    ]
    # at 10:10:07 (two hours and ten minutes in) it becomes every 30 minutes: the new
    # period counts from the creation too, and nothing before the change is back-filled
    change = ANCHOR + 7800 * S
    assert ld.put(change, schedule="@every 30m") == "updated"
    assert ld.job.created_ms == CREATED and ld.job.watermark_ms == change
    assert next_due_ms(ld.job, busy=False) == ANCHOR + 9000 * S  # 10:30:07
    # a change of anything else changes no fire time
    ld.put(change + S, schedule="@every 30m", command=("echo", "hi"))
    assert ld.job.created_ms == CREATED
    assert next_due_ms(ld.job, busy=False) == ANCHOR + 9000 * S
    # from cron to @every: the creation is the anchor as well
    ld.put(change + 2 * S, schedule="0 3 * * *")
    ld.put(change + 3 * S, schedule="@every 1d")
    assert next_due_ms(ld.job, busy=False) == ANCHOR + 86_400 * S


def test_deleting_and_recreating_a_job_moves_the_anchor() -> None:
    ld = Leader()
    ld.put(CREATED)
    assert isinstance(ld.s.apply(c.DeleteJob(at_ms=CREATED + 50 * S, name="j")), Ok)
    ld.put(CREATED + 60 * S + 400)  # re-created at +60.4 s
    assert next_due_ms(ld.job, busy=False) == ANCHOR + 60 * S + 90 * S


def test_every_leader_syncing_its_config_file_keeps_the_anchor() -> None:
    """A config-file job is re-synced by each new leader: unchanged, it keeps its creation;
    changed, it keeps it too (like a PUT)."""
    table = {"name": "j", "schedule": "@every 90s", "command": ["true"]}
    cfg = job_spec_from_mapping(table, "jobs[0]")
    s = State()
    assert isinstance(s.apply(c.SyncConfig(at_ms=CREATED, specs=(cfg,), history=100)), Ok)
    for at in (CREATED + 1_000_000, CREATED + 2_000_000):
        s = State.restore(s.snapshot())  # another leader, later
        assert s.apply(c.SyncConfig(at_ms=at, specs=(cfg,), history=100)) == Ok(())
        assert s.jobs["j"].created_ms == CREATED
    changed = job_spec_from_mapping({**table, "schedule": "@every 2m"}, "jobs[0]")
    sync = c.SyncConfig(at_ms=CREATED + 3_000_000, specs=(changed,), history=100)
    assert s.apply(sync) == Ok(("j",))
    job = s.jobs["j"]
    assert job.created_ms == CREATED
    assert next_due_ms(job, busy=False) == ANCHOR + 26 * 120 * S  # the first after the change


def test_backfill_runs_past_fires_since_the_creation_only() -> None:
    ld = Leader()
    ld.put(CREATED, schedule="@every 10s")
    ld.run_until(CREATED + 60 * S)
    now = CREATED + 61 * S
    res = ld.s.apply(
        c.StartBackfill(
            at_ms=now, job="j", id="b1", from_ms=T0 - 3600 * S, to_ms=ANCHOR + 30 * S, rate=100.0
        )
    )
    assert isinstance(res, Ok) and res.value.total == 3  # +10 s, +20 s, +30 s
    res = ld.s.apply(
        c.StartBackfill(at_ms=now, job="j", id="b2", from_ms=T0 - 3600 * S, to_ms=T0, rate=1.0)
    )
    assert res == Rejected("backfill_running", "j already has backfill b1 running")
    other = Leader()
    other.put(CREATED, schedule="@every 10s")
    res = other.s.apply(
        c.StartBackfill(at_ms=now, job="j", id="b", from_ms=T0 - 3600 * S, to_ms=T0, rate=1.0)
    )
    assert res == Rejected("bad_backfill", "j has no fire in that range")


def test_the_api_shows_the_fires_of_the_anchor() -> None:
    ld = Leader()
    ld.put(CREATED)
    body = job_json(ld.job, CREATED + 100 * S, None, [])
    assert body["schedule"] == "@every 90s"
    assert body["next_fire"] == rfc3339(ANCHOR + 180 * S)
    assert body["created_at"] == rfc3339(CREATED)
