"""Durations as the config file, the API and the CLI write them ("500ms", "30s", "1h30m").

Kept apart from :mod:`raftcron.config` so that a one-shot CLI call (``raftcron lock``)
parses its options without importing the config machinery (tomllib, the schedule engine,
thirty dataclasses, a few hundred regular expressions). It imports nothing at all when
a duration is valid (not even ``re``: ``raftcron lock`` imports neither it nor ``enum``);
``json`` and ``re`` only to word an error. :class:`ConfigError` lives here for the same
reason; :mod:`raftcron.config` re-exports it, and it is the same class.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

MAX_DURATION_MS = 3650 * 86_400_000  # ten years: anything longer is a typo
DURATION_FIX = 'write e.g. "500ms", "30s", "5m", "1h30m", "2d", or a number of seconds'

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class ConfigError(Exception):
    """Everything wrong with one config file (or one job definition).

    ``errors`` holds one message per problem; ``str()`` joins them with newlines.
    """

    def __init__(self, errors: Iterable[str]) -> None:
        self.errors: list[str] = list(errors)
        super().__init__("\n".join(self.errors))


def quoted(value: str) -> str:
    """A value quoted for a message (JSON/TOML style double quotes)."""
    import json

    return json.dumps(value, ensure_ascii=False)


def type_name(value: object) -> str:
    """``value``'s type as a config file would call it ("an integer", "a table")."""
    from collections.abc import Mapping

    match value:
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a float"
        case str():
            return "a string"
        case list() | tuple():
            return "an array"
        case Mapping():
            return "a table"
        case None:
            return "null"
    return "a date/time" if hasattr(value, "isoformat") else type(value).__name__


def _round_half_even(num: int, den: int) -> int:
    """``round(Fraction(num, den))`` for ``den > 0``, without importing fractions."""
    q, r = divmod(num, den)
    if 2 * r > den or (2 * r == den and q % 2 == 1):
        q += 1
    return q


def _digits(text: str, pos: int) -> int:
    """The end of the run of digits at ``pos`` (``isdecimal``: what the regex ``\\d`` takes)."""
    while pos < len(text) and text[pos].isdecimal():
        pos += 1
    return pos


def _part(text: str, pos: int) -> tuple[str, str, str, int] | None:
    """The part ``(\\d+(?:\\.\\d+)?|\\.\\d+)(ms|s|m|h|d)`` at ``pos``: whole digits,
    fraction digits, unit and where it ends; None if there is none."""
    end = _digits(text, pos)
    whole, frac = text[pos:end], ""
    if end < len(text) and text[end] == ".":
        f_end = _digits(text, end + 1)
        if f_end > end + 1:  # "5." is not a number here, ".5" is
            frac, end = text[end + 1 : f_end], f_end
    if not whole and not frac:
        return None
    for unit in ("ms", "s", "m", "h", "d"):  # "ms" before "m", as the regex tried it
        if text.startswith(unit, end):
            return whole, frac, unit, end + len(unit)
    return None


def parse_duration(value: object, where: str) -> int:
    """A duration in milliseconds from ``"500ms"``, ``"30s"``, ``"1h30m"``, ``"2d"``, or a
    bare number of seconds (int or float). Raises :class:`ConfigError` naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(
            [f"{where}: expected a duration, got {type_name(value)} ({DURATION_FIX})"]
        )
    if isinstance(value, str):
        text = value.strip()
        negative = text.startswith("-")
        body = text[1:] if negative else text
        pos = 0
        num, den = 0, 1  # the exact total in milliseconds, num / den
        while (part := _part(body, pos)) is not None:
            whole, frac, unit, pos = part
            scale = 10 ** len(frac)
            ms_part = (int(whole or "0") * scale + int(frac or "0")) * _UNIT_MS[unit]
            num, den = num * scale + ms_part * den, den * scale
        if not body or pos != len(body):
            import re

            hint = DURATION_FIX
            if re.fullmatch(r"\d+(\.\d+)?", body):
                hint = f'add a unit: "{body}s" for seconds, "{body}ms" for milliseconds'
            raise ConfigError([f"{where}: {quoted(value)} is not a duration ({hint})"])
        if negative and num:
            raise ConfigError([f"{where}: {quoted(value)} is negative (durations are 0 or more)"])
        ms = _round_half_even(num, den)
    else:
        if isinstance(value, float) and value - value != 0.0:  # inf or nan
            raise ConfigError([f"{where}: {value} is not a duration ({DURATION_FIX})"])
        if value < 0:
            raise ConfigError([f"{where}: {value} is negative (durations are 0 or more)"])
        from fractions import Fraction  # exact for floats; never on the CLI's path

        ms = round(Fraction(value) * 1000)
    if ms > MAX_DURATION_MS:
        shown = quoted(value) if isinstance(value, str) else str(value)
        raise ConfigError([f"{where}: {shown} is too long (at most 3650d)"])
    return ms
