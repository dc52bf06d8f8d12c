"""Checks of TOML values shared by the cluster file (``raftcron.config``) and job tables
(``raftcron.jobconfig``): each reports a problem as ``<key>: <problem> (<fix>)`` into an
:class:`_Errors` and returns a usable value (or None) so the rest of the file is checked too.

The names are package-private (underscored): only the two parsers use them. No I/O.
"""

from __future__ import annotations

import difflib
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

from raftcron.durations import ConfigError, parse_duration, quoted, type_name

_BARE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_URL_FIX: Final = 'a full http:// or https:// URL, e.g. "https://hooks.example.com/raftcron"'

T = TypeVar("T")


class _Errors:
    """Collects ``<key>: <problem>`` messages; the file name is prefixed at the end."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, problem: str) -> None:
        self.items.append(f"{key}: {problem}" if key else problem)

    def extend(self, exc: ConfigError) -> None:
        self.items.extend(exc.errors)


_q = quoted


def _k(name: str) -> str:
    """A table key as TOML would write it in a dotted key."""
    return name if _BARE_KEY_RE.fullmatch(name) else _q(name)


def _join(where: str, key: str) -> str:
    """``where`` + ``key``: dotted for key paths, ``": "`` for descriptions like "request body"."""
    if not where:
        return key
    if " " in where and ": " not in where:  # "request body: notify" is a key path again
        return f"{where}: {key}"
    return f"{where}.{key}"


_type_name = type_name


def _unknown_keys(
    errs: _Errors, table: Mapping[str, Any], known: tuple[str, ...], where: str
) -> None:
    for key in table:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        fix = f'did you mean "{close[0]}"?' if close else "known keys: " + ", ".join(known)
        errs.add(_join(where, _k(key)), f"unknown key ({fix})")


def _get_str(errs: _Errors, table: Mapping[str, Any], key: str, where: str) -> str | None:
    """The string at ``key``, None if absent; wrong types are reported and give None."""
    value = table.get(key)
    if value is None or isinstance(value, str):
        return value
    errs.add(
        _join(where, key), f"expected a string, got {_type_name(value)} (put it in double quotes)"
    )
    return None


def _get_bool(errs: _Errors, table: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    value = table.get(key)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    errs.add(
        _join(where, key),
        f"expected true or false, got {_type_name(value)} (write true or false, no quotes)",
    )
    return default


def _get_table(errs: _Errors, table: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = table.get(key)
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return value
    full = _join(where, key)
    errs.add(full, f"expected a table, got {_type_name(value)} (write it as a [{full}] table)")
    return {}


def _get_str_map(
    errs: _Errors, table: Mapping[str, Any], key: str, where: str
) -> tuple[tuple[str, str], ...]:
    """A table of strings as sorted pairs (sorted: equal tables give equal specs)."""
    value = table.get(key)
    if value is None:
        return ()
    example = 'e.g. tags = { role = "db" }' if key == "tags" else 'e.g. env = { KEY = "value" }'
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        got = _type_name(value) if not isinstance(value, Mapping) else "other values"
        errs.add(_join(where, key), f"expected a table of strings, got {got} ({example})")
        return ()
    return tuple(sorted(value.items()))


def _get_int(
    errs: _Errors, table: Mapping[str, Any], key: str, where: str, default: int, minimum: int
) -> int:
    value = table.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        errs.add(
            _join(where, key),
            f"expected an integer, got {_type_name(value)} (write a whole number, no quotes)",
        )
        return default
    if value < minimum:
        too = "negative" if value < 0 else "too small"
        errs.add(_join(where, key), f"{value} is {too} (use {minimum} or more)")
        return default
    return value


def _guard(errs: _Errors, fn: Callable[[], T]) -> T | None:
    """Run ``fn``; a ConfigError it raises is collected and gives None."""
    try:
        return fn()
    except ConfigError as exc:
        errs.extend(exc)
        return None


def _fmt_ms(ms: int) -> str:
    if ms % 1000:
        return f"{ms}ms"
    return f"{ms // 1000}s"


def _get_duration(
    errs: _Errors,
    table: Mapping[str, Any],
    key: str,
    where: str,
    default: int | None,
    minimum: int = 0,
) -> int | None:
    if table.get(key) is None:
        return default
    ms = _guard(errs, lambda: parse_duration(table[key], _join(where, key)))
    if ms is None:
        return default
    if ms < minimum:
        why = {
            "lease": "a lease must outlive a renewal round trip",
            "timeout": "omit timeout for no limit",
            "max_apply_lag": "a member applying normally is behind for a moment at times",
        }.get(key, "")
        fix = f"at least {_fmt_ms(minimum)}" + (f"; {why}" if why else "")
        errs.add(_join(where, key), f"{_fmt_ms(ms)} is too short ({fix})")
        return default
    return ms


def _q_any(value: object) -> str:
    return _q(value) if isinstance(value, str) else _type_name(value)


def _one_of(values: Iterable[str]) -> str:
    quoted = [_q(v) for v in values]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _url(errs: _Errors, value: object, key: str) -> str | None:
    """An absolute http(s) URL, or None with the problem reported."""
    if not isinstance(value, str):
        errs.add(key, f"expected a string, got {_type_name(value)} ({_URL_FIX})")
        return None
    ok = not any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value)
    try:
        parts = urllib.parse.urlsplit(value)
        _ = parts.port  # a port out of range raises ValueError
        ok = ok and parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        errs.add(key, f"{_q(value)} is not an http(s) URL (give {_URL_FIX})")
        return None
    return value
