"""Workload 4a alone, at a size of your choice: N jobs due in the same second on a fresh
3-node cluster, then the ledger's final statuses (how many runs ended ``lost``).

    .venv/bin/python -m bench.burst --jobs 2000 [--repeat 3] [--lease 60s] [--full]
        [--env K=V ...]

It drives :func:`bench.scale.burst`, the setup of ``make bench``: PUT every job with a
parked schedule, then PUT it again to fire at one second. The default is its quick mode
(a 6-field schedule at the next whole second; it samples the jobs' starts for 60 s and
waits 120 s for the leases); ``--full`` fires at a top of a minute and waits 420 s and
300 s, as ``make bench`` does. It prints one JSON line per repetition plus the medians.
``--env`` passes environment to the agents (e.g. ``RAFTCRON_MAX_STARTING=8``). The
agents' logs are counted for the lines that say why runs were lost.

``--true``: the jobs run ``true`` (issue 17's workload) and are timed from the ledger
(``all_started_s`` is then the last run's recorded end, a bound from above on its start).
``--floor S`` (default 5; 0: off) measures the floor's spawn rate (``bench/floor.py``: two
supervisors fork/exec ``true`` back to back for S seconds) right before each repetition's
cluster starts, so the burst's cluster-wide start rate (``starts_per_s``: the runs that
started divided by the time from the fire to the last start, the jobs' own clocks) is
compared with a floor of the same run (``floor_ratio``; issue 17's target is >= 0.5).

``make bench`` runs it as the ``burst`` workload (:func:`run_all`): 10,000 ``true`` jobs
(``--quick``: 500) at a top of a minute (``--quick``: the next whole second), with the
floor's spawn rate measured right before the cluster starts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import floor
from bench.common import Ctx, Sizes
from bench.procs import Registry, log
from bench.scale import burst, ledger

LOG_LINES = (
    "start not committed (timeout)",
    "start not committed within the lease",
    "renewal not committed",
    "lost run=",
    "became leader",
)


def commits_by_kind(cl: Any) -> dict[str, int]:
    """Entries the members proposed and saw commit, by command type, summed over members
    (``raftcron_commit_latency_seconds_count``): how many ``Lifecycle`` batches there were
    and how many single ``Start``/``Renew``/``Complete`` went alone."""
    out: dict[str, int] = {}
    for name, m in cl.members.items():
        try:
            with cl.open(m.api + "/metrics", timeout=10) as r:
                text = r.read().decode()
        except OSError as exc:
            log(f"burst: no metrics from {name}: {exc}")
            continue
        for kind, n in re.findall(
            r'^raftcron_commit_latency_seconds_count\{command="([A-Za-z]+)"\} ([0-9.e+]+)$',
            text,
            re.M,
        ):
            out[kind] = out.get(kind, 0) + int(float(n))
    return out


def one(
    n: int,
    env: dict[str, str],
    tmp: Path,
    lease: str,
    full: bool,
    floor_s: float = 0.0,
    command: list[str] | None = None,
) -> dict[str, Any]:
    reg = Registry()
    ctx = Ctx(sizes=Sizes.quick(), tmp=tmp, reg=reg, quick=not full)
    try:
        return measure(ctx, n, env, lease, floor_s, command)
    finally:
        reg.stop_all()


def measure(
    ctx: Ctx,
    n: int,
    env: dict[str, str],
    lease: str,
    floor_s: float = 0.0,
    command: list[str] | None = None,
) -> dict[str, Any]:
    """The floor's spawn rate for ``floor_s`` seconds (0: none), then a fresh cluster and
    one burst of ``n`` jobs (``ctx.quick``: at the next whole second, else at a top of a
    minute), the ledger's reasons for every run that did not succeed, the commits by kind
    and the agents' log lines about lost runs."""
    out: dict[str, Any] = {"load_1min": os.getloadavg()[0]}
    if floor_s > 0:
        spawn = floor._parallel("spawn", floor_s)
        out["floor_spawn_per_s"] = sum(w["per_s"] for w in spawn)
        out["floor_spawn_seconds"] = floor_s
    cl = ctx.raftcron(f"burst-{n}-{time.time_ns()}", env=env)
    try:
        try:
            burst(ctx, cl, n, True, out, lease=lease, command=command)
            reasons: dict[str, int] = {}
            for r in ledger(cl, cl.wait_leader(30), "b", n):
                if r["status"] != "succeeded":
                    why = f"{r['status']}: {(r.get('reason') or '')[:60]}"
                    reasons[why] = reasons.get(why, 0) + 1
            out["reasons"] = reasons
            out["commits_by_kind"] = commits_by_kind(cl)
        except Exception as exc:
            out["error"] = repr(exc)
        logs = "".join(m.log.read_text(errors="replace") for m in cl.members.values())
        out["log_lines"] = {k: logs.count(k) for k in LOG_LINES}
    finally:
        cl.stop()
    if out.get("started") and out.get("all_started_s"):
        out["starts_per_s"] = out["started"] / max(out["all_started_s"], 1e-3)
        if out.get("floor_spawn_per_s"):
            out["floor_ratio"] = out["starts_per_s"] / out["floor_spawn_per_s"]
    return out


def run_all(ctx: Ctx) -> dict[str, Any]:
    """``make bench``'s burst (issue 17 item 2): ``burst_true_jobs`` jobs running ``true``,
    all due in one second, with the floor's spawn rate measured right before (the floor
    workload's definition and length, ``floor_spawn_seconds``)."""
    n = ctx.sizes.burst_true_jobs
    out = measure(ctx, n, {}, "60s", ctx.sizes.floor_spawn_seconds, ["true"])
    log(
        f"burst {n} true jobs: {out.get('started')} started, last end "
        f"{out.get('all_started_s')}s after the fire, {out.get('starts_per_s') or 0:.0f} "
        f"starts/s, floor {out.get('floor_spawn_per_s') or 0:.0f}/s, statuses "
        f"{out.get('statuses')}"
    )
    if out.get("error"):  # what was measured stays in the results; the report shows it
        ctx.note(f"burst {n}: {out['error']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--lease", default="60s", help="the jobs' lease (make bench: 60s)")
    ap.add_argument(
        "--true",
        action="store_true",
        help="the jobs run `true` (timed from the ledger: all_started_s is the last run's "
        "recorded end) instead of writing their start time to a sink with sh and date",
    )
    ap.add_argument(
        "--floor",
        type=float,
        default=5.0,
        help="seconds of the floor's spawn rate before each repetition (0: off)",
    )
    ap.add_argument(
        "--full",
        action="store_true",
        help="fire at a top of a minute and wait as long as make bench does (420 s for the "
        "starts, 300 s for the leases) instead of the quick mode's next second, 60 s, 120 s",
    )
    args = ap.parse_args()
    env = dict(e.split("=", 1) for e in args.env)
    results = []
    with tempfile.TemporaryDirectory(prefix="raftcron-burst-") as d:
        for i in range(args.repeat):
            r = one(
                args.jobs,
                env,
                Path(d),
                args.lease,
                args.full,
                args.floor,
                ["true"] if args.true else None,
            )
            log(f"burst {args.jobs} #{i + 1}: {json.dumps(r, default=str)}")
            print(json.dumps(r, default=str), flush=True)
            results.append(r)

    def med(path: tuple[str, ...]) -> float | None:
        vals = []
        for r in results:
            v: Any = r
            for k in path:
                v = v.get(k) if isinstance(v, dict) else None
            if isinstance(v, int | float):
                vals.append(float(v))
        return statistics.median(vals) if vals else None

    summary = {
        "jobs": args.jobs,
        "runs": len(results),
        "env": env,
        "lease": args.lease,
        "claimed_s": med(("claimed_s",)),
        "started": med(("started",)),
        "self_p50": med(("lateness_self", "p50")),
        "self_p99": med(("lateness_self", "p99")),
        "self_max": med(("lateness_self", "max")),
        "all_started_s": med(("all_started_s",)),
        "cpu_agents_s": med(("cpu_agents_s",)),
        "cpu_children_s": med(("cpu_children_s",)),
        "cpu_window_s": med(("cpu_window_s",)),
        "starts_per_s": med(("starts_per_s",)),
        "floor_spawn_per_s": med(("floor_spawn_per_s",)),
        "floor_ratio": med(("floor_ratio",)),
        "ledger_p50": med(("lateness_ledger", "p50")),
        "ledger_p99": med(("lateness_ledger", "p99")),
        "lost": med(("statuses", "lost")),
        "succeeded": med(("statuses", "succeeded")),
    }
    print(json.dumps({"median": summary}), flush=True)


if __name__ == "__main__":
    main()
