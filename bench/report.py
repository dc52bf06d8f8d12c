"""Results JSON -> Markdown tables, target verdicts and PNG charts.

``write_report`` writes docs/benchmarks.md and docs/img/bench/*.png for a full run, or the
same under bench/results/scratch/ for ``--quick``. Every number in the output comes from
the results JSON; hand-written analysis (profiles of missed targets) is included from
bench/analysis.md when that file exists.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.stats import fmt_ms, fmt_s, md_table, median_ratio

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


def _mark(ok: bool | None, unjudged: str = "not measured") -> str:
    return unjudged if ok is None else ("**met**" if ok else "**missed**")


# Where the time goes, for a missed target: (file from the repository root, heading). The
# headings are checked to exist by bench/test_report.py, so a renamed section fails there.
PROFILES = "docs/notes/2026-11-28-bench-profiles.md"
BATCHED = "docs/notes/2026-12-07-batched-lifecycle.md"
ANALYSIS = "bench/analysis.md"
WHY: dict[str, list[tuple[str, str]]] = {
    "lateness": [
        (ANALYSIS, "Armed fires (issue 17 item 1, 2026-12-08)"),
        ("docs/notes/2026-12-08-grant-path.md", "What would close the rest"),
    ],
    "burst": [
        (ANALYSIS, "Issue 17 item 2: batched lifecycle commits (2026-12-07)"),
        (
            BATCHED,
            "CPU per run: the burst saturates both cores, and two thirds of it is the spawn path",
        ),
        (BATCHED, "What would close the target"),
    ],
    "burst_old": [
        (
            PROFILES,
            "10,000 jobs due in one second: claimed in time; runs no longer lost, start "
            "lateness missed (starts 2.5-4x faster with the watchdog fork server)",
        ),
    ],
    "commit": [
        (
            ANALYSIS,
            "Issue 17 item 3, the commit path (branch `commitpath`, 2026-12-07 16:14-17:40 UTC)",
        ),
        (PROFILES, "Lock round trip: still about 2x etcd's gRPC lock, target <= 0.5x"),
    ],
    "wrapper": [
        (
            PROFILES,
            "`raftcron lock N -- true` (issue 17 item 4): 1.8-2.0x `etcdctl lock`, was "
            "3.7-4.1x; target 1.5x missed on a loaded machine",
        ),
    ],
    "rss": [
        (
            PROFILES,
            "100,000 jobs: RSS 358-554 MB, target < 300 MB (met since s10-M: 136-226 MB "
            "from the file, 179-203 MB from the API)",
        ),
    ],
}


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    kept = "".join(ch for ch in heading.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def _why(key: str, md_dir: Path) -> str:
    """Links (relative to ``md_dir``) to the sections that profile a missed target."""
    links = []
    for path, heading in WHY.get(key, []):
        rel = os.path.relpath(ROOT / path, md_dir)
        short = heading.split(": ")[0].split(", ")[0]
        links.append(f"[{Path(path).name}: {short}]({rel}#{_anchor(heading)})")
    return "; ".join(links)


def _run_of(res: dict[str, Any], workload: str) -> str:
    """Which run measured ``workload``: the file's own, or a later one merged into it."""
    found = "the run above"
    for extra in res["meta"].get("additional_runs", []):
        if workload in extra.get("workloads", []):
            found = f"`{extra['command']}` of {extra['started']}"
    return found


def _same_run(res: dict[str, Any], *workloads: str) -> str:
    """Empty when every workload is from the same run, else a warning naming the runs."""
    runs = {w: _run_of(res, w) for w in workloads}
    if len(set(runs.values())) <= 1:
        return ""
    return " (**not the same run**: " + "; ".join(f"{w}: {r}" for w, r in runs.items()) + ")"


def _row(
    group: str,
    target: str,
    measured: str,
    compare: str,
    met: bool | None,
    why: str = "",
    unjudged: str = "not measured",
) -> dict[str, Any]:
    """One target; ``unjudged`` is the verdict's text when ``met`` is None."""
    return {
        "group": group,
        "target": target,
        "measured": measured,
        "compare": compare,
        "met": met,
        "why": why,
        "unjudged": unjudged,
    }


I17 = "issue 17"
OLDER = "earlier"
FULL_BURST = 10_000  # issue 17's burst size: a smaller one (a quick run) gets no verdict


def targets(res: dict[str, Any], md_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every target with its figure, its same-run comparison and its verdict (``met``:
    True, False, or None when not measured), computed from the results only."""
    md_dir = md_dir or ROOT / "docs"
    w = res.get("workloads", {})
    fl = _g(w, "floor") or {}
    out: list[dict[str, Any]] = []

    # ---- issue 17 item 1: every-second lateness, idle and with two CPU hogs
    for key, floor_key, label, limits in (
        (
            "idle",
            "timer_lateness",
            "Item 1: every-second job lateness on an idle 3-node cluster: p50 <= 10 ms, "
            "p99 <= 20 ms",
            (0.010, 0.020),
        ),
        (
            "hogs",
            "timer_lateness_hogs",
            "Item 1: every-second job lateness while two CPU hogs run: p99 <= 60 ms",
            (None, 0.060),
        ),
    ):
        st = _g(w, "steady", key) or {}
        le = st.get("lateness_every_second")
        ftl = fl.get(floor_key)
        ok: bool | None = None
        meas = "not measured (no `steady` workload in this run)"
        if st and not le:
            ok, meas = False, "no every-second fire started in the window"
        elif le:
            seen, exp = st.get("every_second_fires_seen", 0), st.get("every_second_fires_expected")
            p50_ok = limits[0] is None or le["p50"] <= limits[0]
            ok = p50_ok and le["p99"] <= limits[1] and (exp is None or seen >= exp)
            meas = (
                f"p50 {fmt_ms(le['p50'], 1)}, p99 {fmt_ms(le['p99'], 1)}, max "
                f"{fmt_ms(le['max'], 1)} ({seen}/{exp} fires in {st.get('seconds', 0):.0f} s)"
            )
            if exp is not None and seen < exp:
                meas += f"; **{exp - seen} fires did not start in time**"
            hogs = st.get("hogs")
            if hogs:
                meas += ", hogs got " + " + ".join(f"{x:.0f}%" for x in hogs["cpu_pct_each"])
        cmp_ = "n/a (no floor in this run)"
        if ftl:
            cmp_ = f"floor timer: p50 {fmt_ms(ftl['p50'], 1)}, p99 {fmt_ms(ftl['p99'], 1)}"
            if le and ftl["p99"] > 0:
                cmp_ += f"; p99 {le['p99'] / ftl['p99']:.1f}x the floor"
            cmp_ += _same_run(res, "steady", "floor")
        out.append(
            _row(I17, label, meas, cmp_, ok, _why("lateness", md_dir) if ok is False else "")
        )

    # ---- issue 17 item 2: the burst of `true` jobs
    b = _g(w, "burst") or {}
    n = b.get("jobs")
    quick_size = n is not None and n != FULL_BURST
    size_note = f" ({n:,} jobs: a quick size)" if quick_size and n else ""
    unjudged = f"no verdict ({n:,} jobs, not 10,000)" if quick_size and n else "not measured"
    statuses: dict[str, int] = b.get("statuses") or {}
    why_b = _why("burst", md_dir)

    def verdict(ok: bool) -> bool | None:
        return None if quick_size else ok

    if not b:
        for label in (
            "Item 2: 10,000 `true` jobs due in one second all started within 20 s",
            "Item 2: the same burst: none lost",
            "Item 2: the same burst: cluster-wide starts/s >= 50% of the floor's spawn rate",
        ):
            out.append(_row(I17, label, "not measured (no `burst` workload in this run)", "", None))
    else:
        last = b.get("all_started_s")
        started = b.get("started", 0)
        ok = last is not None and started == n and last <= 20.0
        err = f"; error: {b['error']}" if b.get("error") else ""
        floor_s = b.get("floor_spawn_per_s")
        meas = (
            f"{started:,} of {n:,} started; the last one ended {fmt_s(last, 1)} after the "
            f"second (an upper bound on its start; ledger start p99 "
            f"{fmt_s(_g(b, 'lateness_ledger', 'p99'), 1)}){err}{size_note}"
        )
        cmp_ = (
            f"the floor forks {n:,} in {n / floor_s:.1f} s ({floor_s:.0f}/s)"
            if floor_s and n
            else "n/a"
        )
        out.append(
            _row(
                I17,
                "Item 2: 10,000 `true` jobs due in one second all started within 20 s",
                meas,
                cmp_,
                verdict(ok),
                why_b if verdict(ok) is False else "",
                unjudged,
            )
        )
        recorded = sum(statuses.values())
        lost = statuses.get("lost", 0)
        ok = bool(statuses) and lost == 0 and recorded == n
        st_txt = ", ".join(f"{v:,} {k}" for k, v in sorted(statuses.items())) or "no ledger"
        meas = f"final statuses: {st_txt} ({recorded:,} of {n:,} in the ledger){size_note}"
        out.append(
            _row(
                I17,
                "Item 2: the same burst: none lost",
                meas,
                "",
                verdict(ok),
                why_b if verdict(ok) is False else "",
                unjudged,
            )
        )
        rate = b.get("starts_per_s")
        ratio = b.get("floor_ratio")
        ok = ratio is not None and ratio >= 0.5
        meas = (
            "n/a"
            if rate is None
            else f"{rate:.0f} starts/s ({started:,} runs / {fmt_s(last, 1)}){size_note}"
        )
        cmp_ = (
            "n/a (no floor measured)"
            if not floor_s
            else f"floor {floor_s:.0f} spawns/s right before the burst"
            + ("" if ratio is None else f"; ratio **{ratio:.2f}**")
        )
        out.append(
            _row(
                I17,
                "Item 2: the same burst: cluster-wide starts/s >= 50% of the floor's spawn rate",
                meas,
                cmp_,
                verdict(ok),
                why_b if verdict(ok) is False else "",
                unjudged,
            )
        )

    # ---- issue 17 item 3: the commit path
    why_c = _why("commit", md_dir)
    r = _g(w, "locks", "uncontended", "ratios", "raftcron_raw_over_etcd_grpc_p50")
    rows = {row["variant"]: row for row in _g(w, "locks", "uncontended", "rows", default=[])}
    raw = next((v for k, v in rows.items() if k.startswith("HTTP API")), None)
    grpc = next((v for k, v in rows.items() if k.startswith("gRPC v3lock")), None)
    ok = None if r is None else r <= 1.0
    out.append(
        _row(
            I17,
            "Item 3: lock acquire + release p50 (HTTP, leader) <= etcd's gRPC lock p50",
            "n/a" if raw is None else f"{fmt_ms(raw['p50'])} ({raw['runs']} runs)",
            "n/a"
            if grpc is None or r is None
            else f"etcd gRPC v3lock {fmt_ms(grpc['p50'])}; ratio **{r:.2f}**",
            ok,
            why_c if ok is False else "",
        )
    )
    per = _g(w, "locks", "contended", "per_run", default={}) or {}
    rc = [x["pairs_per_s"] for x in per.get("raftcron|16|distinct names", [])]
    et = [x["pairs_per_s"] for x in per.get("etcd|16|distinct names", [])]
    r = median_ratio(rc, et) if rc and et else None
    ok = None if r is None else r >= 1.0
    out.append(
        _row(
            I17,
            "Item 3: contended, 16 clients, distinct names: pairs/s >= etcd's",
            "n/a"
            if not rc
            else f"{statistics.median(rc):.0f} pairs/s (median of {len(rc)} run(s))",
            "n/a"
            if r is None
            else f"etcd {statistics.median(et):.0f} pairs/s; ratio **{r:.2f}** "
            "(median of per-run ratios)",
            ok,
            why_c if ok is False else "",
        )
    )
    seq = _g(w, "commit", "sequential", "leader")
    ok = None if seq is None else seq["p50"] <= 0.001
    out.append(
        _row(
            I17,
            "Item 3: single commit (`PUT /v1/jobs`) p50 at the leader <= 1.0 ms",
            "n/a"
            if seq is None
            else f"{fmt_ms(seq['p50'])} (p99 {fmt_ms(seq['p99'])}, {seq['runs']} runs)",
            "n/a"
            if seq is None
            else f"fsyncs per commit at the leader "
            f"{_g(w, 'commit', 'fsyncs_per_commit_leader', default=0):.2f}",
            ok,
            why_c if ok is False else "",
        )
    )

    # ---- issue 17 item 4: raftcron lock N -- true
    r = _g(w, "locks", "wrappers", "ratios", "raftcron_over_etcdctl_p50")
    wr = {row["system"]: row for row in _g(w, "locks", "wrappers", "rows", default=[])}
    dev = _g(w, "locks", "wrappers", "ratios", "raftcron_dev_over_etcdctl_p50")
    ok = None if r is None else r <= 1.5
    meas = "n/a"
    if r is not None:
        meas = f"{fmt_ms(wr['raftcron']['p50'], 1)} (installed from the wheel)"
        if dev is not None and "raftcron-dev" in wr:
            meas += f"; editable dev venv {fmt_ms(wr['raftcron-dev']['p50'], 1)}"
    out.append(
        _row(
            I17,
            "Item 4: `raftcron lock N -- true` p50 <= 1.5x `etcdctl lock N -- true`",
            meas,
            "n/a"
            if r is None
            else f"etcdctl {fmt_ms(wr['etcd']['p50'], 1)}; ratio **{r:.2f}**"
            + (f" (dev venv {dev:.2f})" if dev is not None else ""),
            ok,
            _why("wrapper", md_dir) if ok is False else "",
        )
    )

    # ---- failover and memory (issue 17's table lists them; first set on the first page)
    fire = _g(w, "failover", "raftcron", "fire")
    ew = _g(w, "failover", "etcd", "write")
    ok, meas = None, "n/a"
    if fire and fire.get("trials"):
        ok = fire["median"] < 1.0 and fire["max"] < 2.0
        meas = f"median {fmt_s(fire['median'])}, max {fmt_s(fire['max'])} ({fire['trials']} trials)"
    out.append(
        _row(
            I17,
            "Failover (kill -9 of the leader) to first fire: median < 1 s, max < 2 s",
            meas,
            "n/a"
            if not ew or not ew.get("trials")
            else f"etcd to first write: median {fmt_s(ew['median'])}, max {fmt_s(ew['max'])}",
            ok,
        )
    )
    ok, meas = _rss_target(w, bool(res["meta"].get("quick")))
    out.append(
        _row(
            I17,
            "100,000 jobs: RSS < 300 MB per node",
            meas,
            "",
            ok,
            _why("rss", md_dir) if ok is False else "",
        )
    )

    # ---- earlier targets, still measured
    r = _g(w, "locks", "uncontended", "ratios", "raftcron_raw_over_etcd_grpc_p50")
    out.append(
        _row(
            OLDER,
            "Lock round trip through the API: p50 <= 1/2 of etcd's gRPC lock",
            "n/a" if r is None else f"ratio {r:.2f} (the item 3 row above)",
            "",
            None if r is None else r <= 0.5,
            why_c if r is not None and r > 0.5 else "",
        )
    )
    bo = _g(w, "scale", "sizes", str(FULL_BURST), "burst")
    stopped = _g(w, "scale", "sizes", str(FULL_BURST), "aborted") or _g(
        w, "scale", "sizes", str(FULL_BURST), "error"
    )
    ok, meas = (
        None,
        "not run (the scale workload's 10,000 size is full-run only)"
        if res["meta"].get("quick")
        else "not measured (no `scale` workload at 10,000 jobs in this run)",
    )
    if bo and stopped:
        ok = False
        meas = (
            f"stopped: {stopped}; by then claimed {fmt_s(bo.get('claimed_s'))} after the fire "
            f"time, {bo.get('started', 0)} of 10,000 started within {fmt_s(bo.get('waited_s'), 0)}"
        )
    elif bo:
        claimed = bo.get("claimed_s")
        p99 = _g(bo, "lateness_self", "p99")
        if claimed is None or p99 is None:
            ok, meas = False, f"claimed: {claimed}, p99 lateness: {p99} ({bo.get('invalid', '')})"
        else:
            ok = claimed <= 1.0 and p99 < 2.0
            st = ", ".join(f"{v:,} {k}" for k, v in sorted((bo.get("statuses") or {}).items()))
            meas = (
                f"claimed {fmt_s(claimed)} after the fire time; start lateness p99 {fmt_s(p99, 1)}"
                f" (max {fmt_s(_g(bo, 'lateness_self', 'max'), 1)}) of the {bo.get('started'):,} "
                f"that started; final statuses: {st}"
            )
    out.append(
        _row(
            OLDER,
            "10,000 `sh -c 'date ...'` jobs due in one second (scale workload): all claimed "
            "<= 1 s, p99 start lateness < 2 s",
            meas,
            "",
            ok,
            _why("burst_old", md_dir) if ok is False else "",
        )
    )
    worst = None
    for size, s in _g(w, "scale", "sizes", default={}).items():
        p99 = _g(s, "steady", "lateness_every_second", "p99")
        if p99 is not None and (worst is None or p99 > worst[1]):
            worst = (size, p99)
    out.append(
        _row(
            OLDER,
            "Lateness of a steady every-second job with 1,000-100,000 jobs registered: p99 < 50 ms",
            "n/a"
            if worst is None
            else f"worst p99 {fmt_ms(worst[1], 1)} (with {int(worst[0]):,} jobs registered)",
            _floor_lateness(fl),
            None if worst is None else worst[1] < 0.050,
            _why("lateness", md_dir) if worst is not None and worst[1] >= 0.050 else "",
        )
    )
    return out


def _rss_target(w: dict[str, Any], quick: bool) -> tuple[bool | None, str]:
    s100 = _g(w, "scale", "sizes", "100000")
    ok: bool | None = None
    meas = (
        "not run (100,000 jobs are full-run only)"
        if quick
        else "not measured (no `scale` or `rss` workload at 100,000 jobs in this run)"
    )
    if s100:
        vals = (
            list((_g(s100, "burst", "rss_registered", default={}) or {}).values())
            + list((s100.get("rss_end") or {}).values())
            + list((s100.get("rss_after_snapshot") or {}).values())
        )
        if vals:
            ok = max(vals) < 300 * MB
            meas = f"scale workload: max RSS of a node {max(vals) / MB:.0f} MB"
    # bench.rss: both ways of getting 100,000 jobs (cluster file, API), in MiB
    paths = [r for r in (_g(w, "rss") or {}).values() if isinstance(r, dict) and "path" in r]
    rss_max = [r["max_rss_mb"] for r in paths if r["jobs"] >= 100_000 and "max_rss_mb" in r]
    if rss_max:
        rss_ok = max(rss_max) < 300
        ok = rss_ok if ok is None else (ok and rss_ok)
        meas = ("" if meas.startswith("not ") else meas + "; ") + (
            f"file and API paths (bench.rss): max {max(rss_max):.0f} MB"
        )
    return ok, meas


def _floor_lateness(fl: Any) -> str:
    tl = _g(fl, "timer_lateness")
    if not tl:
        return ""
    return f"floor timer: p50 {fmt_ms(tl['p50'], 1)}, p99 {fmt_ms(tl['p99'], 1)}"


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


def _steady_row(label: str, s: dict[str, Any], floor_tl: dict[str, float] | None) -> list[Any]:
    le = s.get("lateness_every_second", {})
    cpu = s.get("cpu_pct", {})
    return [
        label,
        f"{s.get('seconds', 0):.0f} s",
        f"{s.get('every_second_fires_seen')}/{s.get('every_second_fires_expected')}",
        " / ".join(fmt_ms(le.get(k), 1) for k in ("p50", "p99", "max")),
        " / ".join(
            fmt_ms(_g(s, key, q), 1)
            for key in ("ledger_claimed_minus_scheduled", "ledger_started_minus_scheduled")
            for q in ("p50", "p99")
        ),
        f"{s.get('commits_per_s', 0):.1f}",
        ", ".join(_cpu(nd, v, nd == s.get("leader")) for nd, v in sorted(cpu.items())),
        "n/a"
        if not floor_tl
        else " / ".join(fmt_ms(floor_tl.get(k), 1) for k in ("p50", "p99", "max")),
    ]


def _issue17_sections(res: dict[str, Any], add: Any) -> None:
    """The floor, and the workloads added for issue 17 items 1 and 2."""
    w = res.get("workloads", {})
    sz = res["meta"]["sizes"]
    fl = _g(w, "floor") or {}
    b = _g(w, "burst") or {}
    if fl.get("timer_lateness") or b.get("floor_spawn_per_s"):
        add("## The floor: no cluster, same process shape\n")
        add(
            "What the machine does with no cluster at all (`bench/floor.py`, its docstring "
            f"defines it): {fl.get('parallel', 2)} supervisor processes in parallel (one per "
            "core), each forking its jobs as raftcron's watchdog does (Popen, output on a "
            "pipe, new session). Measured in this run: the `floor` workload first, before any "
            "cluster started, and the spawn rate again right before the burst's cluster "
            "started (the burst's ratio uses that one).\n"
        )
        rows = []
        if fl.get("spawn_per_s"):
            rows.append(
                [
                    "fork/exec `true` back to back, both supervisors together (`floor` workload)",
                    f"{fl['spawn_per_s']:.0f} starts/s ("
                    + " + ".join(f"{x:.0f}" for x in fl["spawn_per_s_each"])
                    + f", {fl['spawn_seconds']:g} s)",
                ]
            )
        if b.get("floor_spawn_per_s"):
            rows.append(
                [
                    "the same, right before the burst's cluster started (`burst` workload)",
                    f"{b['floor_spawn_per_s']:.0f} starts/s"
                    + (
                        f" ({b['floor_spawn_seconds']:g} s)" if b.get("floor_spawn_seconds") else ""
                    ),
                ]
            )
        tl = fl.get("timer_lateness")
        if tl:
            rows.append(
                [
                    "asyncio timer at every whole second forking `sh -c 'date +%s%N'`: "
                    "the job's timestamp minus the due second",
                    f"p50 {fmt_ms(tl['p50'], 1)}, p99 {fmt_ms(tl['p99'], 1)}, "
                    f"max {fmt_ms(tl['max'], 1)} ({fl['timer_fires']} fires)",
                ]
            )
        th = fl.get("timer_lateness_hogs")
        if th:
            hogs = fl.get("hogs") or {}
            rows.append(
                [
                    "the same timer while two CPU hogs (`python3 -c 'while 1: pass'`) run",
                    f"p50 {fmt_ms(th['p50'], 1)}, p99 {fmt_ms(th['p99'], 1)}, "
                    f"max {fmt_ms(th['max'], 1)} ({fl['timer_hogs_fires']} fires; the hogs got "
                    + " + ".join(f"{x:.0f}%" for x in hogs.get("cpu_pct_each", []))
                    + " of a core)",
                ]
            )
        add(md_table(["floor", "measured"], rows))
        add("")
    st = _g(w, "steady") or {}
    if st.get("idle") or st.get("hogs"):
        add("## Every-second jobs, idle and with two CPU hogs (issue 17 item 1)\n")
        add(
            "A fresh 3-node cluster with nothing else on it (`bench/steady.py`): "
            f"{sz['every_second_jobs']} jobs `* * * * * *` plus 60 every-minute jobs (one per "
            f"second of the minute), {sz['every_second_jobs'] + 1} fires per second, for "
            f"{st.get('window_s', sz.get('steady_seconds', 0)):g} s; then the same again "
            "while two `python3 -c 'while 1: pass'` run from before the jobs are registered "
            "until the window's last fires started. Lateness = the job's own first timestamp "
            "(`date +%s%N`) minus `scheduled_at`, the floor timer's definition. The ledger "
            "columns split it: *claimed* is the leader's plan time, *start proposed* when "
            "the executor proposed its fenced start. CPU = percent of one core over the "
            "window: the agent + its reaped children; `*` marks the leader.\n"
        )
        rows = []
        if st.get("idle"):
            rows.append(_steady_row("idle", st["idle"], fl.get("timer_lateness")))
        if st.get("hogs"):
            hogs = st["hogs"].get("hogs") or {}
            label = (
                "two CPU hogs ("
                + " + ".join(f"{x:.0f}%" for x in hogs.get("cpu_pct_each", []))
                + " of a core)"
            )
            rows.append(_steady_row(label, st["hogs"], fl.get("timer_lateness_hogs")))
        add(
            md_table(
                [
                    "window",
                    "length",
                    "every-second fires seen",
                    "lateness p50 / p99 / max",
                    "ledger: claimed p50/p99, start proposed p50/p99 (after scheduled)",
                    "commits/s",
                    "CPU per node",
                    "floor timer p50 / p99 / max (same conditions)",
                ],
                rows,
            )
        )
        add("")
    if b:
        n = b.get("jobs", 0)
        add(f"## Burst: {n:,} `true` jobs due in one second (issue 17 item 2)\n")
        add(
            "`bench/burst.py` (the `burst` workload): the floor's spawn rate for "
            f"{b.get('floor_spawn_seconds', 0):g} s, then a fresh 3-node cluster; every job "
            "is registered with a parked schedule, then re-scheduled to fire at one second "
            "(a top of a minute; quick runs: the next whole second). The jobs run `true`, so "
            "they are timed from the ledger: *started* is when the executor proposed the "
            "fenced start, *ended* the run's recorded end (the last end bounds the last "
            "start from above). Starts/s = runs started / the last end after the second.\n"
        )
        ll, lf = b.get("lateness_ledger") or {}, b.get("lateness_finished") or {}
        ck = b.get("commits_by_kind") or {}
        rows = [
            [
                "jobs, registered in / re-scheduled in",
                f"{n:,}, {fmt_s(b.get('register_s'), 1)} / {fmt_s(b.get('update_s'), 1)}",
            ],
            ["all claimed after the second", fmt_s(b.get("claimed_s"))],
            ["started (ledger)", f"{b.get('started', 0):,}"],
            [
                "ledger start after the second p50 / p99 / max",
                " / ".join(fmt_s(ll.get(k), 2) for k in ("p50", "p99", "max")),
            ],
            [
                "recorded end after the second p50 / p99 / max",
                " / ".join(fmt_s(lf.get(k), 2) for k in ("p50", "p99", "max")),
            ],
            [
                "cluster-wide starts/s",
                "n/a" if b.get("starts_per_s") is None else f"{b['starts_per_s']:.0f}",
            ],
            [
                "floor spawns/s right before (ratio)",
                "n/a"
                if not b.get("floor_spawn_per_s")
                else f"{b['floor_spawn_per_s']:.0f} ({b.get('floor_ratio') or 0:.3f})",
            ],
            [
                "final statuses",
                ", ".join(f"{v:,} {k}" for k, v in sorted((b.get("statuses") or {}).items()))
                or "n/a",
            ],
            [
                "runs that did not succeed, by reason",
                ", ".join(f"{v:,} {k}" for k, v in sorted((b.get("reasons") or {}).items()))
                or "none",
            ],
            [
                "commits by kind (summed over the nodes)",
                ", ".join(f"{k} {v:,}" for k, v in sorted(ck.items())) or "n/a",
            ],
            [
                "CPU in the window: agents / what they forked",
                f"{b.get('cpu_agents_s', 0):.1f} s / {b.get('cpu_children_s', 0):.1f} s "
                f"of {b.get('cpu_window_s', 0):.1f} s x 2 cores",
            ],
            [
                "agents' log lines",
                ", ".join(f"`{k}` {v}" for k, v in (b.get("log_lines") or {}).items()),
            ],
        ]
        if b.get("error") or b.get("invalid"):
            rows.append(["error", str(b.get("error") or b.get("invalid"))])
        add(md_table(["burst", "measured"], rows))
        add("")


def markdown(
    res: dict[str, Any],
    img_rel: str,
    made: dict[str, str],
    json_rel: str,
    md_dir: Path | None = None,
) -> str:
    """The page for ``res``; links to files of the repository are relative to ``md_dir``
    (where the page is written; default docs/)."""
    md_dir = md_dir or ROOT / "docs"
    analysis_rel = os.path.relpath(ROOT / ANALYSIS, md_dir)
    notes_rel = os.path.relpath(ROOT / "docs" / "notes", md_dir) + "/"
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
    if m.get("load_at_start"):
        add(
            f"* **1-minute load average before the run started** (nothing of the run's own "
            f"yet; 2 cores): {m['load_at_start'][0]:.2f}"
            + (" (**the machine was not idle**)" if m["load_at_start"][0] >= 0.5 else " (idle)")
        )
    if loads:
        add(
            "* **1-minute load average** during each workload (2 cores; the run's own "
            f"processes included): {', '.join(loads)}"
        )
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

    trows = targets(res, md_dir)
    extra_runs = len(m.get("additional_runs", []))
    one_run = (
        "Each figure and its comparison are from this run (the floor, etcd and raftcron "
        "measured in it)"
        if not extra_runs
        else f"This file holds {extra_runs + 1} runs (listed above): each figure and its "
        "comparison are from one of them, and a row whose two sides come from different "
        "runs says so"
    )
    for group, title, blurb in (
        (
            I17,
            "## Targets: issue 17\n",
            f"{one_run}; the verdict is computed from them by `bench/report.py`. Where "
            "a target is missed, the last column links to the profile of where the time "
            "goes and what would close it.\n",
        ),
        (
            OLDER,
            "### Earlier targets, still measured\n",
            "",
        ),
    ):
        add(title)
        if blurb:
            add(blurb)
        add(
            md_table(
                ["target", "measured", "same run: peer or floor", "verdict", "where the time goes"],
                [
                    [
                        t["target"],
                        t["measured"],
                        t["compare"] or "-",
                        _mark(t["met"], t["unjudged"]),
                        t["why"],
                    ]
                    for t in trows
                    if t["group"] == group
                ],
            )
        )
        add("")
    add(
        "Measurements made by hand between full runs (older commits, `bench.ab` before/after "
        f"pairs) and the investigation notes are in [bench/analysis.md]({analysis_rel}) and "
        f"[docs/notes/]({notes_rel}); none of them is on this page.\n"
    )
    _issue17_sections(res, add)

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
    took = _minutes(m.get("started"), m.get("finished"))
    add(
        "## Reproduce\n\n```sh\nmake bench        # every workload, one results file, this page\n"
        "make bench-quick  # small sizes, output in bench/results/scratch/\n"
        "python -m bench.report bench/results/<date>.json [--out FILE.md]  # render again\n"
        "```\n\n"
        + (f"This run took {took:.0f} min" if took is not None else "")
        + (
            f" (expected at its start: {m['expected_min']:.0f} min). "
            if m.get("expected_min") is not None and took is not None
            else (". " if took is not None else "")
        )
        + "Each workload's own time is `elapsed_s` in the results file. `make bench` "
        "installs `etcd-server`, `etcd-client` and `redis-server` with apt-get when they "
        "are missing (as root) and the Python clients through the `bench` extra of "
        "pyproject.toml.\n"
    )
    return "\n".join(L)


def _minutes(started: str | None, finished: str | None) -> float | None:
    from datetime import datetime

    if not started or not finished:
        return None
    try:
        t0, t1 = datetime.fromisoformat(started), datetime.fromisoformat(finished)
    except ValueError:
        return None
    return (t1 - t0).total_seconds() / 60


DOCS_PAGE = ROOT / "docs" / "benchmarks.md"


def write_report(
    res: dict[str, Any], json_path: Path, quick: bool, out: Path | None = None
) -> Path:
    """The page and its charts: ``out`` (charts in ``<out stem>-img/`` beside it), else
    docs/benchmarks.md for a full run and ``<results stem>.md`` beside a quick one's JSON.
    A quick run's results never go to docs/benchmarks.md."""
    quick = quick or bool(res["meta"].get("quick"))
    if out is not None:
        md_path = out.resolve()
        img = md_path.parent / (md_path.stem + "-img")
    elif quick:
        md_path = json_path.with_suffix(".md")
        img = json_path.parent / (json_path.stem + "-img")
    else:
        md_path = DOCS_PAGE
        img = ROOT / "docs" / "img" / "bench"
    if quick and md_path == DOCS_PAGE:
        raise ValueError("a quick run's results do not go to docs/benchmarks.md")
    md_path.parent.mkdir(parents=True, exist_ok=True)
    made = charts(res, img)
    img_rel = os.path.relpath(img, md_path.parent)
    json_rel = os.path.relpath(json_path, md_path.parent)
    md_path.write_text(markdown(res, img_rel, made, json_rel, md_path.parent))
    print(f"report: {md_path}", file=sys.stderr)
    return md_path


def main() -> int:
    """``python -m bench.report RESULTS.json [--out FILE.md]``: render from a results file."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, help="write the page here (charts beside it)")
    ap.add_argument("--quick", action="store_true", help="(read from the file; kept for old use)")
    args = ap.parse_args()
    path = args.results.resolve()
    write_report(json.loads(path.read_text()), path, quick=args.quick, out=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
