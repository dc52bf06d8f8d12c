"""Next-fire computation for 100,000 jobs, without a cluster (the schedule engine's cost).

What the leader's scheduler does for every job when it rebuilds its timer heap (a new
leader, a snapshot install): ``planner.next_due_ms(job)``, i.e. parse (cached) and one
``next_after`` from the job's watermark. Then ``planner.due`` for every job at a time
when each has one fire due (what a burst's plan computes), and a chain of ``next_after``
calls per schedule.

Two job mixes. "shared": a dozen ordinary cron expressions (5 and 6 fields, named days,
steps, lists) in five zones, three with daylight saving time; every schedule is parsed
once and then served from the parse cache. "distinct": every job its own expression
(the scale benchmark's one-fire-a-year form ``M H D Mon *``), so most lookups miss the
parse cache (4,096 entries) and parse again. Watermarks are spread over 2026. ``--forms``
adds the calendar forms (``L``, ``L5``, ``5L``, ``1#2``) and ``@every`` to the shared mix;
older code refuses them. Each figure is the best of ``--repeat`` runs (the machine is
shared; the minimum is the least disturbed run).

    .venv/bin/python -m bench.next_fire [--jobs 100000] [--repeat 7] [--forms]

On a shared machine, count instructions instead (repeatable): run one phase under callgrind
and subtract the same run with ``--only none`` (the setup alone), e.g.

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        .venv/bin/python -m bench.next_fire --jobs 5000 --repeat 1 --only rebuild
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from raftcron.core.model import Job, JobSpec
from raftcron.core.planner import due, next_due_ms

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Lord_Howe")
PLAIN = (
    "0 0 1 1 *",
    "* * * * *",
    "* * * * * *",
    "*/5 * * * *",
    "30 2 * * *",
    "0 9 * * MON-FRI",
    "0 0 29 2 *",
    "15,45 8-18 * * 1-5",
    "0 3 1,15 * *",
    "0 0 13 * FRI",
    "* * * * * */10",
    "0 */2 * JAN-JUN *",
)
DISTINCT = "{m} {h} {d} {mo} *"  # the scale benchmark's burst form: one fire a year
FORMS = ("0 0 L * *", "30 2 * * L0", "0 9 * * 1#2", "0 18 * * 5L", "@every 90s", "@every 1h30m")
START = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
YEAR_MS = 365 * 86_400_000


def make_jobs(n: int, exprs: tuple[str, ...], seed: int = 1) -> list[Job]:
    rnd = random.Random(seed)
    jobs = []
    for i in range(n):
        expr = exprs[i % len(exprs)].format(
            m=rnd.randrange(60),
            h=rnd.randrange(24),
            d=rnd.randrange(1, 29),
            mo=rnd.randrange(1, 13),
        )
        spec = JobSpec(
            name=f"job{i}",
            schedule=expr,
            command=("true",),
            timezone=ZONES[(i // len(exprs)) % len(ZONES)],
        )
        created = START + rnd.randrange(YEAR_MS)
        watermark = created + rnd.randrange(86_400_000)
        jobs.append(Job(spec=spec, watermark_ms=watermark, created_ms=created))
    return jobs


def best(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--forms", action="store_true", help="add L, L5, 1#2 and @every jobs")
    ap.add_argument(
        "--only",
        choices=["rebuild", "due", "chain", "distinct", "none"],
        help="run one phase (none: only the setup), for an instruction count",
    )
    args = ap.parse_args()
    shared = make_jobs(args.jobs, PLAIN + (FORMS if args.forms else ()))
    distinct = make_jobs(args.jobs, (DISTINCT,))
    for job in shared:  # warm the parse cache: a leader has parsed its jobs before
        next_due_ms(job, False)
    dues = [next_due_ms(job, False) for job in shared]

    def rebuild(jobs: list[Job]) -> Callable[[], None]:
        def run() -> None:
            for job in jobs:
                next_due_ms(job, False)

        return run

    def plan_due() -> None:
        for job, t in zip(shared, dues, strict=True):
            due(job, t)

    def chain() -> None:
        for job in shared[: args.jobs // 10]:
            t = job.watermark_ms
            for _ in range(10):
                t = next_due_ms(replace(job, watermark_ms=t), False)

    n = args.jobs
    phases = {"rebuild": rebuild(shared), "due": plan_due, "chain": chain}
    phases["distinct"] = rebuild(distinct)
    if args.only is not None:
        if args.only != "none":
            best(args.repeat, phases[args.only])
        return
    rows = [
        ("next_due_ms, every job, shared mix", best(args.repeat, rebuild(shared)), n),
        ("due with one fire due, every job, shared mix", best(args.repeat, plan_due), n),
        ("10 consecutive fires, a tenth of the jobs", best(args.repeat, chain), n // 10 * 10),
        ("next_due_ms, every job, distinct mix", best(args.repeat, rebuild(distinct)), n),
    ]
    forms = "with" if args.forms else "without"
    print(f"{n} jobs per mix ({forms} the new forms), best of {args.repeat}")
    for what, secs, calls in rows:
        print(f"  {what:<46} {secs * 1000:8.1f} ms  {secs / calls * 1e6:6.2f} us/call")


if __name__ == "__main__":
    main()
