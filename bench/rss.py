"""Workload 5, the memory target: RSS of every agent with N jobs, both ways of getting them.

* ``config``: the N jobs as ``[[jobs]]`` tables in the cluster file; the agents start
  with it and the leader reconciles the file (``SyncConfig`` entries of 500 specs).
* ``api``: the N jobs registered by ``PUT /v1/jobs/{name}`` (64 in flight) on a cluster
  started without jobs, as ``make bench``'s scale workload registers them.

The jobs are the scale workload's claim-only jobs with a parked schedule (``0 0 1 1 *``,
tags no node has), so none fires while this runs. For each path: RSS of each agent once
every node's ``/v1/status`` counts N jobs (plus ``SETTLE_S`` for the last entries to be
applied and any snapshot in flight to finish), then again after every node wrote a fresh
snapshot (filler commits: lock acquire/release pairs), and each agent's peak RSS
(``VmHWM``: loading the file and writing snapshots included).

    .venv/bin/python -m bench.rss [--jobs 100000] [--path config,api]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import Ctx, Sizes, agent_pids
from bench.procs import Registry, log, rss_bytes
from bench.scale import fresh_snapshots, put_jobs, status
from tests.cluster.harness import Cluster, wait_for

SETTLE_S = 10.0
BASE: dict[str, Any] = {
    "schedule": "0 0 1 1 *",
    "command": ["sh", "-c", 'echo "$RAFTCRON_RUN_ID $(date +%s%N)" >> /dev/null'],
    "lease": "60s",
    "catchup": "10m",
    "tags": {"bench": "nowhere"},
}


def specs(n: int) -> list[dict[str, Any]]:
    return [{"name": f"m{i:06d}", **BASE} for i in range(n)]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}


def _mb(pids: dict[str, int]) -> dict[str, float]:
    return {n: round(rss_bytes(pid) / 1e6, 1) for n, pid in pids.items()}


def _peak_mb(pids: dict[str, int]) -> dict[str, float]:
    """Each process's peak RSS so far (``VmHWM``: startup and snapshots included)."""
    out = {}
    for n, pid in pids.items():
        try:
            with open(f"/proc/{pid}/status") as f:
                kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        except (OSError, StopIteration, ValueError):
            continue
        out[n] = round(kb * 1024 / 1e6, 1)
    return out


def _measure(cl: Cluster, n: int, out: dict[str, Any], t0: float) -> None:
    def all_have() -> bool:
        return all(int(status(cl, m)["jobs"]) >= n for m in cl.members)

    wait_for(f"{n} jobs on every node", all_have, 1800, interval=0.5)
    out["all_have_s"] = round(time.monotonic() - t0, 1)
    time.sleep(SETTLE_S)
    pids = agent_pids(cl)
    out["leader"] = cl.wait_leader(30)
    out["rss_mb_all_have"] = _mb(pids)
    log(f"{n} jobs on every node after {out['all_have_s']}s: RSS MB {out['rss_mb_all_have']}")
    since = time.time()
    out["snapshot_bytes"] = fresh_snapshots(cl, since, budget_s=600)
    time.sleep(SETTLE_S)
    out["rss_mb_after_snapshot"] = _mb(pids)
    out["peak_rss_mb"] = _peak_mb(pids)
    log(
        f"after a fresh snapshot on every node: RSS MB {out['rss_mb_after_snapshot']}, "
        f"peak so far {out['peak_rss_mb']}"
    )
    out["max_rss_mb"] = max(
        *out["rss_mb_all_have"].values(), *out["rss_mb_after_snapshot"].values()
    )


def config_path(ctx: Ctx, n: int) -> dict[str, Any]:
    root = ctx.tmp / f"rss-config-{n}"
    root.mkdir(parents=True, exist_ok=True)
    cl = Cluster(root, specs(n), env=_env())
    ctx.reg.on_stop(cl.stop)
    out: dict[str, Any] = {"path": "config", "jobs": n}
    try:
        t0 = time.monotonic()
        cl.start()
        _measure(cl, n, out, t0)
    finally:
        cl.stop()
    return out


def api_path(ctx: Ctx, n: int) -> dict[str, Any]:
    cl = ctx.raftcron(f"rss-api-{n}")
    out: dict[str, Any] = {"path": "api", "jobs": n}
    try:
        leader = cl.wait_leader(30)
        t0 = time.monotonic()
        out["register_s"], out["register_failures"] = put_jobs(cl, leader, specs(n))
        _measure(cl, n, out, t0)
    finally:
        cl.stop()
    return out


PATHS = {"config": config_path, "api": api_path}


def run_all(ctx: Ctx) -> dict[str, Any]:
    n = 2_000 if ctx.quick else 100_000
    out: dict[str, Any] = {}
    for name, fn in PATHS.items():
        try:
            out[name] = fn(ctx, n)
        except Exception as exc:
            why = ctx.memory_trip()
            log(f"rss {name} {n} failed: {exc!r} {why or ''}")
            out[name] = {"path": name, "jobs": n, "error": repr(exc), "aborted": why}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--path", default="config,api", help="comma list of config, api")
    args = ap.parse_args()
    reg = Registry()
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="raftcron-rss-") as tmp:
            ctx = Ctx(sizes=Sizes(), tmp=Path(tmp), reg=reg, quick=False)
            for name in args.path.split(","):
                results[name] = PATHS[name](ctx, args.jobs)
                reg.stop_all()
    finally:
        reg.stop_all()
    print(json.dumps(results, indent=1))
    for name, r in results.items():
        print(
            f"{name} path, {r['jobs']} jobs: RSS MB all have {r['rss_mb_all_have']}, "
            f"after a snapshot {r['rss_mb_after_snapshot']} (max {r['max_rss_mb']}); "
            f"peak (VmHWM) {r['peak_rss_mb']}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
