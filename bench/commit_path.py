"""Workload 6: the commit path. raftcron only, 3 nodes, password on, durable journal.

* Commit latency: ``PUT /v1/jobs/{name}`` round trips, sequential on one keep-alive
  connection, at the leader and through a follower (which forwards the proposal and
  answers once its own replica applied the entry). Each PUT is one Raft commit.
* Throughput: PUTs with 1, 16 and 64 in flight (aiohttp, distinct jobs) for a fixed time:
  commits per second (the leader's commit index delta) and the PUT latency p50/p99.
* Fsyncs per commit: the journal's fsync counters (``/v1/status`` ``fsyncs``) summed over
  the three nodes, and the leader's alone, per committed entry.

    .venv/bin/python -m bench.commit_path [--quick]
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
from typing import Any

from bench.common import Ctx
from bench.procs import log
from bench.stats import over_runs, run_summary
from tests.cluster.harness import Cluster


def sequential(cl: Cluster, node: str, n: int, tag: str) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", cl.members[node].api_port, timeout=10)
    out = []
    try:
        for i in range(n):
            body = json.dumps({"schedule": "0 0 1 1 *", "command": ["true", str(i)]})
            t0 = time.perf_counter()
            conn.request(
                "PUT", f"/v1/jobs/{tag}", body=body, headers={"Content-Type": "application/json"}
            )
            resp = conn.getresponse()
            resp.read()
            out.append(time.perf_counter() - t0)
            if resp.status >= 300:
                raise RuntimeError(f"PUT failed: {resp.status}")
    finally:
        conn.close()
    return out


async def _inflight(base: str, k: int, seconds: float, tag: str) -> list[float]:
    import aiohttp

    lat: list[float] = []
    stop = time.perf_counter() + seconds
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=k)) as s:

        async def worker(w: int) -> None:
            i = 0
            while time.perf_counter() < stop:
                i += 1
                body = {"schedule": "0 0 1 1 *", "command": ["true", str(i)]}
                t0 = time.perf_counter()
                async with s.put(f"/v1/jobs/{tag}-{w}", json=body) as r:
                    await r.read()
                    if r.status < 300:
                        lat.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker(w) for w in range(k)))
    return lat


def fsyncs(cl: Cluster) -> dict[str, int]:
    return {n: int(cl.get(n, "/v1/status")["fsyncs"]) for n in cl.members}


def run_all(ctx: Ctx) -> dict[str, Any]:
    cl = ctx.raftcron("commit")
    try:
        leader = cl.wait_leader(30)
        follower = next(n for n in cl.members if n != leader)
        sequential(cl, leader, 50, "warm")
        seq: dict[str, list[dict[str, float]]] = {"leader": [], "follower": []}
        fs: list[float] = []
        fs_leader: list[float] = []
        for run in range(ctx.sizes.runs):
            for where, node in (("leader", leader), ("follower", follower)):
                f0 = fsyncs(cl)
                c0 = int(cl.get(leader, "/v1/status")["commit_index"])
                xs = sequential(cl, node, ctx.sizes.commit_iters, f"seq-{where}")
                c1 = int(cl.get(leader, "/v1/status")["commit_index"])
                f1 = fsyncs(cl)
                seq[where].append(run_summary(xs))
                if where == "leader":
                    fs.append(sum(f1.values()) - sum(f0.values()))
                    fs[-1] /= max(1, c1 - c0)
                    fs_leader.append((f1[leader] - f0[leader]) / max(1, c1 - c0))
            log(
                f"commit run {run + 1}: leader p50 {seq['leader'][-1]['p50'] * 1000:.2f}ms, "
                f"follower p50 {seq['follower'][-1]['p50'] * 1000:.2f}ms, "
                f"fsyncs/commit {fs[-1]:.2f}"
            )
        inflight: dict[str, list[dict[str, float]]] = {}
        for _run in range(ctx.sizes.runs):
            for k in ctx.sizes.inflight:
                c0 = int(cl.get(leader, "/v1/status")["commit_index"])
                t0 = time.perf_counter()
                lat = asyncio.run(
                    _inflight(cl.members[leader].api, k, ctx.sizes.inflight_seconds, f"inf{k}")
                )
                dt = time.perf_counter() - t0
                c1 = int(cl.get(leader, "/v1/status")["commit_index"])
                s = run_summary(lat)
                inflight.setdefault(str(k), []).append(
                    {"commits_per_s": (c1 - c0) / dt, "puts_per_s": len(lat) / dt, **s}
                )
                log(f"in flight {k}: {(c1 - c0) / dt:.0f} commits/s, p99 {s['p99'] * 1000:.1f}ms")
        import statistics

        return {
            "sequential": {
                w: {"iterations": ctx.sizes.commit_iters, **over_runs(r)} for w, r in seq.items()
            },
            "inflight": {k: over_runs(v) for k, v in inflight.items()},
            "fsyncs_per_commit_all_nodes": statistics.median(fs),
            "fsyncs_per_commit_leader": statistics.median(fs_leader),
            "per_run": {"sequential": seq, "inflight": inflight},
        }
    finally:
        cl.stop()


if __name__ == "__main__":
    from bench.run import standalone

    standalone("commit", run_all)
