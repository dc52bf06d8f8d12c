"""Commit path: write latency at the leader and through a follower, fsyncs per commit.

Starts a real 3-node cluster (password on, durable journal) on loopback ports, then
times `PUT /v1/jobs/{name}` round trips (HTTP keep-alive; each PUT is one Raft commit,
acknowledged only after the local replica applied it). Prints what it measured.

    .venv/bin/python bench/commit_path.py [--n 500]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster.harness import Cluster


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def put_many(cl: Cluster, node: str, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", cl.members[node].api_port, timeout=10)
    out = []
    for i in range(n):
        body = json.dumps({"schedule": "0 0 1 1 *", "command": ["true", str(i)]})
        t0 = time.perf_counter()
        conn.request(
            "PUT", f"/v1/jobs/bench-{node}", body=body, headers={"Content-Type": "application/json"}
        )
        resp = conn.getresponse()
        resp.read()
        out.append(time.perf_counter() - t0)
        if resp.status >= 300:
            raise SystemExit(f"PUT failed: {resp.status}")
    conn.close()
    return out


def fsyncs(cl: Cluster) -> int:
    return sum(int(cl.get(n, "/v1/status")["fsyncs"]) for n in cl.members)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cl = Cluster(Path(d))
        cl.start()
        try:
            leader = cl.wait_leader(60)
            follower = next(n for n in cl.members if n != leader)
            put_many(cl, leader, 20)  # warm up
            f0 = fsyncs(cl)
            at_leader = put_many(cl, leader, args.n)
            f1 = fsyncs(cl)
            via_follower = put_many(cl, follower, args.n)
            for name, xs in (("leader", at_leader), ("follower", via_follower)):
                print(
                    f"commit via {name:<8} n={len(xs)} p50={pct(xs, 50) * 1000:.2f}ms "
                    f"p99={pct(xs, 99) * 1000:.2f}ms mean={statistics.mean(xs) * 1000:.2f}ms "
                    f"({len(xs) / sum(xs):.0f} commits/s sequential)"
                )
            print(f"fsyncs per commit (all 3 nodes together): {(f1 - f0) / args.n:.2f}")
        finally:
            cl.stop()


if __name__ == "__main__":
    main()
