"""Orphaned leases expire on time, however often the leader changes (issue 12, finding 2).

Three replicas, each with its own :class:`LeaseTracker` on one fake monotonic clock, are
fed the same apply stream; leadership moves to the next replica faster than the takeover
patience. The lease of a holder that died after its last renewal must be expired by the
leader at most ``D + patience`` after it applied that renewal, never earlier than ``D``
after it, and no takeover may push that back. Before the fix every takeover re-anchored
every inherited lease at the takeover, so the lease never expired while leaders changed.
"""

from __future__ import annotations

import pytest

from raftcron.clock import FakeClock
from raftcron.core import commands as c
from raftcron.core.lease import takeover_patience
from raftcron.core.model import LOCK_WAIT_GRACE_MS, JobSpec, run_id
from raftcron.core.state import Ok, PlanOutcome, State
from raftcron.scheduler.leader import LeaseTracker

T0 = 1_800_000_000_000
D_MS = 5_000
ELECTION = 0.9
PATIENCE = takeover_patience(D_MS, ELECTION)


class Replica:
    """A replica's state and tracker; ``apply`` is what the node's apply stream does."""

    def __init__(self, clock: FakeClock) -> None:
        self.state = State()
        self.leases = LeaseTracker(clock)

    def apply(self, cmd: c.Command) -> None:
        res = self.state.apply(cmd)
        assert isinstance(res, Ok), res
        match cmd:
            case c.Plan() if isinstance(res.value, PlanOutcome):
                for rid, fence, _ in res.value.granted:
                    lz = self.state.leases[rid]
                    self.leases.touch(rid, fence, lz.lease_ms, lz.renewals)
            case c.Start() | c.Renew():
                lz = self.state.leases[cmd.run_id]
                self.leases.touch(cmd.run_id, cmd.fence, lz.lease_ms, lz.renewals)
            case c.AcquireLock():
                lk = self.state.locks[cmd.name]
                if lk.request == cmd.request:
                    self.leases.touch_lock(cmd.name, lk.fence, lk.ttl_ms, lk.renewals)
                else:
                    self.leases.touch_waiter(cmd.name, cmd.request, cmd.wait_ms)
            case c.RenewLock():
                lk = self.state.locks[cmd.name]
                self.leases.touch_lock(cmd.name, lk.fence, lk.ttl_ms, lk.renewals)


def cluster(clock: FakeClock) -> tuple[list[Replica], str]:
    """Three replicas with one granted, started and renewed run (fence 1) and a held lock
    (fence 2) with a waiter, all applied at the clock's current time."""
    reps = [Replica(clock) for _ in range(3)]
    spec = JobSpec(name="j", schedule="* * * * * *", command=("sleep", "60"), lease_ms=D_MS)
    t = T0 + 1000
    rid = run_id("j", t)
    for cmd in (
        c.PutJob(at_ms=T0, spec=spec),
        c.Plan(at_ms=t, fires=(c.Fire(job="j", scheduled_at_ms=t, node="c", trigger="schedule"),)),
        c.Start(at_ms=t, run_id=rid, fence=1, node="c", token="x"),
        c.Renew(at_ms=t, run_id=rid, fence=1, node="c"),
        c.AcquireLock(at_ms=t, name="L", request="r1", holder="h", ttl_ms=D_MS, wait_ms=0),
        c.AcquireLock(at_ms=t, name="L", request="r2", holder="w", ttl_ms=D_MS, wait_ms=1000),
    ):
        for r in reps:
            r.apply(cmd)
    return reps, rid


@pytest.mark.parametrize("term_s", [0.3, 0.5, 0.95])  # every one shorter than the patience
def test_an_orphaned_lease_expires_on_time_while_the_leader_keeps_changing(term_s: float) -> None:
    clock = FakeClock()
    reps, rid = cluster(clock)
    last_renewal = clock.monotonic()  # every replica applied it now; the holder then died
    waiter_due = last_renewal + 1.0 + LOCK_WAIT_GRACE_MS / 1000
    expired_at = lock_expired_at = waiter_at = None
    term = 0
    give_up = last_renewal + 60
    while clock.monotonic() < give_up and None in (expired_at, lock_expired_at, waiter_at):
        leader = reps[term % 3]
        leader.leases.takeover(leader.state, ELECTION)  # a new leader, after its barrier
        end = clock.monotonic() + term_s
        while clock.monotonic() < end:
            clock.advance(0.05)
            now = clock.monotonic()
            if expired_at is None and any(k == rid for k, _ in leader.leases.expired()):
                expired_at = now
            if lock_expired_at is None and leader.leases.expired_locks():
                lock_expired_at = now
            if waiter_at is None and leader.leases.expired_waiters():
                waiter_at = now
        term += 1
    assert term >= 6  # many takeovers happened meanwhile
    for at, due, patience in (
        (expired_at, last_renewal + D_MS / 1000, PATIENCE),
        (lock_expired_at, last_renewal + D_MS / 1000, PATIENCE),
        (waiter_at, waiter_due, 0.0),
    ):
        assert at is not None, "never expired while leaders changed"
        assert due < at <= due + patience + 0.05 + 1e-9


def test_a_takeover_keeps_the_time_a_renewal_was_applied() -> None:
    clock = FakeClock()
    reps, rid = cluster(clock)
    t_r = clock.monotonic()
    clock.advance(4.0)
    tracker = reps[1].leases
    tracker.takeover(reps[1].state, ELECTION)
    assert tracker.seen[rid].mono == t_r and tracker.seen[rid].patience == PATIENCE
    assert tracker.locks["L"].mono == t_r
    clock.advance(D_MS / 1000 - 4.0 + PATIENCE + 0.01)
    assert [k for k, _ in tracker.expired()] == [rid]


def test_a_renewal_applied_late_only_expires_later() -> None:
    """A replica that applied the last renewal late (it lagged, or replayed its log after
    a restart) anchors at its own apply: it expires later, never earlier."""
    clock = FakeClock()
    reps, rid = cluster(clock)
    renew = c.Renew(at_ms=T0 + 2000, run_id=rid, fence=1, node="c")
    on_time, late = reps[0], reps[1]
    clock.advance(1.0)
    on_time.apply(renew)
    clock.advance(2.0)
    late.apply(renew)  # e.g. replayed after a restart
    for r in (on_time, late):
        r.leases.takeover(r.state, ELECTION)
    clock.advance(D_MS / 1000 + PATIENCE - 2.0 + 0.01)
    assert [k for k, _ in on_time.leases.expired()] == [rid]
    assert late.leases.expired() == []
    clock.advance(2.0)
    assert [k for k, _ in late.leases.expired()] == [rid]
    # and what the expiry names lets a renewal that committed in between win
    seen = dict(late.leases.expired())[rid]
    late.apply(c.Renew(at_ms=T0 + 3000, run_id=rid, fence=1, node="c"))
    res = late.state.apply(
        c.Expire(at_ms=T0 + 4000, run_id=rid, fence=1, reason="x", renewals=seen.renewals)
    )
    assert not isinstance(res, Ok)


def test_a_lease_the_tracker_has_not_seen_is_anchored_at_the_takeover() -> None:
    clock = FakeClock()
    reps, rid = cluster(clock)
    fresh = LeaseTracker(clock)  # e.g. its applies are still on their way to the loop
    clock.advance(3.0)
    fresh.takeover(reps[0].state, ELECTION)
    assert fresh.seen[rid].mono == clock.monotonic()
    # and an entry at another renewal count is not trusted either
    stale = reps[2].leases
    stale.touch(rid, 1, D_MS, 0)
    stale.takeover(reps[2].state, ELECTION)
    assert stale.seen[rid].mono == clock.monotonic()
