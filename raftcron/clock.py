"""The only module that reads time (``tests/unit/test_clock_reads.py`` checks it), but
for the watchdog (``executor/watchdog.py``), a process of its own that imports only the
standard library: it reads CLOCK_MONOTONIC, system-wide, so its deadlines are this
module's :func:`monotonic` values.

Code that can be given a clock is handed a :class:`Clock`; the rest (deadlines of a CLI
call, connection idle timers, the watchdog process) reads it through :func:`monotonic`,
:func:`wall_ms` and :func:`utc_now` here. ``wall_ms`` stamps commands (cluster time),
``monotonic`` measures leases and timeouts. Tests pass a :class:`FakeClock`; the chaos
suite's agents run a :class:`ControlledClock` (put in by the test harness,
:mod:`raftcron.hooks`): the content of a control file (seconds, a float) is added to the
wall clock, so a node's clock can be jumped or strobed from outside the process.
"""

from __future__ import annotations

import time

# ``raftcron lock``'s fast path imports this module: no typing, pathlib or datetime at run
# time (mypy reads the block below).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime
    from pathlib import Path
    from typing import Protocol
else:
    Protocol = object


def monotonic() -> float:
    """Seconds on CLOCK_MONOTONIC (system-wide; the event loop's clock)."""
    return time.monotonic()


def wall_ms() -> int:
    """Milliseconds since the Unix epoch, from the system's wall clock."""
    return time.time_ns() // 1_000_000


def wall_s() -> float:
    """Seconds since the Unix epoch, to the microsecond (a run's timeline, when traced:
    comparable with the watchdog's ``time.time()`` and with the job's own timestamps)."""
    return time.time()


def utc_now() -> datetime.datetime:
    """The wall clock as an aware UTC datetime."""
    import datetime

    return datetime.datetime.now(datetime.UTC)


class Clock(Protocol):
    def wall_ms(self) -> int:
        """Milliseconds since the Unix epoch (may jump: NTP, operators, chaos tests)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (CLOCK_MONOTONIC, system-wide)."""
        ...


class SystemClock:
    def wall_ms(self) -> int:
        return wall_ms()

    def monotonic(self) -> float:
        return monotonic()


class ControlledClock(SystemClock):
    """The system clock plus an offset read from a control file (chaos tests only)."""

    def __init__(self, control: Path) -> None:
        self._control = control
        self._checked = -1.0
        self._offset_ms = 0

    def wall_ms(self) -> int:
        now = monotonic()
        if now - self._checked > 0.05:
            self._checked = now
            try:
                self._offset_ms = int(float(self._control.read_text().strip() or 0) * 1000)
            except (OSError, ValueError):
                self._offset_ms = 0
        return super().wall_ms() + self._offset_ms


class FakeClock:
    """A clock for tests: moves only when told to, never backwards unless told to jump."""

    def __init__(self, wall_ms: int = 1_700_000_000_000, mono: float = 1000.0) -> None:
        self._wall_ms = wall_ms
        self._mono = mono

    def wall_ms(self) -> int:
        return self._wall_ms

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("FakeClock.advance: time does not go backwards; use jump_wall")
        self._wall_ms += int(seconds * 1000)
        self._mono += seconds

    def jump_wall(self, seconds: float) -> None:
        """Jump only the wall clock (forwards or backwards), as NTP or an operator would."""
        self._wall_ms += int(seconds * 1000)


def system_clock() -> Clock:
    return SystemClock()
