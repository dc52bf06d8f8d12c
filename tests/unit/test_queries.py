"""Readers outside raftcron.core use State's named queries (raftcron/core/queries.py),
never its containers: a change of how State keeps its data stays inside core."""

from __future__ import annotations

import ast
from pathlib import Path

import raftcron
from raftcron.core import commands as c
from raftcron.core.model import JobSpec
from raftcron.core.state import State

ROOT = Path(raftcron.__file__).parent
CONTAINERS = frozenset(
    {
        "jobs",
        "runs",
        "history",
        "leases",
        "counters",
        "locks",
        "lock_done",
        "drained",
        "config_hash",
        "member_hashes",
        "member_versions",
        "live",
        "children",
        "settled",
    }
)


def _state_params(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    """(scope, name) of every parameter that is a State: annotated ``State``, or the
    parameter of a lambda handed to ``machine.read``."""
    out: list[tuple[ast.AST, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for arg in node.args.args:
                if (isinstance(arg.annotation, ast.Name) and arg.annotation.id == "State") or (
                    isinstance(arg.annotation, ast.Constant) and arg.annotation.value == "State"
                ):
                    out.append((node, arg.arg))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "read"
            and node.args
            and isinstance(node.args[0], ast.Lambda)
        ):
            lam = node.args[0]
            out += [(lam, a.arg) for a in lam.args.args]
    return out


def test_no_reader_outside_core_reaches_into_state() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.parent.name == "core" and path.parent.parent == ROOT:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for scope, name in _state_params(tree):
            for node in ast.walk(scope):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr in CONTAINERS
                    and isinstance(node.value, ast.Name)
                    and node.value.id == name
                ):
                    rel = path.relative_to(ROOT.parent)
                    offenders.append(f"{rel}:{node.lineno}: {name}.{node.attr}")
    assert offenders == []


def test_the_guard_sees_a_reach_in() -> None:
    """(The check above can fail: it finds the patterns it forbids.)"""
    tree = ast.parse(
        "def f(s: State) -> None:\n    s.runs.get('x')\nmachine.read(lambda st: st.jobs)\n"
    )
    found = [
        (name, node.attr)
        for scope, name in _state_params(tree)
        for node in ast.walk(scope)
        if isinstance(node, ast.Attribute) and node.attr in CONTAINERS
    ]
    assert found == [("s", "runs"), ("st", "jobs")]


def test_queries_answer_copies_not_state_containers() -> None:
    s = State()
    spec = JobSpec(name="j", schedule="* * * * *", command=("true",))
    s.apply(c.PutJob(at_ms=1_800_000_000_000, spec=spec))
    s.apply(c.Drain(at_ms=1_800_000_000_001, node="n1", drain=True))
    assert [j.spec.name for j in s.job_list()] == ["j"] and s.job("j") is s.jobs["j"]
    jobs = s.job_list()
    jobs.clear()
    extra = s.counter_extra()
    extra["x"] = 1
    assert s.jobs and "x" not in s.counters.extra
    assert s.drained_members() == frozenset({"n1"})
    assert s.drain_mark("n1") is not None and s.drain_mark("n2") is None
    assert s.totals().jobs == 1 and s.run("nope") is None and s.run_and_spec("nope") is None
