"""What keeps a leader with a large state responsive (bench/analysis.md, 2026-12-08): the
schedule's memo of its last ``next_after``, the leader's rebuild of its fire heap in
pieces, and the garbage collector's freezing of what survived a full collection."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from raftcron import memory
from raftcron.clock import FakeClock
from raftcron.core import commands as c
from raftcron.core import schedule as sched
from raftcron.core.state import Ok, State
from raftcron.scheduler import leader as leader_mod
from tests.helpers import spec
from tests.unit.test_broken import _leader, _Raft

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z


def _fresh(expr: str, tz: str = "UTC") -> sched.CronSchedule:
    """A schedule parsed anew (not the cached, shared one)."""
    return sched._parse_cached.__wrapped__(expr, tz, "shift", "once")


def test_next_after_gives_what_a_fresh_schedule_gives_whatever_was_asked_before() -> None:
    for expr, tz in [
        ("*/7 * * * * *", "UTC"),
        ("30 2 * * *", "Europe/Berlin"),  # DST gap and repeat days
        ("0 0 L * *", "America/New_York"),
    ]:
        shared = sched.parse(expr, tz)
        asks = [T0, T0, T0 + 1, T0 - 86_400_000, T0, T0 + 40 * 86_400_000, T0 + 1]
        for after in asks:
            assert shared.next_after(after) == _fresh(expr, tz).next_after(after)


def test_the_memo_is_neither_compared_nor_carried_by_replace() -> None:
    from dataclasses import replace

    a, b = _fresh("0 * * * *"), _fresh("0 * * * *")
    a.next_after(T0)
    assert a == b and hash(a) == hash(b)
    c2 = replace(a, timezone="Asia/Tokyo", _tz=sched._load_zone("Asia/Tokyo"))
    assert c2._memo == [None]


def test_the_rebuild_yields_to_the_loop_and_a_change_made_meanwhile_wins(
    monkeypatch: Any,
) -> None:
    monkeypatch.setattr(leader_mod, "REBUILD_CHUNK", 10)
    st = State()
    for i in range(50):
        assert st.apply(c.PutJob(at_ms=T0, spec=spec(f"j{i:02d}", schedule="0 * * * *"))) == Ok(
            "created"
        )
    raft = _Raft(st)
    leader = _leader(raft, FakeClock(wall_ms=T0))
    hourly = sched.parse("0 * * * *").next_after(T0)
    minutely = sched.parse("* * * * *").next_after(T0)
    ran_during: list[int] = []

    async def change_j49() -> None:
        # runs while the rebuild yields: j49 moves to every minute, as an applied PutJob
        # is told to the leader (jobs_changed)
        ran_during.append(len(leader._next))
        raft.machine.apply(c.encode(c.PutJob(at_ms=T0, spec=spec("j49", schedule="* * * * *"))))
        leader.jobs_changed(["j49"])

    async def main() -> None:
        task = asyncio.create_task(change_j49())
        # the rebuild (j49 read before the change), then the change noted meanwhile, read
        # again in the same pass (not a second later)
        await leader._refresh()
        await task
        assert ran_during and 0 < ran_during[0] < 50  # it ran in the middle of the rebuild
        assert len(leader._next) == 50
        assert leader._next["j49"] == minutely and leader._next["j00"] == hourly
        assert leader._pop_due(minutely) == ["j49"]

    asyncio.run(main())


def test_after_a_full_collection_survivors_are_frozen_and_thawed_once_a_period() -> None:
    now = [100.0]
    freezer = memory._Freezer(600.0, lambda: now[0])
    before = gc.get_freeze_count()
    try:
        freezer("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
        assert gc.get_freeze_count() == before  # a young collection: nothing
        keep = [[i] for i in range(1000)]  # tracked objects that survive
        freezer("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
        assert gc.get_freeze_count() >= before + 1000 and freezer.freezes == 1
        now[0] += 600.0
        freezer("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
        assert gc.get_freeze_count() == 0 and freezer.thaws == 1  # handed back
        del keep
    finally:
        gc.unfreeze()


def test_short_full_collections_installs_one_hook(monkeypatch: Any) -> None:
    monkeypatch.setattr(memory, "_freezer", None)
    try:
        memory.short_full_collections()
        memory.short_full_collections()
        assert sum(1 for cb in gc.callbacks if isinstance(cb, memory._Freezer)) == 1
    finally:  # (not in this test process: other tests count objects with gc)
        gc.callbacks[:] = [cb for cb in gc.callbacks if not isinstance(cb, memory._Freezer)]
        gc.unfreeze()


def test_totals_without_the_paused_count_walks_no_job() -> None:
    st = State()
    for name in ("a", "b"):
        st.apply(c.PutJob(at_ms=T0, spec=spec(name)))
    st.apply(c.SetPaused(at_ms=T0, name="a", paused=True))
    full, quick = st.totals(), st.totals(paused=False)
    assert full.paused_jobs == 1 and quick.paused_jobs == 0
    assert (
        (full.jobs, full.runs, full.leases) == (quick.jobs, quick.runs, quick.leases) == (2, 0, 0)
    )


def test_each_unschedulable_run_is_logged_with_its_own_jobs_tags(caplog: Any) -> None:
    st = State()
    for name, tag in (("x", "one"), ("y", "two")):
        st.apply(c.PutJob(at_ms=T0, spec=spec(name, tags=(("need", tag),))))
    leader = _leader(_Raft(st), FakeClock(wall_ms=T0 + 1500))
    caplog.set_level("WARNING", logger="raftcron.scheduler.leader")
    asyncio.run(leader._fire(["x", "y"], T0 + 1500))
    lines = [r.getMessage() for r in caplog.records if "unschedulable job=" in r.getMessage()]
    assert any("job=x " in m and "tags={need=one}" in m for m in lines)
    assert any("job=y " in m and "tags={need=two}" in m for m in lines)


def test_limit_malloc_arenas_leaves_an_operators_setting_alone(monkeypatch: Any) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert memory.limit_malloc_arenas() is False
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    assert memory.limit_malloc_arenas() in (True, False)  # (False: no glibc here)
