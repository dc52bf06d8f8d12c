"""A job's ``[[jobs]]`` table (or ``PUT /v1/jobs/{name}`` body) -> a validated ``JobSpec``.

:func:`job_spec_from_mapping` is the single definition of what a job table may contain: its
keys, defaults, kinds of value, bounds and allowed values come from the job field table
(``raftcron.core.jobfields``); what each key means for the others (``after`` against
``schedule``, ``http`` against ``command``, the backoff cap against the backoff) is written
out here, in the order the checks run (and messages appear). A key of the table with no rule
of its own here is checked by its kind alone (:func:`_by_kind`). ``raftcron.config`` uses it
for the file, the HTTP API for ``PUT`` bodies, ``raftcron.embed`` for embedded jobs.

Messages: ``<where>.<key>: <problem> (<fix>)``, every problem found, no file name (the
caller adds it). No I/O except resolving a relative ``cwd`` against the file's directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from raftcron.core.jobfields import (
    BOOL,
    DURATION,
    FIELDS_BY_KEY,
    INT,
    JOB_FIELDS,
    JOB_KEYS,
    MAX_AFTER,
    MAX_CPU_LIMIT_S,
    MAX_MEMORY_LIMIT,
    MAX_NOFILE_LIMIT,
    MAX_PASSTHROUGH,
    MIN_MEMORY_LIMIT,
    OPT_DURATION,
    OPT_INT,
    PAIRS,
    JobField,
)
from raftcron.core.model import (
    COUNT_ALL,
    DEFAULT_LEASE_MS,
    DEFAULT_RETRY_BACKOFF_MAX_MS,
    DEFAULT_RETRY_BACKOFF_MS,
    HTTP_METHODS,
    LIMIT_KEYS,
    MAX_COUNT,
    MAX_JITTER_MS,
    NOTIFY_EVENTS,
    HttpSpec,
    JobSpec,
    NotifyTarget,
)
from raftcron.core.schedule import ScheduleError, field_order_warning, parse, schedule_for
from raftcron.durations import ConfigError, parse_duration
from raftcron.tomlcheck import (
    _URL_FIX,
    _Errors,
    _fmt_ms,
    _get_bool,
    _get_duration,
    _get_int,
    _get_str,
    _get_str_map,
    _join,
    _k,
    _one_of,
    _q,
    _q_any,
    _type_name,
    _unknown_keys,
    _url,
)

MIN_LEASE_MS: Final = 1_000
_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NAME_FIX: Final = "a letter or digit, then up to 63 letters, digits, '.', '_' or '-'"

_HTTP_KEYS: Final = ("url", "method", "headers", "body", "expect")
_TARGET_KEYS: Final = ("url", "on")
_HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ACCOUNT_RE: Final = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]{0,63}\$?")
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SIZE_RE: Final = re.compile(r"(\d{1,20})\s*(?:([KMGTkmgt])(?:i?[Bb])?)?")
# The variables every run of a command job gets (raftcron/executor/runner.py sets them).
RUN_VARIABLES: Final = (
    "RAFTCRON_JOB",
    "RAFTCRON_RUN_ID",
    "RAFTCRON_SCHEDULED_AT",
    "RAFTCRON_FENCE",
    "RAFTCRON_NODE",
    "RAFTCRON_ATTEMPT",
    "RAFTCRON_INSTANCE",
    "RAFTCRON_COUNT",
    "RAFTCRON_PARENT_RUN_ID",
)
_NO_TOKEN: Final = (
    "the agent's API token is never given to a job (put a token of the job's own in env, "
    "or in a file the job's account can read)"
)
_PASSTHROUGH_REFUSED: Final = {"RAFTCRON_TOKEN": _NO_TOKEN, "RAFTCRON_TOKEN_FILE": _NO_TOKEN}


# ---------------------------------------------------------------------------- jobs


class _Job:
    """One job table being checked: the values found so far, by ``JobSpec`` attribute
    (absent: the attribute's default), and the keys already checked."""

    def __init__(self, errs: _Errors, raw: Mapping[str, Any], where: str) -> None:
        self.errs, self.raw, self.where = errs, raw, where
        self.values: dict[str, Any] = {}
        self.done: set[str] = set()

    def set(self, f: JobField, value: Any) -> None:
        if value is not None:
            self.values[f.attr] = value

    def check(self, key: str, default: Any = None) -> Any:
        """Check ``key`` by its kind (:func:`_by_kind`) and keep its value; the value, or
        ``default`` when it is absent or invalid."""
        f = FIELDS_BY_KEY[key]
        self.done.add(key)
        value = _by_kind(self.errs, self.raw, self.where, f, default)
        self.set(f, value)
        return value


def _by_kind(errs: _Errors, raw: Mapping[str, Any], where: str, f: JobField, default: Any) -> Any:
    """What a key's kind and the table's bounds say about its value (None: absent or
    invalid, reported)."""
    key = f.key or f.attr
    if f.kind in (DURATION, OPT_DURATION):
        return _get_duration(errs, raw, key, where, default, minimum=f.minimum or 0)
    if f.kind == BOOL:
        return _get_bool(errs, raw, key, where, f.default)
    if f.kind == PAIRS:
        return _get_str_map(errs, raw, key, where)
    if f.kind in (INT, OPT_INT):
        if raw.get(key) is None:
            return default
        number: int | None = _get_int(errs, raw, key, where, 0, minimum=f.minimum or 0)
        if f.kind == OPT_INT:
            number = number or None  # (0: refused above, as below the minimum)
        if number is not None and f.maximum is not None and number > f.maximum:
            errs.add(_join(where, key), f"{number} is too many (at most {f.maximum}{f.max_hint})")
            return None
        return number
    text = _get_str(errs, raw, key, where)  # STR, OPT_STR, ENUM
    if text is None:
        return None
    if f.choices and text not in f.choices:
        hint = f": {f.choice_hint}" if f.choice_hint else ""
        errs.add(_join(where, key), f"{_q(text)} is not allowed (use {_one_of(f.choices)}{hint})")
        return None
    if f.maximum is not None and len(text) > f.maximum:
        errs.add(
            _join(where, key),
            f"{len(text)} characters is too long (at most {f.maximum}{f.max_hint})",
        )
        return None
    return text


def job_spec_from_mapping(
    raw: Mapping[str, Any],
    where: str,
    *,
    default_lease_ms: int = DEFAULT_LEASE_MS,
    base_dir: Path | None = None,
) -> JobSpec:
    """Validate one job definition (a ``[[jobs]]`` table or a ``PUT`` body).

    ``where`` prefixes every key in messages: ``"jobs[2]"`` gives ``jobs[2].schedule: ...``,
    a description with a space such as ``"request body"`` gives ``request body: schedule:
    ...``. A relative ``cwd`` is resolved against ``base_dir``; without one (the API) it must
    be absolute. Raises :class:`ConfigError` with every problem found; the messages carry no
    file name (the caller adds it).
    """
    errs = _Errors()
    if not isinstance(raw, Mapping):
        errs.add(
            where,
            f"expected a table of job keys, got {_type_name(raw)} (give name, schedule and "
            "command at least)",
        )
        raise ConfigError(errs.items)
    _unknown_keys(errs, raw, JOB_KEYS, where)
    job = _Job(errs, raw, where)
    v = job.values
    job.done.update(("name", "after", "schedule", "timezone", "http", "command", "notify"))
    job.done.update(("ping_url", "count", "env", "cwd", "user", "group", "limits"))
    job.done.add("env_passthrough")

    name = _get_str(errs, raw, "name", where)
    if raw.get("name") is None:
        errs.add(_join(where, "name"), 'missing (give the job a name, e.g. name = "backup")')
    elif name is not None and not _NAME_RE.fullmatch(name):
        errs.add(_join(where, "name"), f"{_q(name)} is not a valid job name ({_NAME_FIX})")

    v["after"] = _job_after(errs, raw, where, name) or ()
    has_after = raw.get("after") is not None  # (even if invalid: reported once, above)
    schedule = _get_str(errs, raw, "schedule", where)
    if has_after and raw.get("schedule") is not None:
        errs.add(
            _join(where, "schedule"),
            "set together with after (a job with after runs when its parents' fire has "
            "settled and has no schedule of its own: remove schedule, or remove after)",
        )
        schedule = None
    elif has_after:
        schedule = ""
        for key in ("catchup", "catchup_mode", "jitter"):
            if raw.get(key) is not None:
                errs.add(
                    _join(where, key),
                    "only applies to a job with a schedule (a job with after runs when its "
                    "parents' fire settles; remove it)",
                )
    elif raw.get("schedule") is None:
        errs.add(
            _join(where, "schedule"),
            'missing (e.g. schedule = "0 3 * * *"; 5 fields, or 6 with seconds last; or '
            'after = ["other-job"] to run after other jobs)',
        )
    elif schedule is not None:
        try:
            schedule_for(schedule, "UTC")
        except ScheduleError as exc:
            every = schedule.lstrip()[:6].lower() == "@every"
            kind = "a valid @every schedule" if every else "a cron expression"
            errs.add(_join(where, "schedule"), f"{_q(schedule)} is not {kind}: {exc}")
            schedule = None

    timezone = _get_str(errs, raw, "timezone", where)
    if timezone is not None:
        try:
            parse("* * * * *", timezone)
            v["timezone"] = timezone
        except ScheduleError as exc:
            errs.add(_join(where, "timezone"), str(exc))

    http = _job_http(errs, raw, where)
    if raw.get("http") is not None and raw.get("command") is not None:
        errs.add(
            _join(where, "http"),
            "set together with command (a job runs either a command or an HTTP request; "
            "keep one of them)",
        )
        command: tuple[str, ...] | None = None
    elif raw.get("http") is not None:
        command = ()
    else:
        command = _job_command(errs, raw, where)
    if raw.get("http") is not None:
        for f in JOB_FIELDS:
            if f.command_only and f.key is not None and raw.get(f.key) is not None:
                errs.add(
                    _join(where, f.key),
                    "only applies to a command job (an http job runs no process; remove it)",
                )
    v["http"] = http
    if raw.get("notify") is not None:
        v["notify"] = _notify_targets(errs, raw["notify"], _join(where, "notify"))
    job.check("late_after")
    if raw.get("ping_url") is not None:
        ping_url = _url(errs, raw["ping_url"], _join(where, "ping_url"))
        if ping_url is not None and (ping_url.endswith("/") or "?" in ping_url):
            errs.add(
                _join(where, "ping_url"),
                f"{_q(ping_url)} ends in / or has a query (raftcron appends /start, /fail or "
                '/<exit code>: give the check\'s base URL, e.g. "https://hc-ping.com/<uuid>")',
            )
        v["ping_url"] = ping_url

    if job.check("on") is not None and not has_after:
        errs.add(
            _join(where, "on"),
            'only applies with after (e.g. after = ["backup"], on = "failure"; remove on)',
        )
    for key in ("overlap", "catchup_mode", "dst_gap", "dst_repeat", "timeout", "catchup"):
        job.check(key)
    jitter_ms = job.check("jitter", 0)
    if jitter_ms is not None and jitter_ms > MAX_JITTER_MS:  # 1d
        errs.add(
            _join(where, "jitter"),
            f"{_fmt_ms(jitter_ms)} is too long (at most 1d; jitter "
            "delays each fire by a fixed offset below it, to spread jobs that share a schedule)",
        )
    job.check("lease", default_lease_ms)
    v.setdefault("lease_ms", default_lease_ms)
    job.check("retries")
    backoff = job.check("retry_backoff", DEFAULT_RETRY_BACKOFF_MS)
    backoff_max = job.check("retry_backoff_max", DEFAULT_RETRY_BACKOFF_MAX_MS)
    if backoff is not None and backoff_max is not None and backoff_max < backoff:
        if raw.get("retry_backoff_max") is None:
            v["retry_backoff_max_ms"] = backoff  # only the initial backoff given: the cap too
        else:
            errs.add(
                _join(where, "retry_backoff_max"),
                f"{_fmt_ms(backoff_max)} is shorter than retry_backoff ({_fmt_ms(backoff)}; "
                "the cap must be at least the first backoff)",
            )
    job.check("retry_other_node")
    job.check("tags")
    v["count"] = _job_count(errs, raw, where)
    job.check("max_parallel")
    env = _get_str_map(errs, raw, "env", where)
    for key, value in env:
        bad = _env_problem(key, value)
        if bad:
            errs.add(_join(where, f"env.{_k(key)}"), bad)
    v["env"] = env

    cwd = _get_str(errs, raw, "cwd", where)
    if cwd is not None:
        if not cwd or "\0" in cwd:
            errs.add(_join(where, "cwd"), f"{_q(cwd)} is not a directory path")
        elif base_dir is not None:
            v["cwd"] = str((base_dir / cwd).resolve())
        elif not os.path.isabs(cwd):
            errs.add(
                _join(where, "cwd"),
                f"{_q(cwd)} is relative (give an absolute path; there is no config file "
                "to resolve it against)",
            )
        else:
            v["cwd"] = cwd

    v["user"] = _job_account(errs, raw, "user", where)
    v["group"] = _job_account(errs, raw, "group", where)
    v["limits"] = _job_limits(errs, raw, where)
    v["env_passthrough"] = _job_passthrough(errs, raw, where, env)
    for f in JOB_FIELDS:  # keys with no rule of their own above: their kind's checks
        if f.key is not None and f.key not in job.done:
            job.check(f.key)

    if errs.items:
        raise ConfigError(errs.items)
    assert name is not None and schedule is not None and command is not None
    values = {k: x for k, x in v.items() if x is not None}
    return JobSpec(name=name, schedule=schedule, command=command, **values)


def job_warnings(spec: JobSpec) -> list[str]:
    """What is valid in a job but probably not what its author meant, as ``<key>: <why>``
    messages (``check-config``, ``jobs apply`` and ``PUT /v1/jobs/{name}`` show them; they
    never refuse the job): a six-field schedule that reads like seconds-first."""
    warning = field_order_warning(spec.schedule) if spec.schedule else None
    return [] if warning is None else [f"schedule: {warning}"]


def _job_after(
    errs: _Errors, raw: Mapping[str, Any], where: str, name: str | None
) -> tuple[str, ...] | None:
    """The job's ``after`` (its parents), or None when absent or invalid (reported)."""
    if raw.get("after") is None:
        return None
    key = _join(where, "after")
    value = raw["after"]
    example = 'e.g. after = ["extract", "load"]'
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
        errs.add(key, f"expected a list of job names, got {_type_name(value)} ({example})")
        return None
    if not value:
        errs.add(key, f"empty (name at least one job, {example}; or remove after)")
        return None
    if len(value) > MAX_AFTER:
        errs.add(key, f"{len(value)} jobs is too many (at most {MAX_AFTER})")
        return None
    for parent in value:
        if not _NAME_RE.fullmatch(parent):
            errs.add(key, f"{_q(parent)} is not a valid job name ({_NAME_FIX})")
            return None
        if parent == name:
            errs.add(key, f"{_q(parent)} is the job itself (a job cannot run after itself)")
            return None
    dup = sorted({p for p in value if value.count(p) > 1})
    if dup:
        errs.add(key, f"{_q(dup[0])} is listed twice (name each parent once)")
        return None
    return tuple(value)


def check_dependencies(
    specs: Iterable[JobSpec], known: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Problems of the file's ``after`` graph as ``(job name, problem)``: a parent that is
    not a job of the file (``known``: names of the file's jobs that are invalid, reported
    elsewhere), or a cycle (reported once, on its job first in name order)."""
    by_name = {s.name: s for s in specs}
    names = {*by_name, *known}
    problems: list[tuple[str, str]] = []
    for spec in by_name.values():
        for parent in spec.after:
            if parent not in names:
                problems.append(
                    (
                        spec.name,
                        f"{_q(parent)} is not a job in this file (after names [[jobs]] of the same "
                        "file; a job created through the API can be named in a PUT of the job)",
                    )
                )
    # cycles: iterative depth-first search in name order, each cycle reported once
    state: dict[str, int] = {}  # 1 on the path, 2 done
    for root in sorted(by_name):
        if state.get(root):
            continue
        path = [root]
        stack = [iter(by_name[root].after)]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                state[path.pop()] = 2
            elif nxt in by_name and state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                problems.append(
                    (
                        nxt,
                        f"{' -> '.join(cycle)} is a cycle (a job cannot run after itself, "
                        "directly or through other jobs; remove one of these after entries)",
                    )
                )
            elif nxt in by_name and not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(by_name[nxt].after))
    return problems


def _job_count(errs: _Errors, raw: Mapping[str, Any], where: str) -> int:
    """``count``: a whole number 1..MAX_COUNT, or "all" (COUNT_ALL)."""
    value = raw.get("count")
    fix = f'a whole number of instances per fire from 1 to {MAX_COUNT}, or "all"'
    if value is None:
        return 1
    if value == "all":
        return COUNT_ALL
    if isinstance(value, bool) or not isinstance(value, int):
        errs.add(_join(where, "count"), f"expected {fix}, got {_q_any(value)}")
        return 1
    if not 1 <= value <= MAX_COUNT:
        errs.add(_join(where, "count"), f"{value} is out of range (use {fix})")
        return 1
    return value


def _job_account(errs: _Errors, raw: Mapping[str, Any], key: str, where: str) -> str | None:
    """``user`` or ``group``: an account name (looked up where the job runs, see
    :func:`account_problems`)."""
    value = _get_str(errs, raw, key, where)
    if value is not None and not _ACCOUNT_RE.fullmatch(value):
        errs.add(
            _join(where, key),
            f"{_q(value)} is not a valid {key} name (an account name such as "
            "\"backup\": letters, digits, '.', '_', '-', up to 64)",
        )
        return None
    return value


def parse_size(value: object, key: str) -> int:
    """A size in bytes: an integer, or a string with a binary suffix (``"512M"``, ``"2GiB"``:
    K, M, G, T are powers of 1024, with or without ``iB``/``B``)."""
    fix = 'give bytes, or a size such as "512M" or "2G" (K, M, G, T: powers of 1024)'
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError([f"{key}: expected a size, got {_type_name(value)} ({fix})"])
    if isinstance(value, int):
        return value
    m = _SIZE_RE.fullmatch(value.strip())
    if not m:
        raise ConfigError([f"{key}: {_q(value)} is not a size ({fix})"])
    power = " KMGT".index((m.group(2) or " ").upper())
    return int(m.group(1)) << (10 * power)


def _job_limits(errs: _Errors, raw: Mapping[str, Any], where: str) -> tuple[tuple[str, int], ...]:
    """``limits = { nofile, memory, cpu }`` as sorted pairs (setrlimit in the job's process)."""
    value = raw.get("limits")
    if value is None:
        return ()
    key = _join(where, "limits")
    example = 'e.g. limits = { nofile = 1024, memory = "512M", cpu = 600 }'
    if not isinstance(value, Mapping):
        errs.add(key, f"expected a table, got {_type_name(value)} ({example})")
        return ()
    _unknown_keys(errs, value, LIMIT_KEYS, key)
    out: dict[str, int] = {}
    for name in LIMIT_KEYS:
        if value.get(name) is not None:
            try:
                out[name] = _limit(name, value[name], f"{key}.{name}")
            except ConfigError as exc:
                errs.extend(exc)
    return tuple(sorted(out.items()))


def _limit(name: str, v: object, key: str) -> int:
    """One value of ``limits``; :class:`ConfigError` naming ``key`` if it is invalid."""
    if name == "memory":
        size = parse_size(v, key)
        if not MIN_MEMORY_LIMIT <= size <= MAX_MEMORY_LIMIT:
            raise ConfigError(
                [
                    f"{key}: {size} bytes is out of range (the job's address space, RLIMIT_AS: "
                    'from 1M to 1P, e.g. memory = "512M")'
                ]
            )
        return size
    if name == "cpu":
        if isinstance(v, int) and not isinstance(v, bool):
            seconds = v
        else:
            ms = parse_duration(v, key)
            if ms % 1000:
                raise ConfigError([f"{key}: {_fmt_ms(ms)} is not a whole number of seconds"])
            seconds = ms // 1000
        if not 1 <= seconds <= MAX_CPU_LIMIT_S:
            raise ConfigError(
                [
                    f"{key}: {seconds} is out of range (CPU seconds of the job's process, "
                    f'RLIMIT_CPU: 1 to {MAX_CPU_LIMIT_S}, e.g. cpu = 600 or cpu = "10m")'
                ]
            )
        return seconds
    if isinstance(v, bool) or not isinstance(v, int):  # nofile
        raise ConfigError([f"{key}: expected an integer, got {_type_name(v)} (e.g. nofile = 1024)"])
    if not 1 <= v <= MAX_NOFILE_LIMIT:
        raise ConfigError(
            [
                f"{key}: {v} is out of range (open files of the job's process, RLIMIT_NOFILE: "
                f"1 to {MAX_NOFILE_LIMIT})"
            ]
        )
    return v


def _job_passthrough(
    errs: _Errors, raw: Mapping[str, Any], where: str, env: tuple[tuple[str, str], ...]
) -> tuple[str, ...]:
    """``env_passthrough``: names of the agent's variables the job is given (sorted)."""
    value = raw.get("env_passthrough")
    if value is None:
        return ()
    key = _join(where, "env_passthrough")
    example = 'e.g. env_passthrough = ["HTTPS_PROXY"]'
    if not isinstance(value, list | tuple) or not all(isinstance(n, str) for n in value):
        got = _type_name(value) if not isinstance(value, list | tuple) else "other values"
        errs.add(key, f"expected a list of variable names, got {got} ({example})")
        return ()
    if len(value) > MAX_PASSTHROUGH:
        errs.add(key, f"{len(value)} names is too many (at most {MAX_PASSTHROUGH})")
        return ()
    n = len(errs.items)
    in_env = {k for k, _ in env}
    for name in value:
        refused = _PASSTHROUGH_REFUSED.get(name)
        if not _ENV_NAME_RE.fullmatch(name):
            errs.add(
                key,
                f"{_q(name)} is not an environment variable name (letters, digits and _, "
                "not starting with a digit)",
            )
        elif refused:
            errs.add(key, f"{_q(name)}: {refused}")
        elif name in RUN_VARIABLES:
            errs.add(key, f"{_q(name)}: raftcron sets it for every run (remove it)")
        elif name in in_env:
            errs.add(
                key,
                f"{_q(name)} is set in env too (keep one: env gives the job a fixed value, "
                "env_passthrough the agent's)",
            )
    dup = sorted({x for x in value if value.count(x) > 1})
    if dup:
        errs.add(key, f"{_q(dup[0])} is listed twice (name each variable once)")
    if len(errs.items) > n:
        return ()
    return tuple(sorted(value))


def _job_command(errs: _Errors, raw: Mapping[str, Any], where: str) -> tuple[str, ...] | None:
    key = _join(where, "command")
    example = 'e.g. command = ["/usr/local/bin/backup", "--full"]'
    if raw.get("command") is None:
        errs.add(key, f"missing ({example}; or an http table for an HTTP job)")
        return None
    value = raw["command"]
    if isinstance(value, str):
        errs.add(
            key,
            f"expected a list of strings, got a string ({example}; for shell syntax use "
            '["sh", "-c", "..."])',
        )
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(a, str) for a in value):
        got = _type_name(value) if not isinstance(value, list | tuple) else "other values"
        errs.add(key, f"expected a list of strings, got {got} ({example})")
        return None
    if not value:
        errs.add(key, f"empty (give at least the program to run, {example})")
        return None
    if not value[0]:
        errs.add(key, "the program (first element) is an empty string (name the program to run)")
        return None
    if any("\0" in a for a in value):
        errs.add(key, "contains a NUL character (arguments cannot carry NUL bytes)")
        return None
    return tuple(value)


def _job_http(errs: _Errors, raw: Mapping[str, Any], where: str) -> HttpSpec | None:
    value = raw.get("http")
    if value is None:
        return None
    key = _join(where, "http")
    example = 'e.g. http = { url = "https://example.com/hook", method = "POST" }'
    if not isinstance(value, Mapping):
        errs.add(key, f"expected a table, got {_type_name(value)} ({example})")
        return None
    n = len(errs.items)
    _unknown_keys(errs, value, _HTTP_KEYS, key)
    url = None
    if value.get("url") is None:
        errs.add(f"{key}.url", f"missing (the URL to call: {_URL_FIX})")
    else:
        url = _url(errs, value["url"], f"{key}.url")
    method = _get_str(errs, value, "method", key)
    if method is not None:
        if method.upper() not in HTTP_METHODS:
            errs.add(f"{key}.method", f"{_q(method)} is not allowed (use {_one_of(HTTP_METHODS)})")
        method = method.upper()
    headers = _get_str_map(errs, value, "headers", key)
    for name, text in headers:
        hkey = f"{key}.headers.{_k(name)}"
        if not _HEADER_NAME_RE.fullmatch(name):
            errs.add(hkey, "not a valid header name (letters, digits and -)")
        elif name.lower().startswith("x-raftcron-"):
            errs.add(hkey, "reserved (raftcron sets the X-Raftcron-* headers itself)")
        if any(c in text for c in "\r\n\0"):
            errs.add(hkey, "the value contains a line break or NUL (write it on one line)")
    body = _get_str(errs, value, "body", key)
    expect: tuple[int, ...] = ()
    ev = value.get("expect")
    if ev is not None:
        codes = ev if isinstance(ev, list | tuple) else [ev]
        if not codes or not all(
            isinstance(c, int) and not isinstance(c, bool) and 100 <= c <= 599 for c in codes
        ):
            errs.add(
                f"{key}.expect",
                "expected a status code or a list of them, 100-599 (e.g. expect = 204 or "
                "expect = [200, 202]; omit it for any 2xx)",
            )
        else:
            expect = tuple(sorted(set(codes)))
    if len(errs.items) > n or url is None:
        return None
    return HttpSpec(
        url=url,
        method=method or "GET",
        headers=headers,
        body=body or "",
        expect=expect,
    )


def _notify_targets(errs: _Errors, value: object, key: str) -> tuple[NotifyTarget, ...] | None:
    """A notify value: a URL, a list of URLs and {url, on} tables, or one such table."""
    example = (
        'e.g. notify = ["https://hooks.example.com/x"] or notify = { url = "...", '
        'on = ["failure", "recovered"] }'
    )
    items = value if isinstance(value, list | tuple) else [value]
    n = len(errs.items)
    out: list[NotifyTarget] = []
    for i, item in enumerate(items):
        ikey = f"{key}[{i}]" if isinstance(value, list | tuple) else key
        if isinstance(item, str):
            url = _url(errs, item, ikey)
            if url is not None:
                out.append(NotifyTarget(url=url))
            continue
        if not isinstance(item, Mapping):
            errs.add(ikey, f"expected a URL or a table, got {_type_name(item)} ({example})")
            continue
        _unknown_keys(errs, item, _TARGET_KEYS, ikey)
        url = None
        if item.get("url") is None:
            errs.add(f"{ikey}.url", f"missing (where to POST the notification: {_URL_FIX})")
        else:
            url = _url(errs, item["url"], f"{ikey}.url")
        on: tuple[str, ...] = NOTIFY_EVENTS
        if item.get("on") is not None:
            ev = item["on"]
            allowed = _one_of(NOTIFY_EVENTS)
            if (
                not isinstance(ev, list | tuple)
                or not ev
                or not all(isinstance(x, str) for x in ev)
            ):
                errs.add(
                    f"{ikey}.on",
                    f"expected a non-empty list of events (any of {allowed})",
                )
            else:
                unknown = [e for e in ev if e not in NOTIFY_EVENTS]
                if unknown:
                    errs.add(
                        f"{ikey}.on", f"{_q(unknown[0])} is not an event (use any of {allowed})"
                    )
                else:
                    on = tuple(e for e in NOTIFY_EVENTS if e in ev)
        if url is not None:
            out.append(NotifyTarget(url=url, on=on))
    if len(errs.items) > n:
        return None
    return tuple(out)


def _env_problem(key: str, value: str) -> str | None:
    if not key or "=" in key or "\0" in key:
        return "not a valid environment variable name (no '=', no NUL, not empty)"
    if key.startswith("RAFTCRON_"):
        return "reserved (raftcron sets the RAFTCRON_* variables itself; pick another name)"
    if "\0" in value:
        return "the value contains a NUL character (environment values cannot carry NUL bytes)"
    return None


def file_jobs(
    errs: _Errors, raw: Mapping[str, Any], base_dir: Path, default_lease_ms: int
) -> tuple[JobSpec, ...]:
    """The file's ``[[jobs]]``: each checked, names unique, the ``after`` graph sound."""
    jobs_raw = raw.get("jobs", [])
    if not isinstance(jobs_raw, list):
        errs.add(
            "jobs",
            f"expected an array of tables, got {_type_name(jobs_raw)} (write [[jobs]] tables)",
        )
        return ()
    jobs: list[JobSpec] = []
    first_at: dict[str, str] = {}
    for i, entry in enumerate(jobs_raw):
        where = f"jobs[{i}]"
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if isinstance(name, str):
            first = first_at.setdefault(name, where)
            if first != where:
                errs.add(
                    f"{where}.name",
                    f"duplicate job name {_q(name)} (first defined at {first})",
                )
        try:
            spec = job_spec_from_mapping(
                entry, where, default_lease_ms=default_lease_ms, base_dir=base_dir
            )
        except ConfigError as exc:
            errs.extend(exc)
            continue
        jobs.append(spec)
    for name, problem in check_dependencies(jobs, first_at):
        errs.add(f"{first_at[name]}.after", problem)
    return tuple(jobs)
