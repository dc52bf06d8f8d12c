"""Checker of the chaos suite: reads a run directory and verifies properties P1-P7.

A run directory holds ``sink.jsonl`` (what the sink recorded, in its order) and
``history.json`` (the test's configuration, the API's view during the test and every node's
ledger after healing). :func:`load` reads both into a :class:`History`, :func:`check` turns
it into a :class:`Report`: one summary line plus a list of :class:`Violation`.

Times: sink events carry ``t`` (the sink's CLOCK_MONOTONIC, seconds) and ``wall_ms`` (the
sink's real clock, never faulted). ``wall = t * 1000 + offset``, the offset being the median
of ``wall_ms - t * 1000`` over all events. Nemesis windows and fire times are compared in
wall ms; intervals of executions in sink ``t``.

Usage: ``python -m tests.chaos.checker RUN_DIR [RUN_DIR...]``; exit status 0 when every
property holds, 1 if any violation, 2 if a run directory cannot be read.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, Final, NamedTuple

from raftcron.core.schedule import CronSchedule, ScheduleError, parse

__all__ = [
    "History",
    "HistoryError",
    "Report",
    "Violation",
    "check",
    "load",
    "main",
    "save",
]

Json = dict[str, Any]

SINK_FILE: Final = "sink.jsonl"
HISTORY_FILE: Final = "history.json"
PAUSE_GROUP: Final = "pause-group"
NEMESIS_KINDS: Final = frozenset(
    {"kill", "restart", "pause", PAUSE_GROUP, "partition", "clock", "power-loss"}
)
FIRE_LIMIT: Final = 1_000_000  # fires per job in the observe span; far above any test
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class HistoryError(ValueError):
    """A run directory that cannot be checked (missing file, malformed event or field)."""


# --------------------------------------------------------------------------- input


@dataclass(slots=True, kw_only=True)
class History:
    """One run directory, close to its files' format (plain JSON objects inside).

    ``events`` are the objects of ``sink.jsonl`` in file order; the other fields are the
    keys of ``history.json`` (``observe`` split into ``observe_start_t``/``observe_end_t``).
    ``warnings`` collects what :func:`load` forgave (a truncated last sink line).
    """

    name: str
    events: list[Json]
    jobs: dict[str, Json]
    observe_start_t: float
    observe_end_t: float
    recovery_bound_s: float
    spawn_bound_s: float = 1.0
    ledgers: dict[str, list[Json]] = field(default_factory=dict)
    final_jobs: dict[str, list[str]] = field(default_factory=dict)
    observed_runs: list[Json] = field(default_factory=list)
    seed: int | None = None
    warnings: list[str] = field(default_factory=list)


def load(run_dir: Path) -> History:
    """Read ``sink.jsonl`` and ``history.json`` from ``run_dir``.

    The last non-empty sink line is dropped with a warning if it is not valid JSON (the sink
    was killed mid-write); any other malformed line raises :class:`HistoryError`.
    """
    try:
        sink_text = (run_dir / SINK_FILE).read_text(encoding="utf-8")
        raw = json.loads((run_dir / HISTORY_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HistoryError(f"{run_dir}: {exc}") from exc
    warnings: list[str] = []
    numbered = [(i, line) for i, line in enumerate(sink_text.splitlines(), 1) if line.strip()]
    events: list[Json] = []
    for pos, (lineno, line) in enumerate(numbered):
        try:
            ev = json.loads(line)
        except json.JSONDecodeError as exc:
            if pos == len(numbered) - 1:
                warnings.append(f"{SINK_FILE}:{lineno}: ignored truncated last line {line[:60]!r}")
                continue
            raise HistoryError(f"{run_dir / SINK_FILE}:{lineno}: {exc}") from exc
        if not isinstance(ev, dict):
            raise HistoryError(f"{run_dir / SINK_FILE}:{lineno}: not a JSON object")
        events.append(ev)
    try:
        return History(
            name=str(raw["name"]),
            events=events,
            jobs=dict(raw["jobs"]),
            observe_start_t=float(raw["observe"]["start_t"]),
            observe_end_t=float(raw["observe"]["end_t"]),
            recovery_bound_s=float(raw["recovery_bound_s"]),
            spawn_bound_s=float(raw.get("spawn_bound_s", 1.0)),
            ledgers={str(k): list(v) for k, v in raw.get("ledgers", {}).items()},
            final_jobs={str(k): [str(j) for j in v] for k, v in raw.get("final_jobs", {}).items()},
            observed_runs=list(raw.get("observed_runs", [])),
            seed=None if raw.get("seed") is None else int(raw["seed"]),
            warnings=warnings,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HistoryError(f"{run_dir / HISTORY_FILE}: bad or missing field: {exc!r}") from exc


def save(history: History, run_dir: Path) -> None:
    """Write ``history`` as a run directory (the inverse of :func:`load`; used by tests)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = "".join(json.dumps(ev, sort_keys=True) + "\n" for ev in history.events)
    (run_dir / SINK_FILE).write_text(lines, encoding="utf-8")
    body = {
        "name": history.name,
        "seed": history.seed,
        "jobs": history.jobs,
        "observe": {"start_t": history.observe_start_t, "end_t": history.observe_end_t},
        "recovery_bound_s": history.recovery_bound_s,
        "spawn_bound_s": history.spawn_bound_s,
        "ledgers": history.ledgers,
        "final_jobs": history.final_jobs,
        "observed_runs": history.observed_runs,
    }
    (run_dir / HISTORY_FILE).write_text(json.dumps(body, indent=1), encoding="utf-8")


# --------------------------------------------------------------------------- time


def rfc3339(ms: int) -> str:
    """``ms`` (epoch, UTC) as RFC 3339 with milliseconds only when not whole seconds."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    frac = f".{ms % 1000:03d}" if ms % 1000 else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"


def parse_rfc3339(text: str) -> int:
    """An RFC 3339 UTC instant (``...Z``, optional fraction) as epoch ms."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return (dt - _EPOCH) // timedelta(milliseconds=1)


# --------------------------------------------------------------------------- derived view


@dataclass(slots=True, kw_only=True)
class Execution:
    """One execution the sink saw: its ``begin`` plus its write and end, if any."""

    x: int
    job: str
    scheduled_at_ms: int
    run_id: str
    fence: int
    node: str
    attempt: int
    begin_t: float
    begin_wall_ms: int
    end_t: float | None = None
    clean: bool | None = None
    write_fence: int | None = None
    write_accepted: bool | None = None  # None: never wrote

    def describe(self) -> str:
        return f"run {self.run_id} (x={self.x} fence={self.fence} node={self.node})"


@dataclass(frozen=True, slots=True, kw_only=True)
class Write:
    x: int
    t: float
    fence: int
    accepted: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """A nemesis between its start and end events (``end_*`` None: never ended)."""

    id: int
    name: str
    kind: str
    nodes: tuple[str, ...]
    start_t: float
    start_wall_ms: int
    end_t: float | None
    end_wall_ms: int | None

    def describe(self) -> str:
        return f"nemesis {self.id} {self.name} ({self.kind} {','.join(self.nodes) or '-'})"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiOp:
    op: str  # "put_job" | "delete_job"
    job: str
    t: float
    acked: bool  # False: the "attempt" event, True: the "ack" event


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerRun:
    id: str
    job: str
    scheduled_at_ms: int
    status: str
    fence: int | None
    node: str | None
    count: int


@dataclass(slots=True, kw_only=True)
class Timeline:
    """The sink's events, joined per execution, plus the history's ledgers, parsed."""

    executions: list[Execution]
    writes: list[Write]
    windows: list[Window]
    api: list[ApiOp]
    offset_ms: float | None  # None: no sink event at all
    end_t: float  # the last sink ``t`` (the end of the history)
    ledgers: dict[str, list[LedgerRun]]
    observed: list[tuple[float, LedgerRun]]  # history.observed_runs: (t, run)
    warnings: list[str]

    def wall(self, t: float) -> float:
        return t * 1000 + (self.offset_ms or 0.0)

    def interval(self, e: Execution) -> tuple[float, float]:
        """``[begin t, end t]``; an execution without an end lasts to the end of history."""
        return e.begin_t, self.end_t if e.end_t is None else e.end_t

    def fenced_off(self, e: Execution) -> Window | None:
        """The pause-group window that froze ``e``, if any: then only the fence protects.

        A process frozen past its lease (with its watchdog) cannot be kept from running on
        for a moment when it wakes, beside the run that replaced it. What must hold then is
        that its effect is ordered by its fence: its write is rejected if a higher fence
        wrote first, and accepted only if it comes before every higher fence's write. P2
        checks exactly that on every write, so P3 and P7 exempt ``e`` when its interval
        intersects a pause-group window listing its node.
        """
        lo, hi = self.interval(e)
        for w in self.windows:
            w_end = self.end_t if w.end_t is None else w.end_t
            if w.kind == PAUSE_GROUP and e.node in w.nodes and lo <= w_end and w.start_t <= hi:
                return w
        return None

    def ledger_nodes(self) -> str:
        return ", ".join(sorted(self.ledgers)) or "-"


def _ledger_run(raw: Json) -> LedgerRun:
    at = raw.get("scheduled_at_ms")
    fence = raw.get("fence")
    return LedgerRun(
        id=str(raw["id"]),
        job=str(raw["job"]),
        scheduled_at_ms=int(at) if at is not None else parse_rfc3339(str(raw["scheduled_at"])),
        status=str(raw["status"]),
        fence=None if fence is None else int(fence),
        node=None if raw.get("node") is None else str(raw["node"]),
        count=int(raw.get("count") or 1),
    )


def timeline(h: History) -> Timeline:
    """Parse and join the sink events and the ledgers; raise :class:`HistoryError` if bad."""
    warnings: list[str] = []
    by_x: dict[int, Execution] = {}
    writes: list[Write] = []
    starts: dict[int, Json] = {}
    windows: list[Window] = []
    api: list[ApiOp] = []
    offsets: list[float] = []
    end_t = h.observe_end_t
    for n, ev in enumerate(h.events, 1):
        try:
            kind, t, wall = str(ev["ev"]), float(ev["t"]), int(ev["wall_ms"])
            offsets.append(wall - t * 1000)
            end_t = max(end_t, t)
            if kind == "begin":
                x = int(ev["x"])
                if x in by_x:
                    raise HistoryError(f"sink event {n}: execution id x={x} begins twice")
                by_x[x] = Execution(
                    x=x,
                    job=str(ev["job"]),
                    scheduled_at_ms=int(ev["scheduled_at_ms"]),
                    run_id=str(ev["run_id"]),
                    fence=int(ev["fence"]),
                    node=str(ev["node"]),
                    attempt=int(ev.get("attempt", 1)),
                    begin_t=t,
                    begin_wall_ms=wall,
                )
            elif kind in ("write", "end"):
                e = by_x.get(int(ev["x"]))
                if e is None:
                    warnings.append(f"sink event {n}: {kind} of unknown execution x={ev['x']}")
                elif kind == "write":
                    w = Write(x=e.x, t=t, fence=int(ev["fence"]), accepted=bool(ev["accepted"]))
                    writes.append(w)
                    if e.write_accepted is None:
                        e.write_fence, e.write_accepted = w.fence, w.accepted
                else:
                    e.end_t, e.clean = t, bool(ev.get("clean", True))
            elif kind == "nemesis":
                nid = int(ev["id"])
                if ev["kind"] not in NEMESIS_KINDS:
                    warnings.append(f"sink event {n}: unknown nemesis kind {ev['kind']!r}")
                if ev["phase"] == "start":
                    starts[nid] = ev
                elif nid in starts:
                    windows.append(_window(starts.pop(nid), ev))
                else:
                    warnings.append(f"sink event {n}: end of nemesis {nid} that never started")
            elif kind == "transfer":
                pass  # a leader transfer (churn-leader): routine, not a fault window
            elif kind in ("attempt", "ack"):
                api.append(ApiOp(op=str(ev["op"]), job=str(ev["job"]), t=t, acked=kind == "ack"))
            else:
                warnings.append(f"sink event {n}: unknown event {kind!r} ignored")
        except (KeyError, TypeError, ValueError) as exc:
            raise HistoryError(f"sink event {n} {ev!r}: bad or missing field {exc!r}") from exc
    windows.extend(_window(ev, None) for ev in starts.values())
    windows.sort(key=lambda w: w.start_t)
    try:
        ledgers = {node: [_ledger_run(r) for r in runs] for node, runs in h.ledgers.items()}
        observed = [(float(o["t"]), _ledger_run(o["run"])) for o in h.observed_runs]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HistoryError(f"history.json: bad run in ledgers/observed_runs: {exc!r}") from exc
    return Timeline(
        executions=list(by_x.values()),
        writes=writes,
        windows=windows,
        api=api,
        offset_ms=statistics.median(offsets) if offsets else None,
        end_t=end_t,
        ledgers=ledgers,
        observed=observed,
        warnings=warnings,
    )


def _window(start: Json, end: Json | None) -> Window:
    return Window(
        id=int(start["id"]),
        name=str(start.get("name", "")),
        kind=str(start["kind"]),
        nodes=tuple(str(n) for n in start.get("nodes", ())),
        start_t=float(start["t"]),
        start_wall_ms=int(start["wall_ms"]),
        end_t=None if end is None else float(end["t"]),
        end_wall_ms=None if end is None else int(end["wall_ms"]),
    )


# --------------------------------------------------------------------------- output


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    """One broken property. ``count`` > 1 for a run of consecutive missed fires."""

    prop: str  # "P1".."P7"
    kind: str  # "dup", "fence", "overlap", "grant", "missed_outside", "silent", ...
    job: str
    message: str  # names the fire (RFC 3339), run ids, fences and nodes
    nodes: tuple[str, ...] = ()
    count: int = 1

    def __str__(self) -> str:
        return f"{self.prop} {self.kind} {self.job}: {self.message}"


@dataclass(slots=True, kw_only=True)
class Report:
    name: str
    fires: int  # sink begins, every job
    expected_fires: int  # fires of config jobs in the observe span
    stale_rejected: int
    lateness_p99_s: float | None  # None: no begin of a config job
    recovery_bound_s: float
    lead_s: float  # how early a nemesis window starts for P5 (the spawn bound)
    violations: list[Violation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def count(self, kind: str) -> int:
        return sum(v.count for v in self.violations if v.kind == kind)

    def line(self) -> str:
        late = "n/a" if self.lateness_p99_s is None else f"{self.lateness_p99_s:.2f}s"
        c = self.count
        return (
            f"{self.name}: fires={self.fires} dup={c('dup')} stale_rejected={self.stale_rejected}"
            f" overlap={c('overlap')} missed_outside={c('missed_outside')} silent={c('silent')}"
            f" lateness_p99={late} fence={c('fence')} grant={c('grant')}"
            f" durable={c('durable')} deleted={c('deleted')} expected={self.expected_fires}"
            f" recovery_bound={self.recovery_bound_s:g}s"
            f" lead={self.lead_s:g}s"
        )


# --------------------------------------------------------------------------- properties


def check_dup(tl: Timeline, jobs: dict[str, Json]) -> list[Violation]:
    """P1 dup: no (job, scheduled_at_ms) has more than one ``begin`` in the sink.

    The one allowance: retries. Executions of one fire with pairwise distinct ``attempt``
    numbers are fine when the job's config has ``retries >= max attempt - 1`` (jobs not in
    the config count as ``retries = 0``).
    """
    groups: dict[tuple[str, int], list[Execution]] = defaultdict(list)
    for e in tl.executions:
        groups[(e.job, e.scheduled_at_ms)].append(e)
    out: list[Violation] = []
    for (job, at), execs in groups.items():
        if len(execs) < 2:
            continue
        attempts = [e.attempt for e in execs]
        retries = int(jobs.get(job, {}).get("retries", 0))
        if len(set(attempts)) == len(attempts) and max(attempts) <= retries + 1:
            continue
        out.append(
            Violation(
                prop="P1",
                kind="dup",
                job=job,
                message=f"fire {rfc3339(at)} executed {len(execs)} times: "
                + "; ".join(f"{e.describe()} attempt={e.attempt}" for e in execs),
                nodes=tuple(e.node for e in execs),
            )
        )
    return out


def check_fence(tl: Timeline) -> tuple[list[Violation], int]:
    """P2 fence: per job, accepted write fences strictly increase in sink order, and a write
    is rejected only if its fence is <= the highest fence accepted before it.

    Returns the violations and ``stale_rejected`` (rejected writes). A history with a
    pause-group nemesis and no rejected write also violates P2: the fence was never
    exercised where it matters. A second write of one execution is a violation too.
    """
    by_x = {e.x: e for e in tl.executions}
    best: dict[str, tuple[int, Execution]] = {}  # job -> (highest accepted fence, its writer)
    seen: set[int] = set()
    out: list[Violation] = []
    stale = 0
    for w in tl.writes:
        e = by_x[w.x]
        prev = best.get(e.job)
        prev_text = "none" if prev is None else f"{prev[0]} by {prev[1].describe()}"
        where = f"fire {rfc3339(e.scheduled_at_ms)} {e.describe()} wrote fence {w.fence}"
        if w.x in seen:
            out.append(_fence_violation(e, f"{where}: a second write of one execution"))
        seen.add(w.x)
        if not w.accepted:
            stale += 1
            if prev is None or w.fence > prev[0]:
                msg = f"{where}, rejected although the highest accepted fence was {prev_text}"
                out.append(_fence_violation(e, msg, prev))
        elif prev is not None and w.fence <= prev[0]:
            msg = f"{where}, accepted although fence {prev_text} was accepted before"
            out.append(_fence_violation(e, msg, prev))
        if w.accepted and (prev is None or w.fence > prev[0]):
            best[e.job] = (w.fence, e)
    pauses = [w for w in tl.windows if w.kind == PAUSE_GROUP]
    if pauses and stale == 0:
        names = "; ".join(w.describe() for w in pauses)
        out.append(
            Violation(
                prop="P2",
                kind="fence",
                job="*",
                message=f"fence never exercised under pause-group: no write rejected ({names})",
                nodes=tuple(sorted({n for w in pauses for n in w.nodes})),
            )
        )
    return out, stale


def _fence_violation(
    e: Execution, msg: str, prev: tuple[int, Execution] | None = None
) -> Violation:
    nodes = (e.node,) if prev is None else (e.node, prev[1].node)
    return Violation(prop="P2", kind="fence", job=e.job, message=msg, nodes=nodes)


def check_overlap(tl: Timeline, jobs: dict[str, Json]) -> list[Violation]:
    """P3 overlap: executions of a config job with ``overlap = "skip"`` never overlap.

    An execution's interval is ``[begin t, end t]`` (no end: until the end of history);
    intervals that only touch do not overlap. Executions fenced off under a pause-group
    (see :meth:`Timeline.fenced_off`) are exempt.
    """
    out: list[Violation] = []
    for job, cfg in jobs.items():
        if cfg.get("overlap") != "skip":
            continue
        execs = sorted(
            (e for e in tl.executions if e.job == job and tl.fenced_off(e) is None),
            key=lambda e: e.begin_t,
        )
        holder: Execution | None = None  # the execution reaching furthest so far
        for e in execs:
            if holder is not None and e.begin_t < tl.interval(holder)[1]:
                h_lo, h_hi = tl.interval(holder)
                out.append(
                    Violation(
                        prop="P3",
                        kind="overlap",
                        job=job,
                        message=(
                            f"fire {rfc3339(e.scheduled_at_ms)} {e.describe()} began at "
                            f"t={e.begin_t:.3f} while fire {rfc3339(holder.scheduled_at_ms)} "
                            f"{holder.describe()} ran [{h_lo:.3f}, {h_hi:.3f}]"
                            f"{_write_text(holder)}"
                        ),
                        nodes=(holder.node, e.node),
                    )
                )
            if holder is None or tl.interval(e)[1] > tl.interval(holder)[1]:
                holder = e
    return out


def _write_text(e: Execution) -> str:
    if e.write_accepted is None:
        return ", never wrote"
    return f", its write {'accepted' if e.write_accepted else 'rejected'}"


def check_grant(tl: Timeline) -> list[Violation]:
    """P4 grant: every sink execution matches a run in the union of the final ledgers with
    the same run id, job and fence; every ledger run with status "succeeded" has a sink
    execution with that run id whose write was accepted. (Deleting a job keeps its runs in
    the ledger, so executions of deleted jobs are looked up too.)
    """
    runs: dict[str, list[tuple[str, LedgerRun]]] = defaultdict(list)
    for node, ledger in tl.ledgers.items():
        for r in ledger:
            runs[r.id].append((node, r))
    out: list[Violation] = []
    for e in tl.executions:
        found = runs.get(e.run_id, [])
        if any(r.job == e.job and r.fence == e.fence for _, r in found):
            continue
        seen = ", ".join(f"{n}: {r.job} fence={r.fence} {r.status}" for n, r in found)
        out.append(
            Violation(
                prop="P4",
                kind="grant",
                job=e.job,
                message=(
                    f"execution without a committed grant: fire {rfc3339(e.scheduled_at_ms)} "
                    f"{e.describe()}; ledgers ({tl.ledger_nodes()}) have "
                    f"{seen or 'no run with that id'}"
                ),
                nodes=(e.node,),
            )
        )
    accepted = {e.run_id for e in tl.executions if e.write_accepted}
    reported: set[str] = set()
    for rid, found in runs.items():
        winners = sorted(n for n, r in found if r.status == "succeeded")
        if not winners or rid in accepted or rid in reported:
            continue
        reported.add(rid)
        r = found[0][1]
        execs = [e.describe() + _write_text(e) for e in tl.executions if e.run_id == rid]
        out.append(
            Violation(
                prop="P4",
                kind="grant",
                job=r.job,
                message=(
                    f"success without a sink record: run {rid} fire {rfc3339(r.scheduled_at_ms)} "
                    f"fence={r.fence} node={r.node} is succeeded in the ledgers of "
                    f"{', '.join(winners)}; sink: {'; '.join(execs) or 'no execution'}"
                ),
                nodes=tuple(sorted({*winners, *([r.node] if r.node else [])})),
            )
        )
    return out


def _fires(cfg: Json, after_ms: int, until_ms: int) -> list[int]:
    return _schedule(cfg).fires_between(after_ms, until_ms, FIRE_LIMIT)


def _schedule(cfg: Json) -> CronSchedule:
    return parse(
        str(cfg["schedule"]),
        str(cfg.get("timezone", "UTC")),
        on_gap=str(cfg.get("on_gap", "shift")),
        on_repeat=str(cfg.get("on_repeat", "once")),
    )


def recorded_fires(
    tl: Timeline, jobs: dict[str, Json], until_ms: int
) -> dict[tuple[str, int], dict[str, str]]:
    """``(job, fire ms) -> {ledger node: status}`` over all final ledgers.

    An aggregated record (``count`` > 1, e.g. "missed") covers ``count`` consecutive fires of
    the job's schedule from its ``scheduled_at`` on (only expanded for config jobs, and only
    up to ``until_ms``).
    """
    out: dict[tuple[str, int], dict[str, str]] = defaultdict(dict)
    for node, ledger in tl.ledgers.items():
        for r in ledger:
            at = r.scheduled_at_ms
            out[(r.job, at)].setdefault(node, r.status)
            cfg = jobs.get(r.job)
            if r.count > 1 and cfg is not None:
                sched = _schedule(cfg)
                for _ in range(r.count - 1):
                    at = sched.next_after(at)
                    if at > until_ms:
                        break
                    out[(r.job, at)].setdefault(node, r.status)
    return out


class _Miss(NamedTuple):
    kind: str  # "missed_outside" | "silent"
    at: int  # the fire, epoch ms
    why: str
    nodes: tuple[str, ...]


def check_missed(tl: Timeline, h: History) -> tuple[list[Violation], int]:
    """P5 missed: every fire T of a config job with observe start < T <= observe end (wall)
    is covered by a sink execution of (job, T). An uncovered fire:

    * outside every nemesis window widened to ``[start - spawn_bound_s, end +
      recovery_bound_s]`` is ``missed_outside``, unless the job has ``overlap = "skip"`` and
      some final ledger records T as "skipped";
    * inside such a window must at least appear in some final ledger (any status, an
      aggregated record counting for each fire it covers), else it is ``silent``.

    The window starts ``spawn_bound_s`` early because a fire due just before a fault may be
    in flight (claimed, not yet begun) when the fault hits. Consecutive uncovered fires of
    one job with the same verdict form one violation (with a count). Returns the violations
    and the number of fires expected.
    """
    if tl.offset_ms is None:
        msg = "the sink recorded nothing, so no fire ran"
        v = Violation(prop="P5", kind="missed_outside", job="*", message=msg)
        return ([v] if h.jobs else []), 0
    lo, hi = math.floor(tl.wall(h.observe_start_t)), math.floor(tl.wall(h.observe_end_t))
    lead_ms, bound_ms = h.spawn_bound_s * 1000, h.recovery_bound_s * 1000
    spans = [
        (
            w,
            w.start_wall_ms - lead_ms,
            math.inf if w.end_wall_ms is None else w.end_wall_ms + bound_ms,
        )
        for w in tl.windows
    ]
    covered = {(e.job, e.scheduled_at_ms) for e in tl.executions}
    recorded = recorded_fires(tl, h.jobs, hi)
    out: list[Violation] = []
    expected = 0
    for job, cfg in h.jobs.items():
        misses: list[_Miss] = []
        for at in _fires(cfg, lo, hi):
            expected += 1
            if (job, at) in covered:
                continue
            statuses = recorded.get((job, at), {})
            inside = [w for w, start, end in spans if start <= at <= end]
            if not inside:
                if cfg.get("overlap", "allow") != "allow" and "skipped" in statuses.values():
                    continue  # skip, or a full buffer (buffer_one / buffer_all)
                if "paused" in statuses.values():
                    continue
                rec = ", ".join(f"{n}: {s}" for n, s in sorted(statuses.items()))
                why = (
                    f"not executed, outside every nemesis window (-{h.spawn_bound_s:g}s/"
                    f"+{h.recovery_bound_s:g}s); ledgers ({tl.ledger_nodes()}) record "
                    f"{rec or 'nothing'}"
                )
                misses.append(_Miss("missed_outside", at, why, tuple(sorted(statuses))))
            elif not statuses:
                why = (
                    f"neither ran nor recorded: inside {'; '.join(w.describe() for w in inside)}"
                    f", in no ledger of {tl.ledger_nodes()}"
                )
                nodes = tuple(sorted({n for w in inside for n in w.nodes}))
                misses.append(_Miss("silent", at, why, nodes))
        out.extend(_group_misses(job, misses, _schedule(cfg)))
    return out, expected


def _group_misses(job: str, misses: list[_Miss], sched: CronSchedule) -> list[Violation]:
    """One violation per run of consecutive fires (each the ``next_after`` of the one
    before) with the same verdict."""
    groups: list[list[_Miss]] = []
    for m in misses:
        prev = groups[-1][-1] if groups else None
        if prev and (prev.kind, prev.why) == (m.kind, m.why) and sched.next_after(prev.at) == m.at:
            groups[-1].append(m)
        else:
            groups.append([m])
    out: list[Violation] = []
    for g in groups:
        first, last = g[0], g[-1]
        what = (
            f"fire {rfc3339(first.at)}"
            if len(g) == 1
            else f"{len(g)} fires {rfc3339(first.at)} .. {rfc3339(last.at)}"
        )
        out.append(
            Violation(
                prop="P5",
                kind=first.kind,
                job=job,
                message=f"{what} {first.why}",
                nodes=first.nodes,
                count=len(g),
            )
        )
    return out


def check_durable(tl: Timeline, h: History) -> list[Violation]:
    """P6 durable: what the API acknowledged survives the faults, on every node.

    * Every ``observed_runs`` entry (a final run the API showed) is in every final ledger with
      the same status and fence.
    * Every job whose last ``put_job`` ack has no later ``delete_job`` attempt or ack is in
      every node's ``final_jobs``; a job whose ``delete_job`` was acked with no later
      ``put_job`` attempt is in none.
    """
    out: list[Violation] = []
    by_node = {n: {r.id: r for r in ledger} for n, ledger in sorted(tl.ledgers.items())}
    for t, r in tl.observed:
        bad: dict[str, str] = {}  # node -> what its ledger has instead
        for node, runs in by_node.items():
            mine = runs.get(r.id)
            if mine is None:
                bad[node] = "missing"
            elif mine.status != r.status or mine.fence != r.fence:
                bad[node] = f"{mine.status} fence={mine.fence}"
        if bad:
            out.append(
                Violation(
                    prop="P6",
                    kind="durable",
                    job=r.job,
                    message=(
                        f"run {r.id} fire {rfc3339(r.scheduled_at_ms)} seen {r.status} "
                        f"fence={r.fence} node={r.node} at t={t:.3f}, but lost: "
                        + "; ".join(f"{n}: {what}" for n, what in bad.items())
                    ),
                    nodes=tuple(bad),
                )
            )
    for job, (want, op) in sorted(_job_requirements(tl.api).items()):
        wrong = sorted(n for n, names in h.final_jobs.items() if (job in names) != want)
        if wrong:
            state = "missing from" if want else "still present on"
            out.append(
                Violation(
                    prop="P6",
                    kind="durable",
                    job=job,
                    message=(
                        f"{op.op} acked at t={op.t:.3f}, but the job is {state} the final "
                        f"jobs of {', '.join(wrong)}"
                    ),
                    nodes=tuple(wrong),
                )
            )
    return out


def _job_requirements(api: list[ApiOp]) -> dict[str, tuple[bool, ApiOp]]:
    """Per API-managed job: (must be present?, the ack that decides it), for the jobs whose
    final state the acks determine."""
    last: dict[tuple[str, str, bool], int] = {}  # (job, op, acked) -> last index
    for i, op in enumerate(api):
        last[(op.job, op.op, op.acked)] = i
    out: dict[str, tuple[bool, ApiOp]] = {}
    for job in {op.job for op in api}:
        put_ack = last.get((job, "put_job", True), -1)
        put_any = max(put_ack, last.get((job, "put_job", False), -1))
        del_ack = last.get((job, "delete_job", True), -1)
        del_any = max(del_ack, last.get((job, "delete_job", False), -1))
        if put_ack >= 0 and del_any < put_ack:
            out[job] = (True, api[put_ack])
        elif del_ack >= 0 and put_any < del_ack:
            out[job] = (False, api[del_ack])
    return out


def check_deleted(tl: Timeline, spawn_bound_s: float) -> list[Violation]:
    """P7 deleted: after a ``delete_job`` ack at ``t_ack``, no execution of that job begins
    later than ``t_ack + spawn_bound_s``, up to the next ``put_job`` attempt of the job (a
    re-put), unless it is fenced off under a pause-group (see :meth:`Timeline.fenced_off`).
    """
    out: list[Violation] = []
    flagged: set[int] = set()
    for i, op in enumerate(tl.api):
        if op.op != "delete_job" or not op.acked:
            continue
        reput = next(
            (a.t for a in tl.api[i + 1 :] if a.op == "put_job" and a.job == op.job), math.inf
        )
        for e in tl.executions:
            if e.job != op.job or e.x in flagged or not op.t + spawn_bound_s < e.begin_t < reput:
                continue
            if tl.fenced_off(e) is not None:
                continue
            flagged.add(e.x)
            out.append(
                Violation(
                    prop="P7",
                    kind="deleted",
                    job=e.job,
                    message=(
                        f"fire {rfc3339(e.scheduled_at_ms)} {e.describe()} began at "
                        f"t={e.begin_t:.3f}, {e.begin_t - op.t:.3f}s after the delete_job ack "
                        f"(spawn bound {spawn_bound_s:g}s){_write_text(e)}"
                    ),
                    nodes=(e.node,),
                )
            )
    return out


def longest_gap(h: History, schedule: str = "* * * * * *") -> tuple[str, float] | None:
    """The longest time between two consecutive begins (sink ``t``, seconds) of one config
    job with ``schedule``, over begins in the observe span: ``(job, seconds)``; None when
    no such job began twice. Retries and catch-up runs count as begins like any other."""
    tl = timeline(h)
    best: tuple[str, float] | None = None
    for job, cfg in sorted(h.jobs.items()):
        if cfg.get("schedule") != schedule:
            continue
        ts = sorted(
            e.begin_t
            for e in tl.executions
            if e.job == job and h.observe_start_t <= e.begin_t <= h.observe_end_t
        )
        for a, b in pairwise(ts):
            if best is None or b - a > best[1]:
                best = (job, b - a)
    return best


def lateness_p99(tl: Timeline, jobs: dict[str, Json]) -> float | None:
    """The 99th percentile (nearest rank) of ``begin wall_ms - scheduled_at_ms`` in seconds
    over begins of config jobs; negative values (early fires) are kept as measured."""
    late = sorted(
        (e.begin_wall_ms - e.scheduled_at_ms) / 1000 for e in tl.executions if e.job in jobs
    )
    if not late:
        return None
    return late[max(0, math.ceil(0.99 * len(late)) - 1)]


# --------------------------------------------------------------------------- entry points


def check(history: History) -> Report:
    """Verify P1-P7 on ``history``. Raises :class:`HistoryError` on malformed input."""
    tl = timeline(history)
    fence, stale = check_fence(tl)
    missed, expected = check_missed(tl, history)
    violations = [
        *check_dup(tl, history.jobs),
        *fence,
        *check_overlap(tl, history.jobs),
        *check_grant(tl),
        *missed,
        *check_durable(tl, history),
        *check_deleted(tl, history.spawn_bound_s),
    ]
    return Report(
        name=history.name,
        fires=len(tl.executions),
        expected_fires=expected,
        stale_rejected=stale,
        lateness_p99_s=lateness_p99(tl, history.jobs),
        recovery_bound_s=history.recovery_bound_s,
        lead_s=history.spawn_bound_s,
        violations=violations,
        warnings=[*history.warnings, *tl.warnings],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Check each run directory; print its line and violations. Exit 0/1/2 (see module)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or any(a in ("-h", "--help") for a in args):
        sys.stderr.write("usage: python -m tests.chaos.checker RUN_DIR [RUN_DIR...]\n")
        return 2
    status = 0
    for arg in args:
        try:
            report = check(load(Path(arg)))
        except (HistoryError, ScheduleError) as exc:
            sys.stderr.write(f"{arg}: cannot check: {exc}\n")
            status = 2
            continue
        for w in report.warnings:
            sys.stderr.write(f"{arg}: warning: {w}\n")
        lines = [report.line(), *(f"    {v}" for v in report.violations)]
        sys.stdout.write("".join(line + "\n" for line in lines))
        if not report.ok and status == 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())


def check_record(
    run_dir: Path,
    *,
    name: str,
    jobs: dict[str, Json],
    start_t: float,
    end_t: float,
    ledgers: dict[str, list[Json]],
) -> tuple[Report, Timeline]:
    """A cluster test's own check, without the runner: the sink's record in ``run_dir``
    against the members' ledgers, one observation window from ``start_t`` to ``end_t``
    (recovery and spawn bounds 1 s, no final jobs or observed runs). Writes
    ``history.json`` beside the sink's file, so a failure can be replayed with ``load``."""
    history: dict[str, object] = {
        "name": name,
        "seed": None,
        "jobs": jobs,
        "observe": {"start_t": start_t, "end_t": end_t},
        "recovery_bound_s": 1.0,
        "spawn_bound_s": 1.0,
        "ledgers": ledgers,
        "final_jobs": {},
        "observed_runs": [],
    }
    (run_dir / HISTORY_FILE).write_text(json.dumps(history))
    h = load(run_dir)
    return check(h), timeline(h)
