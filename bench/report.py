"""Results JSON -> Markdown tables, target verdicts and PNG charts.

``write_report`` writes docs/benchmarks.md and docs/img/bench/*.png for a full run, or the
same under bench/results/scratch/ for ``--quick``. Every number in the output comes from
the results JSON; hand-written analysis (profiles of missed targets) is included from
bench/analysis.md when that file exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.stats import fmt_ms, fmt_s, md_table

ROOT = Path(__file__).resolve().parent.parent
MB = 1e6


def _g(d: Any, *path: str | int, default: Any = None) -> Any:
    for p in path:
        if isinstance(d, dict) and p in d:
            d = d[p]
        elif isinstance(d, dict) and str(p) in d:
            d = d[str(p)]
        else:
            return default
    return d


def _mark(ok: bool | None) -> str:
    return "not measured" if ok is None else ("**met**" if ok else "**missed**")


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    w = res.get("workloads", {})
    out: list[dict[str, Any]] = []

    r = _g(w, "locks", "uncontended", "ratios", "raftcron_raw_over_etcd_grpc_p50")
    rows = {row["variant"]: row for row in _g(w, "locks", "uncontended", "rows", default=[])}
    raw = next((v for k, v in rows.items() if k.startswith("HTTP API")), None)
    grpc = next((v for k, v in rows.items() if k.startswith("gRPC v3lock")), None)
    out.append(
        {
            "target": "Lock round trip through the API: p50 <= 1/2 of etcd's gRPC lock (same run)",
            "measured": "n/a"
            if r is None or raw is None or grpc is None
            else f"raftcron {fmt_ms(raw['p50'])} vs etcd {fmt_ms(grpc['p50'])}: ratio {r:.2f}",
            "met": None if r is None else r <= 0.5,
        }
    )
    r = _g(w, "locks", "wrappers", "ratios", "raftcron_over_etcdctl_p50")
    wr = {row["system"]: row for row in _g(w, "locks", "wrappers", "rows", default=[])}
    dev = _g(w, "locks", "wrappers", "ratios", "raftcron_dev_over_etcdctl_p50")
    out.append(
        {
            "target": "`raftcron lock N -- true` within 1.5x of `etcdctl lock N -- true` (p50)",
            "measured": "n/a"
            if r is None
            else f"{fmt_ms(wr['raftcron']['p50'], 1)} vs {fmt_ms(wr['etcd']['p50'], 1)}: "
            f"ratio {r:.2f} (installed from the wheel)"
            + (
                f"; from the editable dev venv {fmt_ms(wr['raftcron-dev']['p50'], 1)}, "
                f"ratio {dev:.2f}"
                if dev is not None and "raftcron-dev" in wr
                else ""
            ),
            "met": None if r is None else r <= 1.5,
        }
    )
    fire = _g(w, "failover", "raftcron", "fire")
    ok = None
    meas = "n/a"
    if fire and fire.get("trials"):
        ok = fire["median"] < 1.0 and fire["max"] < 2.0
        meas = f"median {fmt_s(fire['median'])}, max {fmt_s(fire['max'])} ({fire['trials']} trials)"
    out.append(
        {"target": "Failover to first fire: median < 1 s, max < 2 s", "measured": meas, "met": ok}
    )

    b = _g(w, "scale", "sizes", "10000", "burst")
    stopped = _g(w, "scale", "sizes", "10000", "aborted") or _g(
        w, "scale", "sizes", "10000", "error"
    )
    ok, meas = None, "not run (quick run: 10k burst is full-run only)"
    if b and stopped:
        ok = False
        meas = (
            f"stopped: {stopped}; by then claimed {fmt_s(b.get('claimed_s'))} after the fire "
            f"time, {b.get('started', 0)} of 10,000 started within {fmt_s(b.get('waited_s'), 0)}"
        )
    elif b:
        claimed = b.get("claimed_s")
        p99 = _g(b, "lateness_self", "p99")
        if claimed is None or p99 is None:
            ok, meas = False, f"claimed: {claimed}, p99 lateness: {p99} ({b.get('invalid', '')})"
        else:
            ok = claimed <= 1.0 and p99 < 2.0
            st = ", ".join(f"{v:,} {k}" for k, v in sorted((b.get("statuses") or {}).items()))
            meas = (
                f"claimed {fmt_s(claimed)} after the fire time; start lateness p99 {fmt_s(p99, 1)}"
                f" (max {fmt_s(_g(b, 'lateness_self', 'max'), 1)}) of the {b.get('started'):,} "
                f"that started; final statuses: {st}"
            )
    fl = _g(w, "floor")
    if b and fl and fl.get("spawn_per_s"):
        meas += f" (floor, same run: {fl['spawn_per_s']:.0f} spawns/s, bench/floor.py)"
    out.append(
        {
            "target": "10,000 jobs due in one second: all claimed <= 1 s, p99 start lateness < 2 s",
            "measured": meas,
            "met": ok,
        }
    )
    worst = None
    for n, s in _g(w, "scale", "sizes", default={}).items():
        p99 = _g(s, "steady", "lateness_every_second", "p99")
        if p99 is not None and (worst is None or p99 > worst[1]):
            worst = (n, p99)
    out.append(
        {
            "target": "Lateness of a steady every-second job: p99 < 50 ms",
            "measured": "n/a"
            if worst is None
            else f"worst p99 {fmt_ms(worst[1], 1)} (with {int(worst[0]):,} jobs registered)"
            + _floor_lateness(fl),
            "met": None if worst is None else worst[1] < 0.050,
        }
    )
    s100 = _g(w, "scale", "sizes", "100000")
    ok, meas = None, "not run (quick run: 100k is full-run only)"
    if s100:
        vals = (
            [
                v
                for key in ("rss_registered",)
                for v in (_g(s100, "burst", key, default={}) or {}).values()
            ]
            + list((s100.get("rss_end") or {}).values())
            + list((s100.get("rss_after_snapshot") or {}).values())
        )
        if vals:
            ok = max(vals) < 300 * MB
            meas = f"max RSS of a node {max(vals) / MB:.0f} MB"
    # bench.rss: both ways of getting 100,000 jobs (cluster file, API), in MiB
    paths = [r for r in (_g(w, "rss") or {}).values() if isinstance(r, dict) and "path" in r]
    rss_max = [r["max_rss_mb"] for r in paths if r["jobs"] >= 100_000 and "max_rss_mb" in r]
    if rss_max:
        rss_ok = max(rss_max) < 300
        ok = rss_ok if ok is None else (ok and rss_ok)
        meas += f"; file and API paths (bench.rss): max {max(rss_max):.0f} MB"
    out.append({"target": "100,000 jobs: RSS < 300 MB per node", "measured": meas, "met": ok})
    return out


def _floor_lateness(fl: Any) -> str:
    tl = _g(fl, "timer_lateness")
    if not tl:
        return ""
    return (
        f" (floor, same run: p50 {fmt_ms(tl['p50'], 1)}, p99 {fmt_ms(tl['p99'], 1)}, "
        "bench/floor.py)"
    )


# --------------------------------------------------------------------------- charts


def charts(res: dict[str, Any], img: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    w = res.get("workloads", {})
    colors = {"raftcron": "#1f77b4", "etcd": "#2ca02c", "redis": "#d62728"}

    rows = _g(w, "locks", "uncontended", "rows", default=[])
    if rows:
        fig, ax = plt.subplots(figsize=(9, 4.2))
        labels = [f"{r['system']}: {r['variant']}" for r in rows]
        y = range(len(rows))
        ax.barh(
            [i + 0.2 for i in y],
            [r["p50"] * 1000 for r in rows],
            0.4,
            label="p50",
            color=[colors[r["system"]] for r in rows],
        )
        ax.barh(
            [i - 0.2 for i in y],
            [r["p99"] * 1000 for r in rows],
            0.4,
            label="p99",
            color=[colors[r["system"]] for r in rows],
            alpha=0.45,
        )
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("acquire + release, ms (median over runs; light bar = p99)")
        ax.set_title("Uncontended lock round trip")
        fig.tight_layout()
        fig.savefig(img / "lock_rtt.png", dpi=110)
        plt.close(fig)
        made["lock_rtt"] = "lock_rtt.png"

    rows = _g(w, "locks", "contended", "rows", default=[])
    if rows:
        groups = sorted({(r["clients"], r["names"]) for r in rows})
        systems = ["raftcron", "etcd", "redis"]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, key, title in (
            (axes[0], "pairs_per_s", "pairs per second"),
            (axes[1], "wait_p99", "p99 wait (ms)"),
        ):
            for j, s in enumerate(systems):
                vals = []
                for g in groups:
                    row = next(
                        (r for r in rows if r["system"] == s and (r["clients"], r["names"]) == g),
                        None,
                    )
                    v = 0.0 if row is None else row[key]
                    vals.append(v * 1000 if key == "wait_p99" else v)
                ax.bar(
                    [i + (j - 1) * 0.27 for i in range(len(groups))],
                    vals,
                    0.27,
                    label=s,
                    color=colors[s],
                )
            ax.set_xticks(range(len(groups)), [f"{c} clients\n{n}" for c, n in groups], fontsize=8)
            ax.set_title(title)
            if key == "wait_p99":
                ax.set_yscale("log")
        axes[0].legend()
        fig.suptitle("Contended locks")
        fig.tight_layout()
        fig.savefig(img / "contended.png", dpi=110)
        plt.close(fig)
        made["contended"] = "contended.png"

    fo = _g(w, "failover")
    if fo:
        series = [
            ("raftcron: first write", _g(fo, "raftcron", "write", "values", default=[])),
            ("raftcron: first fire", _g(fo, "raftcron", "fire", "values", default=[])),
            ("etcd: first write", _g(fo, "etcd", "write", "values", default=[])),
        ]
        series = [(n, v) for n, v in series if v]
        if series:
            fig, ax = plt.subplots(figsize=(7, 3.5))
            for i, (name, vals) in enumerate(series):
                ax.scatter(
                    vals,
                    [i] * len(vals),
                    alpha=0.7,
                    color=colors["etcd" if name.startswith("etcd") else "raftcron"],
                )
            ax.set_yticks(range(len(series)), [n for n, _ in series])
            ax.set_xlabel("seconds after kill -9 of the leader (each dot a trial)")
            ax.axvline(1.0, color="grey", ls=":")
            ax.set_title("Failover")
            fig.tight_layout()
            fig.savefig(img / "failover.png", dpi=110)
            plt.close(fig)
            made["failover"] = "failover.png"

    sizes = _g(w, "scale", "sizes", default={})
    if sizes:
        ns = sorted(sizes, key=int)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for node in ("a", "b", "c"):
            axes[0].plot(
                [int(n) for n in ns],
                [(_g(sizes[n], "rss_after_snapshot", node) or 0) / MB for n in ns],
                marker="o",
                label=f"node {node}",
            )
        axes[0].axhline(300, color="grey", ls=":", label="target 300 MB")
        axes[0].set_xscale("log")
        axes[0].set_xlabel("jobs registered")
        axes[0].set_ylabel("RSS (MB)")
        axes[0].set_title("Agent RSS")
        axes[0].legend(fontsize=8)
        for key, label in (("lateness_every_second", "every-second jobs"),):
            axes[1].plot(
                [int(n) for n in ns],
                [(_g(sizes[n], "steady", key, "p50") or 0) * 1000 for n in ns],
                marker="o",
                label=f"{label} p50",
            )
            axes[1].plot(
                [int(n) for n in ns],
                [(_g(sizes[n], "steady", key, "p99") or 0) * 1000 for n in ns],
                marker="s",
                label=f"{label} p99",
            )
        axes[1].axhline(50, color="grey", ls=":", label="target p99 50 ms")
        axes[1].set_xscale("log")
        axes[1].set_xlabel("jobs registered")
        axes[1].set_ylabel("start lateness (ms)")
        axes[1].set_title("Steady mix: start lateness")
        axes[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(img / "scale.png", dpi=110)
        plt.close(fig)
        made["scale"] = "scale.png"

    inf = _g(w, "commit", "inflight", default={})
    if inf:
        ks = sorted(inf, key=int)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(
            [int(k) for k in ks],
            [inf[k]["commits_per_s"] for k in ks],
            marker="o",
            color=colors["raftcron"],
        )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("PUTs in flight")
        ax.set_ylabel("commits per second")
        ax.set_title("raftcron commit throughput")
        fig.tight_layout()
        fig.savefig(img / "commit.png", dpi=110)
        plt.close(fig)
        made["commit"] = "commit.png"
    return made


# --------------------------------------------------------------------------- markdown


def _cpu(node: str, v: dict[str, float], leader: bool) -> str:
    return f"{node}{'*' if leader else ''} {v['agent']:.0f}%+{v['children']:.0f}%"


def _mb(x: float | None) -> str:
    return "n/a" if not x else f"{x / MB:.0f}"


def markdown(res: dict[str, Any], img_rel: str, made: dict[str, str], json_rel: str) -> str:
    m = res["meta"]
    mc = m["machine"]
    w = res.get("workloads", {})
    sz = m["sizes"]
    L: list[str] = []
    add = L.append
    add("# Benchmarks: raftcron, etcd and Redis on one machine\n")
    add(
        "Generated by `bench/report.py` from "
        f"[`{json_rel}`]({json_rel}); every number below is from that file.\n"
    )
    add(
        f"* **Run:** {m['started']} to {m.get('finished', '?')} (UTC), "
        f"`{m['command']}`{' (quick sizes)' if m['quick'] else ''}"
    )
    add(
        f"* **Machine:** `nproc` = {mc['nproc_cmd']} ({mc['cpu']}), {mc['mem_gib']} GiB, "
        f"kernel `{mc['kernel']}`, Python {mc['python']}, pysyncobj {mc['pysyncobj']}, "
        f"etcd {mc['etcd']}, Redis {mc['redis']}. Everything (servers and clients) shares "
        "the same cores, and other people's tests may have run at the same time."
    )
    dirty = ", ".join(f"`{d.split()[-1]}`" for d in mc.get("git_dirty", []))
    add(
        f"* **Code:** raftcron at commit `{mc.get('git_commit', '?')}`"
        + (f" plus uncommitted changes in {dirty}" if dirty else "")
        + " (the agents run the working tree)."
    )
    add(
        "* **Systems:** raftcron 3 nodes (password on, durable journal with fsync, the test "
        "harness's defaults); etcd 3 members (defaults, WAL fsync); Redis 1 server "
        "(`appendonly yes`, `appendfsync always`; not replicated). All on 127.0.0.1, data "
        "on disk in a temp dir, started and stopped (by PID) by the benchmark."
    )
    add(
        "* **Statistics:** each run gives its own p50/p99; a figure is the **median over "
        "runs**, shown with the run count. A ratio is computed per run between systems "
        "measured in that run (interleaved) and its median over runs is shown."
    )
    loads = [
        f"{k} {v['loadavg_1m']['mean']:.1f} (max {v['loadavg_1m']['max']:.1f})"
        for k, v in w.items()
        if isinstance(v, dict) and v.get("loadavg_1m")
    ]
    if loads:
        add(f"* **1-minute load average** during each workload (2 cores): {', '.join(loads)}")
    for extra in m.get("additional_runs", []):
        add(
            f"* **Added to this file later:** `{extra['command']}` from {extra['started']} to "
            f"{extra['finished']} (workloads: {', '.join(extra['workloads'])}; commit "
            f"`{extra.get('git_commit')}`)"
        )
    add("")
    if res.get("errors"):
        add("**Errors during this run:**\n")
        for k, v in res["errors"].items():
            add(f"* `{k}`: `{str(v).strip().splitlines()[-1]}`")
        add("")

    add("## Targets\n")
    add(
        md_table(
            ["target", "measured", "verdict"],
            [[t["target"], t["measured"], _mark(t["met"])] for t in targets(res)],
        )
    )
    add("")
    if LATER_HEADING in _analysis_text():
        add(
            "Measured by hand after this run, on newer code (not from the results file): "
            f"see [{LATER_HEADING}](#{_anchor(LATER_HEADING)}) below.\n"
        )

    fl = _g(w, "floor")
    if fl and fl.get("timer_lateness"):
        tl = fl["timer_lateness"]
        add("## The floor: no cluster, same process shape\n")
        add(
            f"What the machine does with no cluster at all (`bench/floor.py`, its docstring "
            f"defines it): {fl['parallel']} supervisor processes in parallel (one per core), "
            "each forking its jobs as raftcron's watchdog does (Popen, output on a pipe, new "
            "session). Measured in this run, before the clusters started.\n"
        )
        add(
            md_table(
                ["floor", "measured"],
                [
                    [
                        "fork/exec `true` back to back, both supervisors together",
                        f"{fl['spawn_per_s']:.0f} starts/s ("
                        + " + ".join(f"{x:.0f}" for x in fl["spawn_per_s_each"])
                        + f", {fl['spawn_seconds']:g} s)",
                    ],
                    [
                        "asyncio timer at every whole second forking `sh -c 'date +%s%N'`: "
                        "the job's timestamp minus the due second",
                        f"p50 {fmt_ms(tl['p50'], 1)}, p99 {fmt_ms(tl['p99'], 1)}, "
                        f"max {fmt_ms(tl['max'], 1)} ({fl['timer_fires']} fires)",
                    ],
                ],
            )
        )
        add("")

    u = _g(w, "locks", "uncontended")
    if u:
        add("## 1. Lock round trip (uncontended acquire + release, sequential)\n")
        add(
            f"{u['rows'][0]['iterations']} pairs per run and variant, variants interleaved "
            "within each run; clients talk to the leader (etcd: the leader member). Whole "
            "pair, acquire sent to release answered.\n"
        )
        add(
            md_table(
                ["system", "client / method", "p50", "p99", "mean", "runs"],
                [
                    [
                        r["system"],
                        r["variant"],
                        fmt_ms(r["p50"]),
                        fmt_ms(r["p99"]),
                        fmt_ms(r["mean"]),
                        r["runs"],
                    ]
                    for r in u["rows"]
                ],
            )
        )
        add("")
        for k, v in u["ratios"].items():
            add(
                f"* `{k}` (median of per-run ratios): **{v:.2f}**"
                if v is not None
                else f"* `{k}`: n/a"
            )
        if "lock_rtt" in made:
            add(f"\n![lock round trip]({img_rel}/{made['lock_rtt']})\n")
    wr = _g(w, "locks", "wrappers")
    if wr:
        add("### Whole-process wrappers\n")
        add(
            "Each iteration spawns the command and waits for it to exit (and for its output "
            "pipes to close): take the lock, run `true`, release. `raftcron lock` exits once "
            "its release request is sent (its guardian reads the answer; see "
            "`raftcron/lockcmd.py`), `etcdctl lock` after its unlock is answered. "
            f"{wr['rows'][0]['iterations']} iterations per run.\n"
        )
        add(
            md_table(
                ["command", "p50", "p99", "mean", "runs"],
                [
                    [
                        f"`{r['variant']}`",
                        fmt_ms(r["p50"], 1),
                        fmt_ms(r["p99"], 1),
                        fmt_ms(r["mean"], 1),
                        r["runs"],
                    ]
                    for r in wr["rows"]
                ],
            )
        )
        v = wr["ratios"].get("raftcron_over_etcdctl_p50")
        d = wr["ratios"].get("raftcron_dev_over_etcdctl_p50")
        add(
            f"\n* raftcron (installed) / etcdctl p50 (median of per-run ratios): **{v:.2f}**"
            if v
            else ""
        )
        add(f"* raftcron (editable dev venv) / etcdctl p50: **{d:.2f}**\n" if d else "")
    c = _g(w, "locks", "contended")
    if c:
        add("## 2. Contended locks\n")
        add(
            f"N client threads in one process loop acquire -> release for "
            f"{sz['contended_seconds']:g} s per run. *Wait* = acquire sent -> granted. "
            "raftcron queues waiters (FIFO, `wait`), etcd's Lock blocks server-side, Redis "
            "clients retry `SET NX` every 1 ms (Redis has no queue).\n"
        )
        rows = sorted(c["rows"], key=lambda r: (r["clients"], r["names"], r["system"]))
        add(
            md_table(
                ["clients", "names", "system", "pairs/s", "wait p50", "wait p99", "errors", "runs"],
                [
                    [
                        r["clients"],
                        r["names"],
                        r["system"],
                        f"{r['pairs_per_s']:.0f}",
                        fmt_ms(r["wait_p50"], 1),
                        fmt_ms(r["wait_p99"], 1),
                        f"{r['errors']:.0f}",
                        r["runs"],
                    ]
                    for r in rows
                ],
            )
        )
        if "contended" in made:
            add(f"\n![contended locks]({img_rel}/{made['contended']})\n")
    fo = _g(w, "failover")
    if fo and "raftcron" in fo:
        add("## 3. Failover (kill -9 of the leader)\n")
        add(
            "raftcron: the leader is killed 100 ms before an every-second job's fire, so that "
            "fire is due during the failover. *First fire* is the job's own recorded start "
            "time of the first fire scheduled after the kill, on a survivor. etcd runs its "
            "defaults (heartbeat 100 ms, election timeout 1 s); raftcron its own (election "
            "timeout 0.3-0.9 s).\n"
        )
        rows = []
        for system, key, label in (
            ("raftcron", "write", "(a) first committed write on the survivors"),
            ("raftcron", "leader", "established leader (/health/leader)"),
            ("raftcron", "fire", "(b) first job start on the new leader's side"),
            ("raftcron", "fire_lateness", "that fire's start lateness"),
            ("etcd", "write", "(a) first committed Put on the survivors"),
            ("etcd", "leader", "a member reports itself leader"),
        ):
            s = _g(fo, system, key)
            if s and s.get("trials"):
                rows.append(
                    [
                        system,
                        label,
                        fmt_s(s["median"]),
                        fmt_s(s["p99"]),
                        fmt_s(s["max"]),
                        s["trials"],
                    ]
                )
        add(
            md_table(
                ["system", "kill -9 of the leader to ...", "median", "p99", "max", "trials"], rows
            )
        )
        if "failover" in made:
            add(f"\n![failover]({img_rel}/{made['failover']})\n")
    sc = _g(w, "scale")
    if sc:
        sizes = sc.get("sizes", {})
        add("## 4. Scheduling at scale\n")
        add(
            "One fresh cluster per size. Registration: one `PUT /v1/jobs/{name}` per job to "
            "the leader, 64 in flight (each its own Raft commit). Then every job is PUT again "
            "with the burst's schedule (*re-schedule*), a fire at the top of a minute.\n"
        )
        rows = []
        for n in sorted(sizes, key=int):
            b = sizes[n].get("burst", {})
            ls, ll = b.get("lateness_self", {}), b.get("lateness_ledger", {})
            rows.append(
                [
                    f"{int(n):,}",
                    fmt_s(b.get("register_s"), 1),
                    f"{b.get('register_jobs_per_s', 0):.0f}",
                    fmt_s(b.get("update_s"), 1),
                    "executed" if b.get("executed") else "claim-only",
                    fmt_s(b.get("claimed_s")),
                    b.get("started", "-"),
                    " / ".join(fmt_s(ls.get(k), 2) for k in ("p50", "p99", "max")) if ls else "-",
                    " / ".join(fmt_s(ll.get(k), 2) for k in ("p50", "p99", "max")) if ll else "-",
                    b.get("invalid") or sizes[n].get("aborted") or sizes[n].get("error") or "",
                ]
            )
        add("### (a) Burst: every job due in the same second (top of a minute)\n")
        add(
            md_table(
                [
                    "jobs",
                    "register",
                    "jobs/s",
                    "re-schedule",
                    "mode",
                    "all claimed after",
                    "started",
                    "lateness p50/p99/max (job's own clock)",
                    "ledger started_at - scheduled_at",
                    "note",
                ],
                rows,
            )
        )
        add(
            "\n*Claimed*: the leader's `/v1/status` `runs` count (polled every 50 ms) includes "
            "every fire. *Job's own clock*: the job writes `date +%s%N` when it starts, "
            "after the fenced start commit, the watchdog process spawn and `sh`. The ledger's "
            "`started_at` is stamped when the executor proposes the start, before all that. "
            "Claim-only sizes carry a tag no node has: every fire is planned and committed "
            "as `skipped` (unschedulable), nothing executes. A single burst run per size.\n"
        )
        rows = []
        for n in sorted(sizes, key=int):
            s = sizes[n].get("steady", {})
            le, la = s.get("lateness_every_second", {}), s.get("lateness_all", {})
            cpu = s.get("cpu_pct", {})
            rows.append(
                [
                    f"{int(n):,}",
                    f"{s.get('seconds', 0):.0f} s",
                    f"{s.get('every_second_fires_seen')}/{s.get('every_second_fires_expected')}",
                    fmt_ms(le.get("p50"), 1),
                    fmt_ms(le.get("p99"), 1),
                    fmt_ms(la.get("p99"), 1),
                    " / ".join(
                        fmt_ms(_g(s, key, q), 1)
                        for key in (
                            "ledger_claimed_minus_scheduled",
                            "ledger_started_minus_scheduled",
                        )
                        for q in ("p50", "p99")
                    ),
                    f"{s.get('commits_per_s', 0):.1f}",
                    ", ".join(_cpu(nd, v, nd == s.get("leader")) for nd, v in sorted(cpu.items())),
                ]
            )
        add("### (b) Steady mix\n")
        add(
            f"{sz['every_second_jobs']} jobs `* * * * * *` plus 60 every-minute jobs (one per "
            "second of the minute) on top of the registered jobs: "
            f"{sz['every_second_jobs'] + 1} fires per second. Lateness = the job's own start "
            "time - scheduled second. The ledger columns split it: *claimed* is the leader's "
            "plan time (scheduler wake-up), *start proposed* is when the executor proposed its "
            "fenced start; the rest is the start commit, the watchdog process and `sh`. "
            "CPU = percent of one core over the window: the agent "
            "process + its reaped children (watchdogs, jobs); `*` marks the leader.\n"
        )
        add(
            md_table(
                [
                    "jobs registered",
                    "window",
                    "every-second fires seen",
                    "every-second p50",
                    "every-second p99",
                    "all fires p99",
                    "ledger: claimed p50/p99, start proposed p50/p99 (after scheduled)",
                    "commits/s",
                    "CPU per node",
                ],
                rows,
            )
        )
        if "scale" in made:
            add(f"\n![scale]({img_rel}/{made['scale']})\n")

        reg = _g(w, "registration")
        if reg:
            add("### (c) Registration paths\n")
            rows = []
            for n in sorted(sizes, key=int):
                b = sizes[n].get("burst", {})
                if b.get("register_s"):
                    rows.append(
                        [
                            f"{int(n):,}",
                            "PUT /v1/jobs (workload 4)",
                            64,
                            fmt_s(b["register_s"], 1),
                            f"{b['register_jobs_per_s']:.0f}",
                        ]
                    )
            for r in reg.get("api", []):
                rows.append(
                    [
                        f"{r['jobs']:,}",
                        "PUT /v1/jobs",
                        r["inflight"],
                        fmt_s(r["seconds"], 1),
                        f"{r['jobs_per_s']:.0f}",
                    ]
                )
            for r in reg.get("config", []):
                rows.append(
                    [
                        f"{r['jobs']:,}",
                        "[[jobs]] in the cluster file (agents started -> every node has them; "
                        + (
                            f"first leader after {fmt_s(r.get('leader_s'), 1)})"
                            if r.get("leader_s") is not None
                            else "no leader was established)"
                        ),
                        "-",
                        fmt_s(r.get("seconds"), 1) if "seconds" in r else r.get("error", "n/a"),
                        f"{r['jobs_per_s']:.0f}" if "jobs_per_s" in r else "n/a",
                    ]
                )
            add(md_table(["jobs", "path", "in flight", "time", "jobs/s"], rows))
            add("")
        add("## 5. Memory and size\n")
        rows = []
        for n in sorted(sizes, key=int):
            s = sizes[n]
            rr = _g(s, "burst", "rss_registered", default={}) or {}
            re_ = s.get("rss_after_snapshot", {}) or {}
            snap = s.get("snapshot_bytes", {}) or {}
            rows.append(
                [
                    f"{int(n):,} jobs",
                    " / ".join(_mb(rr.get(k)) for k in ("a", "b", "c")),
                    " / ".join(_mb(re_.get(k)) for k in ("a", "b", "c")),
                    f"{max(snap.values()) / MB:.1f} MB" if snap else "n/a",
                    " / ".join(f"{x:.2f}" for x in s.get("restart_s", [])) + " s",
                ]
            )
        lg = sc.get("ledger")
        if lg:
            snap = lg.get("snapshot_bytes", {}) or {}
            rows.append(
                [
                    f"{int(lg['runs_recorded']):,} runs recorded ({lg['jobs']:,} jobs, "
                    f"{lg['ledger_runs']:,} kept)",
                    "-",
                    " / ".join(_mb((lg.get("rss_end") or {}).get(k)) for k in ("a", "b", "c")),
                    f"{max(snap.values()) / MB:.1f} MB" if snap else "n/a",
                    " / ".join(f"{x:.2f}" for x in lg.get("restart_s", [])) + " s",
                ]
            )
        add(
            md_table(
                [
                    "state",
                    "RSS a/b/c after registration (MB)",
                    "RSS a/b/c at the end (MB)",
                    "snapshot file",
                    "restart of a follower (each trial)",
                ],
                rows,
            )
        )
        if lg:
            add(
                f"\nLedger phase: {lg['jobs']:,} every-second jobs that no node can run, so each "
                f"second records {lg['jobs']:,} `skipped` runs (retention on: the newest 100 "
                f"final runs per job are kept). It ran {lg['elapsed_s']:.0f} s and recorded "
                f"{int(lg['runs_recorded']):,} runs (target {sz['runs_target']:,}, time limit "
                f"{sz['runs_seconds']:.0f} s); nothing is extrapolated. These are skipped-fire "
                "records, smaller than executed runs (no output tail, no start/finish)."
            )
        add(
            "\n*RSS at the end* is after the burst, the steady minute and a fresh snapshot. "
            "*Snapshot file*: `data/<node>/raft/snapshot.bin` after enough filler commits "
            "(lock acquire/release pairs) that every node wrote one after the phase. "
            "*Restart*: `kill -9` of a follower, then a new agent process, until it answers "
            "`/v1/status` with a leader and has applied everything committed before the kill.\n"
        )
    rs = {
        k: r
        for k, r in (_g(w, "rss") or {}).items()
        if isinstance(r, dict) and k in ("config", "api")
    }
    if rs:
        add("### RSS by registration path (`python -m bench.rss`)\n")
        rows = []
        for name, r in rs.items():
            if "rss_mb_all_have" not in r:
                rows.append([name, f"{r.get('jobs', 0):,}", r.get("error", "n/a"), "-"])
                continue
            rows.append(
                [
                    name,
                    f"{r['jobs']:,}",
                    " / ".join(f"{r['rss_mb_all_have'].get(k, 0):.0f}" for k in ("a", "b", "c")),
                    " / ".join(
                        f"{r['rss_mb_after_snapshot'].get(k, 0):.0f}" for k in ("a", "b", "c")
                    ),
                ]
            )
        add(
            md_table(
                [
                    "path",
                    "jobs",
                    "RSS a/b/c once every node has them (MB)",
                    "RSS a/b/c after a fresh snapshot (MB)",
                ],
                rows,
            )
        )
        add(
            "\n*config*: the jobs in the cluster file; *api*: registered by `PUT /v1/jobs` "
            "(64 in flight). Parked claim-only jobs (none fires); RSS 10 s after every node "
            "counts them, then after every node wrote a snapshot.\n"
        )
    cp = _g(w, "commit")
    if cp and "sequential" in cp:
        add("## 6. Commit path\n")
        add(
            "`PUT /v1/jobs/{name}`: one Raft commit, answered once the serving node applied "
            "it. Sequential on one keep-alive connection.\n"
        )
        add(
            md_table(
                ["where", "p50", "p99", "mean", "iterations", "runs"],
                [
                    [
                        w_,
                        fmt_ms(v["p50"]),
                        fmt_ms(v["p99"]),
                        fmt_ms(v["mean"]),
                        v["iterations"],
                        v["runs"],
                    ]
                    for w_, v in cp["sequential"].items()
                ],
            )
        )
        add("")
        add(
            md_table(
                ["in flight", "commits/s", "PUT p50", "PUT p99", "runs"],
                [
                    [
                        k,
                        f"{v['commits_per_s']:.0f}",
                        fmt_ms(v["p50"], 1),
                        fmt_ms(v["p99"], 1),
                        v["runs"],
                    ]
                    for k, v in sorted(cp["inflight"].items(), key=lambda kv: int(kv[0]))
                ],
            )
        )
        add(
            f"\nFsyncs per commit: **{cp['fsyncs_per_commit_all_nodes']:.2f}** summed over the "
            f"three nodes, **{cp['fsyncs_per_commit_leader']:.2f}** at the leader (sequential "
            "PUTs at the leader; median over runs).\n"
        )
        if "commit" in made:
            add(f"![commit throughput]({img_rel}/{made['commit']})\n")
    notes = m.get("notes") or []
    if notes:
        add("## Notes from this run\n")
        add("\n".join(f"* {n}" for n in notes))
        add("")
    text = _analysis_text()
    if text:
        add(text)
    add(
        "## Reproduce\n\n```sh\nmake bench        # everything, about 50 minutes here\n"
        "make bench-quick  # small sizes, under 3 minutes, output in bench/results/scratch/\n"
        "```\n\n`make bench` installs `etcd-server`, `etcd-client` and `redis-server` with "
        "apt-get when they are missing (as root) and the Python clients through the `bench` "
        "extra of pyproject.toml.\n"
    )
    return "\n".join(L)


# A section of bench/analysis.md with figures measured by hand after the results file's run.
LATER_HEADING = "Targets measured again since this run (by hand)"


def _analysis_text() -> str:
    """bench/analysis.md (hand-written: profiles of missed targets, later measurements)."""
    analysis = ROOT / "bench" / "analysis.md"
    return analysis.read_text() if analysis.exists() else ""


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    kept = "".join(ch for ch in heading.lower() if ch.isalnum() or ch in " -")
    return kept.replace(" ", "-")


def write_report(res: dict[str, Any], json_path: Path, quick: bool) -> Path:
    if quick:
        md_path = json_path.with_suffix(".md")
        img = json_path.parent / (json_path.stem + "-img")
    else:
        md_path = ROOT / "docs" / "benchmarks.md"
        img = ROOT / "docs" / "img" / "bench"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    made = charts(res, img)
    img_rel = (
        str(img.relative_to(md_path.parent)) if img.is_relative_to(md_path.parent) else str(img)
    )
    json_rel = (
        str(Path(*([".."] * 1)) / json_path.relative_to(ROOT)) if not quick else json_path.name
    )
    md_path.write_text(markdown(res, img_rel, made, json_rel))
    print(f"report: {md_path}", file=sys.stderr)
    return md_path


def main() -> int:
    """``python -m bench.report RESULTS.json [--quick]``: re-render from a results file."""
    args = sys.argv[1:]
    path = Path(args[0])
    write_report(json.loads(path.read_text()), path.resolve(), quick="--quick" in args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
