"""Registering many jobs: which path is fastest, measured. raftcron only.

* API: ``PUT /v1/jobs/{name}`` for N new jobs with 1, 16 and 64 requests in flight
  (aiohttp, to the leader). Every PUT is its own Raft commit.
* Config file: the same N jobs as ``[[jobs]]`` tables in the cluster file. Measured from
  starting the three agents until every node's ``/v1/status`` counts N jobs (the leader
  reconciles the file's jobs in one ``SyncConfig`` command when it takes over), with the
  time to the first established leader alongside.

    .venv/bin/python -m bench.registration [--quick]
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Ctx
from bench.procs import log
from bench.scale import send_all
from tests.cluster.harness import Cluster, wait_for


def _spec(i: int) -> dict[str, Any]:
    return {"name": f"r{i:06d}", "schedule": f"{i % 60} {i % 24} * * *", "command": ["true"]}


def api_path(ctx: Ctx, n: int, inflight: int) -> dict[str, Any]:
    cl = ctx.raftcron(f"reg-api-{n}-{inflight}")
    try:
        leader = cl.wait_leader(30)
        reqs = [("PUT", f"/v1/jobs/r{i:06d}", _spec(i)) for i in range(n)]
        elapsed, failures = send_all(cl, leader, reqs, inflight)
        jobs = int(cl.get(leader, "/v1/status", timeout=10)["jobs"])
        log(f"register {n} by PUT, {inflight} in flight: {elapsed:.1f}s ({n / elapsed:.0f}/s)")
        return {
            "jobs": n,
            "inflight": inflight,
            "seconds": elapsed,
            "jobs_per_s": n / elapsed,
            "failures": failures,
            "jobs_seen": jobs,
        }
    finally:
        cl.stop()


def config_path(ctx: Ctx, n: int) -> dict[str, Any]:
    root = ctx.tmp / f"reg-config-{n}"
    root.mkdir(parents=True, exist_ok=True)
    t_write = time.perf_counter()
    cl = Cluster(root, [_spec(i) for i in range(n)])
    write_s = time.perf_counter() - t_write
    ctx.reg.on_stop(cl.stop)
    out: dict[str, Any] = {"jobs": n, "write_config_s": write_s}
    try:
        t0 = time.monotonic()
        cl.start()
        leader = cl.wait_leader(600)
        out["leader_s"] = time.monotonic() - t0

        def all_have() -> bool:
            return all(int(cl.get(m, "/v1/status", timeout=10)["jobs"]) >= n for m in cl.members)

        wait_for(f"{n} config jobs on every node", all_have, 900, interval=0.2)
        out["seconds"] = time.monotonic() - t0
        out["jobs_per_s"] = n / out["seconds"]
        out["leader"] = leader
        log(f"register {n} by config file: {out['seconds']:.1f}s (leader {out['leader_s']:.1f}s)")
    finally:
        cl.stop()
    return out


def run_all(ctx: Ctx) -> dict[str, Any]:
    n_api = 500 if ctx.quick else 10_000
    out: dict[str, Any] = {"api": [], "config": []}
    for k in (1, 16, 64):
        out["api"].append(api_path(ctx, n_api, k))
    for n in (500,) if ctx.quick else (10_000, 100_000):
        try:
            out["config"].append(config_path(ctx, n))
        except Exception as exc:
            log(f"config path {n} failed: {exc!r}")
            out["config"].append({"jobs": n, "error": repr(exc)})
    return out


if __name__ == "__main__":
    from bench.run import standalone

    standalone("registration", run_all)
