"""The report's verdicts and links, from made-up results (not part of `make test`):

.venv/bin/pytest -q bench/test_report.py
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from bench.report import DOCS_PAGE, ROOT, WHY, _anchor, markdown, targets, write_report

MACHINE = {
    k: "x"
    for k in ["nproc_cmd", "cpu", "mem_gib", "kernel", "python", "pysyncobj", "etcd", "redis"]
}


ROW = {"p50": 0.003, "p99": 0.005, "mean": 0.003, "runs": 5, "iterations": 100}


def _lat(p50: float, p99: float) -> dict[str, float]:
    return {"n": 300.0, "p50": p50, "p99": p99, "max": p99 * 1.2, "mean": p50}


def _steady(p50: float, p99: float) -> dict[str, Any]:
    return {
        "seconds": 60.0,
        "every_second_fires_seen": 300,
        "every_second_fires_expected": 300,
        "lateness_every_second": _lat(p50, p99),
        "cpu_pct": {"a": {"agent": 3.0, "children": 7.0}},
        "leader": "a",
    }


def results() -> dict[str, Any]:
    """A full run in which every issue-17 target is met (by a hair where it has a bound)."""
    return {
        "meta": {
            "started": "2026-12-08T10:00:00+00:00",
            "finished": "2026-12-08T10:55:00+00:00",
            "command": "make bench",
            "quick": False,
            "expected_min": 53.0,
            "sizes": {"contended_seconds": 5.0, "every_second_jobs": 5, "steady_seconds": 60.0},
            "machine": MACHINE,
        },
        "workloads": {
            "floor": {
                "parallel": 2,
                "spawn_per_s": 2000.0,
                "spawn_per_s_each": [1000.0, 1000.0],
                "spawn_seconds": 10.0,
                "timer_fires": 60,
                "timer_lateness": _lat(0.005, 0.007),
                "timer_hogs_fires": 60,
                "timer_lateness_hogs": _lat(0.008, 0.030),
                "hogs": {"cpu_pct_each": [60.0, 61.0]},
            },
            "steady": {
                "window_s": 60.0,
                "idle": _steady(0.010, 0.020),
                "hogs": {**_steady(0.030, 0.060), "hogs": {"cpu_pct_each": [55.0, 58.0]}},
            },
            "burst": {
                "jobs": 10_000,
                "started": 10_000,
                "all_started_s": 20.0,
                "lateness_ledger": _lat(8.0, 18.0),
                "statuses": {"succeeded": 10_000},
                "starts_per_s": 1000.0,
                "floor_spawn_per_s": 2000.0,
                "floor_spawn_seconds": 10.0,
                "floor_ratio": 0.5,
            },
            "locks": {
                "uncontended": {
                    "rows": [
                        {"system": "raftcron", "variant": "HTTP API, raw (keep-alive)", **ROW},
                        {
                            "system": "etcd",
                            "variant": "gRPC v3lock Lock/Unlock, reused lease",
                            **ROW,
                        },
                    ],
                    "ratios": {"raftcron_raw_over_etcd_grpc_p50": 1.0},
                },
                "contended": {
                    "rows": [],
                    "per_run": {
                        "raftcron|16|distinct names": [{"pairs_per_s": x} for x in (900, 1000)],
                        "etcd|16|distinct names": [{"pairs_per_s": x} for x in (900, 1000)],
                    },
                },
                "wrappers": {
                    "rows": [
                        {"system": "raftcron", "variant": "raftcron lock", **ROW, "p50": 0.030},
                        {"system": "etcd", "variant": "etcdctl lock", **ROW, "p50": 0.020},
                    ],
                    "ratios": {"raftcron_over_etcdctl_p50": 1.5},
                },
            },
            "commit": {
                "sequential": {"leader": {**ROW, "p50": 0.001}},
                "inflight": {"1": {"commits_per_s": 300.0, **ROW}},
                "fsyncs_per_commit_leader": 1.0,
                "fsyncs_per_commit_all_nodes": 3.0,
            },
        },
    }


def by_target(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["target"]: t for t in targets(res) if t["group"] == "issue 17"}


def verdicts(res: dict[str, Any]) -> dict[str, bool | None]:
    return {k: t["met"] for k, t in by_target(res).items()}


def test_every_issue_17_target_is_met_on_its_bound() -> None:
    v = verdicts(results())
    failover, rss = (
        v.pop(next(k for k in v if k.startswith("Failover"))),
        v.pop(next(k for k in v if k.startswith("100,000"))),
    )
    assert failover is None and rss is None  # not in these results: "not measured"
    assert len(v) == 9  # 2 of item 1, 3 of item 2, 3 of item 3, 1 of item 4
    assert all(v.values()), v
    assert not any(t["why"] for t in by_target(results()).values())


@pytest.mark.parametrize(
    ("path", "value", "target"),
    [
        (("steady", "idle", "lateness_every_second", "p50"), 0.0101, "idle"),
        (("steady", "idle", "lateness_every_second", "p99"), 0.0201, "idle"),
        (("steady", "idle", "every_second_fires_seen"), 299, "idle"),
        (("steady", "hogs", "lateness_every_second", "p99"), 0.0601, "hogs"),
        (("burst", "all_started_s"), 20.1, "within 20 s"),
        (("burst", "started"), 9_999, "within 20 s"),
        (("burst", "statuses"), {"succeeded": 9_999, "lost": 1}, "none lost"),
        (("burst", "statuses"), {"succeeded": 9_999}, "none lost"),
        (("burst", "floor_ratio"), 0.499, "50% of the floor"),
        (("locks", "uncontended", "ratios", "raftcron_raw_over_etcd_grpc_p50"), 1.01, "gRPC"),
        (
            ("locks", "contended", "per_run", "raftcron|16|distinct names"),
            [{"pairs_per_s": 899}] * 2,
            "16 clients",
        ),
        (("commit", "sequential", "leader", "p50"), 0.00101, "single commit"),
        (("locks", "wrappers", "ratios", "raftcron_over_etcdctl_p50"), 1.51, "1.5x"),
    ],
)
def test_a_figure_past_its_bound_misses_only_its_target_and_links_the_profile(
    path: tuple[str, ...], value: Any, target: str
) -> None:
    res = copy.deepcopy(results())
    d = res["workloads"]
    for k in path[:-1]:
        d = d[k]
    d[path[-1]] = value
    rows = by_target(res)
    missed = [k for k, t in rows.items() if t["met"] is False]
    assert len(missed) == 1 and target in missed[0], missed
    assert "](" in rows[missed[0]]["why"]  # a link to where the time goes


def test_a_quick_sized_burst_gets_figures_but_no_verdict() -> None:
    res = results()
    res["workloads"]["burst"].update(jobs=500, started=500, statuses={"succeeded": 500})
    rows = [t for k, t in by_target(res).items() if k.startswith("Item 2")]
    assert len(rows) == 3
    assert all(t["met"] is None for t in rows)
    assert all("quick size" in t["measured"] for t in rows[:2])


def test_a_ratio_to_the_floor_from_another_run_says_so() -> None:
    res = results()
    res["meta"]["additional_runs"] = [
        {"command": "python -m bench.run --only steady", "workloads": ["steady"], "started": "t"}
    ]
    idle = next(t for k, t in by_target(res).items() if "idle" in k)
    assert "not the same run" in idle["compare"]
    assert "not the same run" not in next(iter(by_target(results()).values()))["compare"]


def test_every_profile_link_names_a_heading_that_exists() -> None:
    for links in WHY.values():
        for path, heading in links:
            text = (ROOT / path).read_text()
            headings = [line.lstrip("#").strip() for line in text.splitlines()]
            assert heading in headings, (path, heading)
            assert _anchor(heading) == _anchor(heading).lower()


def test_the_page_is_the_results_only() -> None:
    md = markdown(results(), "img", {}, "r.json")
    assert "## Targets: issue 17" in md
    assert "2000 starts/s" in md and "8.0 ms" in md  # the floor and its hog variant
    # nothing of the hand-written analysis is pasted in: it is linked
    for line in (ROOT / "bench" / "analysis.md").read_text().splitlines():
        if line.startswith("## "):
            assert line not in md
    assert "bench/analysis.md" in md


def test_a_quick_result_is_never_written_to_docs(tmp_path: Path) -> None:
    res = results()
    res["meta"]["quick"] = True
    with pytest.raises(ValueError, match="quick"):
        write_report(res, tmp_path / "r.json", quick=False, out=DOCS_PAGE)
    pytest.importorskip("matplotlib")  # (the charts: in the bench extra)
    out = write_report(res, tmp_path / "r.json", quick=False, out=tmp_path / "page.md")
    assert out.read_text().startswith("# Benchmarks")
