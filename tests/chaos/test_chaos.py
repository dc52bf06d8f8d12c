"""The short chaos run: every nemesis for a few seconds against a real cluster (CI).

The long soak is ``make chaos``. Each test runs the runner in a network namespace of its
own and fails with the checker's report (and the nodes' logs) on any violation.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.runner import NEMESES

ROOT = Path(__file__).resolve().parent.parent.parent


def _why_not() -> str | None:
    """None when this machine can run the chaos suite, else the reason it cannot."""
    if os.geteuid() != 0:
        return (
            "chaos tests need root: they create a network namespace (unshare -n) and "
            "iptables rules inside it; run `sudo make test` or see docs/reliability.md"
        )
    if shutil.which("iptables") is None or shutil.which("unshare") is None:
        return "chaos tests need iptables and unshare (apt-get install -y iptables util-linux)"
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c",
         "iptables -t mangle -A OUTPUT -m conntrack --ctstate NEW -m owner --gid-owner 1 "
         "-j CONNMARK --set-mark 1 && iptables -A OUTPUT -m connmark --mark 1 -j ACCEPT"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        return (
            "this machine cannot create a network namespace with owner/connmark iptables "
            f"rules (a container without CAP_SYS_ADMIN or NET_ADMIN?): {probe.stderr.strip()}"
        )
    return None


WHY_NOT = _why_not()

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or ""),
]


@pytest.mark.parametrize("nemesis", list(NEMESES))
def test_nemesis(nemesis: str, tmp_path: Path) -> None:
    cmd = [
        sys.executable, "-m", "tests.chaos.runner", "--nemesis", nemesis,
        "--duration", "8", "--quiet", "2.5", "--fault", "3", "--out", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        logs = []
        for log in sorted((tmp_path / nemesis).glob("*.log")):
            logs.append(f"===== {log.name} =====\n{log.read_text(errors='replace')[-4000:]}")
        pytest.fail(f"chaos run failed (exit {proc.returncode}):\n{out}\n" + "\n".join(logs))
    assert "dup=0" in out, out
