"""Two CPU hogs for a measurement window (issue 17: "two `python3 -c 'while 1: pass'`
processes for the whole window").

    with cpu_hogs(ctx.reg) as hogs:
        ...  # the window
    hogs.cpu_pct  # what each hog got, percent of one core: proof they ran

Each hog is started by this process and ended by its PID when the window ends (and is in
the run's registry, so a failure half way ends it too).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bench.procs import Registry, cpu_seconds, stop_pid

HOG_ARGV = ["python3", "-c", "while 1: pass"]
HOGS = 2


@dataclass
class Hogs:
    pids: list[int] = field(default_factory=list)
    seconds: float = 0.0
    cpu_pct: list[float] = field(default_factory=list)  # per hog, percent of one core

    def summary(self) -> dict[str, object]:
        return {
            "argv": HOG_ARGV,
            "count": len(self.pids),
            "seconds": round(self.seconds, 1),
            "cpu_pct_each": [round(x, 1) for x in self.cpu_pct],
        }


@contextmanager
def cpu_hogs(reg: Registry | None = None, n: int = HOGS) -> Iterator[Hogs]:
    """``n`` hogs running for the whole ``with`` block; their CPU share when it ends."""
    procs = [
        subprocess.Popen(HOG_ARGV, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        for _ in range(n)
    ]
    if reg is not None:
        for p in procs:
            reg.add(p)
    out = Hogs(pids=[p.pid for p in procs])
    t0 = time.monotonic()
    try:
        yield out
    finally:
        out.seconds = time.monotonic() - t0
        out.cpu_pct = [100 * cpu_seconds(p.pid)[0] / max(out.seconds, 1e-9) for p in procs]
        for p in procs:
            stop_pid(p)
