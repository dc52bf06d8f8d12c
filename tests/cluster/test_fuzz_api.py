"""schemathesis against a live 3-node cluster with tokens, in a network namespace (root):
no server error, every response as the OpenAPI document says. The short run of
``tests/cluster/fuzz_api.py``; ``make fuzz-api`` is the long one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.fuzz_api import ROOT, why_not

WHY_NOT = why_not()
FUZZ_SECONDS = int(os.environ.get("RAFTCRON_FUZZ_SECONDS", "60"))

pytestmark = [pytest.mark.cluster, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]


@pytest.mark.timeout(FUZZ_SECONDS * 2 + 240)
def test_schemathesis_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "tests.cluster.fuzz_api", "--max-time", str(FUZZ_SECONDS),
           "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=FUZZ_SECONDS * 2 + 200
    )
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        logs = tmp_path / "agents.log"
        tail = logs.read_text(errors="replace")[-6000:] if logs.exists() else ""
        pytest.fail(f"schemathesis failed (exit {proc.returncode}):\n{out[-20000:]}\n{tail}")
    assert "passed" in out, out[-4000:]
