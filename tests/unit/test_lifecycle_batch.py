"""Batched lifecycle commits (``commands.Lifecycle``, feature level 4): the state machine
applies a batch as its items one by one (own fence check, idempotency, rejection), and the
executor's batcher (``raftcron/executor/batch.py``) sends a lone command alone and what
queues during a commit as one entry, only once the gate allows it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftcron.clock import SystemClock
from raftcron.core import commands as c
from raftcron.core import features
from raftcron.core.model import CLAIMED, RUNNING, SUCCEEDED, JobSpec
from raftcron.core.results import Ok, Reject, Rejected, Result
from raftcron.core.state import State
from raftcron.executor.batch import LifecycleBatcher
from raftcron.executor.runner import Executor
from raftcron.raft.node import Machine, ProposalError
from tests.helpers import T0, Sim
from tests.unit.test_state import _commands

# --------------------------------------------------------------------------- the state


def _three_claimed() -> tuple[Sim, list[tuple[str, int, str]]]:
    sim = Sim.of()
    sim.put("k")
    sim.put("m")
    granted = sim.tick(T0 + 1000).granted
    assert len(granted) == 3
    return sim, sorted(granted)


def _items(granted: list[tuple[str, int, str]]) -> tuple[c.LifecycleItem, ...]:
    (r1, f1, n1), (r2, f2, n2), (r3, f3, n3) = granted
    return (
        c.Start(at_ms=T0 + 1001, run_id=r1, fence=f1, node=n1, token="t1"),
        c.Start(at_ms=T0 + 1001, run_id=r2, fence=f2 + 100, node=n2, token="t2"),  # stale
        c.Renew(at_ms=T0 + 1002, run_id=r3, fence=f3, node=n3),
        c.Complete(
            at_ms=T0 + 1003,
            run_id=r3,
            fence=f3,
            node=n3,
            status=SUCCEEDED,
            exit_code=0,
            started_ms=T0 + 1001,
            finished_ms=T0 + 1003,
        ),
    )


def test_a_stale_item_is_rejected_alone() -> None:
    """One item's fence is stale: that item is refused as the single command would be,
    the others apply; the state is the one the single commands give."""
    sim, granted = _three_claimed()
    single, _ = _three_claimed()
    items = _items(granted)
    res = sim.s.apply(c.Lifecycle(at_ms=T0 + 1003, items=items))
    one_by_one = tuple(single.s.apply(i) for i in items)
    assert isinstance(res, Ok) and res.value == one_by_one
    ok1, stale, ok3, done = res.value
    assert ok1 == Ok(granted[0][1]) and ok3 == Ok(granted[2][1]) and done == Ok(SUCCEEDED)
    assert isinstance(stale, Rejected) and stale.code == Reject.STALE_FENCE
    assert [sim.status(r) for r, _, _ in granted] == [RUNNING, CLAIMED, SUCCEEDED]
    assert sim.s.digest() == single.s.digest()


def test_a_repeated_batch_is_idempotent() -> None:
    """The same entry again (a retried proposal): each item answers as its single retry
    would (the start with the same token and the committed completion are accepted again,
    a renewal after the completion is stale), nothing starts or ends twice, and the state
    is the single retries'."""
    sim, granted = _three_claimed()
    single, _ = _three_claimed()
    items = _items(granted)
    batch = c.Lifecycle(at_ms=T0 + 1003, items=items)
    first = sim.s.apply(batch)
    again = sim.s.apply(batch)
    for i in items:
        single.s.apply(i)
    retried = tuple(single.s.apply(i) for i in items)
    assert isinstance(first, Ok) and again == Ok(retried)
    assert again.value[0] == first.value[0] and again.value[3] == Ok(SUCCEEDED)
    assert [sim.status(r) for r, _, _ in granted] == [RUNNING, CLAIMED, SUCCEEDED]
    assert sim.run(granted[0][0]).start_token == "t1"
    assert sim.s.digest() == single.s.digest()


def _expand(cmds: list[c.Command]) -> list[c.Command]:
    out: list[c.Command] = []
    for cmd in cmds:
        if isinstance(cmd, c.Lifecycle):
            out.extend(cmd.items)
            out.append(c.Barrier(at_ms=cmd.at_ms, node="x", nonce="n"))  # (its at_ms)
        else:
            out.append(cmd)
    return out


@settings(max_examples=100, deadline=None)
@given(cmds=st.lists(_commands(), max_size=50))
def test_a_batch_changes_the_state_as_its_items_one_by_one(cmds: list[c.Command]) -> None:
    batched, single = State(), State()
    for cmd in cmds:
        res = batched.apply_bytes(c.encode(cmd))[1]
        if isinstance(cmd, c.Lifecycle):
            items = tuple(single.apply_bytes(c.encode(i))[1] for i in cmd.items)
            single.apply(c.Barrier(at_ms=cmd.at_ms, node="x", nonce="n"))
            assert res == Ok(items)
        else:
            single.apply_bytes(c.encode(cmd))
    assert batched.digest() == single.digest()


def test_the_codec_and_the_gate() -> None:
    _, granted = _three_claimed()
    batch = c.Lifecycle(at_ms=T0 + 1003, items=_items(granted))
    assert c.decode(c.encode(batch)) == batch
    assert features.kind_of(batch) == "lifecycle" and features.COMMAND_KINDS["lifecycle"] == 4
    used = features.command_features(batch)
    refused = features.refusal(used, {"a": features.FEATURE_LEVEL, "b": 1})
    assert refused is not None and refused.behind == {"b": 1}
    assert features.refusal(used, {"a": 4, "b": 4}) is None


# --------------------------------------------------------------------------- the batcher


class SlowRaft:
    """Commits each proposal ``delay`` seconds after it is made, in order, on one machine;
    records what was proposed."""

    def __init__(self, delay: float = 0.05) -> None:
        self.machine = Machine()
        self.delay = delay
        self.proposed: list[c.Command] = []
        self.fail: ProposalError | None = None
        self.answer: Result | None = None  # answer a Lifecycle with this instead

    async def propose(self, cmd: c.Command, timeout: float) -> Result:  # noqa: ASYNC109 (API)
        self.proposed.append(cmd)
        await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        if self.answer is not None and isinstance(cmd, c.Lifecycle):
            return self.answer
        return self.machine.apply(c.encode(cmd))


def _granted_on(raft: SlowRaft, n: int) -> list[tuple[str, int]]:
    for i in range(n):
        spec = JobSpec(name=f"j{i}", schedule="* * * * * *", command=("true",))
        raft.machine.apply(c.encode(c.PutJob(at_ms=T0, spec=spec)))
    fires = tuple(
        c.Fire(job=f"j{i}", scheduled_at_ms=T0 + 1000, node="a", trigger="schedule")
        for i in range(n)
    )
    res = raft.machine.apply(c.encode(c.Plan(at_ms=T0, fires=fires)))
    assert isinstance(res, Ok)
    return [(rid, fence) for rid, fence, _ in res.value.granted]


def _renew(rid: str, fence: int) -> c.Renew:
    return c.Renew(at_ms=T0 + 1001, run_id=rid, fence=fence, node="a")


def test_a_lone_command_goes_alone_and_what_queues_meanwhile_goes_as_one_entry() -> None:
    async def main() -> tuple[SlowRaft, list[Result]]:
        raft = SlowRaft()
        runs = _granted_on(raft, 5)
        b = LifecycleBatcher(raft.propose, lambda: True)
        first = asyncio.create_task(b.propose(_renew(*runs[0]), 5.0))
        await asyncio.sleep(0.01)  # the first is in flight
        assert raft.proposed == [_renew(*runs[0])]  # alone, at once
        rest = [_renew(*r) for r in runs[1:]]
        rest[1] = c.Renew(at_ms=T0, run_id=runs[2][0], fence=999, node="a")  # stale
        results = await asyncio.gather(first, *(b.propose(cmd, 5.0) for cmd in rest))
        assert (b.singles, b.batches, b.batched_items) == (1, 1, 4)
        return raft, results

    raft, results = asyncio.run(main())
    assert len(raft.proposed) == 2
    batch = raft.proposed[1]
    assert isinstance(batch, c.Lifecycle) and len(batch.items) == 4
    assert [type(r) for r in results] == [Ok, Ok, Rejected, Ok, Ok]


def test_the_gate_closed_means_one_proposal_each() -> None:
    async def main() -> SlowRaft:
        raft = SlowRaft()
        runs = _granted_on(raft, 4)
        b = LifecycleBatcher(raft.propose, lambda: False)
        results = await asyncio.gather(*(b.propose(_renew(*r), 5.0) for r in runs))
        assert all(isinstance(r, Ok) for r in results)
        return raft

    raft = asyncio.run(main())
    assert [type(cmd) for cmd in raft.proposed] == [c.Renew] * 4


def test_a_caller_that_gave_up_before_its_turn_is_not_proposed() -> None:
    async def main() -> tuple[SlowRaft, list[tuple[str, int]]]:
        raft = SlowRaft(delay=0.2)
        runs = _granted_on(raft, 3)
        b = LifecycleBatcher(raft.propose, lambda: True)
        first = asyncio.create_task(b.propose(_renew(*runs[0]), 5.0))
        await asyncio.sleep(0.01)
        gives_up = asyncio.create_task(b.propose(_renew(*runs[1]), 5.0))
        waits = asyncio.create_task(b.propose(_renew(*runs[2]), 5.0))
        await asyncio.sleep(0.01)
        gives_up.cancel()
        with pytest.raises(ProposalError):  # a timeout while queued: outcome "unknown"
            await b.propose(_renew(*runs[1]), 0.05)
        assert isinstance(await first, Ok) and isinstance(await waits, Ok)
        return raft, runs

    raft, runs = asyncio.run(main())
    assert raft.proposed == [_renew(*runs[0]), _renew(*runs[2])]  # the one left, alone


def test_an_entry_that_did_not_commit_fails_each_caller() -> None:
    async def main() -> list[Any]:
        raft = SlowRaft()
        runs = _granted_on(raft, 3)
        b = LifecycleBatcher(raft.propose, lambda: True)
        raft.fail = ProposalError("leader_changed", "proposal failed: leader_changed")
        return await asyncio.gather(
            *(b.propose(_renew(*r), 5.0) for r in runs), return_exceptions=True
        )

    results = asyncio.run(main())
    assert [getattr(r, "code", None) for r in results] == ["leader_changed"] * 3


def test_a_batch_answered_as_a_whole_is_proposed_again_item_by_item() -> None:
    async def main() -> tuple[SlowRaft, LifecycleBatcher, list[Result]]:
        raft = SlowRaft()
        runs = _granted_on(raft, 3)
        b = LifecycleBatcher(raft.propose, lambda: True)
        raft.answer = Rejected(Reject.BAD_COMMAND, "undecodable command envelope")
        results = await asyncio.gather(*(b.propose(_renew(*r), 5.0) for r in runs))
        return raft, b, results

    raft, b, results = asyncio.run(main())
    assert all(isinstance(r, Ok) for r in results)
    assert [type(cmd) for cmd in raft.proposed] == [c.Lifecycle] + [c.Renew] * 3
    assert not b.enabled()


# --------------------------------------------------------------------------- the executor


def test_a_burst_through_the_batcher_starts_each_run_once(tmp_path: Path) -> None:
    """Twenty runs granted at once to one node whose commits take 20 ms: their starts and
    completions share entries; each run starts once and succeeds."""

    async def main() -> tuple[SlowRaft, list[str], Executor]:
        raft = SlowRaft(delay=0.02)
        ex = Executor(
            node="a",
            raft=raft,  # type: ignore[arg-type]
            clock=SystemClock(),
            data_dir=tmp_path,
            max_starting=8,
            lifecycle_batches=lambda: True,
        )
        ex.caught_up()
        runs = _granted_on(raft, 20)
        for rid, fence in runs:
            ex.on_granted(rid, fence, "a")
        await asyncio.wait_for(asyncio.gather(*list(ex._tasks)), 60)
        await ex.stop()
        return raft, [rid for rid, _ in runs], ex

    raft, rids, ex = asyncio.run(main())
    starts: dict[str, int] = {}
    for cmd in raft.proposed:
        items = cmd.items if isinstance(cmd, c.Lifecycle) else (cmd,)
        for i in items:
            if isinstance(i, c.Start):
                starts[i.run_id] = starts.get(i.run_id, 0) + 1
    assert starts == dict.fromkeys(rids, 1)
    assert ex.lifecycle.batches >= 1
    for rid in rids:
        run = raft.machine.read(lambda s, r=rid: s.runs[r])  # type: ignore[misc]
        assert run.status == SUCCEEDED, (rid, run.status, run.reason)


# --------------------------------------------------------------------------- the node


class _NodeStub:
    """What ``Node._react`` uses of a node, recording the calls."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.touched: list[tuple[str, int]] = []
        self.forgotten: list[str] = []
        self.leases = self
        self.executor = self

    def _touch(self, rid: str, fence: int) -> None:
        self.touched.append((rid, fence))

    def forget(self, rid: str) -> None:
        self.forgotten.append(rid)

    def _react(self, cmd: c.Command, res: Result, changed: list[str]) -> None:
        from raftcron.node import Node

        Node._react(self, cmd, res, changed)  # type: ignore[arg-type]


def test_the_node_reacts_to_a_batch_item_by_item() -> None:
    """The apply stream's reactions (lease tracker, the scheduler's jobs to look at) to a
    batch are those to its items: a committed start or renewal touches its lease, a
    committed completion forgets it and names its job; a refused item changes nothing."""
    raft = SlowRaft()
    runs = _granted_on(raft, 3)
    (r1, f1), (r2, f2), (r3, f3) = runs
    items: tuple[c.LifecycleItem, ...] = (
        c.Start(at_ms=T0 + 1001, run_id=r1, fence=f1, node="a", token="t"),
        c.Renew(at_ms=T0 + 1001, run_id=r2, fence=f2 + 50, node="a"),  # stale
        c.Complete(
            at_ms=T0 + 1002,
            run_id=r3,
            fence=f3,
            node="a",
            status=SUCCEEDED,
            exit_code=0,
            started_ms=None,
            finished_ms=T0 + 1002,
        ),
    )
    res = raft.machine.apply(c.encode(c.Lifecycle(at_ms=T0 + 1002, items=items)))
    stub = _NodeStub(raft.machine)
    changed: list[str] = []
    stub._react(c.Lifecycle(at_ms=T0 + 1002, items=items), res, changed)
    assert stub.touched == [(r1, f1)]
    assert stub.forgotten == [r3]
    assert changed == ["j2"]
