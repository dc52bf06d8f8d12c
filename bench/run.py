"""Run the benchmarks and write the results.

    .venv/bin/python -m bench.run            # full: bench/results/<date>.json, docs/benchmarks.md
    .venv/bin/python -m bench.run --quick    # small sizes, everything under bench/results/scratch/
    .venv/bin/python -m bench.run --only locks,failover --quick

Everything started (raftcron agents, etcd, redis-server) runs on 127.0.0.1 with its data in
a temporary directory and is ended by PID when the run finishes or fails. A memory guard
stops the workload if the machine's available memory falls below 3 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, Ctx, Sizes
from bench.procs import MemoryGuard, Registry, log

RESULTS = ROOT / "bench" / "results"
SCRATCH = RESULTS / "scratch"


def machine() -> dict[str, Any]:
    from bench.peers import etcd_version, redis_version

    try:
        import pysyncobj  # type: ignore[import-untyped]

        psv = getattr(pysyncobj, "__version__", "")
    except ImportError:
        psv = ""
    if not psv:
        from importlib.metadata import version

        psv = version("pysyncobj")
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024

    def git(*args: str) -> str:
        r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return r.stdout.strip()

    return {
        "git_commit": git("rev-parse", "--short", "HEAD"),
        # the agents run the working tree: name what differed from that commit
        "git_dirty": git("status", "--porcelain", "--", "raftcron").splitlines(),
        "nproc": os.cpu_count(),
        "nproc_cmd": subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(),
        "cpu": cpu,
        "mem_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pysyncobj": psv,
        "etcd": etcd_version(),
        "redis": redis_version(),
    }


WORKLOADS: dict[str, str] = {
    "floor": "bench.floor",  # first: no cluster; the ratios to it come from this run
    "steady": "bench.steady",  # issue 17 item 1, right after the timer floor it is put beside
    "burst": "bench.burst",  # issue 17 item 2 (measures the spawn floor right before it)
    "locks": "bench.lock_latency",
    "commit": "bench.commit_path",
    "failover": "bench.failover",
    "scale": "bench.scale",
    "registration": "bench.registration",
    "rss": "bench.rss",
}

# Expected minutes per workload on this 2-core machine, idle, printed at the start (an
# estimate, not a measurement: each run's results record what every workload took,
# ``elapsed_s``). Full: from the 2026-11-27 run's elapsed times and the parts added since
# (bench/analysis.md, "How long make bench takes"); quick: from a `make bench-quick`.
EXPECTED_MIN: dict[str, tuple[float, float]] = {  # name: (full, quick)
    "floor": (1.3, 0.3),
    "steady": (2.5, 0.7),
    "burst": (3.5, 0.6),
    "locks": (6.0, 0.9),
    "commit": (2.0, 0.4),
    "failover": (1.5, 0.5),
    "scale": (22.0, 1.3),
    "registration": (6.0, 0.5),
    "rss": (8.0, 1.2),
}


def expected_minutes(names: list[str], quick: bool) -> float:
    return sum(EXPECTED_MIN[n][1 if quick else 0] for n in names)


def execute(names: list[str], quick: bool, command: str) -> tuple[dict[str, Any], Path]:
    import importlib

    load0 = os.getloadavg()  # before anything of this run: other work on the machine
    sizes = Sizes.quick() if quick else Sizes()
    reg = Registry()
    # Byte-compile raftcron as pip does on install: this machine sets PYTHONDONTWRITEBYTECODE,
    # without which every agent, CLI and watchdog start would compile its modules again.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "raftcron")],
        check=False,
        capture_output=True,
    )
    started = datetime.now(UTC)
    expected = expected_minutes(names, quick)
    log(
        f"{'quick' if quick else 'full-size'} run: expected to take about {expected:.0f} min on an "
        "idle 2-core machine ("
        + ", ".join(f"{n} {EXPECTED_MIN[n][1 if quick else 0]:g}" for n in names)
        + f" min); load average before it: {', '.join(f'{x:.2f}' for x in load0)}"
    )
    results: dict[str, Any] = {
        "meta": {
            "date": started.strftime("%Y-%m-%d"),
            "started": started.isoformat(timespec="seconds"),
            "command": command,
            "quick": quick,
            "expected_min": round(expected, 1),
            "load_at_start": [round(x, 2) for x in load0],
            "sizes": sizes.__dict__,
            "pythondontwritebytecode": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
            "machine": machine(),
        },
        "workloads": {},
        "errors": {},
    }
    out_dir = SCRATCH if quick else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y-%m-%d") if not quick else started.strftime("%Y-%m-%dT%H%M%S")
    path = out_dir / f"{stamp}.json"
    merge_into: dict[str, Any] | None = None
    if not quick and path.exists() and set(names) != set(WORKLOADS):
        # a partial full-size run on a day that already has results: add to that file
        merge_into = json.loads(path.read_text())
    with tempfile.TemporaryDirectory(prefix="raftcron-bench-") as tmp:
        ctx = Ctx(sizes=sizes, tmp=Path(tmp), reg=reg, quick=quick)
        with MemoryGuard(3 * 2**30, lambda why: reg.stop_all()) as guard:
            ctx.guard = guard
            try:
                for name in names:
                    t0 = time.monotonic()
                    n_load = len(guard.load)
                    log(f"== {name}")
                    mod = importlib.import_module(WORKLOADS[name])
                    fn: Callable[[Ctx], dict[str, Any]] = mod.run_all
                    try:
                        results["workloads"][name] = fn(ctx)
                    except Exception as exc:  # record it, go on with the next workload
                        import traceback

                        log(f"{name} failed: {exc!r}")
                        results["errors"][name] = traceback.format_exc()
                    finally:
                        reg.stop_all()
                    results["workloads"].setdefault(name, {})["elapsed_s"] = round(
                        time.monotonic() - t0, 1
                    )
                    load = guard.load[n_load:]
                    if load:  # other work on the machine shows here too
                        results["workloads"][name]["loadavg_1m"] = {
                            "mean": round(sum(load) / len(load), 2),
                            "max": max(load),
                        }
                    why = ctx.memory_trip()
                    if why:
                        results["errors"][name + "_memory"] = why
                    path.write_text(json.dumps(results, indent=1, default=str))
            finally:
                reg.stop_all()
        results["meta"]["notes"] = ctx.notes
        results["meta"]["min_mem_available_gib"] = round(guard.min_seen / 2**30, 1)
    results["meta"]["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    if merge_into is not None:
        results = _merged(merge_into, results)
    path.write_text(json.dumps(results, indent=1, default=str))
    log(f"results: {path.relative_to(ROOT)}")
    return results, path


def _merged(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` (a run of some workloads) added to ``base`` (the day's full run): its
    workloads replace those of the same name, and the run is listed in meta."""
    base["workloads"].update(new["workloads"])
    base.setdefault("errors", {}).update(new.get("errors", {}))
    base["meta"].setdefault("additional_runs", []).append(
        {
            "command": new["meta"]["command"],
            "workloads": sorted(new["workloads"]),
            "started": new["meta"]["started"],
            "finished": new["meta"]["finished"],
            "git_commit": new["meta"]["machine"].get("git_commit"),
            "git_dirty": new["meta"]["machine"].get("git_dirty"),
        }
    )
    return base


def standalone(name: str, fn: Callable[[Ctx], dict[str, Any]]) -> None:
    """``python -m bench.<workload> [--quick]``: run one workload, print its JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    results, _ = execute([name], args.quick, shlex.join(sys.argv))
    print(json.dumps(results["workloads"].get(name), indent=1, default=str))


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds, so every started process is ended by PID


def main() -> int:
    # Started in the background, a shell leaves SIGINT ignored: restore it, and make
    # SIGTERM unwind the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes; output under scratch/")
    ap.add_argument("--only", default="", help=f"comma list of {', '.join(WORKLOADS)}")
    ap.add_argument("--no-docs", action="store_true", help="do not write the Markdown/charts")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(WORKLOADS)
    for n in names:
        if n not in WORKLOADS:
            ap.error(f"unknown workload {n!r}")
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        ["python", "-m", "bench.run", *sys.argv[1:]]
    )
    results, path = execute(names, args.quick, command)
    if not args.no_docs:
        from bench.report import write_report

        write_report(results, path, quick=args.quick)
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
