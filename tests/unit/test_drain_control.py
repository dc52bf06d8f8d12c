"""A node's side of drain (raftcron/drain.py) against a fake node: who gets leadership,
what a SIGTERM commits, and that its wait is bounded (and cut short by a second signal)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from raftcron.clock import FakeClock
from raftcron.core import commands as c
from raftcron.core.model import DRAIN_OPERATOR, DRAIN_SHUTDOWN, JobSpec
from raftcron.core.state import Ok, Result, State
from raftcron.drain import DrainControl
from raftcron.raft.node import Machine, ProposalError, RaftStatus

A, B, C = "127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"
T0 = 1_800_000_000_000


@dataclass
class FakeRaft:
    machine: Machine
    status: RaftStatus
    proposed: list[c.Command] = field(default_factory=list)
    transfers: list[str | None] = field(default_factory=list)
    fail: bool = False

    async def propose(self, cmd: c.Command, timeout: float) -> Result:  # noqa: ASYNC109
        if self.fail:
            raise ProposalError("no_leader", "no leader")
        self.proposed.append(cmd)
        return self.machine.read(lambda s: s.apply(cmd))

    def fatal(self) -> str | None:
        return None

    async def transfer_leadership(self, target: str | None, timeout: float) -> str:  # noqa: ASYNC109
        self.transfers.append(target)
        assert target is not None
        self.status = RaftStatus(self_addr=A, leader=target, term=self.status.term + 1)
        return target


class FakeNode:
    def __init__(self, state: State, status: RaftStatus) -> None:
        self.name = "a"
        self.clock = FakeClock(wall_ms=T0)
        self.machine = Machine(state)
        self.raft = FakeRaft(self.machine, status)
        self.by_raft = {A: SimpleNamespace(name="a"), B: SimpleNamespace(name="b"),
                        C: SimpleNamespace(name="c")}  # fmt: skip
        self.executor = SimpleNamespace(active_count=lambda: 0)

    def node_name(self, addr: str | None) -> str | None:
        return None if addr is None else self.by_raft[addr].name

    def is_established_leader(self) -> bool:
        return self.raft.status.is_leader


def leading(**kw: Any) -> RaftStatus:
    base: dict[str, Any] = {
        "self_addr": A, "is_leader": True, "leader": A, "term": 3,
        "responsive": frozenset({B, C}), "match_index": ((B, 10), (C, 12)),
    }  # fmt: skip
    base.update(kw)
    return RaftStatus(**base)


def control(state: State | None = None, status: RaftStatus | None = None) -> DrainControl:
    return DrainControl(FakeNode(state or State(), status or leading()))  # type: ignore[arg-type]


def test_the_successor_is_the_most_caught_up_responsive_member_not_drained() -> None:
    assert control().successor() == C
    s = State()
    s.apply(c.Drain(at_ms=T0, node="c", drain=True))
    assert control(s).successor() == B
    assert control(status=leading(responsive=frozenset({B}))).successor() == B
    s.apply(c.Drain(at_ms=T0, node="b", drain=True))
    assert control(s).successor() is None


def test_a_drained_leader_with_no_successor_keeps_leading_and_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    ctl = control(status=leading(responsive=frozenset()))

    async def go() -> None:
        assert await ctl.hand_off(1.0) is None
        assert await ctl.hand_off(1.0) is None

    asyncio.run(go())
    said = [r for r in caplog.records if "it keeps leading" in r.getMessage()]
    assert len(said) == 1


def _with_live_run(holder: str = "a") -> State:
    s = State()
    s.apply(c.PutJob(at_ms=T0, spec=JobSpec(name="j", schedule="* * * * * *", command=("x",))))
    fire = c.Fire(job="j", scheduled_at_ms=T0 + 1000, node=holder, trigger="schedule")
    assert isinstance(s.apply(c.Plan(at_ms=T0 + 1000, fires=(fire,))), Ok)
    return s


def test_sigterm_commits_a_shutdown_drain_hands_off_and_waits_no_longer_than_asked() -> None:
    ctl = control(_with_live_run())
    node: Any = ctl.node

    async def go() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await ctl.shutdown(0.5)
        return loop.time() - t0

    took = asyncio.run(go())
    # the run never ended: the drain waited its whole bound, then returned
    assert took >= 0.5
    (cmd,) = node.raft.proposed
    assert cmd == c.Drain(at_ms=T0, node="a", drain=True, kind=DRAIN_SHUTDOWN)
    assert node.raft.transfers == [C]


def test_sigterm_leaves_an_operators_drain_as_it_is_and_ends_when_runs_end() -> None:
    s = State()
    s.apply(c.Drain(at_ms=T0, node="a", drain=True))
    ctl = control(s, RaftStatus(self_addr=A, leader=B, connected=frozenset({B})))
    node: Any = ctl.node

    async def go() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await ctl.shutdown(30.0)
        return loop.time() - t0

    assert asyncio.run(go()) < 1.0  # nothing to wait for
    assert node.raft.proposed == [] and node.raft.transfers == []
    assert s.drained["a"].kind == DRAIN_OPERATOR


def test_a_second_signal_ends_the_drain_at_once() -> None:
    ctl = control(_with_live_run(), RaftStatus(self_addr=A, leader=B, connected=frozenset({B})))

    async def go() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        loop.call_later(0.2, ctl.hurry.set)
        await ctl.shutdown(30.0)
        return loop.time() - t0

    assert asyncio.run(go()) < 2.0


def test_no_leader_does_not_hold_the_shutdown_up() -> None:
    ctl = control(status=RaftStatus(self_addr=A, leader=B, connected=frozenset({B})))
    node: Any = ctl.node
    node.raft.fail = True
    asyncio.run(ctl.shutdown(5.0))  # returns: the proposal failed, nothing runs here
    # and with no reachable leader it does not even try, nor wait for its runs
    ctl = control(_with_live_run(), RaftStatus(self_addr=A, leader=B))

    async def go() -> float:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await ctl.shutdown(30.0)
        return loop.time() - t0

    assert asyncio.run(go()) < 1.0
    assert ctl.node.raft.proposed == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("ready", [True, False])
def test_a_restarted_member_lifts_its_own_shutdown_drain_only(ready: bool) -> None:
    for kind, lifted in ((DRAIN_SHUTDOWN, True), (DRAIN_OPERATOR, False)):
        s = State()
        s.apply(c.Drain(at_ms=T0, node="a", drain=True, kind=kind))
        ctl = control(s, RaftStatus(self_addr=A, leader=B, ready=ready))
        asyncio.run(ctl._clear_shutdown_mark())
        assert ("a" not in s.drained) is lifted
        assert ctl._cleared


def test_a_member_not_caught_up_lifts_a_mark_it_cannot_see_yet() -> None:
    """Caught up, it proposes nothing when it has no mark; not caught up, it cannot tell
    and lifts one anyway (idempotent: it never touches an operator's drain)."""
    ctl = control(State(), RaftStatus(self_addr=A, leader=B, ready=True))
    asyncio.run(ctl._clear_shutdown_mark())
    assert ctl.node.raft.proposed == []  # type: ignore[attr-defined]
    ctl = control(State(), RaftStatus(self_addr=A, leader=B, ready=False))
    asyncio.run(ctl._clear_shutdown_mark())
    assert ctl.node.raft.proposed == [  # type: ignore[attr-defined]
        c.Drain(at_ms=T0, node="a", drain=False, kind=DRAIN_SHUTDOWN)
    ]
    # no leader known: nothing yet
    ctl = control(State(), RaftStatus(self_addr=A))
    asyncio.run(ctl._clear_shutdown_mark())
    assert not ctl._cleared and ctl.node.raft.proposed == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("stopping", [False, True])
def test_a_new_leader_lifts_its_own_shutdown_drain_before_it_schedules(stopping: bool) -> None:
    """After every member was stopped at once (all marked shutdown), the first leader must
    be able to place runs at once: it lifts its own mark before its term is established.
    Not while it is itself shutting down."""
    from raftcron.scheduler.leader import Leader, LeaseTracker

    s = State()
    for n in "abc":
        s.apply(c.Drain(at_ms=T0, node=n, drain=True, kind=DRAIN_SHUTDOWN))
    raft = FakeRaft(Machine(s), leading())
    clock = FakeClock(wall_ms=T0)
    leader = Leader(
        node="a", term=3, raft=raft, clock=clock, leases=LeaseTracker(clock),  # type: ignore[arg-type]
        config_jobs=(), history=10, live_nodes=list, election_timeout=0.9,
        stopping=lambda: stopping,
    )  # fmt: skip

    async def go() -> None:
        task = asyncio.create_task(leader.run())
        await asyncio.wait_for(leader.established.wait(), 5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert ("a" in s.drained) is stopping
    assert set(s.drained) >= {"b", "c"}  # the others lift their own when they start


def test_a_shutdown_drain_is_never_lifted_by_the_same_life() -> None:
    """The start-up clearing of an old shutdown drain must not lift the one this very
    shutdown commits (it did, in a cluster test, when it had not run before the SIGTERM)."""
    s = State()
    ctl = control(s, RaftStatus(self_addr=A, leader=B, ready=True, connected=frozenset({B})))
    asyncio.run(ctl.shutdown(0.1))
    assert s.drained["a"].kind == DRAIN_SHUTDOWN
    asyncio.run(ctl._clear_shutdown_mark())
    assert s.drained["a"].kind == DRAIN_SHUTDOWN
