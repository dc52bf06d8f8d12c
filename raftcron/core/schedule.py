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

Day rule (Vixie cron, as croniter implements it): a day-of-month or day-of-week field is
*unrestricted* only when written exactly ``*`` or ``?``. When both are restricted, a day
matches if EITHER matches (``0 0 1 * MON`` fires on the 1st and on every Monday). Note that
``*/2`` counts as restricted, like croniter (Vixie cron would treat it as ``*``), and so does
a field that happens to cover every value (``*/1``, ``1-31``, ``0-7``). croniter differs in
that last corner: it reads such a field as ``*`` when the other day field contains a ``*``.

Rejected with a one-line :class:`ScheduleError`: other field counts, empty fields and list
items, out-of-range values, reversed ranges (``22-2``), step 0 or a step wider than the
field, ``H`` / ``R`` / ``L`` / ``W`` / ``#``, unknown names and aliases, unknown time zones,
and schedules that can never fire (``0 0 31 2 *``: day 31 never occurs in February).

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

__all__ = ["CronSchedule", "ScheduleError", "parse"]

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
_ALIAS_LIST: Final = "@yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly"

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
    "L": "'last' days; list the days explicitly",
    "W": "'nearest weekday'; list the days explicitly",
    "LW": "'last weekday'; list the days explicitly",
}

_LETTERS: Final = re.compile(r"[A-Za-z]+")
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
_MAX_YEAR: Final = 9999
# _DIM_MASK[n]: bits 1..n set (days 1..n of a month with n days).
_DIM_MASK: Final = tuple((1 << (n + 1)) - 2 for n in range(32))


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


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed cron schedule in one time zone. Build it with :func:`parse`.

    The public field sets are sorted tuples: ``seconds`` 0-59, ``minutes`` 0-59, ``hours``
    0-23, ``days_of_month`` 1-31, ``months`` 1-12, ``days_of_week`` 0-6 (0 = Sunday).
    ``dom_restricted``/``dow_restricted`` say whether that field was anything but ``*``/``?``.
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
    # Precomputed lookups (derived from the fields above).
    _tz: ZoneInfo = field(repr=False, compare=False)
    _next_second: tuple[int, ...] = field(repr=False, compare=False)
    _next_minute: tuple[int, ...] = field(repr=False, compare=False)
    _next_hour: tuple[int, ...] = field(repr=False, compare=False)
    _next_month: tuple[int, ...] = field(repr=False, compare=False)
    _day_masks: tuple[int, ...] = field(repr=False, compare=False)

    # ------------------------------------------------------------------ public API

    def next_after(self, after_ms: int) -> int:
        """The first fire strictly after ``after_ms`` (epoch ms, UTC), as epoch ms.

        Raises ``ValueError`` if ``after_ms`` is outside the years 1-9999 or no fire
        exists before the end of year 9999.
        """
        t0 = after_ms // 1000 + 1  # first whole second strictly after after_ms
        try:
            local = datetime.fromtimestamp(t0, self._tz)
        except (OverflowError, ValueError, OSError) as exc:
            raise ValueError(f"after_ms {after_ms} is outside the supported years") from exc
        return self._next_from(t0, local) * 1000

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
        if d > ndays:
            return -1
        mask = self._day_masks[(first_weekday + 1) % 7] & _DIM_MASK[ndays] & ~((1 << d) - 1)
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


def _parse_field(text: str, spec: _Field) -> tuple[frozenset[int], bool]:
    """The field's values and whether it is restricted (not ``*``/``?``)."""
    if text == "?":
        if not spec.allow_question:
            raise ScheduleError(
                f"'?' is only allowed in day-of-month and day-of-week, not in {spec.name}"
            )
        text = "*"
    elif "?" in text:
        raise ScheduleError(f"'?' must stand alone in {spec.name}, got {text!r}")
    if "#" in text:
        raise ScheduleError(
            f"'#' is not supported in {spec.name} ('nth weekday'; list the days explicitly)"
        )
    for run in _LETTERS.findall(text):
        word = run.upper()
        if word in _UNSUPPORTED and not (spec.names and word in spec.names):
            raise ScheduleError(f"'{word}' is not supported in {spec.name} ({_UNSUPPORTED[word]})")
    for ch in text:
        if not (ch.isascii() and (ch.isalnum() or ch in "*-/,")):
            raise ScheduleError(f"invalid character {ch!r} in {spec.name} {text!r}")
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"{spec.name} has an empty list item in {text!r}")
        values |= _parse_item(item, spec)
    return frozenset(values), text != "*"


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


@lru_cache(maxsize=4096)
def _parse_cached(expr: str, timezone: str, on_gap: str, on_repeat: str) -> CronSchedule:
    if on_gap not in ON_GAP_MODES:
        raise ScheduleError(f"on_gap must be 'shift' or 'skip', got {on_gap!r}")
    if on_repeat not in ON_REPEAT_MODES:
        raise ScheduleError(f"on_repeat must be 'once' or 'twice', got {on_repeat!r}")
    text = expr.strip()
    if text.startswith("@"):
        alias = text.lower()
        if alias not in _ALIASES:
            if alias == "@reboot":
                raise ScheduleError(f"'@reboot' is not supported (use {_ALIAS_LIST})")
            raise ScheduleError(f"unknown alias {text!r} (use {_ALIAS_LIST})")
        text = _ALIASES[alias]
    parts = text.split()
    if len(parts) not in (5, 6):
        extra = "; a year field is not supported" if len(parts) == 7 else ""
        raise ScheduleError(
            f"expected 5 or 6 fields, got {len(parts)} "
            f"(minute hour day-of-month month day-of-week [second]{extra})"
        )
    minutes, _ = _parse_field(parts[0], _MINUTE)
    hours, _ = _parse_field(parts[1], _HOUR)
    doms, dom_restricted = _parse_field(parts[2], _DOM)
    months, _ = _parse_field(parts[3], _MONTH)
    dows, dow_restricted = _parse_field(parts[4], _DOW)
    seconds = _parse_field(parts[5], _SECOND)[0] if len(parts) == 6 else frozenset({0})
    if dom_restricted and not dow_restricted:
        _check_fires(doms, months)
    tz = _load_zone(timezone)

    dom_mask = sum(1 << d for d in doms)
    day_masks = []
    for first in range(7):  # cron weekday (0 = Sunday) of the month's first day
        dow_mask = sum(1 << d for d in range(1, 32) if (first + d - 1) % 7 in dows)
        if dom_restricted and dow_restricted:
            day_masks.append(dom_mask | dow_mask)
        elif dom_restricted:
            day_masks.append(dom_mask)
        elif dow_restricted:
            day_masks.append(dow_mask)
        else:
            day_masks.append(_DIM_MASK[31])
    return CronSchedule(
        expr=expr,
        timezone=timezone,
        has_seconds=len(parts) == 6,
        on_gap=on_gap,
        on_repeat=on_repeat,
        seconds=tuple(sorted(seconds)),
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days_of_month=tuple(sorted(doms)),
        months=tuple(sorted(months)),
        days_of_week=tuple(sorted(dows)),
        dom_restricted=dom_restricted,
        dow_restricted=dow_restricted,
        _tz=tz,
        _next_second=_next_table(seconds, 60),
        _next_minute=_next_table(minutes, 60),
        _next_hour=_next_table(hours, 24),
        _next_month=_next_table(months, 13),
        _day_masks=tuple(day_masks),
    )


def parse(
    expr: str, timezone: str = "UTC", *, on_gap: str = "shift", on_repeat: str = "once"
) -> CronSchedule:
    """Parse a cron expression for an IANA time zone (results are cached).

    ``on_gap`` is ``"shift"`` or ``"skip"``, ``on_repeat`` is ``"once"`` or ``"twice"``
    (see the module docstring). Raises :class:`ScheduleError` with a one-line message.
    """
    return _parse_cached(expr, timezone, on_gap, on_repeat)
