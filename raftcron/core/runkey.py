"""The run-id grammar, parsed and formatted in one place.

A run id is derived from its fire, never random::

    job@scheduled_at_ms [variant] [~after] [~K] [.N]

* ``variant``: what tells a fire apart from another of the job at the same time: nothing
  (schedule, catch-up), ``~manual`` (a trigger) or ``~backfill-ID`` (ID: 1 to 32 of
  ``[A-Za-z0-9_-]``).
* ``~after``: a dependency run (its parents' scheduled time and variant).
* ``~K``: instance K > 1 of a fire with ``count`` > 1 (instance 1 has no suffix).
* ``.N``: attempt N > 1 (a retry).

A job name is ``[A-Za-z0-9._-]`` (no ``@`` or ``~``), so the grammar is unambiguous;
``~`` is safe in a URL path and a query. Pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Final

MANUAL: Final = "~manual"
BACKFILL_PREFIX: Final = "~backfill-"
DEPENDENCY_SUFFIX: Final = "~after"

_GRAMMAR: Final = re.compile(
    r"(?P<job>[^@~]+)@(?P<ms>-?[0-9]+)"
    r"(?P<variant>~manual|~backfill-[A-Za-z0-9_-]+)?"
    r"(?P<after>~after)?"
    r"(?:~(?P<instance>[0-9]+))?"
    r"(?:\.(?P<attempt>[0-9]+))?"
)


@dataclass(frozen=True, slots=True)
class RunKey:
    """A run id's parts. ``RunKey.parse(key.format()) == key`` for every key whose
    ``instance`` and ``attempt`` are at least 1 and whose ``variant`` is one of the three."""

    job: str
    scheduled_at_ms: int
    variant: str = ""  # "", "~manual" or "~backfill-ID"
    after: bool = False  # a dependency run
    instance: int = 1
    attempt: int = 1

    @classmethod
    def parse(cls, rid: str) -> RunKey | None:
        """The parts of ``rid``, or None if it is not a run id."""
        m = _GRAMMAR.fullmatch(rid)
        if m is None:
            return None
        return cls(
            job=m["job"],
            scheduled_at_ms=int(m["ms"]),
            variant=m["variant"] or "",
            after=m["after"] is not None,
            instance=int(m["instance"]) if m["instance"] else 1,
            attempt=int(m["attempt"]) if m["attempt"] else 1,
        )

    def format(self) -> str:
        out = f"{self.job}@{self.scheduled_at_ms}{self.variant}"
        if self.after:
            out += DEPENDENCY_SUFFIX
        if self.instance != 1:
            out += f"~{self.instance}"
        if self.attempt != 1:
            out += f".{self.attempt}"
        return out

    def __str__(self) -> str:
        return self.format()

    @property
    def fire(self) -> RunKey:
        """The fire this run belongs to: its first instance's first attempt."""
        return replace(self, instance=1, attempt=1)
