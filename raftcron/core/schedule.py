"""Cron schedules: parse an expression once, then compute fire instants.

Invariants this module guarantees:

* Pure and deterministic. Nothing here reads a clock, draws a random number, starts a thread
  or does I/O of its own; the only outside input is the IANA time-zone database that
  ``zoneinfo`` loads (once per zone). The same expression, zone and ``after_ms`` always give
  the same answer for a given tzdata version. Imports are limited to the standard library
  (``datetime``, ``zoneinfo``, ``dataclasses``, ``functools``, ``calendar``, ``re``,
  ``typing``).
* Instants are integers: milliseconds since the Unix epoch, UTC. Every fire falls on a whole
  second. ``next_after(t)`` is always ``> t``, so calling it repeatedly with its own result
  yields a strictly increasing sequence that never repeats an instant.
* Fire times are computed by a field-wise carry search (next matching second, then minute,
  hour, day, month, year), never by stepping through time one second at a time, so
  ``* * * * * *`` and ``0 0 29 2 *`` are both cheap.

Syntax
------
Five fields ``minute hour day-of-month month day-of-week`` (the second is 0), or six fields
with the seconds LAST: ``minute hour day-of-month month day-of-week second`` (croniter's
convention: ``* * * * * 15`` is second 15 of every minute). Each field is a comma list of
``*``, ``N``, ``A-B``, ``*/S``, ``A-B/S`` or ``A/S`` (from ``A`` up to the field's maximum,
step ``S``; in day-of-week ``A/S`` stops at Saturday, as in croniter). Months may be written
``JAN``-``DEC`` and weekdays ``SUN``-``SAT`` (any case); day-of-week accepts 0-7 where both
0 and 7 are Sunday. ``?`` alone means ``*`` in day-of-month and day-of-week. Aliases:
``@yearly``/``@annually`` (``0 0 1 1 *``), ``@monthly`` (``0 0 1 * *``), ``@weekly``
(``0 0 * * 0``), ``@daily``/``@midnight`` (``0 0 * * *``) and ``@hourly`` (``0 * * * *``).

Calendar forms (croniter's spelling and meaning, any case), each one list item:

* ``L`` in day-of-month: the last day of the month (``0 0 L * *``; ``1,L`` and ``15,L``
  combine with days).
* ``L5`` in day-of-week: the last Friday of the month (``L0``-``L7``); Quartz's ``5L`` is the
  same (croniter refuses it; raftcron reads it as ``L5``).
* ``1#2`` in day-of-week: the second Monday of the month (``W#N``: weekday ``W`` 0-7 or
  ``SUN``-``SAT``, ``N`` 1-5; a fifth one only fires in months that have it). Several may be
  listed (``1#1,1#3``, ``L5,1#1``).

``L5`` and ``1#2`` cannot be listed beside plain weekdays (``1#2,5``) nor combined with a
restricted day-of-month (``15 * 1#2``): croniter refuses the first and, for the second,
ignores the day-of-month or finds no date, so neither has a meaning to keep. ``L-2``,
``L/2``, ``LW``, ``15W``, ``L`` alone in day-of-week and a range before ``#`` are refused.

``@every <duration>`` (Dkron's form, e.g. ``@every 90s``, ``@every 1h30m``; units ``ms``,
``s``, ``m``, ``h``, ``d``; a whole number of seconds, at least 1s) is not a cron expression:
it fires at ``anchor + k * every`` for k = 1, 2, ..., where the anchor is an instant the
caller gives (a job's creation, truncated to the whole second). It counts real time, so time
zones and daylight saving time do not change it. :func:`schedule_for` builds either kind;
:func:`parse` builds cron schedules only.

Day rule (Vixie cron, as croniter implements it): a day-of-month or day-of-week field is
*unrestricted* only when written exactly ``*`` or ``?``. When both are restricted, a day
matches if EITHER matches (``0 0 1 * MON`` fires on the 1st and on every Monday;
``0 0 L * FRI`` on the last day and on every Friday). Note that
``*/2`` counts as restricted, like croniter (Vixie cron would treat it as ``*``), and so does
a field that happens to cover every value (``*/1``, ``1-31``, ``0-7``). croniter differs in
that last corner: it reads such a field as ``*`` when the other day field contains a ``*``.

Rejected with a one-line :class:`ScheduleError`: other field counts, empty fields and list
items, out-of-range values, reversed ranges (``22-2``), step 0 or a step wider than the
field, ``H`` / ``R`` / ``W`` and the ``L``/``#`` forms above outside their places, unknown
names and aliases, unknown time zones, and schedules that can never fire (``0 0 31 2 *``:
day 31 never occurs in February). A six-field expression that fails but would be valid
with its first field moved to the end (seconds-first, as Quartz, Spring and Dkron write it)
says so in its message; :func:`field_order_warning` flags the valid ones that read like
seconds-first (``*/10 * * * * *``).

Time zones and daylight saving time
-----------------------------------
Fields are matched against the local wall time of the schedule's IANA zone.

* Gap (spring forward: a local wall time does not exist), ``on_gap``:

  - ``"shift"`` (default): the fire happens at the first real instant after the gap, i.e. the
    transition instant itself. Several fires inside one gap collapse into that one instant
    (and into a fire scheduled at the wall time where the gap ends, which is the same
    instant). Berlin, 2026-03-29: ``30 2 * * *`` fires at 03:00 CEST = 01:00Z.
  - ``"skip"``: wall times inside the gap simply do not fire.

* Repeat (fall back: a local wall time occurs twice), ``on_repeat``:

  - ``"once"`` (default): fire only at the first occurrence (``fold=0``, the earlier
    instant). Berlin, 2026-10-25: ``30 2 * * *`` fires at 02:30 CEST = 00:30Z only.
  - ``"twice"``: fire at both occurrences (also at 02:30 CET = 01:30Z). Fires are still
    reported in instant order: all first occurrences of the repeated hour come before all
    second occurrences.

A fire is never returned twice and ``after_ms`` may be any instant, including one inside the
second occurrence of a repeated hour.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "CronSchedule",
    "EverySchedule",
    "Schedule",
    "ScheduleError",
    "field_order_warning",
    "parse",
    "schedule_for",
]

ON_GAP_MODES: Final = ("shift", "skip")
ON_REPEAT_MODES: Final = ("once", "twice")

_ALIASES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_ALIAS_LIST: Final = (
    "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>"
)

_MONTH_NAMES: Final = {
    name: i
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
_DOW_NAMES: Final = {
    name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
}
_MONTH_LONG: Final = (
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# Longest each month can be (February 29 exists in leap years).
_MAX_DAYS: Final = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

_UNSUPPORTED: Final = {
    "H": "Jenkins-style hashed values; write a fixed value",
    "R": "random values; write a fixed value",
    "L": "L alone in day-of-month is the last day, L5 in day-of-week the last Friday",
    "W": "'nearest weekday'; list the days explicitly",
    "LW": "'last weekday'; list the days explicitly",
}
# Day-of-week list items: "L5" / "5L" (the last Friday), "1#2" / "MON#2" (the second Monday).
_LAST_DOW: Final = re.compile(r"[Ll](\d+)|(\d+)[Ll]")
_NTH_DOW: Final = re.compile(r"([0-9]+|[A-Za-z]+)#([0-9]+)")
_LAST: Final = -1  # "n" of the last such weekday of the month, in nth_days_of_week

_LETTERS: Final = re.compile(r"[A-Za-z]+")
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_MAX_YEAR: Final = 9999
# _DIM_MASK[n]: bits 1..n set (days 1..n of a month with n days).
_DIM_MASK: Final = tuple((1 << (n + 1)) - 2 for n in range(32))
# @every: the units of its duration (the config file's), and how long it may be.
_EVERY_PART: Final = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d)")
_EVERY_UNIT_MS: Final = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_EVERY_MAX_MS: Final = 3650 * 86_400_000
_LAST_MS: Final = 253_402_300_799_000  # 9999-12-31T23:59:59Z, the last instant a fire may have


class ScheduleError(ValueError):
    """A cron expression, time zone or DST option that cannot be used.

    ``str(e)`` is a one-line message naming the field and how to fix it.
    """


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    lo: int
    hi: int
    names: dict[str, int] | None = None
    allow_question: bool = False

    @property
    def range_text(self) -> str:
        if self.name == "month":
            return "1-12 (or JAN-DEC)"
        if self.name == "day-of-week":
            return "0-7 (0 and 7 are Sunday, or SUN-SAT)"
        return f"{self.lo}-{self.hi}"

    @property
    def max_step(self) -> int:
        # Day-of-week 0-7 covers only 7 distinct days.
        return 7 if self.name == "day-of-week" else self.hi - self.lo + 1


_MINUTE: Final = _Field("minute", 0, 59)
_HOUR: Final = _Field("hour", 0, 23)
_DOM: Final = _Field("day-of-month", 1, 31, allow_question=True)
_MONTH: Final = _Field("month", 1, 12, _MONTH_NAMES)
_DOW: Final = _Field("day-of-week", 0, 7, _DOW_NAMES, allow_question=True)
_SECOND: Final = _Field("second", 0, 59)
_FIELDS: Final = {f.name: f for f in (_MINUTE, _HOUR, _DOM, _MONTH, _DOW, _SECOND)}


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed cron schedule in one time zone. Build it with :func:`parse`.

    The public field sets are sorted tuples: ``seconds`` 0-59, ``minutes`` 0-59, ``hours``
    0-23, ``days_of_month`` 1-31, ``months`` 1-12, ``days_of_week`` 0-6 (0 = Sunday).
    ``dom_restricted``/``dow_restricted`` say whether that field was anything but ``*``/``?``.
    ``last_day_of_month``: day-of-month lists ``L``. ``nth_days_of_week``: the ``1#2`` and
    ``L5`` items of day-of-week as sorted ``(weekday 0-6, n)`` pairs, ``n`` 1-5 or -1 for
    the last (``1#2`` is ``(1, 2)``, ``L5`` is ``(5, -1)``).
    """

    expr: str
    timezone: str
    has_seconds: bool
    on_gap: str
    on_repeat: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: tuple[int, ...]
    months: tuple[int, ...]
    days_of_week: tuple[int, ...]
    dom_restricted: bool
    dow_restricted: bool
    last_day_of_month: bool
    nth_days_of_week: tuple[tuple[int, int], ...]
    # Precomputed lookups (derived from the fields above).
    _tz: ZoneInfo = field(repr=False, compare=False)
    _next_second: tuple[int, ...] = field(repr=False, compare=False)
    _next_minute: tuple[int, ...] = field(repr=False, compare=False)
    _next_hour: tuple[int, ...] = field(repr=False, compare=False)
    _next_month: tuple[int, ...] = field(repr=False, compare=False)
    # Bit d set: day d matches, indexed by (weekday of the 1st, Monday = 0) * 4 + days - 28.
    _day_masks: tuple[int, ...] = field(repr=False, compare=False)
    # The last ``(after_ms, next_after(after_ms))`` computed, as one item (one store, so a
    # reader on another thread sees a whole pair). Parsed schedules are shared (cached by
    # expression), and jobs with the same schedule that fired together share their
    # watermark: a leader scheduling 100,000 such jobs computes it once, not 100,000 times
    # (about 20 us each). A memo of a pure function: results are the same with or without.
    _memo: list[tuple[int, int] | None] = field(
        default_factory=lambda: [None], init=False, repr=False, compare=False
    )

    # ------------------------------------------------------------------ public API

    def next_after(self, after_ms: int) -> int:
        """The first fire strictly after ``after_ms`` (epoch ms, UTC), as epoch ms.

        Raises ``ValueError`` if ``after_ms`` is outside the years 1-9999 or no fire
        exists before the end of year 9999.
        """
        last = self._memo[0]
        if last is not None and last[0] == after_ms:
            return last[1]
        t0 = after_ms // 1000 + 1  # first whole second strictly after after_ms
        try:
            local = datetime.fromtimestamp(t0, self._tz)
        except (OverflowError, ValueError, OSError) as exc:
            raise ValueError(f"after_ms {after_ms} is outside the supported years") from exc
        out = self._next_from(t0, local) * 1000
        self._memo[0] = (after_ms, out)
        return out

    def fires_between(self, after_ms: int, until_ms: int, limit: int) -> list[int]:
        """Fires ``t`` with ``after_ms < t <= until_ms``, ascending, at most ``limit``.

        Element ``i + 1`` is exactly ``next_after(element i)``.
        """
        out: list[int] = []
        t = after_ms
        while len(out) < limit and t < until_ms:
            try:
                t = self.next_after(t)
            except ValueError:  # no fire before year 10000: nothing more to report
                break
            if t > until_ms:
                break
            out.append(t)
        return out

    # ------------------------------------------------------------------ search

    def _next_from(self, t0: int, local: datetime) -> int:
        """First fire instant (epoch seconds) at or after ``t0``; ``local`` is t0's wall."""
        off = _offset(local)
        other = _offset(local.replace(fold=1 - local.fold))
        start = (local.year, local.month, local.day, local.hour, local.minute, local.second)
        if self.on_gap == "shift":
            # If t0 is exactly the end of a gap, fires in that gap shift onto t0 itself.
            before = _offset(datetime.fromtimestamp(t0 - 1, self._tz))
            if before < off:
                found = self._next_wall(_wall_fields(t0 + before))
                if found is not None and _fields_wall(found) < t0 + off:
                    return t0
        if off == other:  # an ordinary wall time: scan forward in wall time
            return self._scan(start)

        # t0 lies inside a repeated hour (fall back). old = offset before, new = after.
        old, new = (off, other) if local.fold == 0 else (other, off)
        wall_t0 = t0 + off
        trans = self._transition(wall_t0 - old, wall_t0 - new)
        rep_start, rep_end = trans + new, trans + old  # repeated walls: [rep_start, rep_end)

        if self.on_repeat == "once":
            if local.fold == 0:
                # Remaining first occurrences still count; they map monotonically.
                return self._scan(start)
            # Second occurrence: repeated walls already fired, resume where the repeat ends.
            return self._scan(_wall_fields(rep_end))

        # on_repeat == "twice": the instant order is first occurrences, then second ones.
        found = self._next_wall(start)
        if local.fold == 1:
            if found is not None and _fields_wall(found) < rep_end:
                return _fields_wall(found) - new
            return self._scan(_wall_fields(rep_end))
        if found is not None and _fields_wall(found) < rep_end:
            return _fields_wall(found) - old
        # No first occurrence left; the earliest second occurrence (if any) comes next.
        again = self._next_wall(_wall_fields(rep_start))
        if again is not None and _fields_wall(again) < rep_end:
            return _fields_wall(again) - new
        return self._scan(_wall_fields(rep_end))

    def _scan(self, start: tuple[int, int, int, int, int, int]) -> int:
        """First fire from wall time ``start`` on, treating repeated walls as fold=0."""
        fields = start
        while True:
            found = self._next_wall(fields)
            if found is None:
                raise ValueError(f"{self.expr!r} has no fire before the year {_MAX_YEAR + 1}")
            y, mo, d, h, mi, s = found
            wall = _fields_wall(found)
            dt = datetime(y, mo, d, h, mi, s, tzinfo=self._tz)
            off0 = _offset(dt)
            off1 = _offset(dt.replace(fold=1))
            if off0 >= off1:  # ordinary (equal) or repeated (first occurrence first)
                return wall - off0
            # A gap: the wall time does not exist. The transition lies in (wall-off1, wall-off0].
            trans = self._transition(wall - off1, wall - off0)
            if self.on_gap == "shift":
                return trans
            fields = _wall_fields(trans + off1)  # skip: resume at the wall where the gap ends

    def _transition(self, lo: int, hi: int) -> int:
        """The first instant in ``(lo, hi]`` whose UTC offset equals the one at ``hi``."""
        target = _offset(datetime.fromtimestamp(hi, self._tz))
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if _offset(datetime.fromtimestamp(mid, self._tz)) == target:
                hi = mid
            else:
                lo = mid
        return hi

    def _next_wall(
        self, start: tuple[int, int, int, int, int, int]
    ) -> tuple[int, int, int, int, int, int] | None:
        """The first matching local wall time >= ``start``, by carrying field by field."""
        y, mo, d, h, mi, s = start
        next_month, next_hour = self._next_month, self._next_hour
        next_minute, next_second = self._next_minute, self._next_second
        while y <= _MAX_YEAR:
            m2 = next_month[mo]
            if m2 < 0:  # no month left this year
                y, mo, d, h, mi, s = y + 1, 1, 1, 0, 0, 0
                continue
            if m2 != mo:
                mo, d, h, mi, s = m2, 1, 0, 0, 0
            d2 = self._next_day(y, mo, d)
            if d2 < 0:  # no day left this month
                mo, d, h, mi, s = mo + 1, 1, 0, 0, 0
                if mo > 12:
                    y, mo = y + 1, 1
                continue
            if d2 != d:
                d, h, mi, s = d2, 0, 0, 0
            h2 = next_hour[h]
            if h2 < 0:
                d, h, mi, s = d + 1, 0, 0, 0
                continue
            if h2 != h:
                h, mi, s = h2, 0, 0
            m3 = next_minute[mi]
            if m3 < 0:
                h, mi, s = h + 1, 0, 0
                continue
            if m3 != mi:
                mi, s = m3, 0
            s2 = next_second[s]
            if s2 < 0:
                mi, s = mi + 1, 0
                continue
            return y, mo, d, h, mi, s2
        return None

    def _next_day(self, y: int, mo: int, d: int) -> int:
        """The first matching day >= ``d`` in month ``mo`` of year ``y``, or -1."""
        first_weekday, ndays = calendar.monthrange(y, mo)  # Monday = 0
        mask = self._day_masks[first_weekday * 4 + ndays - 28] >> d << d  # days >= d
        if not mask:
            return -1
        return (mask & -mask).bit_length() - 1


# ---------------------------------------------------------------------- helpers


def _offset(dt: datetime) -> int:
    """UTC offset of an aware datetime in whole seconds."""
    off = dt.utcoffset()
    return 0 if off is None else off // timedelta(seconds=1)


def _fields_wall(f: tuple[int, int, int, int, int, int]) -> int:
    """Wall-clock fields as seconds since 1970-01-01T00:00 of that wall clock."""
    y, mo, d, h, mi, s = f
    return (date(y, mo, d).toordinal() - _EPOCH_ORDINAL) * 86400 + h * 3600 + mi * 60 + s


def _wall_fields(wall: int) -> tuple[int, int, int, int, int, int]:
    days, rem = divmod(wall, 86400)
    day = date.fromordinal(days + _EPOCH_ORDINAL)
    h, rem = divmod(rem, 3600)
    mi, s = divmod(rem, 60)
    return day.year, day.month, day.day, h, mi, s


@lru_cache(maxsize=1024)  # (few distinct value sets: schedules share their tables)
def _next_table(values: frozenset[int], size: int) -> tuple[int, ...]:
    """``table[i]`` = smallest value >= i, or -1; indexes 0..size."""
    out = [-1] * (size + 1)
    nxt = -1
    for i in range(size, -1, -1):
        if i in values:
            nxt = i
        out[i] = nxt
    return tuple(out)


def _span(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}-{b}"


def _join(words: list[str], last: str) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


# ---------------------------------------------------------------------- parsing


def _value(token: str, spec: _Field) -> int:
    if token.isdigit():
        v = int(token)
    else:
        upper = token.upper()
        if spec.names is not None and upper in spec.names:
            return spec.names[upper]
        if spec.name == "month":
            raise ScheduleError(f"unknown month name {token!r} (use JAN-DEC or 1-12)")
        if spec.name == "day-of-week":
            raise ScheduleError(f"unknown day-of-week name {token!r} (use SUN-SAT or 0-7)")
        raise ScheduleError(f"{spec.name} must be a number {spec.range_text}, got {token!r}")
    if not spec.lo <= v <= spec.hi:
        raise ScheduleError(f"{spec.name} must be {spec.range_text}, got {v}")
    return v


def _parse_item(item: str, spec: _Field) -> set[int]:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit():
            raise ScheduleError(f"{spec.name} step must be a number, got {step_text!r} in {item!r}")
        step = int(step_text)
        if not 1 <= step <= spec.max_step:
            raise ScheduleError(f"{spec.name} step must be 1-{spec.max_step}, got {step}")
    if base == "*":
        lo, hi = spec.lo, (6 if spec.name == "day-of-week" else spec.hi)
    elif not base:
        raise ScheduleError(f"{spec.name} entry {item!r} is missing a value before '/'")
    else:
        first, dash, second = base.partition("-")
        if dash and (not first or not second):
            raise ScheduleError(f"{spec.name} range {item!r} needs a value on both sides of '-'")
        lo = _value(first, spec)
        if dash:
            hi = _value(second, spec)
            if lo > hi:
                if spec.name == "day-of-week":
                    fix = f"{lo}-7" if hi == 0 else f"{lo}-7,{_span(1, hi)}"
                else:
                    fix = f"{_span(lo, spec.hi)},{_span(spec.lo, hi)}"
                raise ScheduleError(f"{spec.name} range {base!r} is reversed; write {fix}")
        elif not slash:
            hi = lo
        elif spec.name == "day-of-week":  # 'A/S' runs up to Saturday; 7/S starts on Sunday
            lo, hi = lo % 7, 6
        else:
            hi = spec.hi  # 'A/S' means A up to the field's maximum
    values = set(range(lo, hi + 1, step))
    if spec.name == "day-of-week" and 7 in values:  # 7 is Sunday too
        values.discard(7)
        values.add(0)
    return values


@dataclass(frozen=True, slots=True)
class _Parsed:
    """One field: its plain values, whether it is restricted (not ``*``/``?``), and its
    calendar items (``L`` in day-of-month; ``1#2``, ``L5`` in day-of-week)."""

    values: frozenset[int]
    restricted: bool
    last: bool = False
    nth: frozenset[tuple[int, int]] = frozenset()


def _weekday(token: str, item: str) -> int:
    """A weekday 0-6 (7 is Sunday too) of a ``1#2``/``L5`` item."""
    if token.isdigit():
        v = int(token)
        if v > 7:
            raise ScheduleError(
                f"day-of-week {item!r}: the weekday must be 0-7 (0 and 7 are Sunday), got {v}"
            )
        return v % 7
    upper = token.upper()
    if upper not in _DOW_NAMES:
        raise ScheduleError(f"unknown day-of-week name {token!r} (use SUN-SAT or 0-7)")
    return _DOW_NAMES[upper]


def _calendar_item(item: str, spec: _Field) -> tuple[int, int] | None:
    """``(weekday, n)`` for a day-of-week ``1#2``/``L5``/``5L`` item, ``(0, _LAST)`` for
    ``L`` in day-of-month, None for any other item (left to :func:`_parse_item`)."""
    if spec is _DOM:
        if item in ("L", "l"):
            return 0, _LAST
        if "L" in item.upper() and not _LETTERS.fullmatch(item):
            raise ScheduleError(
                f"day-of-month entry {item!r} is not supported ('L' alone is the last day of "
                "the month; list other days explicitly)"
            )
        return None
    if spec is not _DOW:
        return None
    if "#" in item:
        m = _NTH_DOW.fullmatch(item)
        if m is None:
            raise ScheduleError(
                f"day-of-week entry {item!r} is not valid ('#' takes one weekday and a number "
                "1-5: 1#2 is the second Monday, FRI#1 the first Friday)"
            )
        n = int(m.group(2))
        if not 1 <= n <= 5:
            raise ScheduleError(
                f"day-of-week {item!r}: the number after '#' must be 1-5 (1#2 is the second "
                f"Monday), got {n}"
            )
        return _weekday(m.group(1), item), n
    m = _LAST_DOW.fullmatch(item)
    if m is not None:
        return _weekday(m.group(1) or m.group(2), item), _LAST
    if item in ("L", "l"):
        raise ScheduleError(
            "'L' alone is not supported in day-of-week (write L5 or 5L for the last Friday; "
            "L alone is the last day in day-of-month)"
        )
    if "L" in item.upper():  # (no weekday name has an L)
        raise ScheduleError(
            f"day-of-week entry {item!r} is not supported (L5 or 5L is the last Friday: one "
            "weekday number 0-7 with L)"
        )
    return None


@lru_cache(maxsize=4096)  # (fields repeat across expressions far more than expressions do)
def _parse_field(text: str, field_name: str) -> _Parsed:
    spec = _FIELDS[field_name]
    if text == "?":
        if not spec.allow_question:
            raise ScheduleError(
                f"'?' is only allowed in day-of-month and day-of-week, not in {spec.name}"
            )
        text = "*"
    elif "?" in text:
        raise ScheduleError(f"'?' must stand alone in {spec.name}, got {text!r}")
    plain: list[str] = []
    special: set[tuple[int, int]] = set()
    for item in text.split(","):
        found = _calendar_item(item, spec) if item else None
        if found is None:
            plain.append(item)
        else:
            special.add(found)
    rest = ",".join(plain)
    if "#" in rest:
        raise ScheduleError(
            f"'#' is only allowed in day-of-week, not in {spec.name} (1#2 is the second Monday)"
        )
    for run in _LETTERS.findall(rest):
        word = run.upper()
        if word in _UNSUPPORTED and not (spec.names and word in spec.names):
            raise ScheduleError(f"'{word}' is not supported in {spec.name} ({_UNSUPPORTED[word]})")
    for ch in rest:
        if not (ch.isascii() and (ch.isalnum() or ch in "*-/,")):
            raise ScheduleError(f"invalid character {ch!r} in {spec.name} {text!r}")
    values: set[int] = set()
    for item in plain:
        if not item:
            raise ScheduleError(f"{spec.name} has an empty list item in {text!r}")
        values |= _parse_item(item, spec)
    if spec is _DOM:
        return _Parsed(frozenset(values), text != "*", last=bool(special))
    if special and values:
        raise ScheduleError(
            f"day-of-week {text!r} lists plain weekdays beside '#' or 'L' items, which is not "
            "supported (croniter refuses it too): use two jobs"
        )
    return _Parsed(frozenset(values), text != "*", nth=frozenset(special))


def _check_fires(doms: frozenset[int], months: frozenset[int]) -> None:
    """Reject day-of-month/month combinations that never occur (day-of-week unrestricted)."""
    if any(d <= _MAX_DAYS[m] for d in doms for m in months):
        return
    days = sorted(doms)
    day_text = (
        f"day {days[0]} never occurs"
        if len(days) == 1
        else (f"days {_join([str(d) for d in days], 'and')} never occur")
    )
    month_text = _join([_MONTH_LONG[m] for m in sorted(months)], "or")
    raise ScheduleError(f"never fires ({day_text} in {month_text})")


def _load_zone(timezone: str) -> ZoneInfo:
    hint = "(use an IANA name such as Europe/Berlin)"
    if not timezone or timezone != timezone.strip():
        raise ScheduleError(f"unknown timezone {timezone!r} {hint}")
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ScheduleError(f"unknown timezone {timezone!r} {hint}") from exc


@lru_cache(maxsize=1024)
def _day_masks(dom: _Parsed, dow: _Parsed) -> tuple[int, ...]:
    """Which days match, per (weekday of the 1st, Monday = 0) * 4 + (days in month - 28)."""
    dom_mask = sum(1 << d for d in dom.values)
    masks = []
    for monday0 in range(7):
        first = (monday0 + 1) % 7  # cron weekday (0 = Sunday) of the month's 1st
        week = sum(1 << d for d in range(1, 8) if (first + d - 1) % 7 in dow.values)
        plain = week | week << 7 | week << 14 | week << 21 | week << 28  # days 1-35
        for ndays in range(28, 32):
            days = dom_mask | ((1 << ndays) if dom.last else 0)
            weekdays = plain
            for weekday, n in dow.nth:
                day = 1 + (weekday - first) % 7  # its first occurrence
                day = day + 7 * ((ndays - day) // 7) if n == _LAST else day + 7 * (n - 1)
                weekdays |= 1 << day if day <= ndays else 0
            if dom.restricted and dow.restricted:
                mask = days | weekdays
            elif dom.restricted:
                mask = days
            elif dow.restricted:
                mask = weekdays
            else:
                mask = _DIM_MASK[31]
            masks.append(mask & _DIM_MASK[ndays])
    return tuple(masks)


def _check_modes(on_gap: str, on_repeat: str) -> None:
    if on_gap not in ON_GAP_MODES:
        raise ScheduleError(f"on_gap must be 'shift' or 'skip', got {on_gap!r}")
    if on_repeat not in ON_REPEAT_MODES:
        raise ScheduleError(f"on_repeat must be 'once' or 'twice', got {on_repeat!r}")


def _fields(expr: str) -> list[str]:
    """The expression's fields (an alias expanded); ScheduleError for a wrong count."""
    text = expr.strip()
    if text.startswith("@"):
        alias = text.lower()
        if alias not in _ALIASES:
            if alias == "@reboot":
                raise ScheduleError(f"'@reboot' is not supported (use {_ALIAS_LIST})")
            if alias.split()[0] == "@every":
                raise ScheduleError(
                    "'@every' is not a cron expression (it counts from a job's creation; give it "
                    "as a job's schedule)"
                )
            raise ScheduleError(f"unknown alias {text!r} (use {_ALIAS_LIST})")
        text = _ALIASES[alias]
    parts = text.split()
    if len(parts) not in (5, 6):
        extra = "; a year field is not supported" if len(parts) == 7 else ""
        raise ScheduleError(
            f"expected 5 or 6 fields, got {len(parts)} "
            f"(minute hour day-of-month month day-of-week [second]{extra})"
        )
    return parts


def _parse_parts(parts: list[str]) -> tuple[_Parsed, ...]:
    """The six fields (minute, hour, day-of-month, month, day-of-week, second) checked."""
    minutes = _parse_field(parts[0], "minute")
    hours = _parse_field(parts[1], "hour")
    doms = _parse_field(parts[2], "day-of-month")
    months = _parse_field(parts[3], "month")
    dows = _parse_field(parts[4], "day-of-week")
    seconds = _parse_field(parts[5] if len(parts) == 6 else "0", "second")
    if dows.nth and doms.restricted:
        item = next(i for i in parts[4].split(",") if "#" in i or "L" in i.upper())
        raise ScheduleError(
            f"day-of-week {item!r} cannot be combined with a restricted day-of-month "
            f"({parts[2]!r}): write '*' or '?' in day-of-month, or use two jobs"
        )
    if doms.restricted and not dows.restricted and not doms.last:
        _check_fires(doms.values, months.values)
    return minutes, hours, doms, months, dows, seconds


def _seconds_first(parts: list[str]) -> str | None:
    """The six fields with the first moved to the end (seconds-first read as raftcron's
    seconds-last), if that is a valid expression; else None."""
    if len(parts) != 6:
        return None
    moved = [*parts[1:], parts[0]]
    try:
        _parse_parts(moved)
    except ScheduleError:
        return None
    return " ".join(moved)


@lru_cache(maxsize=4096)
def _parse_cached(expr: str, timezone: str, on_gap: str, on_repeat: str) -> CronSchedule:
    _check_modes(on_gap, on_repeat)
    parts = _fields(expr)
    try:
        minutes, hours, doms, months, dows, seconds = _parse_parts(parts)
    except ScheduleError as exc:
        fix = _seconds_first(parts)
        if fix is None:
            raise
        raise ScheduleError(
            f"{exc} (raftcron's 6-field form puts seconds LAST: did you mean {fix!r}?)"
        ) from None
    tz = _load_zone(timezone)
    return CronSchedule(
        expr=expr,
        timezone=timezone,
        has_seconds=len(parts) == 6,
        on_gap=on_gap,
        on_repeat=on_repeat,
        seconds=tuple(sorted(seconds.values)),
        minutes=tuple(sorted(minutes.values)),
        hours=tuple(sorted(hours.values)),
        days_of_month=tuple(sorted(doms.values)),
        months=tuple(sorted(months.values)),
        days_of_week=tuple(sorted(dows.values)),
        dom_restricted=doms.restricted,
        dow_restricted=dows.restricted,
        last_day_of_month=doms.last,
        nth_days_of_week=tuple(sorted(dows.nth)),
        _tz=tz,
        _next_second=_next_table(seconds.values, 60),
        _next_minute=_next_table(minutes.values, 60),
        _next_hour=_next_table(hours.values, 24),
        _next_month=_next_table(months.values, 13),
        _day_masks=_day_masks(doms, dows),
    )


def parse(
    expr: str, timezone: str = "UTC", *, on_gap: str = "shift", on_repeat: str = "once"
) -> CronSchedule:
    """Parse a cron expression for an IANA time zone (results are cached).

    ``on_gap`` is ``"shift"`` or ``"skip"``, ``on_repeat`` is ``"once"`` or ``"twice"``
    (see the module docstring). Raises :class:`ScheduleError` with a one-line message.
    ``@every`` is refused here (it needs an anchor): see :func:`schedule_for`.
    """
    return _parse_cached(expr, timezone, on_gap, on_repeat)


# ---------------------------------------------------------------------- @every


@dataclass(frozen=True, slots=True)
class EverySchedule:
    """``@every <duration>``: fires at ``anchor_ms + k * period_ms`` for k = 1, 2, ...

    ``anchor_ms`` is a whole second (a job's creation, truncated). Real time: the zone only
    says how to show the fires; daylight saving time does not move them. The same methods as
    :class:`CronSchedule`, with the same guarantees.
    """

    expr: str
    timezone: str
    period_ms: int
    anchor_ms: int

    def next_after(self, after_ms: int) -> int:
        """The first fire strictly after ``after_ms`` (epoch ms, UTC), as epoch ms."""
        k = 1 if after_ms < self.anchor_ms else (after_ms - self.anchor_ms) // self.period_ms + 1
        t = self.anchor_ms + k * self.period_ms
        if t > _LAST_MS:
            raise ValueError(f"{self.expr!r} has no fire before the year {_MAX_YEAR + 1}")
        return t

    def fires_between(self, after_ms: int, until_ms: int, limit: int) -> list[int]:
        """Fires ``t`` with ``after_ms < t <= until_ms``, ascending, at most ``limit``."""
        if limit <= 0 or until_ms <= after_ms:
            return []
        try:
            t = self.next_after(after_ms)
        except ValueError:
            return []
        last = min(until_ms, _LAST_MS)
        if t > last:
            return []
        count = min(limit, (last - t) // self.period_ms + 1)
        return list(range(t, t + count * self.period_ms, self.period_ms))


Schedule = CronSchedule | EverySchedule


@lru_cache(maxsize=1024)
def _every_ms(expr: str) -> int | None:
    """The period of an ``@every <duration>`` expression in ms; None if ``expr`` is not one."""
    words = expr.split()
    if not words or words[0].lower() != "@every":
        return None
    if len(words) != 2:
        raise ScheduleError(
            "'@every' takes one duration, e.g. '@every 90s' or '@every 1h30m', got "
            f"{expr.strip()!r}"
        )
    text = words[1]
    pos, num, den = 0, 0, 1  # the exact total in ms, num / den
    for m in _EVERY_PART.finditer(text):
        if m.start() != pos:
            break
        whole, _, frac = m.group(1).partition(".")
        scale = 10 ** len(frac)
        part = (int(whole or "0") * scale + int(frac or "0")) * _EVERY_UNIT_MS[m.group(2)]
        num, den, pos = num * scale + part * den, den * scale, m.end()
    if pos != len(text):
        hint = f"add a unit: '@every {text}s'" if text.isdigit() else "units ms, s, m, h, d"
        raise ScheduleError(
            f"'@every {text}': {text!r} is not a duration (e.g. 90s, 5m, 1h30m, 2d; {hint})"
        )
    if num % (den * 1000):
        raise ScheduleError(
            f"'@every {text}' is not a whole number of seconds (fires fall on whole seconds)"
        )
    ms = num // den
    if ms < 1000:
        raise ScheduleError(f"'@every {text}' is too short (at least 1s)")
    if ms > _EVERY_MAX_MS:
        raise ScheduleError(f"'@every {text}' is too long (at most 3650d)")
    return ms


def schedule_for(
    expr: str,
    timezone: str = "UTC",
    *,
    on_gap: str = "shift",
    on_repeat: str = "once",
    anchor_ms: int = 0,
) -> Schedule:
    """A cron expression (as :func:`parse`) or ``@every <duration>`` counted from
    ``anchor_ms`` (truncated to the whole second; a job passes its creation time). The
    zone and DST options are checked for both. Raises :class:`ScheduleError`."""
    period = _every_ms(expr) if expr.lstrip()[:1] == "@" else None
    if period is None:
        return _parse_cached(expr, timezone, on_gap, on_repeat)
    _check_modes(on_gap, on_repeat)
    _load_zone(timezone)  # (cached by zoneinfo)
    return EverySchedule(expr, timezone, period, anchor_ms // 1000 * 1000)


# ---------------------------------------------------------------------- field order


def field_order_warning(expr: str) -> str | None:
    """A warning for a valid six-field expression that reads like seconds-first (Quartz,
    Spring, Dkron: ``second minute hour day-of-month month day-of-week``), or None.

    Both of these must hold, read as written (seconds last):

    * its minute field is restricted (not every minute) and its second field is either every
      second (``*``, ``*/1``, ``0-59``: every second of each matching minute, e.g.
      ``*/10 * * * * *``, ``0 */5 * * * *``, ``0 0 12 * * *``) or a list or range of two or
      more values all within 0-7 (weekdays more likely than seconds, e.g. ``0 0 9 * * 1-5``);
    * moving the first field to the end gives a valid expression (the seconds-first reading).

    Ordinary expressions never match: a 5-field one, one with a single second (``0 3 * * *
    30``), a step of seconds (``* * * * * */10``), or every second of every minute
    (``* * * * * *``, ``* 9-17 * * * *``).
    """
    try:
        parts = _fields(expr)
        s = _parse_cached(expr, "UTC", "shift", "once")
    except ScheduleError:
        return None
    if len(parts) != 6 or len(s.minutes) == 60:
        return None
    if len(s.seconds) == 60:
        what = "every second of each minute it matches"
    elif len(s.seconds) >= 2 and s.seconds[-1] <= 7:
        what = f"at seconds {parts[5]} of each minute it matches"
    else:
        return None
    fix = _seconds_first(parts)
    if fix is None:
        return None
    return (
        f"raftcron's 6-field form puts seconds LAST (minute hour day-of-month month "
        f"day-of-week second): {expr.strip()!r} fires {what}; if it is seconds-first "
        f"(Quartz, Spring, Dkron), did you mean {fix!r}?"
    )
