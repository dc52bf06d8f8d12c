"""Unit tests of the benchmarks' pure helpers (not part of `make test`):

.venv/bin/pytest -q bench/test_stats.py
"""

from __future__ import annotations

from bench.peers import pb_bytes, pb_decode, pb_int
from bench.profile import parse_collapsed, top_frames
from bench.report import markdown, targets
from bench.stats import md_table, median_ratio, over_runs, pct, run_summary


def test_pct_interpolates_like_numpy() -> None:
    xs = [1.0, 2.0, 3.0, 4.0]
    assert pct(xs, 0) == 1.0
    assert pct(xs, 100) == 4.0
    assert pct(xs, 50) == 2.5
    assert abs(pct(list(range(101)), 99) - 99.0) < 1e-9
    assert pct([7.0], 99) == 7.0


def test_run_summary_and_median_over_runs() -> None:
    runs = [run_summary([1.0, 2.0, 3.0]), run_summary([2.0, 4.0, 6.0]), run_summary([3.0] * 3)]
    agg = over_runs(runs)
    assert agg["runs"] == 3
    assert agg["p50"] == 3.0  # median of 2, 4, 3
    assert agg["max"] == 3.0  # median of 3, 6, 3


def test_median_ratio_pairs_runs() -> None:
    assert median_ratio([2.0, 4.0, 9.0], [1.0, 1.0, 3.0]) == 3.0
    assert median_ratio([1.0], [0.0]) is None


def test_md_table_escapes_pipes() -> None:
    out = md_table(["a", "b"], [["x|y", 1]])
    assert out.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]


def test_protobuf_round_trip() -> None:
    msg = pb_bytes(1, b"name") + pb_int(2, 300) + pb_int(3, -1)
    got = pb_decode(msg)
    assert got[1] == [b"name"]
    assert got[2] == [300]
    assert got[3] == [(1 << 64) - 1]  # int64 -1 as a 10-byte varint
    assert pb_int(4, 0) == b""


def test_top_frames_counts_own_and_inclusive() -> None:
    text = "thread (1);main (a.py:1);f (a.py:2) 3\nthread (1);main (a.py:1);g (a.py:3) 1\n"
    total, own, incl = top_frames(parse_collapsed(text))
    assert total == 4
    assert own[0] == ("f (a.py:2)", 3)
    assert dict(incl)["main (a.py:1)"] == 4


def test_report_renders_targets_from_results_only() -> None:
    res = {
        "meta": {
            "started": "s",
            "finished": "f",
            "command": "make bench",
            "quick": False,
            "sizes": {"contended_seconds": 5.0, "every_second_jobs": 5},
            "machine": {
                "nproc_cmd": "2",
                "cpu": "cpu",
                "mem_gib": 1,
                "kernel": "k",
                "python": "3.11",
                "pysyncobj": "0.3.17",
                "etcd": "3.4",
                "redis": "7",
            },
        },
        "workloads": {
            "failover": {"raftcron": {"fire": {"trials": 2, "median": 0.5, "p99": 0.9, "max": 0.9}}}
        },
    }
    t = {x["target"].split(":")[0]: x["met"] for x in targets(res)}
    assert t["Failover (kill -9 of the leader) to first fire"] is True
    assert t["100,000 jobs"] is None
    md = markdown(res, "img", {}, "r.json")
    assert (
        "| Failover (kill -9 of the leader) to first fire: median < 1 s, max < 2 s "
        "| median 0.500 s" in md
    )
