"""Lock latency: acquire + release round trips through the HTTP API.

Starts a real 3-node cluster (password on, durable journal) on loopback ports, then times
``POST /v1/locks/{name}`` followed by ``DELETE /v1/locks/{name}?fence=N`` on one HTTP
keep-alive connection, uncontended: each is one Raft commit, answered once the serving
node has applied it. Measured at the leader and through a follower (which forwards the
proposal to the leader). Prints p50/p99 of the pair and of each half.

    .venv/bin/python bench/lock_latency.py [--n 300]
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


def _call(conn: http.client.HTTPConnection, method: str, path: str, body: object = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    out = json.loads(resp.read())
    if resp.status != 200:
        raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {out}")
    return dict(out)


def cycles(port: int, name: str, n: int) -> tuple[list[float], list[float], list[float]]:
    """``n`` acquire+release pairs on ``name``: (pair, acquire, release) seconds each."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    pair, acq, rel = [], [], []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            grant = _call(conn, "POST", f"/v1/locks/{name}", {"ttl": "10s", "holder": "bench"})
            t1 = time.perf_counter()
            _call(conn, "DELETE", f"/v1/locks/{name}?fence={grant['fence']}")
            t2 = time.perf_counter()
            pair.append(t2 - t0)
            acq.append(t1 - t0)
            rel.append(t2 - t1)
    finally:
        conn.close()
    return pair, acq, rel


def report(label: str, pair: list[float], acq: list[float], rel: list[float]) -> str:
    def ms(xs: list[float]) -> str:
        return f"p50 {pct(xs, 50) * 1000:.2f} ms  p99 {pct(xs, 99) * 1000:.2f} ms"

    return (
        f"{label}: acquire+release {ms(pair)}  (mean {statistics.mean(pair) * 1000:.2f} ms, "
        f"n={len(pair)})\n    acquire {ms(acq)}\n    release {ms(rel)}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="pairs per node (default 300)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="raftcron-lockbench-") as tmp:
        cl = Cluster(Path(tmp))
        cl.start()
        try:
            leader = cl.wait_leader(30)
            follower = next(n for n in cl.members if n != leader)
            cycles(cl.members[leader].api_port, "warmup", 20)
            for label, node in (("leader", leader), ("follower", follower)):
                res = cycles(cl.members[node].api_port, f"bench-{node}", args.n)
                print(report(f"{label} ({node})", *res))
        finally:
            cl.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
