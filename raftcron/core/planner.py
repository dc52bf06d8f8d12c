"""The planner: which fires are due, which are missed, and which node runs each.

Pure functions of (committed state, now, live nodes). The scheduler calls them on the
leader and proposes the resulting :class:`~raftcron.core.commands.Plan`; ``apply`` then
re-checks everything, so a plan computed from a stale view is harmless.

A fire is due at ``scheduled_at + offset``, where ``offset`` is the job's fixed jitter
offset (:func:`~raftcron.core.model.jitter_offset_ms`, 0 without jitter); "now" below is
``now - offset``, so lateness is measured from when the fire was due.

Catch-up rule (``catchup_mode``), for the fires in ``(watermark, now]``:

* ``all`` (the default): fires in ``(watermark, now - window]`` are recorded as missed,
  fires in ``(now - window, now]`` are claimed oldest first.
  ``window = max(catchup, CATCHUP_FLOOR_MS)``, so a fire is never missed for being a few
  hundred milliseconds late.
* ``latest``: as ``all``, but of the fires in the window only the newest is claimed; the
  others are missed, superseded by it (cron fires are at least a second apart, so none of
  them is under ``CATCHUP_FLOOR_MS`` late).
* ``none``: the window is ``CATCHUP_FLOOR_MS`` whatever ``catchup`` says: a fire more than
  that late (e.g. it fell due during an election) is missed; the schedule goes on from now.

Every fire that will not run goes into one aggregated missed record per job and batch, with
the count and the reason. A paused job's due fires are one record with status ``paused``
instead (``apply`` adds it to the job's current paused record).

Overlap: a job with buffered runs and no live run (``busy`` names the jobs with live runs)
gets a ``buffered`` claim for the head of its buffer, before its new fires.

Backfill: a job with a backfill, no live run, nothing buffered and no fire claimed in this
plan gets a ``backfill`` claim for the next fire of the backfill's range, at most
``rate`` per second (``apply`` checks the same).

Retries: a pending retry whose due time has come gets a ``retry`` claim (before buffered
runs and new fires); unless the job's overlap is ``allow`` it waits while the job has a
live run of another fire (the other instances of its own fire do not count), and at most
one is claimed per plan. With ``retry_other_node`` the node of the failed attempt is
avoided when another live node matches.

Placement (``count``, ``max_parallel``, ``tags``): each fire gets ``count`` instances
(``"all"``: as many as live nodes match the tags), each on a different matching live node
that has fewer than ``max_parallel`` live runs of the job and no live instance of the same
fire, least loaded first. Instances that find no such node become one ``Fire`` with
``node == ""`` (recorded as skipped, ``unschedulable: ...``, covering all of them). A
buffered fire's instances are claimed together; a retry goes where its own instance may.

Drain: members in ``drained`` (``State.drained``) are no candidates at all: placement for
``tags``, ``count`` (``"all"`` counts only members that are not drained) and
``max_parallel`` sees only the others, and retries and buffered runs go elsewhere too. A
fire no other member can take is recorded as unschedulable, like any fire without a node.

``@every <duration>`` jobs fire at the job's creation (``Job.created_ms``, truncated to the
whole second) plus whole multiples of the duration (:func:`schedule_of`); a PUT that changes
the schedule keeps that anchor. Everything above applies to their fires as to cron fires.

Dependencies: a job with ``after`` has no schedule (no fires of its own); ``apply`` queues
its dependency fires on ``Job.deps`` when its parents' fire settles, and each gets a
``dependency`` claim with a node here (in order, after buffered runs); ``apply`` then
runs it through the job's overlap policy like any fire.

Broken jobs (``Job.broken``: the leader could not compute them, see
``raftcron.scheduler.leader``): only their scheduled fires are looked at, and every one
that falls due is recorded as missed with the reason ``broken: ...`` (paused ones as
paused); nothing of theirs is claimed until a ``PUT`` or a resume clears the flag. With
``errors`` (the leader's call), an exception while planning one job takes that job out of
the plan and reports it; the others are planned as usual.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from raftcron.core.commands import Fire, Missed, Plan
from raftcron.core.model import (
    CATCHUP_FLOOR_MS,
    COUNT_ALL,
    PAUSED,
    TRIGGER_BACKFILL,
    TRIGGER_BUFFERED,
    TRIGGER_CATCHUP,
    TRIGGER_DEPENDENCY,
    TRIGGER_RETRY,
    TRIGGER_SCHEDULE,
    Job,
    JobSpec,
    arm_problem,
    backfill_ready_ms,
    backfill_run_id,
    fire_of,
    instance_run_id,
    jitter_offset_ms,
    run_id,
)
from raftcron.core.schedule import Schedule, schedule_for

MAX_FIRES_PER_JOB: Final = 1000  # per batch; the rest follow in the next batch
# next_due_ms of a job with nothing to do ever (no schedule: it runs after other jobs)
NEVER_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MAX_MISSED_COUNT: Final = 100_000  # counting stops here; the reason then says "at least"
# A fire counts as on time (trigger "schedule") when claimed within this of its time.
ON_TIME_MS: Final = 1_000
# The reason of a broken job's missed fires starts with this (then the job's reason).
BROKEN_PREFIX: Final = "broken:"
MAX_ERROR_TEXT: Final = 300  # characters of an exception kept as a broken job's reason


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    name: str
    tags: tuple[tuple[str, str], ...] = ()


def schedule_of(spec: JobSpec, created_ms: int) -> Schedule:
    """The job's schedule in its zone, with its daylight-saving rules. ``created_ms``: the
    job's creation (``Job.created_ms``), from which an ``@every`` schedule counts (a cron
    schedule ignores it)."""
    return schedule_for(
        spec.schedule,
        spec.timezone,
        on_gap=spec.dst_gap,
        on_repeat=spec.dst_repeat,
        anchor_ms=created_ms,
    )


def _fmt_ms(ms: int) -> str:
    return f"{ms / 1000:g}s"


def due(job: Job, now_ms: int) -> tuple[list[int], Missed | None]:
    """The fires of ``job`` to claim now (oldest first) and the record of those that will
    not run (missed, or paused), if any."""
    spec = job.spec
    if not spec.schedule:  # runs after other jobs: no fires of its own
        return [], None
    sched = schedule_of(spec, job.created_ms)
    now_ms -= jitter_offset_ms(spec.name, spec.jitter_ms)  # a fire is due at t + offset
    if sched.next_after(job.watermark_ms) > now_ms:
        return [], None
    if job.paused:
        held = sched.fires_between(job.watermark_ms, now_ms, MAX_MISSED_COUNT)
        note = f": {job.pause_note}" if job.pause_note else ""
        return [], Missed(
            job=spec.name,
            first_ms=held[0],
            last_ms=held[-1],
            count=len(held),
            reason=f"job is paused{note}",
            status=PAUSED,
        )
    mode = spec.catchup_mode
    window = CATCHUP_FLOOR_MS if mode == "none" else max(spec.catchup_ms, CATCHUP_FLOOR_MS)
    cutoff = now_ms - window
    old: list[int] = []
    start = job.watermark_ms
    if cutoff > job.watermark_ms:
        old = sched.fires_between(job.watermark_ms, cutoff, MAX_MISSED_COUNT)
        if old:
            start = cutoff
    fires = sched.fires_between(start, now_ms, MAX_FIRES_PER_JOB + 1)
    superseded: list[int] = []
    if mode == "latest" and len(fires) > MAX_FIRES_PER_JOB:
        superseded, fires = fires[:MAX_FIRES_PER_JOB], []  # the newest is in a later batch
    elif mode == "latest" and len(fires) > 1:
        # (fires are at least 1 s apart, so the ones superseded are all >= 1 s late)
        superseded, fires = fires[:-1], fires[-1:]
    else:
        fires = fires[:MAX_FIRES_PER_JOB]
    if not old and not superseded:
        return fires, None
    parts = []
    if old:
        at_least = "at least " if len(old) == MAX_MISSED_COUNT else ""
        if mode == "none":
            parts.append(
                f"{at_least}{len(old)} fire(s) more than {_fmt_ms(CATCHUP_FLOOR_MS)} late when "
                "the scheduler reached them (catchup_mode=none runs no late fire)"
            )
        else:
            parts.append(
                f"{at_least}{len(old)} fire(s) older than the catch-up window "
                f"(catchup={_fmt_ms(spec.catchup_ms)}) when the scheduler reached them"
            )
    if superseded:
        by = f"the later fire {run_id(spec.name, fires[0])}" if fires else "later fires"
        parts.append(f"{len(superseded)} fire(s) superseded by {by} (catchup_mode=latest)")
    skipped = old + superseded
    missed = Missed(
        job=spec.name,
        first_ms=skipped[0],
        last_ms=superseded[-1] if superseded else max(old[-1], cutoff),
        count=len(skipped),
        reason="; ".join(parts),
    )
    return fires, missed


def placeable(nodes: Iterable[NodeInfo], drained: Collection[str]) -> list[NodeInfo]:
    """The live ``nodes`` that may get new grants: those not drained."""
    return [n for n in nodes if n.name not in drained]


def tags_match(spec: JobSpec, node: NodeInfo) -> bool:
    have = dict(node.tags)
    return all(have.get(k) == v for k, v in spec.tags)


def choose_node(
    spec: JobSpec,
    rid: str,
    nodes: Sequence[NodeInfo],
    load: Mapping[str, int],
    avoid: str = "",
    exclude: Collection[str] = (),
    job_load: Mapping[str, int] | None = None,
    prefer: str = "",
) -> str:
    """The least-loaded live node matching the job's tags; ties broken by a hash of the
    run id and the node name (deterministic, and spreads equal nodes evenly).
    ``prefer`` (the node a fire is armed for) is taken whenever it qualifies.
    ``avoid`` is taken only when no other node matches. Nodes in ``exclude`` (they run
    another instance of the fire) and nodes already running ``max_parallel`` runs of the
    job (``job_load``: live runs of the job per node) are never taken. ``""`` when no
    node qualifies."""
    cap = spec.max_parallel
    fits = [
        n
        for n in nodes
        if n.name not in exclude
        and tags_match(spec, n)
        and (cap is None or job_load is None or job_load.get(n.name, 0) < cap)
    ]
    if avoid and any(n.name != avoid for n in fits):
        fits = [n for n in fits if n.name != avoid]
    if prefer and any(n.name == prefer for n in fits):
        return prefer
    best: tuple[int, bytes, str] | None = None
    for node in fits:
        key = (
            load.get(node.name, 0),
            hashlib.blake2b(f"{rid}/{node.name}".encode(), digest_size=8).digest(),
            node.name,
        )
        if best is None or key < best:
            best = key
    return "" if best is None else best[2]


def instances_of(spec: JobSpec, nodes: Sequence[NodeInfo]) -> int:
    """How many instances a fire of ``spec`` has now: ``count``, or for ``count = "all"``
    the live nodes matching its tags (at least 1: a fire no node matches is one
    unschedulable record)."""
    if spec.count != COUNT_ALL:
        return spec.count
    return max(1, sum(1 for n in nodes if tags_match(spec, n)))


def place(
    spec: JobSpec,
    base: str,
    nodes: Sequence[NodeInfo],
    load: Mapping[str, int],
    job_load: Mapping[str, int] | None = None,
    prefer: str = "",
) -> tuple[list[str], int]:
    """The nodes of a new fire's instances (instance K on ``nodes[K-1]``; fewer than
    asked when too few qualify) and how many instances it has. ``base`` is instance 1's
    run id; each instance's ties are broken by its own run id. ``prefer``: the node
    instance 1 is armed for, taken if it qualifies."""
    n = instances_of(spec, nodes)
    load = dict(load)
    per_node = dict(job_load or {})
    chosen: list[str] = []
    for k in range(1, n + 1):
        node = choose_node(
            spec,
            instance_run_id(base, k),
            nodes,
            load,
            exclude=chosen,
            job_load=per_node,
            prefer=prefer if k == 1 else "",
        )
        if not node:
            break
        chosen.append(node)
        load[node] = load.get(node, 0) + 1
        per_node[node] = per_node.get(node, 0) + 1
    return chosen, n


def placement_fires(
    spec: JobSpec, t: int, trigger: str, chosen: Sequence[str], instances: int
) -> list[Fire]:
    """The ``Fire`` of each placed instance, and one with ``node == ""`` covering the
    instances that found no node (if any)."""
    fires = [
        Fire(
            job=spec.name,
            scheduled_at_ms=t,
            node=node,
            trigger=trigger,
            instance=k,
            instances=instances,
        )
        for k, node in enumerate(chosen, start=1)
    ]
    if len(chosen) < instances:
        fires.append(
            Fire(
                job=spec.name,
                scheduled_at_ms=t,
                node="",
                trigger=trigger,
                instance=len(chosen) + 1,
                instances=instances,
            )
        )
    return fires


def error_text(exc: BaseException) -> str:
    """An exception as a one-line reason of bounded size (it is replicated and logged)."""
    text = f"{type(exc).__name__}: {exc}"
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


def broken_missed(job: Job, now_ms: int) -> Missed | None:
    """The record of a broken job's due fires: every scheduled fire up to now is missed,
    with the reason ``broken: ...`` (a paused job's are recorded as paused, as ever).
    Nothing else of the job (retries, buffered runs, dependency fires, its backfill) is
    claimed while it is broken."""
    times, miss = due(job, now_ms)
    if miss is not None and miss.status == PAUSED:
        return miss
    if not times and miss is None:
        return None
    reason = f"{BROKEN_PREFIX} {job.broken}"
    first = min([*times[:1], *([miss.first_ms] if miss else [])])
    last = max([*times[-1:], *([miss.last_ms] if miss else [])])
    count = len(times) + (miss.count if miss else 0)
    return Missed(job=job.spec.name, first_ms=first, last_ms=last, count=count, reason=reason)


def plan(
    jobs: Iterable[Job],
    now_ms: int,
    nodes: Sequence[NodeInfo],
    load: Mapping[str, int],
    busy: Collection[str] = frozenset(),
    live: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    errors: list[tuple[Job, str]] | None = None,
    drained: Collection[str] = frozenset(),
    armed: Mapping[str, str] | None = None,
) -> Plan:
    """One batched plan for every due fire of ``jobs`` (paused jobs included: their fires
    are recorded as paused, so resuming does not back-fill them). ``busy``: the names of
    the jobs that have a live run (their buffered runs wait). ``live``: each job's live
    runs as ``(run id, node)`` (``State.live_by_job``), for ``max_parallel`` and for
    retries beside the other instances of their fire; without it every live run of a
    job counts as another fire's and ``max_parallel`` sees only this plan's claims.

    ``errors``: when given, an exception while planning one job is caught: that job
    adds nothing to the plan (what it had added is taken back), ``(job, reason)`` is
    appended, and every other job is planned as usual. A broken job (``Job.broken``)
    only has its due fires recorded as missed (:func:`broken_missed`).
    ``drained``: members that get no new grant (left out of ``nodes``). ``armed``: the
    node each armed fire is reserved for, by run id (``State.armed_nodes``): a fire goes
    there when that node qualifies, as placement would choose it anyway."""
    if drained:
        nodes = placeable(nodes, drained)
    fires: list[Fire] = []
    missed: list[Missed] = []
    running = dict(load)
    detail = live is not None  # else every live run may be another fire's
    live = live or {}

    reserved = armed or {}

    def claim(spec: JobSpec, base: str, t: int, trigger: str, per_node: dict[str, int]) -> None:
        chosen, n = place(spec, base, nodes, running, per_node, reserved.get(base, ""))
        for node in chosen:
            running[node] = running.get(node, 0) + 1
            per_node[node] = per_node.get(node, 0) + 1
        fires.extend(placement_fires(spec, t, trigger, chosen, n))

    for job in jobs:
        if errors is None:
            _plan_job(job, now_ms, nodes, busy, live, detail, fires, missed, running, claim)
            continue
        n_fires, n_missed, was_running = len(fires), len(missed), dict(running)
        try:
            _plan_job(job, now_ms, nodes, busy, live, detail, fires, missed, running, claim)
        except Exception as exc:  # this job only: take back what it added
            del fires[n_fires:], missed[n_missed:]
            running.clear()
            running.update(was_running)
            if not job.broken:
                errors.append((job, error_text(exc)))
    return Plan(at_ms=now_ms, fires=tuple(fires), missed=tuple(missed))


def _plan_job(
    job: Job,
    now_ms: int,
    nodes: Sequence[NodeInfo],
    busy: Collection[str],
    live: Mapping[str, Sequence[tuple[str, str]]],
    detail: bool,
    fires: list[Fire],
    missed: list[Missed],
    running: dict[str, int],
    claim: Callable[[JobSpec, str, int, str, dict[str, int]], None],
) -> None:
    """Add ``job``'s claims and records to ``fires`` and ``missed`` (see :func:`plan`)."""
    if job.broken:
        record = broken_missed(job, now_ms)
        if record is not None:
            missed.append(record)
        return
    spec = job.spec
    is_busy = spec.name in busy
    per_node: dict[str, int] = {}
    for _, on in live.get(spec.name, ()):
        per_node[on] = per_node.get(on, 0) + 1
    running_fires = {fire_of(rid) for rid, _ in live.get(spec.name, ())}
    for pr in job.retry:
        fire = fire_of(pr.run)
        others = bool(running_fires - {fire}) or (is_busy and not detail)
        if pr.due_ms > now_ms or (others and spec.overlap != "allow"):
            continue
        siblings = [on for rid, on in live.get(spec.name, ()) if fire_of(rid) == fire]
        node = choose_node(spec, pr.run, nodes, running, pr.avoid, siblings, per_node)
        if node:
            running[node] = running.get(node, 0) + 1
            per_node[node] = per_node.get(node, 0) + 1
        fires.append(
            Fire(
                job=spec.name,
                scheduled_at_ms=pr.scheduled_at_ms,
                node=node,
                trigger=TRIGGER_RETRY,
                attempt=pr.attempt,
                instance=pr.instance,
            )
        )
        running_fires.add(fire)
        is_busy = True
    if job.buffered and not is_busy:
        # the head fire's instances go together (they do not overlap each other)
        head = fire_of(job.buffered[0][0])
        group: list[tuple[str, int]] = []
        for entry in job.buffered:  # (they were buffered together, one after another)
            if fire_of(entry[0]) != head:
                break
            group.append(entry)
        taken: list[str] = []
        for rid, t in group:
            node = choose_node(spec, rid, nodes, running, "", taken, per_node)
            if node:
                taken.append(node)
                running[node] = running.get(node, 0) + 1
                per_node[node] = per_node.get(node, 0) + 1
            buffered = Fire(job=spec.name, scheduled_at_ms=t, node=node, trigger=TRIGGER_BUFFERED)
            fires.append(buffered)
    for rid, t in job.deps[:MAX_FIRES_PER_JOB]:
        claim(spec, rid, t, TRIGGER_DEPENDENCY, per_node)
    times, miss = due(job, now_ms)
    if miss is not None:
        missed.append(miss)
    due_now = now_ms - jitter_offset_ms(spec.name, spec.jitter_ms)
    for t in times:
        on_time = due_now - t <= ON_TIME_MS
        trigger = TRIGGER_SCHEDULE if on_time else TRIGGER_CATCHUP
        claim(spec, run_id(spec.name, t), t, trigger, per_node)
    bf = job.backfill
    if bf is None or times or job.buffered or job.retry or job.paused or is_busy:
        return
    nxt = backfill_next(job)
    if nxt is not None and now_ms >= backfill_ready_ms(bf):
        claim(spec, backfill_run_id(spec.name, nxt, bf.id), nxt, TRIGGER_BACKFILL, per_node)


def arm_fires(
    jobs: Iterable[Job],
    now_ms: int,
    lead_ms: int,
    nodes: Sequence[NodeInfo],
    load: Mapping[str, int],
    busy: Collection[str] = frozenset(),
    drained: Collection[str] = frozenset(),
) -> list[Fire]:
    """The fires to arm now (``Arm``; docs/design.md, "Armed fires"): for each job whose
    fires may be armed (:func:`~raftcron.core.model.arm_problem`), that has no live run
    (``busy``: its fire would wait or stop another), nothing buffered, pending or waiting,
    its next scheduled fire if that falls due (its jitter offset included) after
    ``now_ms`` and no later than ``now_ms + lead_ms``, on the node placement would choose
    for it now. The plan at the due time still decides; this only lets that node get
    ready."""
    if drained:
        nodes = placeable(nodes, drained)
    running = dict(load)
    out: list[Fire] = []
    for job in jobs:
        spec = job.spec
        if arm_problem(job) or spec.name in busy or job.buffered or job.retry or job.deps:
            continue
        t = schedule_of(spec, job.created_ms).next_after(job.watermark_ms)
        if not now_ms < t + jitter_offset_ms(spec.name, spec.jitter_ms) <= now_ms + lead_ms:
            continue
        node = choose_node(spec, run_id(spec.name, t), nodes, running)
        if node:
            running[node] = running.get(node, 0) + 1
            out.append(Fire(job=spec.name, scheduled_at_ms=t, node=node, trigger=TRIGGER_SCHEDULE))
    return out


def backfill_next(job: Job) -> int | None:
    """The next fire of ``job``'s backfill (``None`` when it has none left)."""
    bf = job.backfill
    if bf is None:
        return None
    try:
        t = schedule_of(job.spec, job.created_ms).next_after(bf.cursor_ms)
    except ValueError:
        return None
    return t if t <= bf.to_ms else None


def next_due_ms(job: Job, busy: bool, live_fires: Collection[str] | None = None) -> int:
    """When the scheduler should next look at ``job``: its next fire plus its jitter
    offset, the earliest pending retry it may claim, 0 (now) when a buffered run of it can
    be claimed, or when the next fire of its backfill may go. ``live_fires``: the fires
    (``fire_of``) of the job's live runs; a retry may go beside its own fire's instances."""
    spec = job.spec
    if job.broken:  # only its scheduled fires, to record them as missed
        if not spec.schedule:
            return NEVER_MS
        t = schedule_of(spec, job.created_ms).next_after(job.watermark_ms)
        return t + jitter_offset_ms(spec.name, spec.jitter_ms)
    if (job.buffered and not busy) or job.deps:
        return 0
    if spec.schedule:
        t = schedule_of(spec, job.created_ms).next_after(job.watermark_ms)
        t += jitter_offset_ms(spec.name, spec.jitter_ms)
    else:
        t = NEVER_MS
    if job.backfill is not None and not busy and not job.paused:
        t = min(t, backfill_ready_ms(job.backfill))
    if not busy or spec.overlap == "allow":
        t = min([t, *(pr.due_ms for pr in job.retry)])
    elif live_fires is not None:
        mine = [pr.due_ms for pr in job.retry if not set(live_fires) - {fire_of(pr.run)}]
        t = min([t, *mine])
    return t


def next_fire_ms(job: Job, now_ms: int) -> int | None:
    """The scheduled time of ``job``'s next fire as of ``now_ms`` (the API's ``next_fire``
    and ``raftcron_job_next_fire_timestamp_seconds``): the first fire after the later of
    its watermark and ``now`` minus its jitter offset, so a fire that is due but not yet
    claimed is still next. ``None`` for a job without a schedule (it runs after others)
    or none left before year 10000."""
    spec = job.spec
    if not spec.schedule:
        return None
    after = max(job.watermark_ms, now_ms - jitter_offset_ms(spec.name, spec.jitter_ms))
    fires = schedule_of(spec, job.created_ms).fires_between(after, NEVER_MS, 1)
    return fires[0] if fires else None
