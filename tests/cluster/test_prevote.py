"""A follower cut off for several election timeouts, then healed, deposes no leader
(pre-vote and leader stickiness; docs/design.md, "Elections: pre-vote and stickiness").

Runs ``tests/cluster/prevote_partition.py`` (root: a network namespace and iptables, as
the chaos suite), which prints its steps and the chaos checker's line for the
every-second job.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.test_chaos import WHY_NOT

pytestmark = [pytest.mark.cluster, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]

ROOT = Path(__file__).resolve().parents[2]


def test_a_healed_follower_deposes_no_leader(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "tests.cluster.prevote_partition", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=400)
    out = proc.stdout + proc.stderr
    print(out)
    if proc.returncode != 0:
        logs = [
            f"===== {p.name} =====\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(tmp_path.glob("*.log"))
        ]
        pytest.fail(f"exit {proc.returncode}:\n{out}\n" + "\n".join(logs))
    assert "prevote: ok" in out and "dup=0" in out, out
