"""Issue 17 item 1: every-second job lateness on an otherwise idle 3-node cluster, and again
while two CPU hogs run. raftcron only; the floor beside it is ``bench/floor.py`` (its
``timer_lateness`` and ``timer_lateness_hogs``, the same run).

A fresh 3-node cluster with no other jobs. Two windows of ``steady_seconds`` each, the
steady mix of ``bench/scale.py`` (:func:`bench.scale.steady`: ``every_second_jobs`` jobs
``* * * * * *`` plus 60 every-minute jobs, one per second of the minute; each job writes
its own ``date +%s%N`` when it starts, and lateness = that timestamp minus
``scheduled_at``):

1. ``idle``: nothing else runs on the cluster (the machine: see the run's load average).
2. ``hogs``: the same while two ``python3 -c 'while 1: pass'`` run for the whole window,
   from before the jobs are registered until after the window's last fires started
   (``bench/hogs.py``; what each hog got of a core is recorded).

    .venv/bin/python -m bench.steady [--quick]
"""

from __future__ import annotations

from typing import Any

from bench.common import Ctx
from bench.hogs import cpu_hogs
from bench.procs import log
from bench.scale import steady


def run_all(ctx: Ctx) -> dict[str, Any]:
    cl = ctx.raftcron("steady")
    out: dict[str, Any] = {"window_s": ctx.sizes.steady_seconds}
    try:
        out["idle"] = steady(ctx, cl, 0, "-idle")
        with cpu_hogs(ctx.reg) as h:
            out["hogs"] = steady(ctx, cl, 0, "-hogs")
        out["hogs"]["hogs"] = h.summary()
        log(
            "steady with two CPU hogs: hogs got "
            + ", ".join(f"{x:.0f}%" for x in h.cpu_pct)
            + " of a core"
        )
    finally:
        cl.stop()
    return out


if __name__ == "__main__":
    from bench.run import standalone

    standalone("steady", run_all)
