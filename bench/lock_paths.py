"""Lock round trip (acquire + release through the HTTP API) at the leader and through a
follower, on a fresh 3-node cluster: p50 and p99 per path.

This measurement used to be a cluster test with a latency threshold
(``tests/cluster/test_locks.py``); a threshold fails on a loaded machine without saying
anything about behaviour, so the number lives here and the test suite checks behaviour.
``make bench`` measures the leader path against etcd and Redis (``bench.lock_latency``).

    flock /tmp/raftcron-heavy.lock .venv/bin/python -m bench.lock_paths [--pairs 150]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.lock_latency import RaftcronRaw
from bench.stats import run_summary
from tests.cluster.harness import Cluster, running


def round_trips(api_port: int, name: str, pairs: int, warm_up: int = 10) -> list[float]:
    """Seconds per acquire + release pair on one keep-alive connection."""
    api = RaftcronRaw(api_port)
    try:
        for _ in range(warm_up):
            api.release(f"warm-{name}", api.acquire(f"warm-{name}"))
        out = []
        for _ in range(pairs):
            t0 = time.perf_counter()
            api.release(name, api.acquire(name))
            out.append(time.perf_counter() - t0)
        return out
    finally:
        api.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=150, help="measured pairs per path")
    args = ap.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="lock-paths-") as tmp,
        running(Cluster(Path(tmp))) as cl,
    ):
        leader = cl.wait_leader(30)
        follower = next(n for n in cl.members if n != leader)
        for label, node in (("leader", leader), ("follower", follower)):
            s = run_summary(round_trips(cl.members[node].api_port, f"paths-{node}", args.pairs))
            print(
                f"lock round trip via {label} ({node}), {args.pairs} pairs: "
                f"p50 {s['p50'] * 1000:.2f} ms, p99 {s['p99'] * 1000:.2f} ms, "
                f"max {s['max'] * 1000:.2f} ms"
            )


if __name__ == "__main__":
    main()
