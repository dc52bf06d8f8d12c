"""raftcron.core is pure: importing it pulls in no clock, threads, sockets, asyncio or Raft."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import raftcron.core

FORBIDDEN = ("asyncio", "threading", "socket", "pysyncobj", "aiohttp", "time", "random", "croniter")
CORE = Path(raftcron.core.__file__).parent


def test_importing_core_loads_none_of_the_forbidden_modules() -> None:
    # `time` is imported by the interpreter itself at start-up, so the runtime check
    # compares against a fresh interpreter's baseline; the AST check below covers `time`.
    code = (
        "import sys; before = set(sys.modules)\n"
        "import raftcron.core, raftcron.core.model, raftcron.core.commands, raftcron.core.state\n"
        "import raftcron.core.schedule, raftcron.core.planner\n"
        "new = set(sys.modules) - before\n"
        f"print(' '.join(sorted(m for m in new if m.split('.')[0] in {FORBIDDEN!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_core_source_never_imports_a_clock_or_randomness() -> None:
    offenders = []
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
            if isinstance(node, ast.Attribute) and node.attr in ("now", "utcnow", "today"):
                offenders.append(f"{path.name}:{node.lineno}: .{node.attr}()")
    assert offenders == []
