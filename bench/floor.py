"""The floor: what this machine does with no cluster at all, measured in the same run as the
cluster figures so that every "x times the floor" compares like with like.

Definition (issue 17). The same process shape as a run of raftcron: a supervisor process
that forks the job (raftcron's watchdog does ``subprocess.Popen`` of the job with its output
on a pipe, stdin from /dev/null, in a new session; so does the floor). Two supervisors run
in parallel, one per core of the 2-core machine, so the floor uses both cores as the three
agents do. No Raft, no HTTP, no fsync: only Python, fork/exec and the scheduler.

1. **Spawn rate.** Each supervisor loops for ``floor_spawn_seconds``: fork/exec ``true``,
   read its output pipe to EOF, reap it; the next one. Reported: starts per second of
   both supervisors together (``spawn_per_s``) and of each. This is the ceiling for
   "cluster-wide starts per second" of a burst of ``true`` jobs.
2. **Timer lateness.** Each supervisor runs an asyncio loop with a timer due at every whole
   second of the wall clock (``loop.call_at`` on the monotonic clock, aimed at the
   second); when it fires it forks ``sh -c 'date +%s%N'`` the same way. Lateness = the
   job's own first timestamp (what ``date`` prints) minus the due second, per fire, over
   ``floor_timer_fires`` fires in each of the two supervisors. Reported: p50, p99, max.
   This is the floor under "every-second job lateness" (the cluster's figure is the same
   difference: the job's own ``date +%s%N`` minus ``scheduled_at``).
3. **Timer lateness under two CPU hogs.** The same as 2 while two ``python3 -c 'while 1:
   pass'`` processes run for the whole window (``bench/hogs.py``), the floor under issue
   17's "p99 <= 60 ms while two CPU hogs run" (``timer_lateness_hogs``, and what each hog
   got of a core, ``hogs``).

Standalone: ``.venv/bin/python -m bench.floor [--quick]`` (prints the JSON);
``python -m bench.run --only floor`` puts it in a results file. ``make bench`` runs it
first, so its figures sit beside the cluster's in the same run and the same report.
Nothing here is hard-coded: every figure is what the run measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

from bench.hogs import cpu_hogs
from bench.procs import Registry
from bench.stats import run_summary

PARALLEL = 2  # supervisors at once: one per core of the 2-core machine
DATE_CMD = ["sh", "-c", "date +%s%N"]


def _fork_job(argv: list[str]) -> bytes:
    """One job under the supervisor, the watchdog's way: output on a pipe, own session."""
    p = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out, _ = p.communicate()
    return out


def spawn_worker(seconds: float) -> dict[str, Any]:
    """One supervisor: fork/exec ``true`` back to back for ``seconds``."""
    n = 0
    t0 = time.monotonic()
    end = t0 + seconds
    while time.monotonic() < end:
        _fork_job(["true"])
        n += 1
    elapsed = time.monotonic() - t0
    return {"spawns": n, "seconds": elapsed, "per_s": n / elapsed}


def timer_worker(fires: int) -> dict[str, Any]:
    """One supervisor: an asyncio timer due at every whole wall-clock second, each fire
    forking ``sh -c 'date +%s%N'``; the job's timestamp minus the due second."""
    late: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        due = float(int(time.time()) + 1)
        for _ in range(fires):
            fired = loop.create_future()
            # the loop's clock is monotonic: aim it at the wall-clock second
            loop.call_at(loop.time() + (due - time.time()), fired.set_result, None)
            await fired
            out = _fork_job(DATE_CMD)
            late.append(int(out.split()[0]) / 1e9 - due)
            due += 1.0

    asyncio.run(main())
    return {"fires": len(late), "lateness": late}


def _parallel(kind: str, amount: float) -> list[dict[str, Any]]:
    """``PARALLEL`` workers of ``kind`` started together; their JSON results."""
    argv = [sys.executable, "-m", "bench.floor", "--worker", kind, "--amount", str(amount)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, cwd=os.getcwd())
        for _ in range(PARALLEL)
    ]
    out = []
    for p in procs:
        data, _ = p.communicate(timeout=amount * 4 + 60)
        if p.returncode != 0:
            raise RuntimeError(f"floor worker {kind} exited {p.returncode}")
        out.append(json.loads(data))
    return out


def measure(
    spawn_seconds: float, timer_fires: int, hogs: bool = False, reg: Registry | None = None
) -> dict[str, Any]:
    """The floors, each with ``PARALLEL`` supervisors at once; with ``hogs``, the timer
    floor again while two CPU hogs run (``reg``: where the hogs are registered)."""
    spawn = _parallel("spawn", spawn_seconds)
    timer = _parallel("timer", timer_fires)
    late = [x for w in timer for x in w["lateness"]]
    out: dict[str, Any] = {
        "definition": "bench/floor.py docstring: a supervisor forks the job (Popen, pipe, "
        f"new session); {PARALLEL} supervisors in parallel",
        "parallel": PARALLEL,
        "spawn_per_s": sum(w["per_s"] for w in spawn),
        "spawn_per_s_each": [w["per_s"] for w in spawn],
        "spawn_seconds": spawn_seconds,
        "timer_fires": len(late),
        "timer_lateness": run_summary(late),
    }
    if hogs:
        with cpu_hogs(reg) as h:
            timer = _parallel("timer", timer_fires)
        late = [x for w in timer for x in w["lateness"]]
        out["timer_hogs_fires"] = len(late)
        out["timer_lateness_hogs"] = run_summary(late)
        out["hogs"] = h.summary()
    return out


def _line(tl: dict[str, float], fires: int) -> str:
    return (
        f"p50 {tl['p50'] * 1000:.1f} ms, p99 {tl['p99'] * 1000:.1f} ms, "
        f"max {tl['max'] * 1000:.1f} ms ({fires} fires)"
    )


def run_all(ctx: Any) -> dict[str, Any]:
    from bench.procs import log

    s = ctx.sizes
    out = measure(s.floor_spawn_seconds, s.floor_timer_fires, hogs=True, reg=ctx.reg)
    log(
        f"floor: spawn {out['spawn_per_s']:.0f}/s ({PARALLEL} supervisors), timer + fork "
        f"lateness {_line(out['timer_lateness'], out['timer_fires'])}; with two CPU hogs "
        f"{_line(out['timer_lateness_hogs'], out['timer_hogs_fires'])} (hogs got "
        f"{', '.join(f'{x:.0f}%' for x in out['hogs']['cpu_pct_each'])} of a core)"
    )
    return out


def _worker_main(kind: str, amount: float) -> None:
    res = spawn_worker(amount) if kind == "spawn" else timer_worker(int(amount))
    print(json.dumps(res))


if __name__ == "__main__":
    if "--worker" in sys.argv:
        i = sys.argv.index("--worker")
        _worker_main(sys.argv[i + 1], float(sys.argv[sys.argv.index("--amount") + 1]))
    else:
        from bench.run import standalone

        standalone("floor", run_all)
