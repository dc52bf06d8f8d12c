"""The replicated data model: jobs, runs, leases.

Invariants this module guarantees:

* Every record is a frozen, slotted, keyword-only dataclass. Records are never mutated;
  ``apply`` replaces them. That lets a snapshot copy the containers shallowly while the
  tick thread keeps applying.
* Times are integers: milliseconds since the Unix epoch, UTC (``*_ms``). No ``datetime``
  in the replicated state, so encodings are stable byte for byte.
* A run id is derived from the fire: ``run_id(job, scheduled_at_ms)``; it is never random.

This module must never read a clock, draw a random number or do I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

OVERLAP_POLICIES: Final = ("allow", "skip")
DEFAULT_LEASE_MS: Final = 30_000
DEFAULT_HISTORY: Final = 100
DEFAULT_CATCHUP_MS: Final = 60_000
# A fire is never "missed" for being late by less than this, whatever catchup says.
CATCHUP_FLOOR_MS: Final = 1_000
# Output tails are kept on the newest OUTPUT_KEEP final runs of each job only.
OUTPUT_KEEP: Final = 5
OUTPUT_TAIL_BYTES: Final = 64 * 1024

# Run statuses (DESIGN.md section 6). Final statuses never change again.
CLAIMED: Final = "claimed"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
TIMED_OUT: Final = "timed_out"
LOST: Final = "lost"
MISSED: Final = "missed"
SKIPPED: Final = "skipped"
LIVE_STATUSES: Final = frozenset({CLAIMED, RUNNING})
FINAL_STATUSES: Final = frozenset({SUCCEEDED, FAILED, TIMED_OUT, LOST, MISSED, SKIPPED})
COMPLETION_STATUSES: Final = frozenset({SUCCEEDED, FAILED, TIMED_OUT, LOST})

# Why a run exists.
TRIGGER_SCHEDULE: Final = "schedule"
TRIGGER_CATCHUP: Final = "catchup"
TRIGGER_MANUAL: Final = "manual"


def run_id(job: str, scheduled_at_ms: int, attempt: int = 1) -> str:
    """The run id of a fire: ``job@scheduled_at_ms`` (``.N`` appended for retry N > 1)."""
    base = f"{job}@{scheduled_at_ms}"
    return base if attempt == 1 else f"{base}.{attempt}"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """A job definition as the user wrote it (one ``[[jobs]]`` table), validated."""

    name: str
    schedule: str
    command: tuple[str, ...]
    timezone: str = "UTC"
    timeout_ms: int | None = None
    overlap: str = "allow"
    catchup_ms: int = DEFAULT_CATCHUP_MS
    retries: int = 0
    tags: tuple[tuple[str, str], ...] = ()
    lease_ms: int = DEFAULT_LEASE_MS
    env: tuple[tuple[str, str], ...] = ()
    cwd: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    """A job in the replicated state: the spec plus what the cluster knows about it.

    ``watermark_ms`` is the latest scheduled fire the leader has considered (claimed,
    skipped or recorded as missed). No scheduled fire at or below it is ever claimed.
    """

    spec: JobSpec
    source: str = "api"  # "config" (from the TOML file, reconciled by the leader) or "api"
    paused: bool = False
    watermark_ms: int = 0
    created_ms: int = 0
    updated_ms: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One entry of the run ledger."""

    id: str
    job: str
    scheduled_at_ms: int
    status: str
    trigger: str = TRIGGER_SCHEDULE
    attempt: int = 1
    fence: int = 0
    node: str = ""
    claimed_ms: int = 0
    started_ms: int | None = None
    finished_ms: int | None = None
    exit_code: int | None = None
    output: str = ""
    reason: str = ""
    count: int = 1  # > 1 only for an aggregated "missed" record covering many fires
    start_token: str = ""  # which executor attempt started it (see commands.Start)

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """A fenced lease: on a run (key = run id) or, later, on a named lock.

    Leases carry no expiry time: the leader decides expiry on its own monotonic clock
    (DESIGN.md section 3) and commits an ``expire`` command naming the fence.
    """

    key: str
    fence: int
    holder: str
    lease_ms: int
    granted_ms: int


@dataclass(slots=True, kw_only=True)
class Counters:
    """Cluster facts that only ever grow; part of the replicated state."""

    fence: int = 0
    stale_rejections: int = 0
    runs_recorded: int = 0
    # Named counters that are cluster facts, e.g. "outcome/<job>/<status>" (see state.py).
    extra: dict[str, int] = field(default_factory=dict)
