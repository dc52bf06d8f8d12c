"""The leader's schedule loop wakes for a due ms without its timer's rounding: it sleeps
until ``EARLY_S`` before and yields to the loop until the ms is due (the loop's timer
sleeps whole ms, rounded up, from a now rounded down: it woke 1-1.5 ms late;
docs/notes/2026-12-08-grant-path.md). A wall clock that stands still just before the due
ms (a test's) is yielded on a bounded number of times, not spun on."""

from __future__ import annotations

import asyncio

from raftcron.clock import FakeClock
from raftcron.core import commands as c
from raftcron.core.state import Ok, State
from raftcron.scheduler import leader as leader_mod
from tests.helpers import spec
from tests.unit.test_broken import _leader, _Raft

T0 = 1_800_000_000_000  # a whole second


class _CountingClock(FakeClock):
    def __init__(self, wall_ms: int) -> None:
        super().__init__(wall_ms=wall_ms)
        self.reads = 0

    def wall_ms(self) -> int:
        self.reads += 1
        return super().wall_ms()


def test_a_clock_standing_just_before_the_due_ms_is_not_spun_on_and_the_fire_goes_at_it() -> None:
    st = State()
    assert st.apply(c.PutJob(at_ms=T0 - 1, spec=spec("sec"))) == Ok("created")
    clock = _CountingClock(wall_ms=T0 - 1)  # 1 ms before the job's next second
    raft = _Raft(st)
    leader = _leader(raft, clock)

    def plans() -> list[c.Plan]:
        return [p for p in raft.proposed if isinstance(p, c.Plan)]

    async def scenario() -> None:
        task = asyncio.create_task(leader._schedule_loop())
        await asyncio.sleep(0.1)  # real time; the wall clock does not move
        # yielded at most SPIN_YIELDS times, then slept 1 ms at a time (~100 more reads)
        assert clock.reads <= leader_mod.SPIN_YIELDS + 150
        assert not plans()  # (an ``Arm`` of the fire may have been proposed)
        clock.advance(0.001)  # the due ms
        for _ in range(50):
            await asyncio.sleep(0.002)
            if plans():
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(scenario())
    [plan] = plans()
    assert [f.scheduled_at_ms for f in plan.fires] == [T0]
