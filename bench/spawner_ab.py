"""Before/after for the every-second lateness: :func:`bench.scale.steady` on several source
trees side by side, interleaved (the watchdog fork server,
docs/notes/2026-11-28-bench-profiles.md).

    git archive OLD | tar -x -C /tmp/old
    PYTHONPATH=. .venv/bin/python -m bench.spawner_ab old=/tmp/old new=. [--rounds 3]
        [--seconds 20] [--jobs 5]

Each tree gets its own 3-node cluster (agents run with ``PYTHONPATH`` set to the tree), all
up for the whole run; every round runs the steady workload (``--jobs`` ``* * * * * *`` jobs
plus 60 every-minute jobs, registered for the window and deleted after it) on each cluster
in turn, alternating the order, so only one cluster runs jobs at a time. Lateness = the
job's own first timestamp minus its scheduled second. Prints each window, then per tree
the median over rounds of p50/p99 and the CPU of the three agents (with their
descendants).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Ctx, Sizes
from bench.procs import Registry, log
from bench.scale import steady


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("trees", nargs="+", help="name=path")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--jobs", type=int, default=5, help="every-second jobs")
    args = ap.parse_args()
    trees = {n: str(Path(p).resolve()) for n, p in (a.split("=", 1) for a in args.trees)}
    for t in trees.values():
        subprocess.run([sys.executable, "-m", "compileall", "-q", t + "/raftcron"], check=False)
    sizes = dataclasses.replace(
        Sizes.quick(), steady_seconds=args.seconds, every_second_jobs=args.jobs
    )
    reg = Registry()
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in trees}
    with tempfile.TemporaryDirectory(prefix="raftcron-spawner-ab-") as tmp:
        ctx = Ctx(sizes=sizes, tmp=Path(tmp), reg=reg, quick=True)
        try:
            clusters = {n: ctx.raftcron("c-" + n, env={"PYTHONPATH": t}) for n, t in trees.items()}
            for r in range(args.rounds):
                order = list(clusters) if r % 2 == 0 else list(reversed(clusters))
                for name in order:
                    res = steady(ctx, clusters[name], 0)
                    out[name].append(res)
                    les = res.get("lateness_every_second", {})
                    cpu = sum(v["agent"] + v["children"] for v in res["cpu_pct"].values())
                    print(
                        f"round {r + 1} {name}: p50 {les.get('p50', 0) * 1000:.1f} ms, "
                        f"p99 {les.get('p99', 0) * 1000:.1f} ms, max "
                        f"{les.get('max', 0) * 1000:.1f} ms, fires "
                        f"{res['every_second_fires_seen']}/{res['every_second_fires_expected']}"
                        f", cpu {cpu:.0f}% (3 agents + descendants)",
                        flush=True,
                    )
        finally:
            reg.stop_all()

    def med(rs: list[dict[str, Any]], key: str) -> float:
        return round(
            statistics.median(r.get("lateness_every_second", {}).get(key, 0.0) for r in rs) * 1000,
            1,
        )

    summary = {
        name: {
            "p50_median_ms": med(rs, "p50"),
            "p99_median_ms": med(rs, "p99"),
            "max_ms": round(
                max(r.get("lateness_every_second", {}).get("max", 0.0) for r in rs) * 1000, 1
            ),
            "cpu_pct_median": round(
                statistics.median(
                    sum(v["agent"] + v["children"] for v in r["cpu_pct"].values()) for r in rs
                ),
                1,
            ),
            "windows": len(rs),
        }
        for name, rs in out.items()
    }
    log("done")
    print("finished", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), end=", ")
    print("1-minute load average", os.getloadavg()[0])
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
