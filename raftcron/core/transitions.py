"""The run lifecycle as a table: which status a run may move to, and what moves it
(docs/design.md, "The run lifecycle").

``RUN_TRANSITIONS[from][to]`` is the set of causes that may move a run from status
``from`` to status ``to``. A cause is the command being applied (its class name in
:mod:`raftcron.core.commands`), or one of two things that happen inside any apply:
``SETTLE`` (a parent's fire settled: the dependency worklist at the end of an apply) and
``TRIM`` (the history bound drops the oldest final records of a job). ``NONE`` stands
for "no record in the ledger": a run is created from it, and a record leaves the ledger
to it (trimmed, or a pending dependency fire taken by the plan that claims it under the
same run id).

Every change of a run's status in :class:`raftcron.core.state.State` goes through
``Ledger._transition``, which calls :func:`check_transition`; a move the table does not
allow raises :class:`IllegalTransition`, which ``State.apply`` answers as ``apply_failed``
(a bug, not an input error). A change that keeps the status (a paused record's count, a
reason appended, an output tail dropped) is not a transition. ``docs/run-lifecycle.md``
is generated from this table (``python -m raftcron.core.transitions_doc``).
"""

from __future__ import annotations

from typing import Final

from raftcron.core import commands as c
from raftcron.core.model import (
    BUFFERED,
    CLAIMED,
    FAILED,
    KILLED,
    LOST,
    MISSED,
    PAUSED,
    PENDING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
)

NONE: Final = "(none)"  # no record in the ledger

PUT_JOB: Final = c.PutJob.__name__
DELETE_JOB: Final = c.DeleteJob.__name__
SET_PAUSED: Final = c.SetPaused.__name__
SYNC_CONFIG: Final = c.SyncConfig.__name__
PLAN: Final = c.Plan.__name__
START: Final = c.Start.__name__
COMPLETE: Final = c.Complete.__name__
EXPIRE: Final = c.Expire.__name__
KILL: Final = c.Kill.__name__
SETTLE: Final = "(parent settled)"
TRIM: Final = "(history bound)"

# What each cause means, for the generated document.
CAUSES: Final[dict[str, str]] = {
    PLAN: "the leader's plan: a fire claimed, buffered, skipped, missed or paused; "
    "a buffered head, a due retry or a dependency fire claimed; an armed fire whose "
    "executor's start committed ahead is claimed and running at once",
    START: "the executor started the run's process (under its lease's fence)",
    COMPLETE: "the executor reported the run's end (under its lease's fence)",
    EXPIRE: "the leader expired the run's lease (its holder stopped renewing it)",
    KILL: "an operator's kill of a run that waits (a live run gets a stop request instead)",
    PUT_JOB: "a job's after changed: the fan-in fires it waited for are skipped",
    DELETE_JOB: "the job was deleted: what waits, and a claim not started, is skipped",
    SYNC_CONFIG: "a config sync that deletes a job or changes its after (as DeleteJob, PutJob)",
    SET_PAUSED: "the job was paused: what waits is recorded as paused",
    SETTLE: "a parent's fire settled (in any apply): the child's fire is pending, or "
    "skipped or paused",
    TRIM: "the history bound (in any apply that records a run): the oldest final records go",
}

_FINAL_BY_COMPLETE: Final = {s: frozenset({COMPLETE}) for s in (SUCCEEDED, FAILED, TIMED_OUT)}
_TRIMMED: Final = {NONE: frozenset({TRIM})}

RUN_TRANSITIONS: Final[dict[str, dict[str, frozenset[str]]]] = {
    NONE: {
        CLAIMED: frozenset({PLAN}),
        BUFFERED: frozenset({PLAN}),
        PENDING: frozenset({COMPLETE, EXPIRE, SETTLE}),  # a retry; a dependency fire
        MISSED: frozenset({PLAN}),
        PAUSED: frozenset({PLAN, SETTLE}),
        SKIPPED: frozenset({PLAN, PUT_JOB, SYNC_CONFIG, SETTLE}),
    },
    BUFFERED: {
        CLAIMED: frozenset({PLAN}),
        SKIPPED: frozenset({PLAN, DELETE_JOB, SYNC_CONFIG}),
        PAUSED: frozenset({SET_PAUSED}),
        KILLED: frozenset({KILL}),
    },
    PENDING: {
        CLAIMED: frozenset({PLAN}),
        SKIPPED: frozenset({PLAN, DELETE_JOB, SYNC_CONFIG}),
        PAUSED: frozenset({SET_PAUSED}),
        KILLED: frozenset({KILL}),
        NONE: frozenset({PLAN}),  # a dependency fire taken, recorded again under its id
    },
    CLAIMED: {
        RUNNING: frozenset({START, PLAN}),  # PLAN: an armed fire whose start committed ahead
        **_FINAL_BY_COMPLETE,
        KILLED: frozenset({COMPLETE}),
        LOST: frozenset({COMPLETE, EXPIRE}),
        SKIPPED: frozenset({DELETE_JOB, SYNC_CONFIG}),  # deleted before it started
    },
    RUNNING: {
        **_FINAL_BY_COMPLETE,
        KILLED: frozenset({COMPLETE}),
        LOST: frozenset({COMPLETE, EXPIRE}),
    },
    SUCCEEDED: _TRIMMED,
    FAILED: _TRIMMED,
    TIMED_OUT: _TRIMMED,
    LOST: _TRIMMED,
    KILLED: _TRIMMED,
    MISSED: _TRIMMED,
    SKIPPED: _TRIMMED,
    PAUSED: _TRIMMED,
}


class IllegalTransition(Exception):
    """A run's status change the table does not allow: a bug in the state machine."""


def check_transition(run_id: str, frm: str, to: str, cause: str) -> None:
    """Raise :class:`IllegalTransition` unless ``cause`` may move a run ``frm`` -> ``to``."""
    allowed = RUN_TRANSITIONS.get(frm, {}).get(to)
    if allowed is None or cause not in allowed:
        why = "no such transition" if allowed is None else f"only by {', '.join(sorted(allowed))}"
        raise IllegalTransition(
            f"run {run_id}: {frm} -> {to} by {cause or '(no command)'} is not allowed ({why})"
        )
