"""raftcron.core.schedule: parsing, DST rules, seconds, and croniter and cronsim as oracles.

Times in the tables are UTC, written ``YYYY-MM-DDTHH:MM[:SS[.mmm]]``; a list of fires is one
space-separated string.
"""

from __future__ import annotations

import calendar
import functools
import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from cronsim import CronSim
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from raftcron.core.schedule import (
    CronSchedule,
    EverySchedule,
    ScheduleError,
    field_order_warning,
    parse,
    schedule_for,
)

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
ALIAS_HINT = (
    "(use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)"
)
TZ_HINT = "(use an IANA name such as Europe/Berlin)"
HASH = "(Jenkins-style hashed values; write a fixed value)"
LAST = "(L alone in day-of-month is the last day, L5 in day-of-week the last Friday)"
DOM_L = "is not supported ('L' alone is the last day of the month; list other days explicitly)"
NTH = (
    "is not valid ('#' takes one weekday and a number 1-5: 1#2 is the second Monday, FRI#1 the "
    "first Friday)"
)
DOW_L = "is not supported (L5 or 5L is the last Friday: one weekday number 0-7 with L)"
MIXED = (
    "lists plain weekdays beside '#' or 'L' items, which is not supported (croniter refuses it "
    "too): use two jobs"
)
BOTH = "write '*' or '?' in day-of-month, or use two jobs"
ORDER = "(raftcron's 6-field form puts seconds LAST: did you mean"
QUESTION = "'?' is only allowed in day-of-month and day-of-week, not in"

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
    # calendar forms outside their places, or in forms croniter does not have
    ("L * * * *", "UTC", {}, f"'L' is not supported in minute {LAST}"),
    ("0 0 * L *", "UTC", {}, f"'L' is not supported in month {LAST}"),
    ("0 0 5L * *", "UTC", {}, f"day-of-month entry '5L' {DOM_L}"),
    ("0 0 L-2 * *", "UTC", {}, f"day-of-month entry 'L-2' {DOM_L}"),
    ("0 0 L/2 * *", "UTC", {}, f"day-of-month entry 'L/2' {DOM_L}"),
    ("0 0 15W * *", "UTC", {},
     "'W' is not supported in day-of-month ('nearest weekday'; list the days explicitly)"),
    ("0 0 LW * *", "UTC", {},
     "'LW' is not supported in day-of-month ('last weekday'; list the days explicitly)"),
    ("0 0 * * L", "UTC", {},
     "'L' alone is not supported in day-of-week (write L5 or 5L for the last Friday; L alone is "
     "the last day in day-of-month)"),
    ("0 0 * * FRIL", "UTC", {}, f"day-of-week entry 'FRIL' {DOW_L}"),
    ("0 0 * * LFRI", "UTC", {}, f"day-of-week entry 'LFRI' {DOW_L}"),
    ("0 0 * * L5/2", "UTC", {}, f"day-of-week entry 'L5/2' {DOW_L}"),
    ("0 0 * * L8", "UTC", {},
     "day-of-week 'L8': the weekday must be 0-7 (0 and 7 are Sunday), got 8"),
    ("0 0 * * 9L", "UTC", {},
     "day-of-week '9L': the weekday must be 0-7 (0 and 7 are Sunday), got 9"),
    ("0 0 1#2 * *", "UTC", {},
     "'#' is only allowed in day-of-week, not in day-of-month (1#2 is the second Monday)"),
    ("0 0 * * 1#", "UTC", {}, f"day-of-week entry '1#' {NTH}"),
    ("0 0 * * #2", "UTC", {}, f"day-of-week entry '#2' {NTH}"),
    ("0 0 * * 1-3#2", "UTC", {}, f"day-of-week entry '1-3#2' {NTH}"),
    ("0 0 * * 1#2/2", "UTC", {}, f"day-of-week entry '1#2/2' {NTH}"),
    ("0 0 * * 1##2", "UTC", {}, f"day-of-week entry '1##2' {NTH}"),
    ("0 0 * * 1#0", "UTC", {},
     "day-of-week '1#0': the number after '#' must be 1-5 (1#2 is the second Monday), got 0"),
    ("0 0 * * 1#6", "UTC", {},
     "day-of-week '1#6': the number after '#' must be 1-5 (1#2 is the second Monday), got 6"),
    ("0 0 * * 8#1", "UTC", {},
     "day-of-week '8#1': the weekday must be 0-7 (0 and 7 are Sunday), got 8"),
    ("0 0 * * FOO#1", "UTC", {}, "unknown day-of-week name 'FOO' (use SUN-SAT or 0-7)"),
    ("0 0 * * 1#2,5", "UTC", {}, f"day-of-week '1#2,5' {MIXED}"),
    ("0 0 * * L5,MON", "UTC", {}, f"day-of-week 'L5,MON' {MIXED}"),
    ("0 0 * * *,1#2", "UTC", {}, f"day-of-week '*,1#2' {MIXED}"),
    # croniter gives these no meaning to keep (it drops the day-of-month or finds no date)
    ("0 0 15 * 1#2", "UTC", {},
     f"day-of-week '1#2' cannot be combined with a restricted day-of-month ('15'): {BOTH}"),
    ("0 0 L * L5", "UTC", {},
     f"day-of-week 'L5' cannot be combined with a restricted day-of-month ('L'): {BOTH}"),
    ("0 0 */10 * 1,5L", "UTC", {}, f"day-of-week '1,5L' {MIXED}"),
    ("0 0 */10 * 1#1", "UTC", {},
     f"day-of-week '1#1' cannot be combined with a restricted day-of-month ('*/10'): {BOTH}"),
    # a seconds-first (Quartz, Spring) expression that fails says how to write it
    ("0 0 12 * * ?", "UTC", {},
     f"{QUESTION} second {ORDER} '0 12 * * ? 0'?)"),
    ("0 15 10 ? * *", "UTC", {},
     f"{QUESTION} month {ORDER} '15 10 ? * * 0'?)"),
    ("0 0 9 * * MON-FRI", "UTC", {},
     f"second must be a number 0-59, got 'MON' {ORDER} '0 9 * * MON-FRI 0'?)"),
    ("0 30 8 * * 1", "UTC", {}, f"hour must be 0-23, got 30 {ORDER} '30 8 * * 1 0'?)"),
    ("0 0 8 ? * 5L", "UTC", {},
     f"{QUESTION} month {ORDER} '0 8 ? * 5L 0'?)"),
    ("? * * * *", "UTC", {}, "'?' is only allowed in day-of-month and day-of-week, not in minute"),
    ("0 0 ?/2 * *", "UTC", {}, "'?' must stand alone in day-of-month, got '?/2'"),
    ("0 0 31 2 *", "UTC", {}, "never fires (day 31 never occurs in February)"),
    ("0 0 30,31 2 *", "UTC", {}, "never fires (days 30 and 31 never occur in February)"),
    ("0 0 31 4,6,9,11 *", "UTC", {},
     "never fires (day 31 never occurs in April, June, September or November)"),
    ("0 0 31 FEB,APR ?", "UTC", {}, "never fires (day 31 never occurs in February or April)"),
    ("@reboot", "UTC", {}, f"'@reboot' is not supported {ALIAS_HINT}"),
    ("@every_5m", "UTC", {}, f"unknown alias '@every_5m' {ALIAS_HINT}"),
    ("@every 5m", "UTC", {},
     "'@every' is not a cron expression (it counts from a job's creation; give it as a job's "
     "schedule)"),
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
    "last_day_of_month": False,
    "nth_days_of_week": (),
}
LAST_DAY: dict[str, object] = {
    "days_of_month": (),
    "dom_restricted": True,
    "last_day_of_month": True,
}


def nth(*pairs: tuple[int, int]) -> dict[str, object]:
    return {"days_of_week": (), "dow_restricted": True, "nth_days_of_week": pairs}


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
    # calendar forms
    ("0 0 L * *", {**MIDNIGHT, **LAST_DAY}),
    ("0 0 l * ?", {**MIDNIGHT, **LAST_DAY}),
    ("0 0 1,L * *", {**MIDNIGHT, **LAST_DAY, "days_of_month": (1,)}),
    ("0 0 L,15 2 *", {**MIDNIGHT, **LAST_DAY, "days_of_month": (15,), "months": (2,)}),
    # day 31 never occurs in February, but the last day does: valid
    ("0 0 31,L 2 *", {**MIDNIGHT, **LAST_DAY, "days_of_month": (31,), "months": (2,)}),
    ("0 0 L * FRI", {**MIDNIGHT, **LAST_DAY, "days_of_week": (5,), "dow_restricted": True}),
    ("* * * * L5", nth((5, -1))),
    ("* * * * 5L", nth((5, -1))),
    ("* * * * l5", nth((5, -1))),
    ("* * * * L7", nth((0, -1))),
    ("* * * * 0L", nth((0, -1))),
    ("* * * * 1#2", nth((1, 2))),
    ("* * * * MON#2", nth((1, 2))),
    ("* * * * fri#5", nth((5, 5))),
    ("* * * * 7#1", nth((0, 1))),
    ("* * * * 1#02", nth((1, 2))),
    ("* * ? * 1#1,1#3,L0", nth((0, -1), (1, 1), (1, 3))),
    ("* * * * SUN#1,0#1", nth((0, 1))),
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


# ---------------------------------------------------------------------------- calendar forms

# fmt: off
CALENDAR_TABLE = [
    # (expression, zone, options, after (exclusive), until (inclusive), fires)
    ("0 0 L * *", "UTC", {}, "2026-01-01T00:00", "2026-05-01T00:00",
     "2026-01-31T00:00 2026-02-28T00:00 2026-03-31T00:00 2026-04-30T00:00"),
    ("0 0 L 2 *", "UTC", {}, "2026-01-01T00:00", "2029-03-01T00:00",
     "2026-02-28T00:00 2027-02-28T00:00 2028-02-29T00:00 2029-02-28T00:00"),
    ("0 0 L 2 *", "UTC", {}, "2099-03-01T00:00", "2101-03-01T00:00",
     "2100-02-28T00:00 2101-02-28T00:00"),  # 2100 is not a leap year
    ("0 0 1,L * *", "UTC", {}, "2026-01-15T00:00", "2026-03-15T00:00",
     "2026-01-31T00:00 2026-02-01T00:00 2026-02-28T00:00 2026-03-01T00:00"),
    # L with a restricted day-of-week: either matches (Vixie's rule, croniter's too)
    ("0 12 L * FRI", "UTC", {}, "2026-07-20T00:00", "2026-09-01T00:00",
     "2026-07-24T12:00 2026-07-31T12:00 2026-08-07T12:00 2026-08-14T12:00 2026-08-21T12:00"
     " 2026-08-28T12:00 2026-08-31T12:00"),
    ("0 18 * * L5", "UTC", {}, "2026-01-01T00:00", "2026-05-01T00:00",
     "2026-01-30T18:00 2026-02-27T18:00 2026-03-27T18:00 2026-04-24T18:00"),
    ("0 18 * * 5L", "UTC", {}, "2026-01-01T00:00", "2026-05-01T00:00",
     "2026-01-30T18:00 2026-02-27T18:00 2026-03-27T18:00 2026-04-24T18:00"),
    ("0 9 * * 1#2", "UTC", {}, "2026-01-01T00:00", "2026-05-01T00:00",
     "2026-01-12T09:00 2026-02-09T09:00 2026-03-09T09:00 2026-04-13T09:00"),
    ("0 9 * * MON#1,MON#3", "UTC", {}, "2026-01-01T00:00", "2026-03-01T00:00",
     "2026-01-05T09:00 2026-01-19T09:00 2026-02-02T09:00 2026-02-16T09:00"),
    # a fifth Monday exists in four months of 2026
    ("0 0 * * 1#5", "UTC", {}, "2026-01-01T00:00", "2027-01-01T00:00",
     "2026-03-30T00:00 2026-06-29T00:00 2026-08-31T00:00 2026-11-30T00:00"),
    ("0 0 * * L0,1#1", "UTC", {}, "2026-01-01T00:00", "2026-03-01T00:00",
     "2026-01-05T00:00 2026-01-25T00:00 2026-02-02T00:00 2026-02-22T00:00"),
    ("0 9 L * *", TOKYO, {}, "2026-01-01T00:00", "2026-04-01T00:00",
     "2026-01-31T00:00 2026-02-28T00:00 2026-03-31T00:00"),
    ("* * * * 1#2 */20", "UTC", {}, "2026-01-12T23:58:50", "2026-01-13T00:00:40",
     "2026-01-12T23:59 2026-01-12T23:59:20 2026-01-12T23:59:40"),
    # --- DST days are often "the last Sunday" or "the second Sunday": the rules apply as ever.
    # Europe/Berlin: spring forward on the last Sunday of March, fall back on October's.
    ("30 2 * 3,10 L0", BERLIN, {}, "2026-01-01T00:00", "2027-04-01T00:00",
     "2026-03-29T01:00 2026-10-25T00:30 2027-03-28T01:00"),
    ("30 2 * 3,10 L0", BERLIN, SKIP, "2026-01-01T00:00", "2027-04-01T00:00",
     "2026-10-25T00:30"),
    ("30 2 * 3,10 L0", BERLIN, TWICE, "2026-01-01T00:00", "2027-04-01T00:00",
     "2026-03-29T01:00 2026-10-25T00:30 2026-10-25T01:30 2027-03-28T01:00"),
    ("30 2 * 3,10 7L", BERLIN, TWICE, "2026-01-01T00:00", "2027-04-01T00:00",
     "2026-03-29T01:00 2026-10-25T00:30 2026-10-25T01:30 2027-03-28T01:00"),
    ("* 2 * 3 L0 30", BERLIN, {}, "2026-03-28T00:00", "2026-03-30T00:00", "2026-03-29T01:00"),
    ("* 2 * 3 L0 30", BERLIN, SKIP, "2026-03-28T00:00", "2026-03-30T00:00", ""),
    ("0 2 * 10 L0 0,30", BERLIN, {}, "2026-10-01T00:00", "2026-11-01T00:00",
     "2026-10-25T00:00 2026-10-25T00:00:30"),
    ("0 2 * 10 L0 0,30", BERLIN, TWICE, "2026-10-01T00:00", "2026-11-01T00:00",
     "2026-10-25T00:00 2026-10-25T00:00:30 2026-10-25T01:00 2026-10-25T01:00:30"),
    # America/New_York: spring forward on the second Sunday of March, back on November's first.
    ("30 2 * 3 0#2", NY, {}, "2026-01-01T00:00", "2028-01-01T00:00",
     "2026-03-08T07:00 2027-03-14T07:00"),
    ("30 2 * 3 0#2", NY, SKIP, "2026-01-01T00:00", "2028-01-01T00:00", ""),
    ("30 1 * 11 SUN#1", NY, {}, "2026-01-01T00:00", "2027-01-01T00:00", "2026-11-01T05:30"),
    ("30 1 * 11 SUN#1", NY, TWICE, "2026-01-01T00:00", "2027-01-01T00:00",
     "2026-11-01T05:30 2026-11-01T06:30"),
    # Australia/Lord_Howe: back 30 minutes on April's first Sunday, forward on October's.
    ("45 1 * 4 7#1", LORD_HOWE, {}, "2026-01-01T00:00", "2026-12-01T00:00", "2026-04-04T14:45"),
    ("45 1 * 4 7#1", LORD_HOWE, TWICE, "2026-01-01T00:00", "2026-12-01T00:00",
     "2026-04-04T14:45 2026-04-04T15:15"),
    ("15 2 * 10 0#1", LORD_HOWE, {}, "2026-01-01T00:00", "2027-01-01T00:00", "2026-10-03T15:30"),
    ("15 2 * 10 0#1", LORD_HOWE, SKIP, "2026-01-01T00:00", "2027-01-01T00:00", ""),
]
# fmt: on


@pytest.mark.parametrize(("expr", "tz", "opts", "after", "until", "expected"), CALENDAR_TABLE)
def test_calendar_forms_fire_table(
    expr: str, tz: str, opts: dict[str, str], after: str, until: str, expected: str
) -> None:
    s = parse(expr, tz, **opts)
    want = norm(expected) if expected else []
    assert [iso(t) for t in s.fires_between(ms(after), ms(until), 1000)] == want
    got, t = [], ms(after)  # next_after chains to the same instants
    for _ in want:
        t = s.next_after(t)
        got.append(iso(t))
    assert got == want


@pytest.mark.parametrize("tz", ["UTC", BERLIN, NY, LORD_HOWE])
@pytest.mark.parametrize(
    ("quartz", "croniter_form"),
    [("5L", "L5"), ("0L", "L0"), ("7L", "L7"), ("1L", "L1"), ("6l", "L6"), ("5L,2#1", "L5,2#1")],
)
def test_quartz_nL_is_cron_Ln(quartz: str, croniter_form: str, tz: str) -> None:
    a, b = parse(f"30 2 * * {quartz}", tz), parse(f"30 2 * * {croniter_form}", tz)
    assert (a.nth_days_of_week, a.days_of_week) == (b.nth_days_of_week, b.days_of_week)
    start = ms("2026-01-01T00:00")
    assert a.fires_between(start, start + 800 * DAY, 100) == b.fires_between(
        start, start + 800 * DAY, 100
    )


ORACLE_FORMS = (
    "0 0 L * *",
    "59 23 L * *",
    "0 12 1,L * *",
    "0 12 L,15 2 *",
    "30 9 L * MON-FRI",
    "0 0 L */3 *",
    "0 18 * * L5",
    "15 4 * * L0",
    "0 9 * * 1#2",
    "0 9 ? * MON#1,WED#3",
    "0 0 * * 1#5",
    "0 0 * FEB 0#5",
    "0 12 * * L5,1#1",
    "*/30 6-8 * * 3#4",
    "0 0 L * * 30",
    "0 0 * * 5#2 */15",
)


@pytest.mark.parametrize("tz", ["UTC", TOKYO, BERLIN, NY])
@pytest.mark.parametrize("expr", ORACLE_FORMS)
def test_calendar_forms_agree_with_croniter(expr: str, tz: str) -> None:
    # None of these fire between 01:00 and 04:00 local, where DST changes the wall clock in
    # Berlin and New York: croniter agrees with our DST rules elsewhere.
    s = parse(expr, tz)
    for start in ("2026-01-01T00:00", "2027-12-31T23:59:59", "2099-12-15T12:00"):
        aware = datetime.fromisoformat(start).replace(tzinfo=ZoneInfo(tz))
        oracle = croniter(expr, aware)
        t = int(aware.timestamp()) * 1000
        for _ in range(40):
            t = s.next_after(t)
            assert iso(t) == iso(int(oracle.get_next(datetime).timestamp()) * 1000), (expr, start)


# ---------------------------------------------------------------------------- @every

# fmt: off
EVERY_ERRORS = [
    ("@every", "'@every' takes one duration, e.g. '@every 90s' or '@every 1h30m', got '@every'"),
    ("@every 5 m",
     "'@every' takes one duration, e.g. '@every 90s' or '@every 1h30m', got '@every 5 m'"),
    ("@every 90",
     "'@every 90': '90' is not a duration (e.g. 90s, 5m, 1h30m, 2d; add a unit: '@every 90s')"),
    ("@every 5x",
     "'@every 5x': '5x' is not a duration (e.g. 90s, 5m, 1h30m, 2d; units ms, s, m, h, d)"),
    ("@every 5M",
     "'@every 5M': '5M' is not a duration (e.g. 90s, 5m, 1h30m, 2d; units ms, s, m, h, d)"),
    ("@every -5m",
     "'@every -5m': '-5m' is not a duration (e.g. 90s, 5m, 1h30m, 2d; units ms, s, m, h, d)"),
    ("@every 1.5s", "'@every 1.5s' is not a whole number of seconds (fires fall on whole seconds)"),
    ("@every 1500ms",
     "'@every 1500ms' is not a whole number of seconds (fires fall on whole seconds)"),
    ("@every 0s", "'@every 0s' is too short (at least 1s)"),
    ("@every 3651d", "'@every 3651d' is too long (at most 3650d)"),
]
# fmt: on


@pytest.mark.parametrize(("expr", "message"), EVERY_ERRORS)
def test_every_errors(expr: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        schedule_for(expr, "UTC", anchor_ms=0)
    assert str(info.value) == message


def test_every_checks_zone_and_dst_options_like_cron() -> None:
    with pytest.raises(ScheduleError, match="unknown timezone 'Mars/Base'"):
        schedule_for("@every 1m", "Mars/Base")
    with pytest.raises(ScheduleError, match="on_gap must be 'shift' or 'skip'"):
        schedule_for("@every 1m", on_gap="later")


@pytest.mark.parametrize(
    ("expr", "period_ms"),
    [
        ("@every 1s", 1_000),
        ("@every 90s", 90_000),
        ("@every 1h30m", 5_400_000),
        ("@every 1.5h", 5_400_000),
        ("@every 2000ms", 2_000),
        ("@every 2d", 172_800_000),
        ("@EVERY 5m", 300_000),
        ("  @every   10m  ", 600_000),
        ("@every 3650d", 3650 * 86_400_000),
    ],
)
def test_every_durations(expr: str, period_ms: int) -> None:
    s = schedule_for(expr, BERLIN, anchor_ms=ms("2026-01-01T10:00:07.250"))
    assert isinstance(s, EverySchedule)
    assert (s.expr, s.timezone, s.period_ms) == (expr, BERLIN, period_ms)
    assert s.anchor_ms == ms("2026-01-01T10:00:07")  # truncated to the whole second


# fmt: off
EVERY_TABLE = [
    # (expression, anchor (the job's creation), after, until, fires)
    ("@every 90s", "2026-01-01T10:00:07.250", "2026-01-01T10:00:07.250", "2026-01-01T10:05",
     "2026-01-01T10:01:37 2026-01-01T10:03:07 2026-01-01T10:04:37"),
    # never at or before the anchor, whatever "after" is
    ("@every 90s", "2026-01-01T10:00:07.250", "2020-01-01T00:00", "2026-01-01T10:02",
     "2026-01-01T10:01:37"),
    ("@every 1h30m", "2026-01-01T10:00:07", "2026-01-01T13:00", "2026-01-01T17:00",
     "2026-01-01T13:00:07 2026-01-01T14:30:07 2026-01-01T16:00:07"),
    # "after" exactly on a fire: the next one
    ("@every 1h30m", "2026-01-01T10:00:07", "2026-01-01T13:00:07", "2026-01-01T16:00:07",
     "2026-01-01T14:30:07 2026-01-01T16:00:07"),
    ("@every 1h30m", "2026-01-01T10:00:07", "2026-01-01T13:00:06.999", "2026-01-01T13:00:07",
     "2026-01-01T13:00:07"),
    # real time: across Berlin's spring forward and fall back, still one hour apart
    ("@every 1h", "2026-03-28T23:20:00", "2026-03-29T00:00", "2026-03-29T03:00",
     "2026-03-29T00:20 2026-03-29T01:20 2026-03-29T02:20"),
    ("@every 1h", "2026-10-24T23:20:00", "2026-10-25T00:00", "2026-10-25T03:00",
     "2026-10-25T00:20 2026-10-25T01:20 2026-10-25T02:20"),
    ("@every 1d", "2026-01-01T00:00:00", "2028-02-27T12:00", "2028-03-01T00:00",
     "2028-02-28T00:00 2028-02-29T00:00 2028-03-01T00:00"),
]
# fmt: on


@pytest.mark.parametrize("tz", ["UTC", BERLIN, LORD_HOWE])
@pytest.mark.parametrize(("expr", "anchor", "after", "until", "expected"), EVERY_TABLE)
def test_every_fires(
    expr: str, anchor: str, after: str, until: str, expected: str, tz: str
) -> None:
    s = schedule_for(expr, tz, anchor_ms=ms(anchor), on_gap="skip", on_repeat="twice")
    want = norm(expected)
    assert [iso(t) for t in s.fires_between(ms(after), ms(until), 1000)] == want
    got, t = [], ms(after)
    for _ in want:
        t = s.next_after(t)
        got.append(iso(t))
    assert got == want


@pytest.mark.parametrize(
    ("every", "cron", "anchor"),
    [
        ("@every 1m", "* * * * *", "2026-03-01T00:00"),
        ("@every 15s", "* * * * * */15", "2026-03-01T00:00"),
        ("@every 5m", "*/5 * * * *", "2026-03-01T07:00:00.999"),
        ("@every 1h", "0 * * * *", "2020-01-01T00:00"),
        ("@every 1d", "0 0 * * *", "2026-03-01T00:00"),
    ],
)
def test_every_aligned_at_midnight_utc_equals_its_cron(every: str, cron: str, anchor: str) -> None:
    e, c = schedule_for(every, anchor_ms=ms(anchor)), parse(cron)
    after = ms("2026-03-28T22:59:30.500")
    assert e.fires_between(after, after + 2 * DAY, 5000) == c.fires_between(
        after, after + 2 * DAY, 5000
    )


def test_every_is_deterministic_and_bounded() -> None:
    anchor = ms("2026-05-05T05:05:05.555")
    a = schedule_for("@every 7s", anchor_ms=anchor)
    assert a == schedule_for("@every 7s", anchor_ms=anchor)  # a value: same anchor, same fires
    assert a != schedule_for("@every 7s", anchor_ms=anchor + 1000)
    assert a.fires_between(anchor, anchor + 100_000, 3) == [
        ms("2026-05-05T05:05:12"),
        ms("2026-05-05T05:05:19"),
        ms("2026-05-05T05:05:26"),
    ]
    assert a.fires_between(anchor, anchor, 3) == []
    assert a.fires_between(anchor, anchor + DAY, 0) == []
    late = schedule_for("@every 1d", anchor_ms=ms("9999-12-30T12:00"))
    assert late.next_after(ms("9999-12-30T12:00")) == ms("9999-12-31T12:00")
    with pytest.raises(ValueError, match="no fire before the year 10000"):
        late.next_after(ms("9999-12-31T12:00"))
    assert late.fires_between(ms("9999-12-30T00:00"), 2**62, 10) == [ms("9999-12-31T12:00")]


def test_schedule_for_gives_cron_schedules_unchanged() -> None:
    assert schedule_for("*/5 * * * *", BERLIN, anchor_ms=123) is parse("*/5 * * * *", BERLIN)
    assert schedule_for("@daily", TOKYO, on_repeat="twice") is parse(
        "@daily", TOKYO, on_repeat="twice"
    )


# ---------------------------------------------------------------------------- field order

WHAT = "fires every second of each minute it matches"

# fmt: off
FIELD_ORDER = [
    # (expression, the seconds-last expression the warning suggests, or None: no warning)
    ("*/10 * * * * *", "* * * * * */10"),
    ("0 */5 * * * *", "*/5 * * * * 0"),
    ("0 0 12 * * *", "0 12 * * * 0"),  # Spring: noon every day
    ("0 20 * * * *", "20 * * * * 0"),  # every hour at :20 (seconds-first)
    ("15,45 * * * * *", "* * * * * 15,45"),
    ("0 0 * * * *", "0 * * * * 0"),
    ("0 0 12 * * */1", "0 12 * * */1 0"),  # every second, spelled */1
    ("0 0 12 * * 0-59", None),  # as seconds-first, 0-59 is no day-of-week: no reading to offer
    ("0 0 9 * * 1-5", "0 9 * * 1-5 0"),  # seconds 1-5 read better as Monday-Friday
    ("0 0 9 * * 1,3,5", "0 9 * * 1,3,5 0"),
    ("0 15 10 * * 0-6", "15 10 * * 0-6 0"),
    # ordinary expressions: no warning
    ("* * * * *", None),
    ("*/10 * * * *", None),
    ("0 0 12 * *", None),
    ("@hourly", None),
    ("@every 10s", None),
    ("* * * * * *", None),  # every second: the same in both orders
    ("* * * * * */10", None),
    ("*/5 * * * * 0", None),
    ("0 3 * * * 30", None),
    ("0 3 * * * 5", None),  # one second: a deliberate offset
    ("0 3 * * * 0,30", None),
    ("* 9-17 * * MON-FRI *", None),  # every second, every minute: no seconds to misplace
    ("*/1 * * * * *", None),
    ("0 0 25 * * *", None),  # as seconds-first, hour 25 is invalid: not seconds-first
    ("0 0 12 * MON *", None),  # as seconds-first, MON is no month
    ("30 0 L * * *", None),  # as seconds-first, L is no hour
    ("0 0 12 * * ?", None),  # invalid: the parse error says it
    ("not a cron", None),
]
# fmt: on


@pytest.mark.parametrize(("expr", "fix"), FIELD_ORDER)
def test_field_order_warning(expr: str, fix: str | None) -> None:
    got = field_order_warning(expr)
    if fix is None:
        assert got is None
        return
    assert got is not None and got.startswith(
        "raftcron's 6-field form puts seconds LAST (minute hour day-of-month month day-of-week "
        f"second): {expr!r} fires "
    )
    assert got.endswith(f"; if it is seconds-first (Quartz, Spring, Dkron), did you mean {fix!r}?")
    parse(fix)  # the suggestion is valid


def test_field_order_warning_says_what_it_does() -> None:
    assert field_order_warning("*/10 * * * * *") == (
        "raftcron's 6-field form puts seconds LAST (minute hour day-of-month month day-of-week "
        f"second): '*/10 * * * * *' {WHAT}; if it is seconds-first (Quartz, Spring, Dkron), "
        "did you mean '* * * * * */10'?"
    )
    assert "'0 0 9 * * 1-5' fires at seconds 1-5 of each minute it matches" in (
        field_order_warning("0 0 9 * * 1-5") or ""
    )


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


WEEKDAY = st.one_of(st.integers(0, 7).map(str), st.sampled_from(DAYS))
# "1#2"/"MON#2" (the nth weekday), "L5" (the last one) and Quartz's "5L" (the same)
CALENDAR_DOW = st.lists(
    st.one_of(
        st.tuples(WEEKDAY, st.integers(1, 5)).map(lambda t: f"{t[0]}#{t[1]}"),
        st.integers(0, 7).map(lambda d: f"L{d}"),
        st.integers(0, 7).map(lambda d: f"{d}L"),
    ),
    min_size=1,
    max_size=3,
).map(",".join)
# "L" (the last day of the month), alone or listed with days
CALENDAR_DOM = st.one_of(
    st.just("L"),
    st.lists(st.integers(1, 31).map(str), min_size=1, max_size=2).map(
        lambda d: ",".join(["L", *d])
    ),
)


@st.composite
def expressions(draw: st.DrawFn, seconds: bool | None = None) -> str:
    if draw(st.integers(0, 3)) == 0:  # a calendar form in day-of-week (day-of-month '*')
        days = [draw(st.sampled_from(["*", "?"])), draw(CALENDAR_DOW)]
    else:
        dom = draw(st.one_of(_field(1, 31, 31), st.just("?"), CALENDAR_DOM))
        days = [dom, draw(st.one_of(_field(0, 7, 7, DAYS), st.just("?")))]
    fields = [
        draw(_field(0, 59, 60)),
        draw(_field(0, 23, 24)),
        days[0],
        draw(_field(1, 12, 12, MONTHS)),
        days[1],
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
    # croniter spells the last Friday L5 only (Quartz's 5L is ours alone)
    fields = expr.split()
    fields[4] = ",".join(f"L{i[:-1]}" if i.endswith("L") else i for i in fields[4].split(","))
    oracle = croniter(" ".join(fields), aware)
    t = int(aware.timestamp()) * 1000 + aware.microsecond // 1000
    for _ in range(3):
        expected = oracle.get_next(datetime)
        t = s.next_after(t)
        assert iso(t) == iso(int(expected.timestamp()) * 1000), expr


# ---------------------------------------------------------------------------- two oracles
#
# The engine is our own (pure, deterministic, no third-party code at run time); croniter
# and cronsim are test-only oracles. Where they agree, we agree with both; where they
# disagree with each other, ORACLE_DISAGREEMENTS names the rule we follow.


def _cronsim_form(expr: str) -> str:
    """Our expression in cronsim's spelling: seconds first, '?' as '*', and the last
    weekday as '5L' (our 'L5')."""
    fields = expr.split()
    if len(fields) == 6:
        fields = [fields[5], *fields[:5]]
    fields = ["*" if f == "?" else f for f in fields]
    fields[-1] = ",".join(
        f"{i[1:]}L" if i.startswith("L") and len(i) > 1 else i for i in fields[-1].split(",")
    )
    return " ".join(fields)


def _croniter_form(expr: str) -> str:
    """Our expression in croniter's spelling: the last weekday as 'L5' (Quartz's '5L' is
    ours alone)."""
    fields = expr.split()
    fields[4] = ",".join(f"L{i[:-1]}" if i.endswith("L") else i for i in fields[4].split(","))
    return " ".join(fields)


def _oracles_share_the_day_rule(expr: str, s: CronSchedule) -> bool:
    """False where the day rule differs (ORACLE_DISAGREEMENTS): cronsim requires both day
    fields when either starts with '*' (Vixie/Debian); croniter and we take either; and
    croniter reads a day field covering every value as '*'. Also cronsim's weekday 'A/S'
    runs on to 7 (Sunday), croniter's and ours stop at Saturday."""
    dom, dow = expr.split()[2], expr.split()[4]
    both = s.dom_restricted and s.dow_restricted
    if both and (dom.startswith("*") or dow.startswith("*")):
        return False
    if both and (len(s.days_of_month) == 31 or len(s.days_of_week) == 7):
        return False
    return not any("/" in i and i[0].isdigit() and "-" not in i for i in dow.split(","))


@pytest.mark.parametrize("tz", ["UTC", TOKYO])
@settings(max_examples=400, deadline=None)
@given(expr=expressions(), start=START)
def test_next_after_agrees_with_croniter_and_cronsim(tz: str, expr: str, start: datetime) -> None:
    s = _parse_or_reject(expr, tz)
    assume(_oracles_share_the_day_rule(expr, s))
    aware = start.replace(tzinfo=ZoneInfo(tz))
    one = croniter(_croniter_form(expr), aware)
    two = CronSim(_cronsim_form(expr), aware)
    t = int(aware.timestamp()) * 1000 + aware.microsecond // 1000
    for _ in range(3):
        t = s.next_after(t)
        a, b = one.get_next(datetime), next(two)
        assert iso(t) == iso(int(a.timestamp()) * 1000) == iso(int(b.timestamp()) * 1000), (
            expr,
            a,
            b,
        )


# (what differs, expression, zone, start, options, croniter's fires, cronsim's fires, the
# oracle whose rule we follow: docs/jobs.md "Schedules" and "Daylight saving time",
# raftcron/core/schedule.py). Fires are local wall times with their offsets.
ORACLE_DISAGREEMENTS = [
    ("a one-value range A-A is A: croniter 7 reads it as '*'",
     "5-5 * * * *", "UTC", "2026-01-01T00:00", {},
     "00:01+00:00 00:02+00:00 00:03+00:00", "00:05+00:00 01:05+00:00 02:05+00:00",
     "cronsim"),
    ("day rule: a restricted day field starting with '*' (*/2) still means EITHER day "
     "field matches (croniter); cronsim requires both (Vixie/Debian cron)",
     "0 0 */2 * 1", "UTC", "2026-01-01T00:00", {},
     "01-03T00:00+00:00 01-05T00:00+00:00 01-07T00:00+00:00",
     "01-05T00:00+00:00 01-19T00:00+00:00 02-09T00:00+00:00",
     "croniter"),
    ("weekday A/S stops at Saturday (croniter); cronsim runs on to 7, Sunday",
     "0 0 * * 5/2", "UTC", "2026-01-01T00:00", {},
     "01-02T00:00+00:00 01-09T00:00+00:00 01-16T00:00+00:00",
     "01-02T00:00+00:00 01-04T00:00+00:00 01-09T00:00+00:00",
     "croniter"),
    ("spring forward, an interval job: its fires in the gap run once at the first instant "
     "after it (dst_gap = shift, croniter); cronsim drops them",
     "*/30 2 * * *", NY, "2026-03-07T12:00", {},
     "03-08T03:00-04:00 03-09T02:00-04:00 03-09T02:30-04:00",
     "03-09T02:00-04:00 03-09T02:30-04:00 03-10T02:00-04:00",
     "croniter"),
    ("fall back, a fixed time: it runs once, at the first occurrence (dst_repeat = once, "
     "cronsim); croniter runs it at both",
     "30 1 * * *", NY, "2026-10-31T12:00", {},
     "11-01T01:30-04:00 11-01T01:30-05:00 11-02T01:30-05:00",
     "11-01T01:30-04:00 11-02T01:30-05:00 11-03T01:30-05:00",
     "cronsim"),
]  # fmt: skip


def _wall(times: list[datetime], year: str, short: bool = False) -> list[str]:
    """Fires as the table writes them: 'MM-DDTHH:MM+hh:mm', or 'HH:MM+hh:mm' for one day."""
    out = []
    for t in times:
        text = t.isoformat(timespec="minutes").removeprefix(year + "-")
        out.append(text[6:] if short else text)
    return out


@pytest.mark.parametrize(
    ("what", "expr", "tz", "start", "opts", "by_croniter", "by_cronsim", "ours"),
    ORACLE_DISAGREEMENTS,
    ids=[row[1] + (" twice" if row[4] else "") for row in ORACLE_DISAGREEMENTS],
)
def test_where_the_oracles_disagree_we_follow_the_documented_rule(
    what: str,
    expr: str,
    tz: str,
    start: str,
    opts: dict[str, str],
    by_croniter: str,
    by_cronsim: str,
    ours: str,
) -> None:
    aware = datetime.fromisoformat(start).replace(tzinfo=ZoneInfo(tz))
    short = "T" not in by_croniter.split()[0]  # one day: times only
    n = len(by_croniter.split())
    one = croniter(_croniter_form(expr), aware)
    two = CronSim(_cronsim_form(expr), aware)
    year = start[:4]
    got_croniter = _wall([one.get_next(datetime) for _ in range(n)], year, short)
    got_cronsim = _wall([next(two) for _ in range(n)], year, short)
    # the oracles still disagree, as the table says (a new release may change that)
    assert got_croniter == by_croniter.split(), what
    assert got_cronsim == by_cronsim.split(), what
    assert got_croniter != got_cronsim
    s = parse(expr, tz, **opts)
    t = int(aware.timestamp()) * 1000
    mine = []
    for _ in range(n):
        t = s.next_after(t)
        mine.append(datetime.fromtimestamp(t / 1000, ZoneInfo(tz)))
    want = {"croniter": by_croniter, "cronsim": by_cronsim}[ours]
    assert _wall(mine, year, short) == want.split(), what


def test_fall_back_interval_jobs_follow_dst_repeat_not_the_oracles() -> None:
    """Where both oracles agree and we do not, by a documented rule: in the repeated hour
    both run an interval job's wall times twice; dst_repeat = "once" (the default) runs
    them once, so the job pauses for the repeated hour, and "twice" runs them like both."""
    aware = datetime(2026, 10, 31, 12, tzinfo=ZoneInfo(NY))
    both = ["11-01T01:00-04:00", "11-01T01:30-04:00", "11-01T01:00-05:00", "11-01T01:30-05:00"]
    one, two = croniter("*/30 1 * * *", aware), CronSim("*/30 1 * * *", aware)
    assert _wall([one.get_next(datetime) for _ in range(4)], "2026") == both
    assert _wall([next(two) for _ in range(4)], "2026") == both
    for opts, want in (
        ({}, "11-01T01:00-04:00 11-01T01:30-04:00 11-02T01:00-05:00 11-02T01:30-05:00"),
        (TWICE, " ".join(both)),
    ):
        s, t, mine = parse("*/30 1 * * *", NY, **opts), int(aware.timestamp()) * 1000, []
        for _ in range(4):
            t = s.next_after(t)
            mine.append(datetime.fromtimestamp(t / 1000, ZoneInfo(NY)))
        assert _wall(mine, "2026") == want.split(), opts


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
        ndays = calendar.monthrange(w.year, w.month)[1]
        weekday = (w.weekday() + 1) % 7
        dom_ok = w.day in s.days_of_month or (s.last_day_of_month and w.day == ndays)
        dow_ok = weekday in s.days_of_week or any(
            day == weekday and (w.day + 7 > ndays if n == -1 else (w.day - 1) // 7 + 1 == n)
            for day, n in s.nth_days_of_week
        )
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
