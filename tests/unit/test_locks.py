"""Named locks: the replicated commands, the leader's lease tracking, the lock API's waiter
registry, and the guardian of ``raftcron lock``. No network, no cluster."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from raftcron.clock import FakeClock
from raftcron.core import commands as c
from raftcron.core.lease import margin_for, safe_deadline, takeover_patience
from raftcron.core.model import (
    LOCK_CANCELLED,
    LOCK_DONE_KEEP,
    LOCK_EXPIRED,
    LOCK_MAX_WAITERS,
    LOCK_REFUSED,
    LOCK_RELEASED,
    LOCK_WAIT_GRACE_MS,
    JobSpec,
)
from raftcron.core.state import (
    LockCancelled,
    LockEnded,
    LockGrant,
    LockQueued,
    Ok,
    Rejected,
    Result,
    State,
)
from raftcron.scheduler.leader import LeaseTracker

T0 = 1_800_000_000_000


def acquire(
    name: str = "x", request: str = "r1", holder: str = "h1", ttl: int = 10_000, wait: int = 0
) -> c.AcquireLock:
    return c.AcquireLock(
        at_ms=T0, name=name, request=request, holder=holder, ttl_ms=ttl, wait_ms=wait
    )


def renew(fence: int, name: str = "x") -> c.RenewLock:
    return c.RenewLock(at_ms=T0, name=name, fence=fence)


def release(fence: int, name: str = "x") -> c.ReleaseLock:
    return c.ReleaseLock(at_ms=T0, name=name, fence=fence)


def expire(fence: int, name: str = "x", renewals: int = 0) -> c.ExpireLock:
    return c.ExpireLock(at_ms=T0, name=name, fence=fence, renewals=renewals, reason="no renewal")


def cancel(request: str, name: str = "x") -> c.CancelLockWait:
    return c.CancelLockWait(at_ms=T0, name=name, request=request, reason="wait ran out")


def fire(at: int) -> c.Fire:
    return c.Fire(job="j", scheduled_at_ms=at, node="n1", trigger="schedule")


def ok(res: Result) -> object:
    assert isinstance(res, Ok), res
    return res.value


def grant(res: Result) -> LockGrant:
    value = ok(res)
    assert isinstance(value, LockGrant), value
    return value


def rejected(res: Result, code: str) -> None:
    assert isinstance(res, Rejected) and res.code == code, res


# --------------------------------------------------------------------------- apply


def test_fifo_hand_over_with_strictly_rising_fences() -> None:
    s = State()
    first = grant(s.apply(acquire(request="a", holder="A")))
    queued = [
        ok(s.apply(acquire(request=r, holder=r.upper(), wait=5_000))) for r in ("b", "c", "d")
    ]
    assert [(q.request, q.position) for q in queued if isinstance(q, LockQueued)] == [
        ("b", 1),
        ("c", 2),
        ("d", 3),
    ]
    order = [first]
    end = ok(s.apply(release(first.fence)))
    assert isinstance(end, LockEnded) and end.outcome == LOCK_RELEASED and end.granted
    order.append(end.granted)
    end = ok(s.apply(expire(end.granted.fence)))  # the leader expires b: c is next
    assert isinstance(end, LockEnded) and end.outcome == LOCK_EXPIRED and end.granted
    order.append(end.granted)
    end = ok(s.apply(release(end.granted.fence)))
    assert isinstance(end, LockEnded) and end.granted
    order.append(end.granted)
    end = ok(s.apply(release(end.granted.fence)))
    assert isinstance(end, LockEnded) and end.granted is None
    assert [g.request for g in order] == ["a", "b", "c", "d"]
    assert [g.holder for g in order] == ["A", "B", "C", "D"]
    assert [g.fence for g in order] == [1, 2, 3, 4]
    assert s.locks == {}
    assert s.counters.stale_rejections == 0


def test_locks_and_runs_share_one_fence_counter() -> None:
    s = State()
    spec = JobSpec(name="j", schedule="* * * * * *", command=("true",))
    s.apply(c.PutJob(at_ms=T0, spec=spec))
    s.apply(
        c.Plan(
            at_ms=T0,
            fires=(c.Fire(job="j", scheduled_at_ms=T0 + 1000, node="n1", trigger="schedule"),),
        )
    )
    g = grant(s.apply(acquire()))
    s.apply(
        c.Plan(
            at_ms=T0,
            fires=(c.Fire(job="j", scheduled_at_ms=T0 + 2000, node="n1", trigger="schedule"),),
        )
    )
    assert g.fence == 2
    assert s.counters.fence == 3
    assert sorted([lz.fence for lz in s.leases.values()] + [g.fence]) == [1, 2, 3]


@pytest.mark.parametrize(
    ("ops", "code", "counted"),
    [
        ([renew(99)], "stale_fence", 1),  # renew of a free lock
        ([release(99)], "stale_fence", 1),
        ([acquire(), renew(2)], "stale_fence", 1),  # a fence that was never its
        ([acquire(), release(2)], "stale_fence", 1),
        ([acquire(), expire(1), renew(1)], "stale_fence", 1),  # the holder lost it
        ([acquire(), expire(1), release(1)], "stale_fence", 1),
        ([acquire(), expire(1), expire(1)], "stale_fence", 0),  # the leader's retry
        ([acquire(), release(1), expire(1)], "stale_fence", 0),  # release won the race
        ([acquire(), acquire(request="r2")], "locked", 0),
        ([acquire(request="r1"), release(1), acquire(request="r1")], "request_done", 0),
        ([acquire(name="bad name")], "invalid", 0),
        ([acquire(ttl=10)], "invalid", 0),
        ([acquire(wait=-1)], "invalid", 0),
        ([acquire(request="")], "invalid", 0),
    ],
)
def test_rejections_are_values_and_only_stale_writers_are_counted(
    ops: list[c.Command], code: str, counted: int
) -> None:
    s = State()
    for op in ops[:-1]:
        assert isinstance(s.apply(op), Ok)
    rejected(s.apply(ops[-1]), code)
    assert s.counters.stale_rejections == counted


def test_renew_keeps_the_fence_and_moves_renewed_at() -> None:
    s = State()
    g = grant(s.apply(acquire()))
    later = c.RenewLock(at_ms=T0 + 5000, name="x", fence=g.fence)
    renewed = grant(s.apply(later))
    assert (renewed.fence, renewed.renewals) == (g.fence, 1)
    assert s.locks["x"].renewed_ms == T0 + 5000 and s.locks["x"].acquired_ms == T0
    assert s.counters.fence == 1


def test_expiry_decided_before_a_renewal_that_committed_first_is_moot() -> None:
    """The leader decided on renewal count 0; the holder's renewal committed before the
    expiry: the expiry is refused, the holder keeps the lock it was told it has."""
    s = State()
    g = grant(s.apply(acquire()))
    s.apply(acquire(request="next", wait=5000))
    assert grant(s.apply(renew(g.fence))).renewals == 1
    rejected(s.apply(expire(g.fence, renewals=0)), "renewed")
    assert s.locks["x"].fence == g.fence
    end = ok(s.apply(expire(g.fence, renewals=1)))
    assert isinstance(end, LockEnded) and end.granted and end.granted.request == "next"
    assert s.counters.stale_rejections == 0


def test_retried_acquire_never_takes_the_lock_twice() -> None:
    s = State()
    g = grant(s.apply(acquire(request="r1")))
    assert grant(s.apply(acquire(request="r1"))) == g  # the same grant, no new fence
    q = ok(s.apply(acquire(request="r2", wait=1000)))
    assert ok(s.apply(acquire(request="r2", wait=1000))) == q  # no second queue place
    assert len(s.locks["x"].waiters) == 1
    end = ok(s.apply(release(g.fence)))
    assert isinstance(end, LockEnded) and end.granted and end.granted.request == "r2"
    # r1 ended: a late copy of its acquire is refused, whatever the lock's state
    rejected(s.apply(acquire(request="r1")), "request_done")
    s.apply(release(end.granted.fence))
    rejected(s.apply(acquire(request="r1")), "request_done")
    assert s.locks == {}
    assert s.counters.fence == 2


def test_retried_release_is_recognised_not_counted_as_stale() -> None:
    s = State()
    g = grant(s.apply(acquire()))
    assert isinstance(ok(s.apply(release(g.fence))), LockEnded)
    again = ok(s.apply(release(g.fence)))
    assert isinstance(again, LockEnded) and again.retry and again.granted is None
    assert s.counters.stale_rejections == 0


def test_refused_try_acquire_cannot_take_the_lock_later() -> None:
    s = State()
    g = grant(s.apply(acquire(request="a")))
    rejected(s.apply(acquire(request="b")), "locked")  # wait 0: refused at once
    s.apply(release(g.fence))
    rejected(s.apply(acquire(request="b")), "request_done")  # a late duplicate
    assert s.lock_done[("x", "b")].outcome == LOCK_REFUSED
    assert s.locks == {}


def test_cancelled_waiter_leaves_the_queue_and_cannot_come_back() -> None:
    s = State()
    g = grant(s.apply(acquire(request="a")))
    for r in ("b", "c"):
        s.apply(acquire(request=r, wait=1000))
    res = ok(s.apply(cancel("b")))
    assert res == LockCancelled("x", "b", True)
    rejected(s.apply(acquire(request="b", wait=1000)), "request_done")
    end = ok(s.apply(release(g.fence)))
    assert isinstance(end, LockEnded) and end.granted and end.granted.request == "c"
    assert s.lock_done[("x", "b")].outcome == LOCK_CANCELLED


def test_cancel_never_releases_a_lock_granted_to_the_request() -> None:
    s = State()
    g = grant(s.apply(acquire(request="a")))
    s.apply(acquire(request="b", wait=1000))
    end = ok(s.apply(release(g.fence)))
    assert isinstance(end, LockEnded) and end.granted
    # b's wait ran out just as the lock came to it: the cancel reports the grant
    assert grant(s.apply(cancel("b"))) == end.granted
    assert s.locks["x"].request == "b"


def test_cancel_before_the_acquire_commits_blocks_the_late_acquire() -> None:
    s = State()
    s.apply(acquire(request="a"))
    assert ok(s.apply(cancel("late"))) == LockCancelled("x", "late", False)
    rejected(s.apply(acquire(request="late", wait=1000)), "request_done")
    assert s.locks["x"].waiters == ()


def test_queue_is_bounded() -> None:
    s = State()
    s.apply(acquire(request="holder"))
    for i in range(LOCK_MAX_WAITERS):
        assert isinstance(ok(s.apply(acquire(request=f"w{i}", wait=1000))), LockQueued)
    rejected(s.apply(acquire(request="one-too-many", wait=1000)), "queue_full")


def test_finished_requests_are_remembered_oldest_first_and_bounded() -> None:
    s = State()
    s.apply(acquire(request="holder"))
    for i in range(LOCK_DONE_KEEP + 10):
        rejected(s.apply(acquire(request=f"try{i}")), "locked")
    assert len(s.lock_done) == LOCK_DONE_KEEP
    assert next(iter(s.lock_done)) == ("x", "try10")
    restored = State.restore(s.snapshot())
    assert list(restored.lock_done) == list(s.lock_done)
    assert restored.digest() == s.digest()


def test_snapshot_keeps_holder_queue_and_fences() -> None:
    s = State()
    g = grant(s.apply(acquire(request="a", holder="A", ttl=7000)))
    s.apply(acquire(request="b", holder="B", wait=3000))
    s.apply(acquire(name="y", request="c"))
    copy = State.restore(s.snapshot())
    assert copy.digest() == s.digest()
    assert copy.locks == s.locks
    one, two = ok(s.apply(release(g.fence))), ok(copy.apply(release(g.fence)))
    assert one == two and isinstance(one, LockEnded) and one.granted
    assert one.granted.fence == 3 and one.granted.holder == "B"
    assert copy.digest() == s.digest()


@pytest.mark.parametrize("cmd", [acquire(wait=1500), renew(3), release(4), expire(5), cancel("r")])
def test_lock_commands_round_trip_the_envelope(cmd: c.Command) -> None:
    assert c.decode(c.encode(cmd)) == cmd


# --------------------------------------------------------------------------- leader's view


def test_tracker_expires_locks_and_abandoned_waiters_on_the_monotonic_clock() -> None:
    clock = FakeClock()
    t = LeaseTracker(clock)
    t.touch_lock("x", 1, 2000, 0)
    t.touch_waiter("x", "w", 3000)
    clock.advance(1.9)
    t.touch_waiter("x", "w", 3000)  # a retry that found it queued keeps the first time
    assert t.expired_locks() == [] and t.expired_waiters() == []
    clock.advance(0.2)
    assert [n for n, _ in t.expired_locks()] == ["x"]
    clock.advance(3.0 + LOCK_WAIT_GRACE_MS / 1000 - 2.1 - 0.05)
    assert t.expired_waiters() == []
    clock.advance(0.1)
    assert [k for k, _ in t.expired_waiters()] == [("x", "w")]
    t.forget_lock("x", 2)  # a different fence: the entry stays
    assert "x" in t.locks
    t.forget_lock("x", 1)
    assert "x" not in t.locks


def test_takeover_treats_locks_as_renewed_now_with_patience() -> None:
    clock = FakeClock()
    s = State()
    g = grant(s.apply(acquire(ttl=10_000)))
    s.apply(acquire(request="w", wait=2000))
    t = LeaseTracker(clock)
    t.takeover(s, election_timeout=0.9)
    patience = takeover_patience(10_000, 0.9)
    clock.advance(10 + patience - 0.01)
    assert t.expired_locks() == []
    clock.advance(0.02)
    assert [(n, seen.fence) for n, seen in t.expired_locks()] == [("x", g.fence)]
    assert [k for k, _ in t.expired_waiters()] == [("x", "w")]


def test_holder_deadline_is_before_the_leaders_expiry() -> None:
    for ttl in (1000, 2000, 30_000, 600_000):
        window = safe_deadline(ttl, margin_for(ttl))
        assert 0 < window < ttl / 1000 * 0.98 / 1.02


# --------------------------------------------------------------------------- API waiters


def test_waiters_are_settled_from_the_apply_stream() -> None:
    from raftcron.api.locks import LockWaits

    async def main() -> None:
        waits = LockWaits()
        fut = waits.add("x", "b")
        other = waits.add("x", "c")
        g = LockGrant("x", "b", 7, "B", 1000)
        waits.on_commit(release(6), Ok(LockEnded("x", 6, LOCK_RELEASED, g)))
        assert fut.result() == g and not other.done()
        waits.on_commit(cancel("c"), Ok(LockCancelled("x", "c", True)))
        assert other.result() is None
        waits.discard("x", "b", fut)
        waits.discard("x", "c", other)
        assert waits.waiting() == 0

    asyncio.run(main())


# --------------------------------------------------------------------------- guardian


def _guard(
    tmp_path: Path, argv: list[str], deadline_in: float, grace: float, ctl_msgs: bytes = b""
) -> tuple[list[dict[str, object]], float]:
    from raftcron.lockcmd import guardian

    ctl_r, ctl_w = os.pipe()
    ev_r, ev_w = os.pipe()
    os.write(ctl_w, ctl_msgs)
    t0 = time.monotonic()
    try:
        guardian(argv, dict(os.environ), t0 + deadline_in, grace, ctl_r, ev_w)
        took = time.monotonic() - t0
        os.close(ev_w)
        with os.fdopen(ev_r) as f:
            events = [json.loads(line) for line in f]
    finally:
        os.close(ctl_r)
        os.close(ctl_w)
    return events, took


def test_guardian_passes_the_exit_code_through(tmp_path: Path) -> None:
    events, _ = _guard(tmp_path, ["sh", "-c", "exit 3"], 30.0, 1.0)
    assert events[0]["event"] == "started"
    assert events[-1] == {"event": "exit", "code": 3, "outcome": "exited", "detail": ""}


def test_guardian_stops_the_command_before_the_deadline(tmp_path: Path) -> None:
    events, took = _guard(tmp_path, ["sleep", "30"], 0.6, 0.3)
    # stopped by SIGTERM (a 30 s sleep would have exited 0), and not before deadline - grace
    assert events[-1]["outcome"] == "lease_lost"
    assert events[-1]["code"] == 128 + signal.SIGTERM
    assert took >= 0.6 - 0.3


def test_guardian_kills_a_command_that_ignores_sigterm_at_the_deadline(tmp_path: Path) -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(30)"
    events, took = _guard(tmp_path, [sys.executable, "-c", code], 0.8, 0.4)
    assert events[-1]["outcome"] == "lease_lost"
    assert events[-1]["code"] == 128 + signal.SIGKILL
    assert took >= 0.75  # SIGKILL only at the deadline, after the grace for SIGTERM


def test_guardian_stops_the_command_when_told_the_lock_is_lost(tmp_path: Path) -> None:
    events, _ = _guard(tmp_path, ["sleep", "30"], 30.0, 1.0, b'{"stop": "stale"}\n')
    # "lost" with the message's detail: stopped by the message, not by the 30 s deadline
    # ("lease_lost") nor by the command ending
    assert events[-1]["outcome"] == "lost" and events[-1]["detail"] == "stale"
    assert events[-1]["code"] == 128 + signal.SIGTERM


def test_guardian_reports_a_command_that_cannot_run(tmp_path: Path) -> None:
    events, _ = _guard(tmp_path, [str(tmp_path / "nope")], 30.0, 1.0)
    assert events == [
        {
            "event": "exit",
            "code": 127,
            "outcome": "spawn_failed",
            "detail": events[0]["detail"],
        }
    ]


def test_lock_command_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from raftcron.lockcmd import main

    assert main(["x"]) == 2
    assert main(["x", "--ttl", "2s"]) == 2
    assert main(["x", "--ttl", "soon", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert "no command to run" in err
    assert "put -- between the options and the command" in err
    assert "is not a duration" in err


def test_lock_command_exits_75_when_no_api_answers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from raftcron import lockcmd

    monkeypatch.setattr(lockcmd, "ACQUIRE_RETRY_S", 0.5)
    code = lockcmd.main(["x", "--api", "http://127.0.0.1:9,http://127.0.0.1:19", "--", "true"])
    assert code == 75
    assert "not acquired" in capsys.readouterr().err


# --------------------------------------------------------------------------- leader loop


class _FakeRaft:
    """Applies proposals to one State at once and feeds the tracker as the node would;
    ``before`` runs first (a command that commits just ahead of the proposal)."""

    def __init__(self, state: State, tracker: LeaseTracker) -> None:
        self.state = state
        self.tracker = tracker
        self.before: list[c.Command] = []
        self.proposed: list[c.Command] = []

    def commit(self, cmd: c.Command) -> Result:
        res = self.state.apply(cmd)
        value = res.value if isinstance(res, Ok) else None
        for g in (value, getattr(value, "granted", None)):
            if isinstance(g, LockGrant):
                self.tracker.forget_waiter(g.name, g.request)
                self.tracker.touch_lock(g.name, g.fence, g.ttl_ms, g.renewals)
        if isinstance(value, LockEnded):
            self.tracker.forget_lock(value.name, value.fence)
            if value.granted is not None:
                g = value.granted
                self.tracker.touch_lock(g.name, g.fence, g.ttl_ms, g.renewals)
        if isinstance(value, LockCancelled):
            self.tracker.forget_waiter(value.name, value.request)
        if isinstance(value, LockQueued) and isinstance(cmd, c.AcquireLock):
            self.tracker.touch_waiter(cmd.name, cmd.request, cmd.wait_ms)
        return res

    async def propose(self, cmd: c.Command, timeout: float) -> Result:  # noqa: ASYNC109
        while self.before:
            self.commit(self.before.pop(0))
        self.proposed.append(cmd)
        return self.commit(cmd)


def _leader(raft: _FakeRaft, clock: FakeClock) -> object:
    from raftcron.scheduler.leader import Leader

    return Leader(
        node="n1",
        term=1,
        raft=raft,  # type: ignore[arg-type]
        clock=clock,
        leases=raft.tracker,
        config_jobs=(),
        history=10,
        live_nodes=list,
        election_timeout=0.9,
    )


def test_leader_expiry_loses_the_race_to_a_renewal_and_keeps_tracking() -> None:
    clock = FakeClock()
    raft = _FakeRaft(State(), LeaseTracker(clock))
    leader = _leader(raft, clock)
    g = grant(raft.commit(acquire(ttl=2000)))
    raft.commit(acquire(request="next", wait=60_000))
    clock.advance(2.1)
    raft.before.append(renew(g.fence))  # the holder's renewal commits just before
    asyncio.run(leader._expire_locks())  # type: ignore[attr-defined]
    assert isinstance(raft.proposed[-1], c.ExpireLock)
    assert raft.state.locks["x"].fence == g.fence  # kept: the renewal won
    assert raft.tracker.locks["x"].renewals == 1  # and still tracked, from the renewal
    clock.advance(2.1)  # now it really stops renewing
    asyncio.run(leader._expire_locks())  # type: ignore[attr-defined]
    assert raft.state.locks["x"].request == "next"
    assert raft.tracker.locks["x"].fence == g.fence + 1


def test_leader_drops_a_waiter_nobody_cancelled() -> None:
    clock = FakeClock()
    raft = _FakeRaft(State(), LeaseTracker(clock))
    leader = _leader(raft, clock)
    raft.commit(acquire(ttl=600_000))
    raft.commit(acquire(request="ghost", wait=1000))
    clock.advance(1 + LOCK_WAIT_GRACE_MS / 1000 - 0.1)
    asyncio.run(leader._expire_locks())  # type: ignore[attr-defined]
    assert raft.state.locks["x"].waiters != ()
    clock.advance(0.2)
    asyncio.run(leader._expire_locks())  # type: ignore[attr-defined]
    assert raft.state.locks["x"].waiters == ()
    assert raft.tracker.waiters == {}
    rejected(raft.commit(acquire(request="ghost", wait=1000)), "request_done")
