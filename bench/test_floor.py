"""The floor script's workers measure what they say (not part of `make test`):

.venv/bin/pytest -q bench/test_floor.py
"""

from __future__ import annotations

import time

from bench.floor import spawn_worker, timer_worker
from bench.report import markdown, targets


def test_spawn_worker_counts_real_forks() -> None:
    res = spawn_worker(0.3)
    assert res["spawns"] >= 1
    assert res["per_s"] == res["spawns"] / res["seconds"]


def test_timer_worker_measures_the_jobs_own_timestamp_after_the_second() -> None:
    t0 = time.time()
    res = timer_worker(2)
    assert res["fires"] == 2
    # the job printed its own time after the due second, and less than a second after it
    assert all(0 <= x < 1.0 for x in res["lateness"]), res
    assert time.time() - t0 >= 1.0  # two whole-second fires span at least one second


def test_report_puts_the_floor_beside_the_cluster_figures() -> None:
    res = {
        "meta": {
            "started": "s",
            "command": "make bench",
            "quick": False,
            "sizes": {"contended_seconds": 5.0, "every_second_jobs": 5},
            "machine": {
                k: "x"
                for k in [
                    "nproc_cmd",
                    "cpu",
                    "mem_gib",
                    "kernel",
                    "python",
                    "pysyncobj",
                    "etcd",
                    "redis",
                ]
            },
        },
        "workloads": {
            "floor": {
                "parallel": 2,
                "spawn_per_s": 1234.0,
                "spawn_per_s_each": [600.0, 634.0],
                "spawn_seconds": 3.0,
                "timer_fires": 12,
                "timer_lateness": {"p50": 0.0051, "p99": 0.0093, "max": 0.01},
            },
            "scale": {
                "sizes": {"500": {"steady": {"lateness_every_second": {"p50": 0.03, "p99": 0.09}}}}
            },
        },
    }
    late = next(t for t in targets(res) if t["target"].startswith("Lateness"))
    assert late["compare"] == "floor timer: p50 5.1 ms, p99 9.3 ms"
    md = markdown(res, "img", {}, "r.json")
    assert "1234 starts/s (600 + 634, 3 s)" in md
