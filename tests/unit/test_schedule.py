"""raftcron.core.schedule: parsing, DST rules, seconds, and croniter as an oracle.

Times in the tables are UTC, written ``YYYY-MM-DDTHH:MM[:SS[.mmm]]``; a list of fires is one
space-separated string.
"""

from __future__ import annotations

import functools
import itertools
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from raftcron.core.schedule import CronSchedule, ScheduleError, parse

MIN = 60_000
HOUR = 3_600_000
DAY = 86_400_000

BERLIN = "Europe/Berlin"
NY = "America/New_York"
LORD_HOWE = "Australia/Lord_Howe"  # +10:30 standard, +11:00 summer: 30-minute shifts
TOKYO = "Asia/Tokyo"  # no DST
SKIP = {"on_gap": "skip"}
TWICE = {"on_repeat": "twice"}


def ms(text: str) -> int:
    """'2026-03-29T01:00' (UTC, seconds and milliseconds optional) -> epoch ms."""
    dt = datetime.fromisoformat(text.removesuffix("Z")).replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1000 + dt.microsecond // 1000


def iso(epoch_ms: int) -> str:
    dt = datetime.fromtimestamp(epoch_ms // 1000, UTC)
    frac = f".{epoch_ms % 1000:03d}" if epoch_ms % 1000 else ""
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + frac


def norm(times: str) -> list[str]:
    return [iso(ms(t)) for t in times.split()]


# ---------------------------------------------------------------------------- parse errors

FIELDS_HINT = "(minute hour day-of-month month day-of-week [second]"
ALIAS_HINT = "(use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly)"
TZ_HINT = "(use an IANA name such as Europe/Berlin)"
HASH = "(Jenkins-style hashed values; write a fixed value)"
LAST = "('last' days; list the days explicitly)"

# fmt: off
PARSE_ERRORS = [
    # (expression, zone, options, exact message)
    ("", "UTC", {}, f"expected 5 or 6 fields, got 0 {FIELDS_HINT})"),
    ("* * * *", "UTC", {}, f"expected 5 or 6 fields, got 4 {FIELDS_HINT})"),
    ("* * * * * * *", "UTC", {},
     f"expected 5 or 6 fields, got 7 {FIELDS_HINT}; a year field is not supported)"),
    ("61 * * * *", "UTC", {}, "minute must be 0-59, got 61"),
    ("* 24 * * *", "UTC", {}, "hour must be 0-23, got 24"),
    ("* * 0 * *", "UTC", {}, "day-of-month must be 1-31, got 0"),
    ("* * 32 * *", "UTC", {}, "day-of-month must be 1-31, got 32"),
    ("* * * 13 *", "UTC", {}, "month must be 1-12 (or JAN-DEC), got 13"),
    ("* * * * 8", "UTC", {}, "day-of-week must be 0-7 (0 and 7 are Sunday, or SUN-SAT), got 8"),
    ("* * * * * 60", "UTC", {}, "second must be 0-59, got 60"),
    ("5-3 * * * *", "UTC", {}, "minute range '5-3' is reversed; write 5-59,0-3"),
    ("* 22-2 * * *", "UTC", {}, "hour range '22-2' is reversed; write 22-23,0-2"),
    ("* * * * SAT-SUN", "UTC", {}, "day-of-week range 'SAT-SUN' is reversed; write 6-7"),
    ("* * * * 5-2", "UTC", {}, "day-of-week range '5-2' is reversed; write 5-7,1-2"),
    ("* * * DEC-JAN *", "UTC", {}, "month range 'DEC-JAN' is reversed; write 12,1"),
    ("*/0 * * * *", "UTC", {}, "minute step must be 1-60, got 0"),
    ("*/61 * * * *", "UTC", {}, "minute step must be 1-60, got 61"),
    ("* * * * */8", "UTC", {}, "day-of-week step must be 1-7, got 8"),
    ("*/x * * * *", "UTC", {}, "minute step must be a number, got 'x' in '*/x'"),
    ("*/ * * * *", "UTC", {}, "minute step must be a number, got '' in '*/'"),
    ("/5 * * * *", "UTC", {}, "minute entry '/5' is missing a value before '/'"),
    ("1- * * * *", "UTC", {}, "minute range '1-' needs a value on both sides of '-'"),
    ("-1 * * * *", "UTC", {}, "minute range '-1' needs a value on both sides of '-'"),
    ("1,,2 * * * *", "UTC", {}, "minute has an empty list item in '1,,2'"),
    ("1, * * * *", "UTC", {}, "minute has an empty list item in '1,'"),
    ("1.5 * * * *", "UTC", {}, "invalid character '.' in minute '1.5'"),
    ("abc * * * *", "UTC", {}, "minute must be a number 0-59, got 'abc'"),
    ("* * * FOO *", "UTC", {}, "unknown month name 'FOO' (use JAN-DEC or 1-12)"),
    ("* * * MON *", "UTC", {}, "unknown month name 'MON' (use JAN-DEC or 1-12)"),
    ("* * * * JAN", "UTC", {}, "unknown day-of-week name 'JAN' (use SUN-SAT or 0-7)"),
    ("H * * * *", "UTC", {}, f"'H' is not supported in minute {HASH}"),
    ("H/15 * * * *", "UTC", {}, f"'H' is not supported in minute {HASH}"),
    ("R * * * *", "UTC", {}, "'R' is not supported in minute (random values; write a fixed value)"),
    ("0 0 L * *", "UTC", {}, f"'L' is not supported in day-of-month {LAST}"),
    ("0 0 5L * *", "UTC", {}, f"'L' is not supported in day-of-month {LAST}"),
    ("0 0 * * 5L", "UTC", {}, f"'L' is not supported in day-of-week {LAST}"),
    ("0 0 15W * *", "UTC", {},
     "'W' is not supported in day-of-month ('nearest weekday'; list the days explicitly)"),
    ("0 0 LW * *", "UTC", {},
     "'LW' is not supported in day-of-month ('last weekday'; list the days explicitly)"),
    ("0 0 * * 1#2", "UTC", {},
     "'#' is not supported in day-of-week ('nth weekday'; list the days explicitly)"),
    ("? * * * *", "UTC", {}, "'?' is only allowed in day-of-month and day-of-week, not in minute"),
    ("0 0 ?/2 * *", "UTC", {}, "'?' must stand alone in day-of-month, got '?/2'"),
    ("0 0 31 2 *", "UTC", {}, "never fires (day 31 never occurs in February)"),
    ("0 0 30,31 2 *", "UTC", {}, "never fires (days 30 and 31 never occur in February)"),
    ("0 0 31 4,6,9,11 *", "UTC", {},
     "never fires (day 31 never occurs in April, June, September or November)"),
    ("0 0 31 FEB,APR ?", "UTC", {}, "never fires (day 31 never occurs in February or April)"),
    ("@reboot", "UTC", {}, f"'@reboot' is not supported {ALIAS_HINT}"),
    ("@every_5m", "UTC", {}, f"unknown alias '@every_5m' {ALIAS_HINT}"),
    ("* * * * *", "Mars/Base", {}, f"unknown timezone 'Mars/Base' {TZ_HINT}"),
    ("* * * * *", "", {}, f"unknown timezone '' {TZ_HINT}"),
    ("* * * * *", " UTC", {}, f"unknown timezone ' UTC' {TZ_HINT}"),
    ("* * * * *", "../etc/passwd", {}, f"unknown timezone '../etc/passwd' {TZ_HINT}"),
    ("* * * * *", "UTC", {"on_gap": "later"}, "on_gap must be 'shift' or 'skip', got 'later'"),
    ("* * * * *", "UTC", {"on_repeat": "both"},
     "on_repeat must be 'once' or 'twice', got 'both'"),
]
# fmt: on


@pytest.mark.parametrize(("expr", "tz", "opts", "message"), PARSE_ERRORS)
def test_parse_errors_have_a_one_line_message(
    expr: str, tz: str, opts: dict[str, str], message: str
) -> None:
    with pytest.raises(ScheduleError) as info:
        parse(expr, tz, **opts)
    assert str(info.value) == message
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------- parse results

EVERY: dict[str, object] = {
    "seconds": (0,),
    "minutes": tuple(range(60)),
    "hours": tuple(range(24)),
    "days_of_month": tuple(range(1, 32)),
    "months": tuple(range(1, 13)),
    "days_of_week": tuple(range(7)),
    "dom_restricted": False,
    "dow_restricted": False,
    "has_seconds": False,
}
MIDNIGHT: dict[str, object] = {"minutes": (0,), "hours": (0,)}

# fmt: off
PARSED: list[tuple[str, dict[str, object]]] = [
    ("* * * * *", {}),
    ("* * * * * *", {"seconds": tuple(range(60)), "has_seconds": True}),
    ("* * * * * 15", {"seconds": (15,), "has_seconds": True}),
    ("* * * * * */20", {"seconds": (0, 20, 40), "has_seconds": True}),
    ("*/15 * * * *", {"minutes": (0, 15, 30, 45)}),
    ("5/20 * * * *", {"minutes": (5, 25, 45)}),
    ("10-20/5 * * * *", {"minutes": (10, 15, 20)}),
    ("1,2,5-7 * * * *", {"minutes": (1, 2, 5, 6, 7)}),
    ("05 07 * * *", {"minutes": (5,), "hours": (7,)}),
    ("* 9-17 * * *", {"hours": tuple(range(9, 18))}),
    ("* * 1,15 * *", {"days_of_month": (1, 15), "dom_restricted": True}),
    ("* * */10 * *", {"days_of_month": (1, 11, 21, 31), "dom_restricted": True}),
    ("* * * jan,Mar,DEC *", {"months": (1, 3, 12)}),
    ("* * * FEB-apr *", {"months": (2, 3, 4)}),
    ("* * * JAN-DEC/3 *", {"months": (1, 4, 7, 10)}),
    ("* * * * MON-FRI", {"days_of_week": (1, 2, 3, 4, 5), "dow_restricted": True}),
    ("* * * * sun,sat", {"days_of_week": (0, 6), "dow_restricted": True}),
    ("* * * * 7", {"days_of_week": (0,), "dow_restricted": True}),
    ("* * * * 5-7", {"days_of_week": (0, 5, 6), "dow_restricted": True}),
    ("* * * * 0-7", {"days_of_week": tuple(range(7)), "dow_restricted": True}),
    ("* * * * 4-7/3", {"days_of_week": (0, 4), "dow_restricted": True}),
    ("* * * * 1/2", {"days_of_week": (1, 3, 5), "dow_restricted": True}),
    ("* * * * 7/2", {"days_of_week": (0, 2, 4, 6), "dow_restricted": True}),
    ("* * * * */2", {"days_of_week": (0, 2, 4, 6), "dow_restricted": True}),
    ("* * ? * ?", {}),
    ("0 0 29 2 *", {**MIDNIGHT, "days_of_month": (29,), "months": (2,), "dom_restricted": True}),
    # day-of-week restricted too: any Monday in February fires, so this is valid
    ("0 0 31 2 1", {**MIDNIGHT, "days_of_month": (31,), "months": (2,), "days_of_week": (1,),
                    "dom_restricted": True, "dow_restricted": True}),
    ("  0   0\t* * *  ", MIDNIGHT),
]
# fmt: on


@pytest.mark.parametrize(("expr", "changes"), PARSED)
def test_parse_field_sets(expr: str, changes: dict[str, object]) -> None:
    s = parse(expr)
    expected = {**EVERY, **changes}
    assert {k: getattr(s, k) for k in expected} == expected
    assert (s.expr, s.timezone, s.on_gap, s.on_repeat) == (expr, "UTC", "shift", "once")


@pytest.mark.parametrize(
    ("alias", "expr"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_aliases_equal_their_expansion(alias: str, expr: str) -> None:
    a, b = parse(alias, BERLIN), parse(expr, BERLIN)
    assert a.expr == alias
    fields = ("seconds", "minutes", "hours", "days_of_month", "months", "days_of_week")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    start = ms("2026-01-01T00:00")
    assert a.fires_between(start, start + 400 * DAY, 50) == b.fires_between(
        start, start + 400 * DAY, 50
    )


def test_parse_is_cached_and_schedules_are_frozen_values() -> None:
    a = parse("*/5 * * * *", BERLIN)
    assert parse("*/5 * * * *", BERLIN) is a
    assert parse("*/5 * * * *", BERLIN, on_repeat="twice") is not a
    assert parse("*/5 * * * *", BERLIN, on_repeat="twice").on_repeat == "twice"
    with pytest.raises(AttributeError):
        a.expr = "x"  # type: ignore[misc]
    assert hash(a) == hash(parse("*/5 * * * *", BERLIN))


# ---------------------------------------------------------------------------- fire tables

# fmt: off
FIRE_TABLE = [
    # (expression, zone, options, after (exclusive), until (inclusive), fires)
    # --- UTC and a zone without DST
    ("0 0 * * *", "UTC", {}, "2026-01-01T00:00", "2026-01-03T00:00",
     "2026-01-02T00:00 2026-01-03T00:00"),
    ("30 9 * * MON-FRI", "UTC", {}, "2026-01-01T00:00", "2026-01-06T23:00",
     "2026-01-01T09:30 2026-01-02T09:30 2026-01-05T09:30 2026-01-06T09:30"),
    # both day fields restricted: the 13th OR a Friday
    ("0 0 13 * FRI", "UTC", {}, "2026-02-01T00:00", "2026-02-21T00:00",
     "2026-02-06T00:00 2026-02-13T00:00 2026-02-20T00:00"),
    # a day field covering every value is still restricted: every day matches
    ("0 0 */1 * */2", "UTC", {}, "2026-01-01T00:00", "2026-01-03T00:00",
     "2026-01-02T00:00 2026-01-03T00:00"),
    ("0 0 */5 * 0-7", "UTC", {}, "2026-01-01T00:00", "2026-01-03T00:00",
     "2026-01-02T00:00 2026-01-03T00:00"),
    ("0 0 31 * *", "UTC", {}, "2026-01-31T00:00", "2026-06-01T00:00",
     "2026-03-31T00:00 2026-05-31T00:00"),
    ("0 0 29 2 *", "UTC", {}, "2024-02-29T00:00", "2105-01-01T00:00",
     " ".join(f"{y}-02-29T00:00" for y in range(2028, 2105, 4) if y != 2100)),
    ("59 23 31 12 *", "UTC", {}, "2026-12-31T23:59", "2028-01-01T00:00", "2027-12-31T23:59"),
    ("0 9 * * *", TOKYO, {}, "2026-03-28T00:00", "2026-03-31T00:00",
     "2026-03-29T00:00 2026-03-30T00:00 2026-03-31T00:00"),
    ("30 2 * * *", TOKYO, TWICE, "2026-10-24T00:00", "2026-10-27T00:00",
     "2026-10-24T17:30 2026-10-25T17:30 2026-10-26T17:30"),
    ("0 0 1 1 *", TOKYO, {}, "2026-06-01T00:00", "2028-01-01T00:00",
     "2026-12-31T15:00 2027-12-31T15:00"),
    # --- Europe/Berlin spring forward: 2026-03-29 01:00Z, 02:00 CET -> 03:00 CEST
    ("30 2 * * *", BERLIN, {}, "2026-03-27T12:00", "2026-03-30T12:00",
     "2026-03-28T01:30 2026-03-29T01:00 2026-03-30T00:30"),
    ("30 2 * * *", BERLIN, SKIP, "2026-03-27T12:00", "2026-03-30T12:00",
     "2026-03-28T01:30 2026-03-30T00:30"),
    ("*/15 2 * * *", BERLIN, {}, "2026-03-28T12:00", "2026-03-30T12:00",
     "2026-03-29T01:00 2026-03-30T00:00 2026-03-30T00:15 2026-03-30T00:30 2026-03-30T00:45"),
    ("*/15 2 * * *", BERLIN, SKIP, "2026-03-28T12:00", "2026-03-30T12:00",
     "2026-03-30T00:00 2026-03-30T00:15 2026-03-30T00:30 2026-03-30T00:45"),
    ("*/15 * * * *", BERLIN, {}, "2026-03-29T00:30", "2026-03-29T01:30",
     "2026-03-29T00:45 2026-03-29T01:00 2026-03-29T01:15 2026-03-29T01:30"),
    ("*/15 * * * *", BERLIN, SKIP, "2026-03-29T00:30", "2026-03-29T01:30",
     "2026-03-29T00:45 2026-03-29T01:00 2026-03-29T01:15 2026-03-29T01:30"),
    # 02:00, 02:30 and 03:00 local are all the instant 01:00Z
    ("0,30 2,3 * * *", BERLIN, {}, "2026-03-29T00:00", "2026-03-29T02:00",
     "2026-03-29T01:00 2026-03-29T01:30"),
    # --- Europe/Berlin fall back: 2026-10-25 01:00Z, 03:00 CEST -> 02:00 CET
    ("30 2 * * *", BERLIN, {}, "2026-10-23T12:00", "2026-10-26T12:00",
     "2026-10-24T00:30 2026-10-25T00:30 2026-10-26T01:30"),
    ("30 2 * * *", BERLIN, TWICE, "2026-10-23T12:00", "2026-10-26T12:00",
     "2026-10-24T00:30 2026-10-25T00:30 2026-10-25T01:30 2026-10-26T01:30"),
    ("*/15 * * * *", BERLIN, {}, "2026-10-25T00:30", "2026-10-25T02:30",
     "2026-10-25T00:45 2026-10-25T02:00 2026-10-25T02:15 2026-10-25T02:30"),
    ("*/15 * * * *", BERLIN, TWICE, "2026-10-25T00:30", "2026-10-25T02:00",
     "2026-10-25T00:45 2026-10-25T01:00 2026-10-25T01:15 2026-10-25T01:30 2026-10-25T01:45"
     " 2026-10-25T02:00"),
    ("0 * * * *", BERLIN, {}, "2026-10-24T23:30", "2026-10-25T03:00",
     "2026-10-25T00:00 2026-10-25T02:00 2026-10-25T03:00"),
    ("0 * * * *", BERLIN, TWICE, "2026-10-24T23:30", "2026-10-25T03:00",
     "2026-10-25T00:00 2026-10-25T01:00 2026-10-25T02:00 2026-10-25T03:00"),
    # after inside the second occurrence of the repeated hour (02:10 CET = 01:10Z)
    ("*/15 * * * *", BERLIN, {}, "2026-10-25T01:10", "2026-10-25T02:15",
     "2026-10-25T02:00 2026-10-25T02:15"),
    ("*/15 * * * *", BERLIN, TWICE, "2026-10-25T01:10", "2026-10-25T02:15",
     "2026-10-25T01:15 2026-10-25T01:30 2026-10-25T01:45 2026-10-25T02:00 2026-10-25T02:15"),
    ("30 2 * * *", BERLIN, {}, "2026-10-25T01:10", "2026-10-26T12:00", "2026-10-26T01:30"),
    ("30 2 * * *", BERLIN, TWICE, "2026-10-25T01:10", "2026-10-26T12:00",
     "2026-10-25T01:30 2026-10-26T01:30"),
    # after inside the first occurrence, past the day's first-occurrence fire
    ("10 2 * * *", BERLIN, TWICE, "2026-10-25T00:30", "2026-10-26T12:00",
     "2026-10-25T01:10 2026-10-26T01:10"),
    ("10 2 * * *", BERLIN, {}, "2026-10-25T00:30", "2026-10-26T12:00", "2026-10-26T01:10"),
    # --- America/New_York: spring forward 2026-03-08 07:00Z, fall back 2026-11-01 06:00Z
    ("30 2 * * *", NY, {}, "2026-03-07T00:00", "2026-03-09T12:00",
     "2026-03-07T07:30 2026-03-08T07:00 2026-03-09T06:30"),
    ("30 2 * * *", NY, SKIP, "2026-03-07T00:00", "2026-03-09T12:00",
     "2026-03-07T07:30 2026-03-09T06:30"),
    ("*/15 * * * *", NY, {}, "2026-03-08T06:30", "2026-03-08T07:30",
     "2026-03-08T06:45 2026-03-08T07:00 2026-03-08T07:15 2026-03-08T07:30"),
    ("30 1 * * *", NY, {}, "2026-10-31T00:00", "2026-11-02T12:00",
     "2026-10-31T05:30 2026-11-01T05:30 2026-11-02T06:30"),
    ("30 1 * * *", NY, TWICE, "2026-10-31T00:00", "2026-11-02T12:00",
     "2026-10-31T05:30 2026-11-01T05:30 2026-11-01T06:30 2026-11-02T06:30"),
    ("*/15 * * * *", NY, {}, "2026-11-01T05:30", "2026-11-01T07:00",
     "2026-11-01T05:45 2026-11-01T07:00"),
    ("*/15 * * * *", NY, TWICE, "2026-11-01T05:30", "2026-11-01T07:00",
     "2026-11-01T05:45 2026-11-01T06:00 2026-11-01T06:15 2026-11-01T06:30 2026-11-01T06:45"
     " 2026-11-01T07:00"),
    # --- Australia/Lord_Howe: fall back 2026-04-04 15:00Z (02:00 -> 01:30 local),
    #     spring forward 2026-10-03 15:30Z (02:00 -> 02:30 local)
    ("45 1 * * *", LORD_HOWE, {}, "2026-04-04T00:00", "2026-04-05T00:00", "2026-04-04T14:45"),
    ("45 1 * * *", LORD_HOWE, TWICE, "2026-04-04T00:00", "2026-04-05T00:00",
     "2026-04-04T14:45 2026-04-04T15:15"),
    ("*/15 * * * *", LORD_HOWE, {}, "2026-04-04T14:00", "2026-04-04T15:30",
     "2026-04-04T14:15 2026-04-04T14:30 2026-04-04T14:45 2026-04-04T15:30"),
    ("*/15 * * * *", LORD_HOWE, TWICE, "2026-04-04T14:00", "2026-04-04T15:30",
     "2026-04-04T14:15 2026-04-04T14:30 2026-04-04T14:45 2026-04-04T15:00 2026-04-04T15:15"
     " 2026-04-04T15:30"),
    ("15 2 * * *", LORD_HOWE, {}, "2026-10-02T00:00", "2026-10-04T23:00",
     "2026-10-02T15:45 2026-10-03T15:30 2026-10-04T15:15"),
    ("15 2 * * *", LORD_HOWE, SKIP, "2026-10-02T00:00", "2026-10-04T23:00",
     "2026-10-02T15:45 2026-10-04T15:15"),
    ("*/15 * * * *", LORD_HOWE, {}, "2026-10-03T15:00", "2026-10-03T16:00",
     "2026-10-03T15:15 2026-10-03T15:30 2026-10-03T15:45 2026-10-03T16:00"),
]
# fmt: on


@pytest.mark.parametrize(("expr", "tz", "opts", "after", "until", "expected"), FIRE_TABLE)
def test_fire_table(
    expr: str, tz: str, opts: dict[str, str], after: str, until: str, expected: str
) -> None:
    s = parse(expr, tz, **opts)
    want = norm(expected)
    assert [iso(t) for t in s.fires_between(ms(after), ms(until), 1000)] == want
    got, t = [], ms(after)  # next_after chains to the same instants
    for _ in want:
        t = s.next_after(t)
        got.append(iso(t))
    assert got == want


# fmt: off
COUNT_TABLE = [
    # (expression, zone, options, after, until, number of fires)
    # Every minute across spring forward: every UTC minute fires; 02:xx collapse onto 03:00.
    ("* * * * *", BERLIN, {}, "2026-03-29T00:00", "2026-03-29T02:00", 120),
    ("* * * * *", BERLIN, SKIP, "2026-03-29T00:00", "2026-03-29T02:00", 120),
    ("* * * * *", NY, {}, "2026-03-08T06:00", "2026-03-08T08:00", 120),
    # Every minute across fall back: the second 02:xx hour fires only with "twice".
    ("* * * * *", BERLIN, {}, "2026-10-24T23:00", "2026-10-25T03:00", 180),
    ("* * * * *", BERLIN, TWICE, "2026-10-24T23:00", "2026-10-25T03:00", 240),
    ("* * * * *", NY, {}, "2026-11-01T04:00", "2026-11-01T08:00", 180),
    ("* * * * *", NY, TWICE, "2026-11-01T04:00", "2026-11-01T08:00", 240),
    ("* * * * *", LORD_HOWE, {}, "2026-04-04T14:00", "2026-04-04T16:00", 90),
    ("* * * * *", LORD_HOWE, TWICE, "2026-04-04T14:00", "2026-04-04T16:00", 120),
    ("* * * * *", LORD_HOWE, {}, "2026-10-03T15:00", "2026-10-03T16:00", 60),
    ("*/15 * * * *", BERLIN, {}, "2026-10-24T23:00", "2026-10-25T03:00", 12),
    ("*/15 * * * *", BERLIN, TWICE, "2026-10-24T23:00", "2026-10-25T03:00", 16),
    ("* * * * * *", BERLIN, {}, "2026-03-29T00:59", "2026-03-29T01:01", 120),
    ("* * * * * *", BERLIN, {}, "2026-10-25T00:59", "2026-10-25T02:01", 120),
    ("* * * * * *", BERLIN, TWICE, "2026-10-25T00:59", "2026-10-25T02:01", 3720),
    ("* * * * *", TOKYO, {}, "2026-03-29T00:00", "2026-03-29T02:00", 120),
]
# fmt: on


@pytest.mark.parametrize(("expr", "tz", "opts", "after", "until", "count"), COUNT_TABLE)
def test_fire_counts_across_transitions(
    expr: str, tz: str, opts: dict[str, str], after: str, until: str, count: int
) -> None:
    got = parse(expr, tz, **opts).fires_between(ms(after), ms(until), 100_000)
    assert len(got) == count
    assert all(a < b for a, b in itertools.pairwise(got))


# fmt: off
NEXT_TABLE = [
    # (expression, zone, options, after, next fire)
    ("* * * * *", "UTC", {}, "2026-01-01T00:00", "2026-01-01T00:01"),
    ("* * * * *", "UTC", {}, "2026-01-01T00:00:59.999", "2026-01-01T00:01"),
    ("* * * * * *", "UTC", {}, "2026-01-01T00:00:00.001", "2026-01-01T00:00:01"),
    ("* * * * * *", "UTC", {}, "2025-12-31T23:59:59", "2026-01-01T00:00"),
    ("* * * * *", BERLIN, {}, "2026-03-29T00:59:59.500", "2026-03-29T01:00"),
    ("* * * * *", BERLIN, {}, "2026-03-29T01:00", "2026-03-29T01:01"),
    # the gap ends exactly one second after `after`: the shifted fire is that instant
    ("30 2 * * *", BERLIN, {}, "2026-03-29T00:59:59", "2026-03-29T01:00"),
    ("30 2 * * *", BERLIN, {}, "2026-03-29T00:59:59.999", "2026-03-29T01:00"),
    ("30 2 * * *", BERLIN, SKIP, "2026-03-29T00:59:59", "2026-03-30T00:30"),
    ("30 2 * * *", BERLIN, {}, "2026-03-29T01:00", "2026-03-30T00:30"),
    ("0 3 * * *", BERLIN, SKIP, "2026-03-29T00:00", "2026-03-29T01:00"),
    ("59 2 * * *", BERLIN, TWICE, "2026-10-25T00:59", "2026-10-25T01:59"),
    ("59 2 * * *", BERLIN, {}, "2026-10-25T00:59", "2026-10-26T01:59"),
    ("0 2 * * *", BERLIN, TWICE, "2026-10-25T00:59:59", "2026-10-25T01:00"),
    ("0 3 * * *", BERLIN, TWICE, "2026-10-25T01:30", "2026-10-25T02:00"),
    ("0 0 29 2 *", BERLIN, {}, "2097-03-01T00:00", "2104-02-28T23:00"),
    ("0 0 1 1 *", "UTC", {}, "9998-06-01T00:00", "9999-01-01T00:00"),
    ("0 0 1 1 *", "UTC", {}, "1969-06-01T00:00", "1970-01-01T00:00"),
]
# fmt: on


@pytest.mark.parametrize(("expr", "tz", "opts", "after", "expected"), NEXT_TABLE)
def test_next_after_table(
    expr: str, tz: str, opts: dict[str, str], after: str, expected: str
) -> None:
    assert iso(parse(expr, tz, **opts).next_after(ms(after))) == iso(ms(expected))


def test_no_fire_before_year_10000_is_a_value_error() -> None:
    s = parse("0 0 1 1 *")
    with pytest.raises(ValueError, match="no fire before the year 10000"):
        s.next_after(ms("9999-01-01T00:00"))
    assert s.fires_between(ms("9999-01-01T00:00"), ms("9999-12-31T00:00"), 10) == []


def test_fires_between_bounds_and_limit() -> None:
    s = parse("*/10 * * * *")
    a = ms("2026-01-01T00:00")
    assert s.fires_between(a, a, 10) == []
    assert s.fires_between(a, a - HOUR, 10) == []
    assert s.fires_between(a, a + HOUR, 0) == []
    assert s.fires_between(a, a + HOUR, 3) == [a + 10 * MIN, a + 20 * MIN, a + 30 * MIN]
    assert s.fires_between(a, a + 10 * MIN, 10) == [a + 10 * MIN]  # until is inclusive
    assert s.fires_between(a - 1, a + 10 * MIN - 1, 10) == [a]  # after is exclusive


# ---------------------------------------------------------------------------- seconds

# fmt: off
SECONDS_TABLE = [
    ("* * * * * *", "UTC", {}, "2026-01-01T00:00", "2026-01-01T00:00:03",
     "2026-01-01T00:00:01 2026-01-01T00:00:02 2026-01-01T00:00:03"),
    ("* * * * * 15", "UTC", {}, "2026-01-01T00:00", "2026-01-01T00:02",
     "2026-01-01T00:00:15 2026-01-01T00:01:15"),
    ("*/2 * * * * */20", "UTC", {}, "2026-01-01T00:00", "2026-01-01T00:02:30",
     "2026-01-01T00:00:20 2026-01-01T00:00:40 2026-01-01T00:02:00 2026-01-01T00:02:20"),
    ("0 0 1 1 * 30", "UTC", {}, "2026-01-01T00:00:30", "2028-01-01T00:01",
     "2027-01-01T00:00:30 2028-01-01T00:00:30"),
    ("59 23 31 12 * 59", "UTC", {}, "2026-12-31T23:59:58", "2027-01-01T00:00",
     "2026-12-31T23:59:59"),
    ("* * * * * 0,30", TOKYO, {}, "2026-01-01T00:00", "2026-01-01T00:01",
     "2026-01-01T00:00:30 2026-01-01T00:01"),
    # Spring forward: every :30 second of the missing hour collapses onto the transition.
    ("* 2 * * * 30", BERLIN, {}, "2026-03-29T00:00", "2026-03-30T00:00", "2026-03-29T01:00"),
    ("* 2 * * * 30", BERLIN, SKIP, "2026-03-29T00:00", "2026-03-30T00:01",
     "2026-03-30T00:00:30"),
    # Fall back.
    ("0 2 * * * 0,30", BERLIN, {}, "2026-10-24T23:00", "2026-10-25T03:00",
     "2026-10-25T00:00 2026-10-25T00:00:30"),
    ("0 2 * * * 0,30", BERLIN, TWICE, "2026-10-24T23:00", "2026-10-25T03:00",
     "2026-10-25T00:00 2026-10-25T00:00:30 2026-10-25T01:00 2026-10-25T01:00:30"),
    ("15 1 * * * 45", LORD_HOWE, TWICE, "2026-04-04T00:00", "2026-04-05T00:00",
     "2026-04-04T14:15:45"),
    ("45 1 * * * 45", LORD_HOWE, TWICE, "2026-04-04T00:00", "2026-04-05T00:00",
     "2026-04-04T14:45:45 2026-04-04T15:15:45"),
]
# fmt: on


@pytest.mark.parametrize(("expr", "tz", "opts", "after", "until", "expected"), SECONDS_TABLE)
def test_six_field_seconds(
    expr: str, tz: str, opts: dict[str, str], after: str, until: str, expected: str
) -> None:
    s = parse(expr, tz, **opts)
    assert s.has_seconds
    assert [iso(t) for t in s.fires_between(ms(after), ms(until), 1000)] == norm(expected)


# ---------------------------------------------------------------------------- properties

MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


def _field(lo: int, hi: int, max_step: int, names: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    num = st.integers(lo, hi)
    value = num.map(str)
    if names:
        value = st.one_of(value, st.sampled_from(names))
    # croniter 7 reads a one-value range such as 5-5 as '*', so ranges here have a < b.
    pair = st.tuples(num, num).filter(lambda p: p[0] != p[1]).map(sorted)
    step = st.integers(1, max_step)
    item = st.one_of(
        value,
        pair.map(lambda p: f"{p[0]}-{p[1]}"),
        step.map(lambda n: f"*/{n}"),
        st.tuples(pair, step).map(lambda t: f"{t[0][0]}-{t[0][1]}/{t[1]}"),
        st.tuples(num, step).map(lambda t: f"{t[0]}/{t[1]}"),
    )
    return st.one_of(st.just("*"), item, st.lists(item, min_size=1, max_size=3).map(",".join))


@st.composite
def expressions(draw: st.DrawFn, seconds: bool | None = None) -> str:
    fields = [
        draw(_field(0, 59, 60)),
        draw(_field(0, 23, 24)),
        draw(st.one_of(_field(1, 31, 31), st.just("?"))),
        draw(_field(1, 12, 12, MONTHS)),
        draw(st.one_of(_field(0, 7, 7, DAYS), st.just("?"))),
    ]
    if seconds if seconds is not None else draw(st.booleans()):
        fields.append(draw(_field(0, 59, 60)))
    return " ".join(fields)


def _parse_or_reject(expr: str, tz: str = "UTC", **opts: str) -> CronSchedule:
    try:
        return parse(expr, tz, **opts)
    except ScheduleError:  # a random day-of-month that never occurs in the random months
        assume(False)
        raise


START = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 12, 31)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
)


@pytest.mark.parametrize("tz", ["UTC", TOKYO])
@settings(max_examples=300, deadline=None)
@given(expr=expressions(), start=START)
def test_next_after_agrees_with_croniter(tz: str, expr: str, start: datetime) -> None:
    s = _parse_or_reject(expr, tz)
    # croniter reads a day field covering every value as '*' when the other day field
    # contains a '*' (so 'either' becomes 'both'); we always treat it as restricted.
    assume(
        not (s.dom_restricted and s.dow_restricted)
        or (len(s.days_of_month) < 31 and len(s.days_of_week) < 7)
    )
    aware = start.replace(tzinfo=ZoneInfo(tz))
    oracle = croniter(expr, aware)
    t = int(aware.timestamp()) * 1000 + aware.microsecond // 1000
    for _ in range(3):
        expected = oracle.get_next(datetime)
        t = s.next_after(t)
        assert iso(t) == iso(int(expected.timestamp()) * 1000), expr


DST_ZONES = (
    "UTC",
    TOKYO,
    BERLIN,
    NY,
    LORD_HOWE,
    "America/St_Johns",  # -03:30 / -02:30
    "Pacific/Chatham",  # +12:45 / +13:45
    "Antarctica/Troll",  # +00 / +02: a two-hour shift
    "Europe/Dublin",  # negative DST in tzdata
)


@functools.cache
def transitions(tz: str) -> tuple[int, ...]:
    """Instants (epoch s) in 2026-2027 where the zone's UTC offset changes (all on :00/:30)."""
    zone = ZoneInfo(tz)
    out = []
    t = datetime(2026, 1, 1, tzinfo=UTC)
    prev = t.astimezone(zone).utcoffset()
    while t.year < 2028:
        t += timedelta(minutes=30)
        off = t.astimezone(zone).utcoffset()
        if off != prev:
            out.append(int(t.timestamp()))
        prev = off
    return tuple(out) or (int(datetime(2026, 6, 1, tzinfo=UTC).timestamp()),)


@st.composite
def near_transition(draw: st.DrawFn, spread_s: int) -> tuple[str, int]:
    """A zone and an epoch-ms instant near one of its transitions (sometimes right at it)."""
    tz = draw(st.sampled_from(DST_ZONES))
    anchor = draw(st.sampled_from(transitions(tz)))
    delta = draw(st.one_of(st.integers(-spread_s, spread_s), st.integers(-3, 3)))
    return tz, (anchor + delta) * 1000 + draw(st.sampled_from([0, 1, 500, 999]))


@settings(max_examples=300, deadline=None)
@given(
    expr=expressions(),
    where=near_transition(2 * 86_400),
    on_gap=st.sampled_from(["shift", "skip"]),
    on_repeat=st.sampled_from(["once", "twice"]),
)
def test_fires_between_is_strictly_increasing_and_chains_next_after(
    expr: str, where: tuple[str, int], on_gap: str, on_repeat: str
) -> None:
    tz, after = where
    s = _parse_or_reject(expr, tz, on_gap=on_gap, on_repeat=on_repeat)
    got = s.fires_between(after, after + 3 * DAY, 200)
    assert all(t > after and t % 1000 == 0 for t in got)
    assert all(a < b for a, b in itertools.pairwise(got))
    t = after
    for fire in got:
        t = s.next_after(t)
        assert t == fire


def _reference(s: CronSchedule, after_ms: int, until_ms: int, step: int) -> list[int]:
    """Brute force: walk real instants ``step`` seconds apart and apply the DST rules."""
    zone = ZoneInfo(s.timezone)

    def matches(w: datetime) -> bool:
        dom_ok = w.day in s.days_of_month
        dow_ok = (w.weekday() + 1) % 7 in s.days_of_week
        either = s.dom_restricted and s.dow_restricted
        return (
            ((dom_ok or dow_ok) if either else (dom_ok and dow_ok))
            and w.month in s.months
            and w.hour in s.hours
            and w.minute in s.minutes
            and w.second in s.seconds
        )

    out: set[int] = set()
    prev: datetime | None = None
    t = after_ms // 1000 // step * step - step
    while t * 1000 <= until_ms:
        local = datetime.fromtimestamp(t, zone)
        wall = local.replace(tzinfo=None)
        if prev is not None and wall - prev > timedelta(seconds=step):  # a gap ends at t
            gap = prev + timedelta(seconds=step)
            while gap < wall:
                if matches(gap) and s.on_gap == "shift":
                    out.add(t)
                gap += timedelta(seconds=step)
        if matches(wall):
            repeated = local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset()
            if not (repeated and local.fold == 1 and s.on_repeat == "once"):
                out.add(t)
        prev = wall
        t += step
    return sorted(x * 1000 for x in out if after_ms < x * 1000 <= until_ms)


@settings(max_examples=200, deadline=None)
@given(
    expr=expressions(seconds=False),
    where=near_transition(86_400),
    on_gap=st.sampled_from(["shift", "skip"]),
    on_repeat=st.sampled_from(["once", "twice"]),
)
def test_dst_rules_agree_with_brute_force_minutes(
    expr: str, where: tuple[str, int], on_gap: str, on_repeat: str
) -> None:
    tz, after = where
    s = _parse_or_reject(expr, tz, on_gap=on_gap, on_repeat=on_repeat)
    until = after + DAY
    assert s.fires_between(after, until, 10_000) == _reference(s, after, until, 60)


@settings(max_examples=60, deadline=None)
@given(
    expr=expressions(seconds=True),
    where=near_transition(3_600),
    on_gap=st.sampled_from(["shift", "skip"]),
    on_repeat=st.sampled_from(["once", "twice"]),
)
def test_dst_rules_agree_with_brute_force_seconds(
    expr: str, where: tuple[str, int], on_gap: str, on_repeat: str
) -> None:
    tz, after = where
    s = _parse_or_reject(expr, tz, on_gap=on_gap, on_repeat=on_repeat)
    until = after + 3 * HOUR
    assert s.fires_between(after, until, 100_000) == _reference(s, after, until, 1)


@pytest.mark.parametrize(
    ("expr", "tz"),
    [("* * * * * *", BERLIN), ("*/5 * * * *", BERLIN), ("0 0 29 2 *", BERLIN), ("0 0 29 2 1", NY)],
)
def test_next_after_is_a_search_not_a_walk(expr: str, tz: str) -> None:
    # A loose bound (typical cost is a few microseconds per call); stepping through time second
    # by second would need millions of steps for the leap-day schedules.
    s = parse(expr, tz)
    t = ms("2097-03-01T00:00")
    began = time.perf_counter()
    for _ in range(200):
        t = s.next_after(t)
    assert time.perf_counter() - began < 0.5
