"""Helpers shared by the test modules (declared once here, not copied into each module).

* ``free_ports`` / ``free_port``: loopback ports nothing listens on right now.
* ``spec``: a ``JobSpec`` with test defaults (job ``j``, every second, ``true``).
* ``Sim``: jobs in one ``State``, planned and applied the way the leader does it (every
  plan through the wire), with a fake "now" carried in the commands: no clock, no network.
* ``FakeRaft``: a stand-in for ``RaftNode.propose`` that commits every proposal at once,
  in order, on one ``Machine``, and records what was proposed (the executor's tests).
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from raftcron.core import commands as c
from raftcron.core.model import CLAIMED, SUCCEEDED, TRIGGER_MANUAL, Job, JobSpec, Run
from raftcron.core.planner import NodeInfo, place, placement_fires, plan
from raftcron.core.results import Reject
from raftcron.core.state import (
    Ok,
    PlanOutcome,
    Rejected,
    Result,
    State,
    manual_run_id,
    unschedulable_counts,
)
from raftcron.raft.node import Machine, ProposalError

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z: a whole hour
TWO_NODES = (NodeInfo(name="a"), NodeInfo(name="b"))


# --------------------------------------------------------------------------- ports


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that were free a moment ago (all held at once while
    they are chosen, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    (port,) = free_ports(1)
    return port


# --------------------------------------------------------------------------- jobs


def spec(name: str = "j", schedule: str = "* * * * * *", **kw: Any) -> JobSpec:
    """A job spec with the tests' defaults; any other field by keyword."""
    kw.setdefault("command", ("true",))
    return JobSpec(name=name, schedule=schedule, **kw)


@dataclass
class Sim:
    """Jobs in one state machine, planned like the leader plans them.

    ``Sim.of(**kw)`` holds one job ``j``; ``put(name, **kw)`` adds more. Plans and manual
    fires go through the wire (``apply_bytes``), like replicated entries."""

    nodes: list[NodeInfo] = field(default_factory=lambda: list(TWO_NODES))
    s: State = field(default_factory=State)

    @classmethod
    def of(cls, nodes: list[NodeInfo] | None = None, **kw: Any) -> Sim:
        sim = cls() if nodes is None else cls(nodes)
        assert sim.s.apply(c.PutJob(at_ms=T0, spec=spec(**kw))) == Ok("created")
        return sim

    def put(self, name: str, **kw: Any) -> None:
        res = self.s.apply(c.PutJob(at_ms=T0, spec=spec(name, **kw)))
        assert isinstance(res, Ok), res

    @property
    def job(self) -> Job:
        return self.s.jobs["j"]

    def tick(self, now: int, nodes: list[NodeInfo] | None = None) -> PlanOutcome:
        """The leader's plan at ``now`` over the live ``nodes`` (default: this Sim's)."""
        p = plan(
            list(self.s.jobs.values()),
            now,
            self.nodes if nodes is None else nodes,
            self.s.load_by_node(),
            frozenset(self.s.live),
            self.s.live_by_job(),
        )
        return self.apply(p)

    def apply(self, p: c.Plan) -> PlanOutcome:
        _, res = self.s.apply_bytes(c.encode(p))  # through the wire, like an entry
        assert isinstance(res, Ok) and isinstance(res.value, PlanOutcome), res
        return res.value

    def trigger(self, at: int, job: str = "j", node: str | None = "a") -> PlanOutcome:
        """A manual fire of ``job`` at ``at``: on ``node``, or (``node=None``) placed the
        way the API places it."""
        if node is not None:
            fires: tuple[c.Fire, ...] = (
                c.Fire(job=job, scheduled_at_ms=at, node=node, trigger=TRIGGER_MANUAL),
            )
        else:
            spec_ = self.s.jobs[job].spec
            chosen, n = place(spec_, manual_run_id(job, at), self.nodes, {})
            fires = tuple(placement_fires(spec_, at, TRIGGER_MANUAL, chosen, n))
        return self.apply(c.Plan(at_ms=at, fires=fires))

    def end(self, rid: str, at: int, status: str = SUCCEEDED) -> None:
        """Start (if only claimed) and complete ``rid`` at ``at`` with ``status``."""
        run = self.s.runs[rid]
        if run.status == CLAIMED:
            start = c.Start(at_ms=at, run_id=rid, fence=run.fence, node=run.node, token="t")
            assert self.s.apply(start) == Ok(run.fence)
        done = c.Complete(
            at_ms=at,
            run_id=rid,
            fence=run.fence,
            node=run.node,
            status=status,
            exit_code=0 if status == SUCCEEDED else 1,
            started_ms=at,
            finished_ms=at,
        )
        assert self.s.apply(done) == Ok(status)

    def run(self, rid: str) -> Run:
        return self.s.runs[rid]

    def status(self, rid: str) -> str:
        return self.s.runs[rid].status

    def runs_of(self, job: str) -> list[Run]:
        return sorted((r for r in self.s.runs.values() if r.job == job), key=lambda r: r.id)

    def unschedulable(self, job: str = "j") -> int:
        return dict(unschedulable_counts(self.s.counters.extra)).get(job, 0)


# --------------------------------------------------------------------------- raft


class FakeRaft:
    """Commits every proposal at once, in order, on one machine; records the commands.

    ``refuse_renewals``: every renewal is refused as stale (the lease was lost);
    ``drop_renewals``: every renewal times out uncommitted (the node is cut off)."""

    def __init__(self, refuse_renewals: bool = False, drop_renewals: bool = False) -> None:
        self.machine = Machine()
        self.proposed: list[Any] = []
        self.refuse_renewals = refuse_renewals
        self.drop_renewals = drop_renewals

    async def propose(self, cmd: Any, timeout: float) -> Result:  # noqa: ASYNC109 (API)
        if self.drop_renewals and isinstance(cmd, c.Renew):
            await asyncio.sleep(min(timeout, 0.1))
            raise ProposalError("timeout", "renewal not committed")
        self.proposed.append(cmd)
        if self.refuse_renewals and isinstance(cmd, c.Renew):
            return Rejected(Reject.STALE_FENCE, "fence 1 is not the lease's")
        return self.machine.apply(c.encode(cmd))
