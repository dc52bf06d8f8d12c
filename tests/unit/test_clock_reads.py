"""raftcron/clock.py is the only module that reads the wall or the monotonic clock: every
other module is handed a Clock or calls clock.monotonic / wall_ms / utc_now (a syntax
walk over raftcron/; sleeping and formatting a given time are not reads)."""

from __future__ import annotations

import ast
from pathlib import Path

import raftcron

ROOT = Path(raftcron.__file__).parent
CLOCK = ROOT / "clock.py"
# The one exception: the watchdog is a process of its own, started as
# ``python -I -S watchdog.py`` (or forked by spawner.py, which runs the same way), and
# imports only the standard library; it reads CLOCK_MONOTONIC, which is system-wide, so
# its deadlines are the agent's clock.monotonic values.
STANDALONE = {ROOT / "executor" / "watchdog.py"}

# time.X() reads the clock; gmtime/localtime/ctime/strftime only without a time argument
READS = {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter", "perf_counter_ns"}
READS_WITHOUT_ARGUMENT = {"gmtime", "localtime", "ctime", "asctime", "strftime"}
NOW = {"now", "utcnow", "today"}  # datetime.now(), datetime.utcnow(), date.today()


def reads(source: str, rel: str) -> list[str]:
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "time":
            names = {a.name for a in node.names} & (READS | READS_WITHOUT_ARGUMENT)
            if names:
                found.append(f"{rel}:{node.lineno}: from time import {', '.join(sorted(names))}")
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        attr, owner = node.func.attr, node.func.value
        owner_name = owner.id if isinstance(owner, ast.Name) else ""
        if attr == "time" and not node.args:  # time.time(), loop.time()
            found.append(f"{rel}:{node.lineno}: {owner_name or '?'}.time()")
        elif owner_name == "time" and attr in READS:
            found.append(f"{rel}:{node.lineno}: time.{attr}()")
        elif (
            owner_name == "time"
            and attr in READS_WITHOUT_ARGUMENT
            and len(node.args) < (2 if attr == "strftime" else 1)
        ):
            found.append(f"{rel}:{node.lineno}: time.{attr}() of now")
        elif attr in NOW:
            found.append(f"{rel}:{node.lineno}: .{attr}()")
    return found


def test_only_clock_py_reads_time() -> None:
    found: list[str] = []
    for path in sorted(ROOT.rglob("*.py")):
        if path != CLOCK and path not in STANDALONE:
            found += reads(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix())
    assert not found, "\n".join(found)


def test_the_standalone_watchdog_imports_no_raftcron_module() -> None:
    for path in STANDALONE:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("raftcron"), (path, node.module)
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("raftcron") for a in node.names), path


def test_the_walk_catches_each_kind_of_read() -> None:
    bad = """
import time
from time import monotonic
def f(loop):
    a = time.time(); b = time.monotonic(); c = time.time_ns(); d = loop.time()
    e = datetime.now(UTC); g = time.gmtime(); h = time.strftime("%Y")
    ok = time.gmtime(5), time.strftime("%Y", t), time.sleep(1)
"""
    found = reads(bad, "x.py")
    assert len(found) == 8, found
    assert reads(CLOCK.read_text(encoding="utf-8"), "clock.py")  # a control
