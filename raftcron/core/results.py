"""What applying a command answers: ``Ok(value)`` or ``Rejected(code, message)``.

The rejection codes are :class:`Reject` members. They are ``str`` values (``StrEnum``):
the API, the CLI and the logs carry exactly the strings they always did, and a code
compares equal to its string (``Reject.STALE_FENCE == "stale_fence"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Reject(StrEnum):
    """Every code ``State.apply`` rejects a command (or one fire of a plan) with."""

    # the command as a whole
    APPLY_FAILED = "apply_failed"  # a bug in apply: the entry is answered, the replica lives
    BAD_ENTRY = "bad_entry"  # a log entry the replica cannot decode (raft/node.py)
    NO_RESULT = "no_result"  # pysyncobj answered a committed entry with nothing
    BAD_COMMAND = "bad_command"
    UNKNOWN_JOB = "unknown_job"
    UNKNOWN_RUN = "unknown_run"
    DEPENDENCY_CYCLE = "dependency_cycle"
    STALE = "stale"  # MarkBroken: the job changed since the leader evaluated it
    STALE_FENCE = "stale_fence"
    ALREADY_STARTED = "already_started"
    BAD_STATUS = "bad_status"
    RENEWED = "renewed"
    NOT_RUNNING = "not_running"
    BAD_BACKFILL = "bad_backfill"
    BACKFILL_RUNNING = "backfill_running"
    NO_BACKFILL = "no_backfill"
    BAD_DRAIN = "bad_drain"
    BAD_REPORT = "bad_report"
    # membership (State.members)
    BAD_MEMBER = "bad_member"
    MEMBERS_NOT_SEEDED = "members_not_seeded"
    CHANGE_IN_PROGRESS = "change_in_progress"
    MEMBER_CLASH = "member_clash"
    UNKNOWN_MEMBER = "unknown_member"
    LAST_MEMBER = "last_member"
    # locks
    INVALID = "invalid"
    LOCKED = "locked"
    QUEUE_FULL = "queue_full"
    REQUEST_DONE = "request_done"
    # one fire of a plan (``PlanOutcome.rejected``)
    ALREADY_CONSIDERED = "already_considered"
    NOT_PAUSED = "not_paused"
    DRAINED = "drained"
    BAD_INSTANCE = "bad_instance"
    NO_FIRST_INSTANCE = "no_first_instance"
    NOT_PENDING = "not_pending"
    DUPLICATE = "duplicate"
    NOT_BUFFERED = "not_buffered"
    NOT_DUE = "not_due"
    NOT_NEXT = "not_next"
    BUSY = "busy"
    TOO_SOON = "too_soon"
    # one fire of an arm (``ArmOutcome.rejected``)
    NOT_ARMABLE = "not_armable"
    NOT_AHEAD = "not_ahead"


@dataclass(frozen=True, slots=True)
class Ok:
    value: Any = None


@dataclass(frozen=True, slots=True)
class Rejected:
    code: Reject
    message: str = ""


Result = Ok | Rejected
