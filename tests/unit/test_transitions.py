"""The run lifecycle table (raftcron/core/transitions.py), its one enforcing function,
and the document generated from it (docs/run-lifecycle.md)."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest

import raftcron.core
from raftcron.core import commands as c
from raftcron.core import transitions as tr
from raftcron.core.model import (
    FINAL_STATUSES,
    LIVE_STATUSES,
    MISSED,
    SUCCEEDED,
    WAITING_STATUSES,
    JobSpec,
    run_id,
)
from raftcron.core.results import Reject
from raftcron.core.state import Ok, Rejected, State
from raftcron.core.transitions_doc import DOC, render

T0 = 1_800_000_000_000
CORE = Path(raftcron.core.__file__).parent


def test_the_document_is_generated_from_the_table() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/run-lifecycle.md is out of date: python -m raftcron.core.transitions_doc"
    )


def test_the_table_names_every_status_and_only_known_causes() -> None:
    statuses = FINAL_STATUSES | LIVE_STATUSES | WAITING_STATUSES
    assert set(tr.RUN_TRANSITIONS) == statuses | {tr.NONE}
    targets = {to for row in tr.RUN_TRANSITIONS.values() for to in row}
    assert targets == statuses | {tr.NONE}
    commands = {cls.__name__ for cls in c.Command.__args__}  # type: ignore[attr-defined]
    for row in tr.RUN_TRANSITIONS.values():
        for causes in row.values():
            assert causes and causes <= set(tr.CAUSES)
    assert set(tr.CAUSES) - {tr.SETTLE, tr.TRIM} <= commands
    # a final record never changes status: it only leaves the ledger
    for status in FINAL_STATUSES:
        assert tr.RUN_TRANSITIONS[status] == {tr.NONE: frozenset({tr.TRIM})}


def test_check_transition_allows_the_table_and_nothing_else() -> None:
    tr.check_transition("j@1", "claimed", "running", "Start")
    with pytest.raises(tr.IllegalTransition, match=r"j@1: running -> claimed by Start"):
        tr.check_transition("j@1", "running", "claimed", "Start")
    # (a plan makes a claim running only for an armed fire whose start committed ahead)
    tr.check_transition("j@1", "claimed", "running", "Plan")
    with pytest.raises(tr.IllegalTransition, match=r"only by Plan, Start"):
        tr.check_transition("j@1", "claimed", "running", "Kill")


def test_an_illegal_transition_in_apply_is_an_internal_error_naming_it() -> None:
    s = State()
    spec = JobSpec(name="j", schedule="* * * * *", command=("true",))
    assert s.apply(c.PutJob(at_ms=T0, spec=spec)) == Ok("created")
    t = T0 + 60_000
    fire = c.Fire(job="j", scheduled_at_ms=t, node="a", trigger="schedule")
    s.apply(c.Plan(at_ms=t, fires=(fire,)))
    rid = run_id("j", t)
    assert s.runs[rid].status == "claimed"
    # a bug put on purpose: the record says missed while its lease is live
    s.runs[rid] = replace(s.runs[rid], status=MISSED)
    res = s.apply(
        c.Complete(
            at_ms=t + 5,
            run_id=rid,
            fence=1,
            node="a",
            status=SUCCEEDED,
            exit_code=0,
            started_ms=t,
            finished_ms=t + 5,
        )
    )
    assert isinstance(res, Rejected) and res.code == Reject.APPLY_FAILED == "apply_failed"
    assert res.message == (
        f"IllegalTransition: run {rid}: missed -> succeeded by Complete is not allowed "
        "(no such transition)"
    )
    assert s.runs[rid].status == MISSED  # nothing was written for the run


def _writes_runs(node: ast.AST) -> bool:
    """``x.runs[...] = ...``, ``del x.runs[...]`` or ``x.runs.pop(...)``/``.clear()``."""
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        return any(
            isinstance(t, ast.Subscript)
            and isinstance(t.value, ast.Attribute)
            and t.value.attr == "runs"
            for t in targets
        )
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("pop", "clear", "update", "setdefault", "popitem")
        and isinstance(node.func.value, ast.Attribute)
        and node.func.value.attr == "runs"
    )


def test_every_write_of_a_run_record_goes_through_the_one_function() -> None:
    allowed = {("ledger.py", "_transition"), ("snapshot.py", "restore_into")}
    offenders = []
    for path in sorted(CORE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                if _writes_runs(node) and (path.name, fn.name) not in allowed:
                    offenders.append(f"{path.name}:{node.lineno} in {fn.name}")
    assert offenders == []


def test_core_rejects_only_with_reject_codes() -> None:
    """Rejection codes are ``Reject`` members in core (their values are the wire strings)."""
    offenders = []
    for path in sorted(CORE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Rejected"
                and node.args
                and not (
                    isinstance(node.args[0], ast.Attribute)
                    and isinstance(node.args[0].value, ast.Name)
                    and node.args[0].value.id == "Reject"
                )
            ):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
    assert len({m.value for m in Reject}) == len(Reject)  # no two names for one code
