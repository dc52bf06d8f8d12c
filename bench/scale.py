"""Workloads 4 and 5: scheduling at scale, memory and size. raftcron only.

For each size N (1k / 10k / 100k jobs) a fresh 3-node cluster:

1. Registration: N ``PUT /v1/jobs/{name}`` sent to the leader, 64 in flight (aiohttp).
   Every one is its own Raft commit; the elapsed time is reported. Then every job is PUT
   again with the burst's schedule: a single fire at the top of a minute (``M H D Mon *``)
   far enough ahead for that second pass to finish.
2. Burst (4a): at that second all N fires are due. "Claimed" is when the leader's
   ``/v1/status`` ``runs`` count (polled every 50 ms) includes all N fires. Start lateness
   is read two ways: the job writes its own start time (``date +%s%N``) to a sink file
   (what a user sees), and the ledger's ``started_at - scheduled_at`` (``started_at`` is
   stamped when the executor proposes its fenced start, before the process spawns).
   Sizes above ``burst_exec_max`` run claim-only: their jobs carry a tag no node has, so
   every fire is planned and committed to the ledger as ``skipped`` (unschedulable) and
   nothing executes (each executed run spawns a watchdog process: 100k of them in one
   second is not something this 2-core machine can do in bounded time).
3. Steady mix (4b): ``every_second_jobs`` jobs ``* * * * * *`` plus 60 every-minute jobs
   (one per second of the minute) on top of the N idle jobs, for ``steady_seconds``:
   lateness from the jobs' own start times, commits per second at the leader, CPU per
   agent process (its own, and its reaped children: watchdogs and jobs).
4. Memory and size (5): RSS of each agent after registration and at the end; the size of
   each node's snapshot file after enough commits for a fresh one (lock acquire/release
   pairs as filler); the time to restart a follower after ``kill -9`` until it answers and
   has applied everything committed before the kill.

Then the ledger phase: a cluster with P every-second jobs that no node can run, so each
second records P skipped runs (ledger retention on: ``history`` = 100 final runs per job),
until ``runs_target`` runs were recorded or ``runs_seconds`` passed; RSS, snapshot size
and restart time after it.

    .venv/bin/python -m bench.scale [--quick]
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import Ctx, agent_pids
from bench.procs import cpu_seconds, log, rss_bytes
from bench.stats import run_summary
from tests.cluster.harness import Cluster, wait_for

SINK = 'echo "$RAFTCRON_RUN_ID $(date +%s%N)" >> {sink}'


# --------------------------------------------------------------------------- API helpers


async def _send_all(
    base: str, reqs: list[tuple[str, str, dict[str, Any] | None]], concurrency: int
) -> int:
    """Send every ``(method, path, body)``; retry 503s; the number of failures."""
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    failures = 0
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(base, connector=conn) as session:

        async def one(method: str, path: str, body: dict[str, Any] | None) -> None:
            nonlocal failures
            async with sem:
                for attempt in range(20):
                    try:
                        async with session.request(
                            method, path, json=body, timeout=aiohttp.ClientTimeout(total=30)
                        ) as r:
                            await r.read()
                            if r.status < 300:
                                return
                            if r.status != 503:
                                failures += 1
                                return
                    except (aiohttp.ClientError, TimeoutError):
                        pass
                    await asyncio.sleep(0.05 * (attempt + 1))
                failures += 1

        await asyncio.gather(*(one(m, p, b) for m, p, b in reqs))
    return failures


def send_all(
    cl: Cluster, node: str, reqs: list[tuple[str, str, dict[str, Any] | None]], conc: int = 64
) -> tuple[float, int]:
    t0 = time.perf_counter()
    failures = asyncio.run(_send_all(cl.members[node].api, reqs, conc))
    return time.perf_counter() - t0, failures


def put_jobs(cl: Cluster, node: str, specs: list[dict[str, Any]]) -> tuple[float, int]:
    return send_all(cl, node, [("PUT", f"/v1/jobs/{s['name']}", s) for s in specs])


def filler(cl: Cluster, node: str, pairs: int) -> None:
    """``pairs`` uncontended lock acquire/release pairs (2 commits each), 64 in flight."""

    async def go() -> None:
        import aiohttp

        sem = asyncio.Semaphore(64)
        async with aiohttp.ClientSession(cl.members[node].api) as s:

            async def one(i: int) -> None:
                async with sem:
                    async with s.post(f"/v1/locks/fill-{i % 256}", json={"ttl": "30s"}) as r:
                        body = await r.json()
                        if r.status != 200:
                            return
                    async with s.delete(f"/v1/locks/fill-{i % 256}?fence={body['fence']}") as r:
                        await r.read()

            await asyncio.gather(*(one(i) for i in range(pairs)))

    asyncio.run(go())


def status(cl: Cluster, node: str) -> dict[str, Any]:
    st: dict[str, Any] = cl.get(node, "/v1/status", timeout=10)
    return st


def metric(cl: Cluster, node: str, name: str) -> float:
    with cl.open(cl.members[node].api + "/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def snapshot_sizes(cl: Cluster) -> dict[str, int]:
    out = {}
    for n in cl.members:
        p = cl.root / "data" / n / "raft" / "snapshot.bin"
        out[n] = p.stat().st_size if p.exists() else 0
    return out


def fresh_snapshots(cl: Cluster, since: float, budget_s: float = 120.0) -> dict[str, int]:
    """Commit filler until every node wrote a snapshot after ``since`` (wall time)."""
    leader = cl.wait_leader(30)
    deadline = time.monotonic() + budget_s

    def fresh() -> bool:
        for n in cl.members:
            p = cl.root / "data" / n / "raft" / "snapshot.bin"
            if not p.exists() or p.stat().st_mtime < since:
                return False
        return True

    while not fresh() and time.monotonic() < deadline:
        filler(cl, leader, 1000)
        time.sleep(0.5)
    return snapshot_sizes(cl) if fresh() else {}


def rss(cl: Cluster) -> dict[str, int]:
    return {n: rss_bytes(pid) for n, pid in agent_pids(cl).items()}


def restart_follower(cl: Cluster, trials: int) -> list[float]:
    """kill -9 a follower, start it again: seconds until it answers /v1/status and has
    applied every entry the leader had committed before the kill."""
    out = []
    for _ in range(trials):
        leader = cl.wait_leader(30)
        follower = next(n for n in cl.members if n != leader)
        target = int(status(cl, leader)["commit_index"])
        cl.kill(follower)
        t0 = time.monotonic()
        cl.start(follower)

        def caught_up(f: str = follower, t: int = target) -> bool:
            st = status(cl, f)
            return int(st["last_applied"]) >= t and st.get("leader") is not None

        wait_for("restarted follower caught up", caught_up, 300, interval=0.05)
        out.append(time.monotonic() - t0)
        log(f"restart of {follower}: {out[-1]:.2f}s")
    return out


def _minute_spec(t: float) -> str:
    d = datetime.fromtimestamp(t, tz=UTC)
    return f"{d.minute} {d.hour} {d.day} {d.month} *"


def _iso_ms(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def ledger(cl: Cluster, node: str, prefix: str, limit: int) -> list[dict[str, Any]]:
    """Runs whose job starts with ``prefix`` (pages of 1000, newest first)."""
    out: list[dict[str, Any]] = []
    before: str | None = None
    while True:
        q = "/v1/runs?limit=1000" + (f"&before={before}" if before else "")
        page = cl.get(node, q, timeout=30)
        out.extend(r for r in page["runs"] if r["job"].startswith(prefix))
        before = page.get("next")
        if not before or len(out) >= limit:
            return out


def read_starts(sink: Path) -> dict[str, float]:
    out = {}
    if sink.exists():
        for line in sink.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                out[parts[0]] = int(parts[1]) / 1e9
    return out


# --------------------------------------------------------------------------- phases


def burst(
    ctx: Ctx,
    cl: Cluster,
    n: int,
    execute: bool,
    out: dict[str, Any],
    lease: str = "60s",
    command: list[str] | None = None,
) -> None:
    """Fills ``out`` as it goes, so a phase stopped half way keeps what it measured.

    ``command`` (e.g. ``["true"]``): the jobs run it instead of writing their own start
    time to the sink; the starts are then timed from the ledger once every lease has
    ended: ``lateness_ledger`` (the executor's clock before its fenced start) and
    ``lateness_finished`` (the run's recorded end), and ``all_started_s`` is the latest
    END (a bound from above on the last start)."""
    leader = cl.wait_leader(30)
    sink = cl.root / f"burst-{n}.txt"
    base: dict[str, Any] = {
        "command": command or ["sh", "-c", SINK.format(sink=sink)],
        "lease": lease,
        "catchup": "10m",
    }
    if not execute:
        base["tags"] = {"bench": "nowhere"}
    names = [f"b{i:06d}" for i in range(n)]
    # Pass 1 (the registration figure): every job with a parked schedule. Pass 2: the same
    # jobs updated to fire at a top of a minute far enough ahead for pass 2 to finish.
    park = [{"name": nm, "schedule": "0 0 1 1 *", **base} for nm in names]
    reg_s, fails = put_jobs(cl, leader, park)
    if ctx.quick:  # the next whole second far enough ahead (6 fields, seconds last)
        fire_at = float(int(time.time() + reg_s * 1.5 + 6))
        sched = _minute_spec(fire_at).replace(" *", " * " + str(int(fire_at) % 60))
    else:  # a top of a minute
        fire_at = (int(time.time() + reg_s * 1.5 + 15) // 60 + 1) * 60.0
        sched = _minute_spec(fire_at)
    specs = [{"name": nm, "schedule": sched, **base} for nm in names]
    upd_s, f2 = put_jobs(cl, leader, specs)
    fails += f2
    log(
        f"burst {n}: registered in {reg_s:.1f}s ({n / reg_s:.0f} jobs/s), re-scheduled in "
        f"{upd_s:.1f}s, fire at {sched}"
    )
    out.update(
        {
            "jobs": n,
            "executed": execute,
            "register_s": reg_s,
            "register_jobs_per_s": n / reg_s,
            "update_s": upd_s,
            "register_failures": fails,
        }
    )
    lead_time = fire_at - time.time()
    out["lead_time_s"] = lead_time
    if lead_time < 2:
        out["invalid"] = f"registration ended {-lead_time:.1f}s after the fire time"
        return
    time.sleep(max(0.0, lead_time - 5))
    out["rss_registered"] = rss(cl)
    base_runs = int(status(cl, leader)["runs"])
    time.sleep(max(0.0, fire_at - time.time() - 1))
    pids = agent_pids(cl)
    cpu0 = {nm: cpu_seconds(pid) for nm, pid in pids.items()}
    t_cpu0 = time.time()
    claimed_at = None
    deadline = fire_at + 120
    while time.time() < deadline:
        st = status(cl, leader)
        if int(st["runs"]) >= base_runs + n:
            claimed_at = time.time()
            break
        time.sleep(0.05)
    out["claimed_s"] = None if claimed_at is None else claimed_at - fire_at
    log(f"burst {n}: all claimed {out['claimed_s']}s after the fire time")
    if not execute:
        return
    # wait for every job's own start line, bounded
    limit = fire_at + (60 if ctx.quick else 420)
    if command is not None:
        _burst_by_ledger(cl, leader, n, fire_at, limit, pids, cpu0, t_cpu0, out)
        return
    try:
        while time.time() < limit and len(read_starts(sink)) < n:
            if ctx.guard is not None and ctx.guard.tripped:
                raise RuntimeError(ctx.guard.tripped)
            time.sleep(0.5)
    finally:
        # CPU of the three agents (own) and of what they forked (the fork servers, the
        # watchdogs, the jobs) from 1 s before the fire until every run started
        cpu1 = {nm: cpu_seconds(pid) for nm, pid in pids.items()}
        out["cpu_window_s"] = time.time() - t_cpu0
        out["cpu_agents_s"] = sum(cpu1[n][0] - cpu0[n][0] for n in pids)
        out["cpu_children_s"] = sum(cpu1[n][1] - cpu0[n][1] for n in pids)
        starts = read_starts(sink)
        self_late = [t - fire_at for t in starts.values()]
        out["started"] = len(starts)
        out["waited_s"] = time.time() - fire_at
        if self_late:
            out["lateness_self"] = run_summary(self_late)
            out["all_started_s"] = max(self_late)
    wait_for(
        "burst runs finished",
        lambda: int(status(cl, leader)["live_leases"]) == 0,
        120 if ctx.quick else 300,
        interval=0.5,
    )
    runs = ledger(cl, leader, "b", n)
    led = [_iso_ms(r["started_at"]) - r["scheduled_at_ms"] / 1000 for r in runs if r["started_at"]]
    if led:
        out["lateness_ledger"] = run_summary(led)
    statuses: dict[str, int] = {}
    for r in runs:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    out["statuses"] = statuses
    log(
        f"burst {n}: started {len(starts)}; self lateness p50/p99/max "
        f"{out.get('lateness_self', {}).get('p50', 0):.2f}/"
        f"{out.get('lateness_self', {}).get('p99', 0):.2f}/"
        f"{out.get('lateness_self', {}).get('max', 0):.2f}s; statuses {statuses}"
    )


def _burst_by_ledger(
    cl: Cluster,
    leader: str,
    n: int,
    fire_at: float,
    limit: float,
    pids: dict[str, int],
    cpu0: dict[str, tuple[float, float]],
    t_cpu0: float,
    out: dict[str, Any],
) -> None:
    """The end of :func:`burst` for jobs that do not write to the sink: wait until no
    lease is live, then time the runs from the ledger."""
    time.sleep(1.0)
    while time.time() < limit and int(status(cl, leader)["live_leases"]) > 0:
        time.sleep(0.2)
    cpu1 = {nm: cpu_seconds(pid) for nm, pid in pids.items()}
    out["cpu_window_s"] = time.time() - t_cpu0
    out["cpu_agents_s"] = sum(cpu1[k][0] - cpu0[k][0] for k in pids)
    out["cpu_children_s"] = sum(cpu1[k][1] - cpu0[k][1] for k in pids)
    runs = ledger(cl, leader, "b", n)
    started = [_iso_ms(r["started_at"]) - fire_at for r in runs if r["started_at"]]
    ended = [_iso_ms(r["finished_at"]) - fire_at for r in runs if r["finished_at"]]
    out["started"] = len(started)
    if started:
        out["lateness_ledger"] = run_summary(started)
    if ended:
        out["lateness_finished"] = run_summary(ended)
        out["all_started_s"] = max(ended)
    statuses: dict[str, int] = {}
    for r in runs:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    out["statuses"] = statuses
    log(
        f"burst {n}: started {len(started)} (ledger); last end {out.get('all_started_s')}s "
        f"after the fire; statuses {statuses}"
    )


def steady(ctx: Ctx, cl: Cluster, n: int, tag: str = "") -> dict[str, Any]:
    """One window of the steady mix on ``cl`` (``n``: the jobs registered before, for the
    record); ``tag`` names the sink file when one cluster runs several windows."""
    leader = cl.wait_leader(30)
    sink = cl.root / f"steady-{n}{tag}.txt"
    cmd = ["sh", "-c", SINK.format(sink=sink)]
    specs = [
        {"name": f"sec{i}", "schedule": "* * * * * *", "command": cmd, "lease": "30s"}
        for i in range(ctx.sizes.every_second_jobs)
    ] + [
        {"name": f"min{s:02d}", "schedule": f"* * * * * {s}", "command": cmd, "lease": "30s"}
        for s in range(60)
    ]
    put_jobs(cl, leader, specs)
    time.sleep(3.0 - (time.time() % 1.0))  # settle, then start on a second boundary
    pids = agent_pids(cl)
    st0 = status(cl, leader)
    cpu0 = {nm: cpu_seconds(pid) for nm, pid in pids.items()}
    t0 = time.time()
    time.sleep(ctx.sizes.steady_seconds)
    t1 = time.time()
    st1 = status(cl, leader)
    cpu1 = {nm: cpu_seconds(pid) for nm, pid in pids.items()}
    time.sleep(1.5)  # the window's last fires start
    ledger_out: dict[str, Any] = {}
    # Where the lateness comes from, per every-second fire in the window (ledger times):
    # claimed_at = the leader's plan time, started_at = the executor's start proposal.
    claim, start = [], []
    for i in range(ctx.sizes.every_second_jobs):
        for r in cl.get(leader, f"/v1/runs?job=sec{i}&limit=1000", timeout=30)["runs"]:
            sched_s = r["scheduled_at_ms"] / 1000
            if t0 <= sched_s < t1 and r.get("claimed_at") and r.get("started_at"):
                claim.append(_iso_ms(r["claimed_at"]) - sched_s)
                start.append(_iso_ms(r["started_at"]) - sched_s)
    if claim:
        ledger_out["ledger_claimed_minus_scheduled"] = run_summary(claim)
        ledger_out["ledger_started_minus_scheduled"] = run_summary(start)
    send_all(cl, leader, [("DELETE", f"/v1/jobs/{s['name']}", None) for s in specs])
    time.sleep(2.0)
    elapsed = t1 - t0
    starts = read_starts(sink)
    sec_late, all_late = [], []
    for rid, t in starts.items():
        job, _, ms = rid.partition("@")
        sched = int(ms) / 1000
        if not t0 <= sched < t1:
            continue
        all_late.append(t - sched)
        if job.startswith("sec"):
            sec_late.append(t - sched)
    expected = int(elapsed) * ctx.sizes.every_second_jobs
    out: dict[str, Any] = {
        "jobs_registered": n,
        "seconds": elapsed,
        "fires_per_s_offered": ctx.sizes.every_second_jobs + 1,
        "every_second_fires_seen": len(sec_late),
        "every_second_fires_expected": expected,
        "commits_per_s": (int(st1["commit_index"]) - int(st0["commit_index"])) / elapsed,
        "fsyncs_per_s_leader": (int(st1["fsyncs"]) - int(st0["fsyncs"])) / elapsed,
        "cpu_pct": {
            nm: {
                "agent": 100 * (cpu1[nm][0] - cpu0[nm][0]) / elapsed,
                "children": 100 * (cpu1[nm][1] - cpu0[nm][1]) / elapsed,
            }
            for nm in pids
        },
        "leader": leader,
        **ledger_out,
    }
    if sec_late:
        out["lateness_every_second"] = run_summary(sec_late)
    if all_late:
        out["lateness_all"] = run_summary(all_late)
    les = out.get("lateness_every_second", {})
    log(
        f"steady {n}: every-second lateness p50 {les.get('p50', 0) * 1000:.1f}ms "
        f"p99 {les.get('p99', 0) * 1000:.1f}ms, "
        f"{out['commits_per_s']:.1f} commits/s, fires {len(sec_late)}/{expected}"
    )
    return out


def one_size(ctx: Ctx, n: int, out: dict[str, Any]) -> None:
    cl = ctx.raftcron(f"scale-{n}")
    out["jobs"] = n
    try:
        execute = n <= ctx.sizes.burst_exec_max
        out["burst"] = {}
        burst(ctx, cl, n, execute, out["burst"])
        out["steady"] = steady(ctx, cl, n)
        t_snap = time.time()
        out["rss_end"] = rss(cl)
        out["snapshot_bytes"] = fresh_snapshots(cl, t_snap)
        out["rss_after_snapshot"] = rss(cl)
        out["restart_s"] = restart_follower(cl, 1 if ctx.quick else 3)
    finally:
        cl.stop()


def ledger_phase(ctx: Ctx) -> dict[str, Any]:
    """Record skipped runs every second until ``runs_target`` or ``runs_seconds``."""
    per_s = 1000 if ctx.quick else 5000
    cl = ctx.raftcron("ledger")
    out: dict[str, Any] = {"jobs": per_s, "history_per_job": 100}
    try:
        leader = cl.wait_leader(30)
        specs = [
            {
                "name": f"l{i:05d}",
                "schedule": "* * * * * *",
                "command": ["true"],
                "tags": {"bench": "nowhere"},
            }
            for i in range(per_s)
        ]
        reg_s, _ = put_jobs(cl, leader, specs)
        out["register_s"] = reg_s
        t0 = time.monotonic()
        samples = []
        recorded = 0.0
        while time.monotonic() - t0 < ctx.sizes.runs_seconds:
            time.sleep(5)
            leader = cl.wait_leader(30)
            recorded = metric(cl, leader, "raftcron_runs_recorded_total")
            samples.append({"t": time.monotonic() - t0, "runs_recorded": recorded, "rss": rss(cl)})
            if recorded >= ctx.sizes.runs_target:
                break
        out["elapsed_s"] = time.monotonic() - t0
        out["runs_recorded"] = recorded
        out["ledger_runs"] = int(status(cl, leader)["runs"])
        out["samples"] = samples
        send_all(cl, leader, [("DELETE", f"/v1/jobs/{s['name']}", None) for s in specs[:0]])
        log(f"ledger: {recorded:.0f} runs recorded in {out['elapsed_s']:.0f}s")
        out["rss_end"] = rss(cl)
        t_snap = time.time()
        out["snapshot_bytes"] = fresh_snapshots(cl, t_snap)
        out["restart_s"] = restart_follower(cl, 1 if ctx.quick else 3)
    finally:
        cl.stop()
    return out


def run_all(ctx: Ctx) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": {}}
    for n in ctx.sizes.scale_jobs:
        size: dict[str, Any] = {}
        out["sizes"][str(n)] = size
        try:
            one_size(ctx, n, size)
        except Exception as exc:  # e.g. the memory guard stopped the cluster
            why = ctx.memory_trip()
            log(f"scale {n} failed: {exc!r} {why or ''}")
            size["error"] = repr(exc)
            size["aborted"] = why
    try:
        out["ledger"] = ledger_phase(ctx)
    except Exception as exc:
        why = ctx.memory_trip()
        out["ledger_error"] = {"error": repr(exc), "aborted": why}
    out["cpu_count"] = os.cpu_count()
    out["median_restart_s"] = {
        k: statistics.median(v["restart_s"]) for k, v in out["sizes"].items() if v.get("restart_s")
    }
    return out


if __name__ == "__main__":
    from bench.run import standalone

    standalone("scale", run_all)
