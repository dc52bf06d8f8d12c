"""The planner: due fires, catch-up windows, node choice."""

from __future__ import annotations

from raftcron.core.model import Job, JobSpec
from raftcron.core.planner import NodeInfo, choose_node, due, plan

T0 = 1_800_000_000_000  # 2027-01-15T08:00:00Z, a whole minute


def job(schedule: str = "* * * * * *", watermark: int = T0, **kw: object) -> Job:
    base: dict[str, object] = {"name": "j", "schedule": schedule, "command": ("true",)}
    base.update(kw)
    return Job(spec=JobSpec(**base), watermark_ms=watermark)  # type: ignore[arg-type]


def test_nothing_due_before_the_next_fire() -> None:
    assert due(job(), T0 + 999) == ([], None)


def test_every_fire_since_the_watermark_inside_the_window_runs_oldest_first() -> None:
    fires, missed = due(job(catchup_ms=10_000), T0 + 5_000)
    assert fires == [T0 + 1000, T0 + 2000, T0 + 3000, T0 + 4000, T0 + 5000]
    assert missed is None


def test_fires_outside_the_window_are_one_missed_record_with_a_reason() -> None:
    fires, missed = due(job(catchup_ms=3_000), T0 + 10_000)
    assert fires == [T0 + 8000, T0 + 9000, T0 + 10_000]
    assert missed is not None
    assert (missed.first_ms, missed.last_ms, missed.count) == (T0 + 1000, T0 + 7000, 7)
    assert "catch-up window" in missed.reason and "catchup=3s" in missed.reason


def test_a_late_wakeup_is_not_a_miss_even_with_zero_catchup() -> None:
    fires, missed = due(job("* * * * *", catchup_ms=0), T0 + 60_400)
    assert fires == [T0 + 60_000] and missed is None


def test_backwards_clock_never_refires_below_the_watermark() -> None:
    assert due(job(watermark=T0 + 5000), T0) == ([], None)


def test_choose_node_least_loaded_matching_tags_deterministic() -> None:
    nodes = [NodeInfo(name="a", tags=(("role", "db"),)), NodeInfo(name="b"), NodeInfo(name="c")]
    spec = JobSpec(name="j", schedule="* * * * *", command=("x",), tags=(("role", "db"),))
    assert choose_node(spec, "j@1", nodes, {"a": 5}) == "a"
    anyone = JobSpec(name="j", schedule="* * * * *", command=("x",))
    assert choose_node(anyone, "j@1", nodes, {"a": 1, "b": 1, "c": 0}) == "c"
    picks = {choose_node(anyone, f"j@{i}", nodes, {}) for i in range(50)}
    assert picks == {"a", "b", "c"}  # ties spread by the run id hash
    assert choose_node(spec, "j@1", [NodeInfo(name="b")], {}) == ""


def test_plan_batches_all_due_jobs_and_spreads_load() -> None:
    jobs = [job(name=f"j{i}", catchup_ms=60_000) for i in range(6)]
    p = plan(jobs, T0 + 1000, [NodeInfo(name="a"), NodeInfo(name="b"), NodeInfo(name="c")], {})
    assert len(p.fires) == 6
    counts = {n: sum(f.node == n for f in p.fires) for n in "abc"}
    assert counts == {"a": 2, "b": 2, "c": 2}
    assert all(f.trigger == "schedule" for f in p.fires)
