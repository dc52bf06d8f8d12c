"""Failover: kill -9 of the leader until (a) an established leader answers /health/leader,
(b) the first write commits on the survivors, (c) the first job fire on the new leader.

A real 3-node cluster on loopback (password, durable journal) with a job that fires every
second. Each trial kills the leader, measures, then restarts the killed node.

    .venv/bin/python bench/failover.py [--trials 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cluster.harness import SINK_CMD, Cluster, read_sink, wait_for


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=10)
    args = ap.parse_args()
    results: dict[str, list[float]] = {"leader": [], "write": [], "fire": []}
    with tempfile.TemporaryDirectory() as d:
        sink = Path(d) / "sink.txt"
        job = {
            "name": "tick",
            "schedule": "* * * * * *",
            "command": ["sh", "-c", SINK_CMD.format(sink=sink)],
            "lease": "3s",
            "catchup": "30s",
        }
        cl = Cluster(Path(d), [job])
        cl.start()
        try:
            cl.wait_leader(60)
            wait_for("fires", lambda: len(read_sink(sink)) >= 3, 30)
            for trial in range(args.trials):
                leader = cl.wait_leader(30)
                survivors = [n for n in cl.alive() if n != leader]
                wait_for(
                    "all members healthy",
                    lambda: all(cl.get(n, "/health")["status"] == "ok" for n in cl.alive()),
                    30,
                )
                t_kill_wall_ms = time.time() * 1000
                t0 = time.monotonic()
                cl.kill(leader)
                done: dict[str, float] = {}
                deadline = t0 + 30
                i = 0
                while len(done) < 3 and time.monotonic() < deadline:
                    now = time.monotonic() - t0
                    if "leader" not in done and cl.leader(survivors):
                        done["leader"] = now
                    if "write" not in done:
                        i += 1
                        status, _ = cl.request(
                            survivors[i % 2],
                            "PUT",
                            "/v1/jobs/probe",
                            {"schedule": "0 0 1 1 *", "command": ["true", str(i)]},
                            timeout=2.0,
                        )
                        if status in (200, 201):
                            done["write"] = time.monotonic() - t0
                    if "fire" not in done:
                        new = [r for r in read_sink(sink) if r["node"] != leader]
                        started = [r for r in new if int(r["run"].split("@")[1]) > t_kill_wall_ms]
                        if started:
                            done["fire"] = time.monotonic() - t0
                    time.sleep(0.01)
                for k, v in done.items():
                    results[k].append(v)
                print(
                    f"trial {trial + 1}: " + " ".join(f"{k}={v:.3f}s" for k, v in done.items()),
                    flush=True,
                )
                cl.start(leader)
        finally:
            cl.stop()
    for k, label in (
        ("leader", "established leader"),
        ("write", "first committed write"),
        ("fire", "first fire scheduled after the kill"),
    ):
        xs = results[k]
        if xs:
            print(f"{label:<36} n={len(xs)} median={statistics.median(xs):.3f}s max={max(xs):.3f}s")


if __name__ == "__main__":
    main()
