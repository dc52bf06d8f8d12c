"""The planner: which fires are due, which are missed, and which node runs each.

Pure functions of (committed state, now, live nodes). The scheduler calls them on the
leader and proposes the resulting :class:`~raftcron.core.commands.Plan`; ``apply`` then
re-checks everything, so a plan computed from a stale view is harmless.

Catch-up rule: fires in ``(watermark, now - window]`` are recorded as missed (one
aggregated ledger record per job and batch, with the count and the reason), fires in
``(now - window, now]`` are claimed oldest first. ``window = max(catchup, CATCHUP_FLOOR_MS)``
so a fire is never missed for being a few hundred milliseconds late.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from raftcron.core.commands import Fire, Missed, Plan
from raftcron.core.model import (
    CATCHUP_FLOOR_MS,
    TRIGGER_CATCHUP,
    TRIGGER_SCHEDULE,
    Job,
    JobSpec,
    run_id,
)
from raftcron.core.schedule import parse

MAX_FIRES_PER_JOB: Final = 1000  # per batch; the rest follow in the next batch
MAX_MISSED_COUNT: Final = 100_000  # counting stops here; the reason then says "at least"
# A fire counts as on time (trigger "schedule") when claimed within this of its time.
ON_TIME_MS: Final = 1_000


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    name: str
    tags: tuple[tuple[str, str], ...] = ()


def _fmt_ms(ms: int) -> str:
    return f"{ms / 1000:g}s"


def due(job: Job, now_ms: int) -> tuple[list[int], Missed | None]:
    """The fires of ``job`` to claim now (oldest first) and the missed record, if any."""
    spec = job.spec
    sched = parse(spec.schedule, spec.timezone)
    if sched.next_after(job.watermark_ms) > now_ms:
        return [], None
    window = max(spec.catchup_ms, CATCHUP_FLOOR_MS)
    cutoff = now_ms - window
    missed: Missed | None = None
    start = job.watermark_ms
    if cutoff > job.watermark_ms:
        old = sched.fires_between(job.watermark_ms, cutoff, MAX_MISSED_COUNT)
        if old:
            at_least = "at least " if len(old) == MAX_MISSED_COUNT else ""
            missed = Missed(
                job=spec.name,
                first_ms=old[0],
                last_ms=max(old[-1], cutoff),
                count=len(old),
                reason=(
                    f"{at_least}{len(old)} fire(s) older than the catch-up window "
                    f"(catchup={_fmt_ms(spec.catchup_ms)}) when the scheduler reached them"
                ),
            )
            start = missed.last_ms
    fires = sched.fires_between(start, now_ms, MAX_FIRES_PER_JOB)
    return fires, missed


def tags_match(spec: JobSpec, node: NodeInfo) -> bool:
    have = dict(node.tags)
    return all(have.get(k) == v for k, v in spec.tags)


def choose_node(spec: JobSpec, rid: str, nodes: Sequence[NodeInfo], load: Mapping[str, int]) -> str:
    """The least-loaded live node matching the job's tags; ties broken by a hash of the
    run id and the node name (deterministic, and spreads equal nodes evenly).
    ``""`` when no node matches."""
    best: tuple[int, bytes, str] | None = None
    for node in nodes:
        if not tags_match(spec, node):
            continue
        key = (
            load.get(node.name, 0),
            hashlib.blake2b(f"{rid}/{node.name}".encode(), digest_size=8).digest(),
            node.name,
        )
        if best is None or key < best:
            best = key
    return "" if best is None else best[2]


def plan(
    jobs: Iterable[Job], now_ms: int, nodes: Sequence[NodeInfo], load: Mapping[str, int]
) -> Plan:
    """One batched plan for every due fire of ``jobs`` (paused jobs included: their fires
    are recorded as skipped by ``apply``, so resuming does not back-fill them)."""
    fires: list[Fire] = []
    missed: list[Missed] = []
    running = dict(load)
    for job in jobs:
        times, miss = due(job, now_ms)
        if miss is not None:
            missed.append(miss)
        for t in times:
            rid = run_id(job.spec.name, t)
            node = choose_node(job.spec, rid, nodes, running)
            if node:
                running[node] = running.get(node, 0) + 1
            trigger = TRIGGER_SCHEDULE if now_ms - t <= ON_TIME_MS else TRIGGER_CATCHUP
            fires.append(Fire(job=job.spec.name, scheduled_at_ms=t, node=node, trigger=trigger))
    return Plan(at_ms=now_ms, fires=tuple(fires), missed=tuple(missed))
