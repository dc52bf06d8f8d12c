"""Workload 3: kill -9 of the leader, raftcron vs etcd (3 members each), ``trials`` each.

raftcron: a job fires every second and appends its own start time (``date +%s%N``) to a
sink file. Each trial waits until every member is healthy, kills the leader with SIGKILL
100 ms before a scheduled fire (so that fire falls inside the failover), then measures
from the kill:

* (a) the first ``PUT /v1/jobs/probe`` that commits, tried on the survivors in turn
  (2 s client timeout, a new attempt every 10 ms),
* the first established leader (``GET /health/leader`` 200),
* (b) the first job start on a survivor of a fire scheduled after the kill, read from the
  time the job wrote itself (so it includes the claim, the fenced start commit and the
  process spawn), and that fire's start lateness.

etcd: the same kill -9 of the leader member; (a) the first gRPC ``Put`` that commits on a
survivor (0.5 s deadline per attempt) and the first member reporting itself leader. etcd
runs its defaults (heartbeat 100 ms, election timeout 1 s); raftcron its own (election
timeout 0.3-0.9 s, docs/design.md, "Raft settings and timing"). The killed member is
restarted after each trial.

    .venv/bin/python -m bench.failover [--quick]
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import Ctx
from bench.peers import EtcdCluster, pb_bytes
from bench.procs import log
from bench.stats import run_summary
from tests.cluster.harness import read_sink, wait_for

SINK = 'echo "run=$RAFTCRON_RUN_ID node=$RAFTCRON_NODE started=$(date +%s%N)" >> {sink}'


def _summary(xs: list[float]) -> dict[str, Any]:
    if not xs:
        return {"trials": 0}
    s = run_summary(xs)
    import statistics

    return {
        "trials": len(xs),
        "median": statistics.median(xs),
        "p99": s["p99"],
        "max": s["max"],
        "min": min(xs),
        "values": xs,
    }


def _sleep_to_phase(phase: float) -> None:
    """Sleep until the wall clock's fractional second is ``phase``."""
    now = time.time()
    target = int(now) + phase
    if target <= now + 0.05:
        target += 1
    time.sleep(target - now)


def raftcron_trials(ctx: Ctx) -> dict[str, Any]:
    root = ctx.tmp / "failover"
    root.mkdir(parents=True, exist_ok=True)
    sink = root / "sink.txt"
    job = {
        "name": "tick",
        "schedule": "* * * * * *",
        "command": ["sh", "-c", SINK.format(sink=sink)],
        "lease": "3s",
        "catchup": "30s",
    }
    cl = ctx.raftcron("failover", [job])
    results: dict[str, list[float]] = {"write": [], "leader": [], "fire": [], "fire_lateness": []}
    try:
        wait_for("fires", lambda: len(read_sink(sink)) >= 3, 30)
        for trial in range(ctx.sizes.failover_trials):
            leader = cl.wait_leader(30)
            survivors = [n for n in cl.alive() if n != leader]
            wait_for(
                "all members healthy",
                lambda: all(cl.get(n, "/health")["status"] == "ok" for n in cl.alive()),
                30,
            )
            time.sleep(1.5)  # let the restarted member settle its connections
            _sleep_to_phase(0.9)
            t_kill = time.time()
            t0 = time.monotonic()
            cl.kill(leader)
            done: dict[str, float] = {}
            i = 0
            while len(done) < 3 and time.monotonic() < t0 + 30:
                if "leader" not in done and cl.leader(survivors):
                    done["leader"] = time.monotonic() - t0
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
                    for r in read_sink(sink):
                        sched_ms = int(r["run"].split("@")[1])
                        if r["node"] != leader and sched_ms > t_kill * 1000:
                            started = int(r["started"]) / 1e9
                            done["fire"] = started - t_kill
                            results["fire_lateness"].append(started - sched_ms / 1000)
                            break
                time.sleep(0.01)
            for k, v in done.items():
                results[k].append(v)
            log(
                f"raftcron failover trial {trial + 1}: "
                + " ".join(f"{k}={v:.3f}s" for k, v in done.items())
            )
            cl.start(leader)
    finally:
        cl.stop()
    return {k: _summary(v) for k, v in results.items()}


def etcd_trials(ctx: Ctx) -> dict[str, Any]:
    import grpc

    ec = EtcdCluster(ctx.tmp / "etcd-failover", ctx.reg)
    (ctx.tmp / "etcd-failover").mkdir(parents=True, exist_ok=True)
    ec.start()
    results: dict[str, list[float]] = {"write": [], "leader": []}
    channels = {n: grpc.insecure_channel(f"127.0.0.1:{ec.client_port[n]}") for n in ec.names}
    puts = {n: ch.unary_unary("/etcdserverpb.KV/Put") for n, ch in channels.items()}
    try:
        for trial in range(ctx.sizes.failover_trials):
            leader = ec.wait_ready()
            for n in ec.names:  # every member serves a write before the kill
                wait_for(f"put via {n}", lambda n=n: puts[n](pb_bytes(1, b"warm"), timeout=2), 30)
            time.sleep(1.5)
            survivors = [n for n in ec.alive() if n != leader]
            t0 = time.monotonic()
            ec.kill(leader)
            done: dict[str, float] = {}
            i = 0
            while len(done) < 2 and time.monotonic() < t0 + 30:
                if "leader" not in done and ec.leader(survivors):
                    done["leader"] = time.monotonic() - t0
                if "write" not in done:
                    i += 1
                    try:
                        puts[survivors[i % 2]](
                            pb_bytes(1, b"probe") + pb_bytes(2, b"%d" % i), timeout=0.5
                        )
                        done["write"] = time.monotonic() - t0
                    except grpc.RpcError:
                        pass
                time.sleep(0.01)
            for k, v in done.items():
                results[k].append(v)
            log(
                f"etcd failover trial {trial + 1}: "
                + " ".join(f"{k}={v:.3f}s" for k, v in done.items())
            )
            ec.start(leader, new=False)
    finally:
        for ch in channels.values():
            ch.close()
        ec.stop()
    return {k: _summary(v) for k, v in results.items()}


def run_all(ctx: Ctx) -> dict[str, Any]:
    return {"raftcron": raftcron_trials(ctx), "etcd": etcd_trials(ctx)}


if __name__ == "__main__":
    from bench.run import standalone

    standalone("failover", run_all)
