"""Pure helpers: percentiles, per-run summaries, medians over runs, same-run ratios.

Every figure the benchmarks publish is built here the same way: each run (repetition)
gives its own p50/p99 over its samples; the published figure is the median over runs of
those, with the run count next to it. A comparison is the ratio of two systems measured
in the same run (interleaved), and the published ratio is the median of those ratios.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any


def pct(xs: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) of ``xs`` by linear interpolation (numpy's default)."""
    if not xs:
        raise ValueError("percentile of no samples")
    s = sorted(xs)
    if len(s) == 1:
        return float(s[0])
    k = (len(s) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (s[hi] - s[lo]) * (k - lo))


def run_summary(xs: Sequence[float]) -> dict[str, float]:
    """One run's samples -> ``{"n", "p50", "p99", "max", "mean"}``."""
    return {
        "n": float(len(xs)),
        "p50": pct(xs, 50),
        "p99": pct(xs, 99),
        "max": float(max(xs)),
        "mean": float(statistics.fmean(xs)),
    }


def over_runs(runs: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Per-run summaries -> the median of each statistic over runs, plus ``runs``."""
    out: dict[str, Any] = {"runs": len(runs)}
    if not runs:
        return out
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    for k in keys:
        out[k] = float(statistics.median(r[k] for r in runs))
    return out


def median_ratio(num: Sequence[float], den: Sequence[float]) -> float | None:
    """Median of ``num[i] / den[i]`` over runs measured together (same index = same run)."""
    pairs = [a / b for a, b in zip(num, den, strict=False) if b > 0]
    return float(statistics.median(pairs)) if pairs else None


def fmt_ms(seconds: float | None, digits: int = 2) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.{digits}f} ms"


def fmt_s(seconds: float | None, digits: int = 3) -> str:
    return "n/a" if seconds is None else f"{seconds:.{digits}f} s"


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; cells are ``str()``-ed and ``|`` is escaped."""

    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)
    return "\n".join(lines)
