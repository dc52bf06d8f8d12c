"""The cluster TOML file -> frozen dataclasses, validated in one place.

Invariants this module guarantees:

* ``load_config`` and ``parse_config`` raise nothing but :class:`ConfigError` for bad input,
  and they raise it once per file with *every* problem found, each message in the form
  ``<file>: <key>: <problem> (<fix>)``. ``str(ConfigError)`` is the messages, one per line.
* What they return is fully checked: every cron expression and time zone parses, every
  duration is a non-negative number of milliseconds, every relative path is absolute
  (resolved against the config file's directory), addresses are unique, secrets and tokens
  are long enough. Nothing downstream re-validates the file.
* Secrets and tokens never appear in a message.
* :func:`job_spec_from_mapping` is the single definition of what a ``[[jobs]]`` table may
  contain; the HTTP API uses it for ``PUT /v1/jobs/{name}`` bodies.

This module reads files (the config, ``secret_file``, ``token_file``) and, in
:func:`single_node_config` only, creates a data directory and a secret. It never reads a clock.
"""

from __future__ import annotations

import difflib
import ipaddress
import itertools
import os
import re
import secrets
import stat
import tomllib
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from raftcron.core.model import (
    CATCHUP_MODES,
    COUNT_ALL,
    DEFAULT_HISTORY,
    DEFAULT_LEASE_MS,
    DEFAULT_RETRY_BACKOFF_MAX_MS,
    DEFAULT_RETRY_BACKOFF_MS,
    DEPENDENCY_ON,
    HTTP_METHODS,
    LIMIT_KEYS,
    MAX_COUNT,
    MAX_JITTER_MS,
    MAX_PARALLEL_LIMIT,
    NOTIFY_EVENTS,
    OVERLAP_POLICIES,
    HttpSpec,
    JobSpec,
    NotifyTarget,
)
from raftcron.core.schedule import (
    ON_GAP_MODES,
    ON_REPEAT_MODES,
    ScheduleError,
    field_order_warning,
    parse,
    schedule_for,
)
from raftcron.durations import (
    ConfigError,
    parse_duration,
    quoted,
    type_name,
)

__all__ = [
    "DEFAULT_LEASE_MS",
    "JOB_KEYS",
    "MIN_LEASE_MS",
    "MIN_SECRET_CHARS",
    "TOKEN_ROLES",
    "ApiConfig",
    "ApiToken",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "HostPort",
    "NodeConfig",
    "NotifyConfig",
    "account_problems",
    "environment_problems",
    "job_spec_from_mapping",
    "job_warnings",
    "load_config",
    "parse_config",
    "parse_duration",
    "single_node_config",
]

MIN_SECRET_CHARS: Final = 16
# A random value of 16 characters or more has many different characters; fewer than this
# many is a pattern (a random 16-character hex string has fewer with probability 4e-5).
MIN_SECRET_DISTINCT: Final = 6
SECRET_HOWTO: Final = "openssl rand -base64 32"
MIN_LEASE_MS: Final = 1_000
TOKEN_ROLES: Final = ("admin", "read")
SINGLE_NODE_NAME: Final = "local"
SINGLE_NODE_RAFT: Final = "127.0.0.1:7100"
SINGLE_NODE_API: Final = "127.0.0.1:8100"

_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BARE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POS_RE: Final = re.compile(
    r"^(?P<msg>.*?)\s*\((?:at line (?P<line>\d+), column (?P<col>\d+)|at end of document)\)$"
)
_NAME_FIX: Final = "a letter or digit, then up to 63 letters, digits, '.', '_' or '-'"

_TOP_KEYS: Final = ("cluster", "api", "notify", "metrics", "jobs")
_NOTIFY_KEYS: Final = ("webhooks", "late_after", "timeout", "retries")
_METRICS_KEYS: Final = ("max_job_series",)
# Jobs that get per-job series on /metrics (each has up to ~20 of them).
DEFAULT_MAX_JOB_SERIES: Final = 1_000
_HTTP_KEYS: Final = ("url", "method", "headers", "body", "expect")
_TARGET_KEYS: Final = ("url", "on")
DEFAULT_LATE_AFTER_MS: Final = 60_000
DEFAULT_NOTIFY_TIMEOUT_MS: Final = 10_000
DEFAULT_NOTIFY_RETRIES: Final = 5
_HEADER_NAME_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_URL_FIX: Final = 'a full http:// or https:// URL, e.g. "https://hooks.example.com/raftcron"'

_CLUSTER_KEYS: Final = (
    "secret",
    "secret_file",
    "previous_secret",
    "previous_secret_file",
    "lease",
    "history",
    "nodes",
    "shutdown_drain",
    "max_apply_lag",
)
# On SIGTERM an agent drains for at most this long (below Docker's 10 s stop timeout).
DEFAULT_SHUTDOWN_DRAIN_MS: Final = 8_000
# A member whose applied state is this far behind the leader's commit is not healthy.
DEFAULT_MAX_APPLY_LAG_MS: Final = 5_000
MIN_MAX_APPLY_LAG_MS: Final = 1_000
_NODE_KEYS: Final = ("raft", "api", "tags", "data_dir", "max_starting")
# Runs of a node in their start phase at once (README: "Bursts"); RAFTCRON_MAX_STARTING in
# the agent's environment overrides the node's max_starting.
DEFAULT_MAX_STARTING: Final = 8
_API_KEYS: Final = ("insecure", "tls_cert", "tls_key", "open_health", "tokens")
_TOKEN_KEYS: Final = ("name", "role", "token", "token_file")
JOB_KEYS: Final = (
    "name",
    "schedule",
    "command",
    "timezone",
    "timeout",
    "overlap",
    "catchup",
    "catchup_mode",
    "jitter",
    "dst_gap",
    "dst_repeat",
    "retries",
    "retry_backoff",
    "retry_backoff_max",
    "retry_other_node",
    "tags",
    "count",
    "max_parallel",
    "lease",
    "env",
    "cwd",
    "http",
    "notify",
    "late_after",
    "ping_url",
    "after",
    "on",
    "user",
    "group",
    "limits",
    "env_passthrough",
    "stdin",
)
MAX_AFTER: Final = 64  # parents of one job
MAX_RETRIES: Final = 100
# Keys that only mean something for a job that runs a process (not an http job).
_COMMAND_ONLY_KEYS: Final = (
    "env",
    "cwd",
    "user",
    "group",
    "limits",
    "env_passthrough",
    "stdin",
)
# ``stdin``: at most this many characters (the API's limit on any string in a body).
MAX_STDIN_CHARS: Final = 65_536
_ACCOUNT_RE: Final = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.@-]{0,63}\$?")
_ENV_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SIZE_RE: Final = re.compile(r"(\d{1,20})\s*(?:([KMGTkmgt])(?:i?[Bb])?)?")
MIN_MEMORY_LIMIT: Final = 1 << 20  # 1 MiB: nothing runs in less
MAX_MEMORY_LIMIT: Final = 1 << 50  # 1 PiB
MAX_CPU_LIMIT_S: Final = 1_000_000_000
MAX_NOFILE_LIMIT: Final = 1 << 20  # Linux's default fs.nr_open
MAX_PASSTHROUGH: Final = 64
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

T = TypeVar("T")


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True, kw_only=True)
class HostPort:
    """A ``host:port`` address (IPv4 or a host name; IPv6 literals are refused)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(self.host)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    name: str
    raft: HostPort
    api: HostPort
    tags: tuple[tuple[str, str], ...]
    data_dir: Path
    max_starting: int = DEFAULT_MAX_STARTING


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiToken:
    role: str  # "admin" or "read"
    token: str
    # who holds it, for the audit log: ``name = "ci"``, else ``token-N`` by its position
    # in the file (never derived from the value)
    name: str = ""

    def __repr__(self) -> str:  # never show a token in a log or a traceback
        return f"ApiToken(name={self.name!r}, role={self.role!r}, token='***')"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiConfig:
    tokens: tuple[ApiToken, ...] = ()
    insecure: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    open_health: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    secret: str
    nodes: tuple[NodeConfig, ...]
    lease_ms: int = DEFAULT_LEASE_MS
    history: int = DEFAULT_HISTORY
    shutdown_drain_ms: int = DEFAULT_SHUTDOWN_DRAIN_MS
    max_apply_lag_ms: int = DEFAULT_MAX_APPLY_LAG_MS
    # During a secret rotation: the secret being replaced, still accepted from peers.
    previous_secret: str | None = None

    def __repr__(self) -> str:  # never show the secret in a log or a traceback
        previous = "" if self.previous_secret is None else ", previous_secret='***'"
        return (
            f"ClusterConfig(secret='***', nodes={self.nodes!r}, lease_ms={self.lease_ms!r}, "
            f"history={self.history!r}, shutdown_drain_ms={self.shutdown_drain_ms!r}, "
            f"max_apply_lag_ms={self.max_apply_lag_ms!r}{previous})"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyConfig:
    """The ``[notify]`` table: defaults for notifications, the same file on every node.

    ``webhooks`` go to jobs that set no ``notify`` of their own.
    """

    webhooks: tuple[NotifyTarget, ...] = ()
    late_after_ms: int = DEFAULT_LATE_AFTER_MS
    timeout_ms: int = DEFAULT_NOTIFY_TIMEOUT_MS
    retries: int = DEFAULT_NOTIFY_RETRIES


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricsConfig:
    """The ``[metrics]`` table: what ``GET /metrics`` exports (each node reads its own).

    ``max_job_series``: how many jobs get per-job series (``job`` label); the jobs past it,
    in name order, are left out, counted by ``raftcron_metrics_jobs_omitted`` and named
    once in a WARNING.
    """

    max_job_series: int = DEFAULT_MAX_JOB_SERIES


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    path: Path  # as the user gave it; used to name the file in messages
    cluster: ClusterConfig
    api: ApiConfig
    jobs: tuple[JobSpec, ...]
    notify: NotifyConfig = NotifyConfig()
    metrics: MetricsConfig = MetricsConfig()

    def node(self, name: str) -> NodeConfig:
        """The node called ``name``; :class:`ConfigError` if the file has none."""
        for node in self.cluster.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.cluster.nodes)
        raise ConfigError([f"{self.path}: --node {name}: not in cluster.nodes (known: {known})"])


# ---------------------------------------------------------------------------- helpers


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


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fmt_ms(ms: int) -> str:
    if ms % 1000:
        return f"{ms}ms"
    return f"{ms // 1000}s"


# ---------------------------------------------------------------------------- durations


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


# ---------------------------------------------------------------------------- jobs


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

    name = _get_str(errs, raw, "name", where)
    if raw.get("name") is None:
        errs.add(_join(where, "name"), 'missing (give the job a name, e.g. name = "backup")')
    elif name is not None and not _NAME_RE.fullmatch(name):
        errs.add(_join(where, "name"), f"{_q(name)} is not a valid job name ({_NAME_FIX})")

    after = _job_after(errs, raw, where, name)
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
        except ScheduleError as exc:
            errs.add(_join(where, "timezone"), str(exc))
            timezone = None

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
        for key in _COMMAND_ONLY_KEYS:
            if raw.get(key) is not None:
                errs.add(
                    _join(where, key),
                    "only applies to a command job (an http job runs no process; remove it)",
                )
    notify = None
    if raw.get("notify") is not None:
        notify = _notify_targets(errs, raw["notify"], _join(where, "notify"))
    late_after_ms = _get_duration(errs, raw, "late_after", where, None, minimum=1_000)
    ping_url = None
    if raw.get("ping_url") is not None:
        ping_url = _url(errs, raw["ping_url"], _join(where, "ping_url"))
        if ping_url is not None and (ping_url.endswith("/") or "?" in ping_url):
            errs.add(
                _join(where, "ping_url"),
                f"{_q(ping_url)} ends in / or has a query (raftcron appends /start, /fail or "
                '/<exit code>: give the check\'s base URL, e.g. "https://hc-ping.com/<uuid>")',
            )
            ping_url = None

    on = _get_str(errs, raw, "on", where)
    if on is not None and on not in DEPENDENCY_ON:
        errs.add(
            _join(where, "on"),
            f"{_q(on)} is not allowed (use {_one_of(DEPENDENCY_ON)}: run when every parent "
            "succeeded, when at least one did not, or whenever they have all finished)",
        )
        on = None
    elif on is not None and not has_after:
        errs.add(
            _join(where, "on"),
            'only applies with after (e.g. after = ["backup"], on = "failure"; remove on)',
        )

    overlap = _get_str(errs, raw, "overlap", where)
    if overlap is not None and overlap not in OVERLAP_POLICIES:
        allowed = _one_of(OVERLAP_POLICIES)
        errs.add(_join(where, "overlap"), f"{_q(overlap)} is not allowed (use {allowed})")
        overlap = None

    catchup_mode = _get_str(errs, raw, "catchup_mode", where)
    if catchup_mode is not None and catchup_mode not in CATCHUP_MODES:
        errs.add(
            _join(where, "catchup_mode"),
            f"{_q(catchup_mode)} is not allowed (use {_one_of(CATCHUP_MODES)}: run every "
            "fire within catchup, only the latest, or none that is late)",
        )
        catchup_mode = None

    dst: dict[str, str] = {}
    for key, modes, meaning in (
        ("dst_gap", ON_GAP_MODES, "a fire in a spring-forward gap runs when the gap ends, or not"),
        ("dst_repeat", ON_REPEAT_MODES, "a fire in a fall-back hour runs once, or at both times"),
    ):
        value = _get_str(errs, raw, key, where)
        if value is not None and value not in modes:
            errs.add(
                _join(where, key), f"{_q(value)} is not allowed (use {_one_of(modes)}: {meaning})"
            )
        elif value is not None:
            dst[key] = value

    timeout_ms = _get_duration(errs, raw, "timeout", where, None, minimum=1)
    catchup_ms = _get_duration(errs, raw, "catchup", where, None)
    jitter_ms = _get_duration(errs, raw, "jitter", where, 0)
    if jitter_ms is not None and jitter_ms > MAX_JITTER_MS:  # 1d
        errs.add(
            _join(where, "jitter"),
            f"{_fmt_ms(jitter_ms)} is too long (at most 1d; jitter "
            "delays each fire by a fixed offset below it, to spread jobs that share a schedule)",
        )
    lease_ms = _get_duration(errs, raw, "lease", where, default_lease_ms, minimum=MIN_LEASE_MS)
    retries = _get_int(errs, raw, "retries", where, 0, minimum=0)
    if retries > MAX_RETRIES:
        errs.add(_join(where, "retries"), f"{retries} is too many (at most {MAX_RETRIES})")
        retries = 0
    backoff = _get_duration(errs, raw, "retry_backoff", where, DEFAULT_RETRY_BACKOFF_MS)
    backoff_max = _get_duration(errs, raw, "retry_backoff_max", where, DEFAULT_RETRY_BACKOFF_MAX_MS)
    if backoff is not None and backoff_max is not None and backoff_max < backoff:
        if raw.get("retry_backoff_max") is None:
            backoff_max = backoff  # only the initial backoff given: it is the cap too
        else:
            errs.add(
                _join(where, "retry_backoff_max"),
                f"{_fmt_ms(backoff_max)} is shorter than retry_backoff ({_fmt_ms(backoff)}; "
                "the cap must be at least the first backoff)",
            )
    retry_other_node = _get_bool(errs, raw, "retry_other_node", where, False)
    tags = _get_str_map(errs, raw, "tags", where)
    count = _job_count(errs, raw, where)
    max_parallel: int | None = None
    if raw.get("max_parallel") is not None:
        max_parallel = _get_int(errs, raw, "max_parallel", where, 0, minimum=1) or None
        if max_parallel is not None and max_parallel > MAX_PARALLEL_LIMIT:
            errs.add(
                _join(where, "max_parallel"),
                f"{max_parallel} is too many (at most {MAX_PARALLEL_LIMIT}; leave it out "
                "for no limit)",
            )
            max_parallel = None
    env = _get_str_map(errs, raw, "env", where)
    for key, value in env:
        bad = _env_problem(key, value)
        if bad:
            errs.add(_join(where, f"env.{_k(key)}"), bad)

    cwd = _get_str(errs, raw, "cwd", where)
    if cwd is not None:
        if not cwd or "\0" in cwd:
            errs.add(_join(where, "cwd"), f"{_q(cwd)} is not a directory path")
            cwd = None
        elif base_dir is not None:
            cwd = str((base_dir / cwd).resolve())
        elif not os.path.isabs(cwd):
            errs.add(
                _join(where, "cwd"),
                f"{_q(cwd)} is relative (give an absolute path; there is no config file "
                "to resolve it against)",
            )

    user = _job_account(errs, raw, "user", where)
    group = _job_account(errs, raw, "group", where)
    limits = _job_limits(errs, raw, where)
    passthrough = _job_passthrough(errs, raw, where, env)
    stdin = _get_str(errs, raw, "stdin", where)
    if stdin is not None and len(stdin) > MAX_STDIN_CHARS:
        errs.add(
            _join(where, "stdin"),
            f"{len(stdin)} characters is too long (at most {MAX_STDIN_CHARS}; for more, let "
            "the command read a file)",
        )

    if errs.items:
        raise ConfigError(errs.items)
    assert name is not None and schedule is not None and command is not None
    optional: dict[str, Any] = {}
    if user is not None:
        optional["user"] = user
    if group is not None:
        optional["group"] = group
    if limits:
        optional["limits"] = limits
    if passthrough:
        optional["env_passthrough"] = passthrough
    if stdin:
        optional["stdin"] = stdin
    if catchup_ms is not None:  # else the model's default applies
        optional["catchup_ms"] = catchup_ms
    if count != 1:
        optional["count"] = count
    if max_parallel is not None:
        optional["max_parallel"] = max_parallel
    return JobSpec(
        name=name,
        schedule=schedule,
        command=command,
        timezone=timezone if timezone is not None else "UTC",
        timeout_ms=timeout_ms,
        overlap=overlap if overlap is not None else "allow",
        catchup_mode=catchup_mode if catchup_mode is not None else "all",
        jitter_ms=jitter_ms or 0,
        dst_gap=dst.get("dst_gap", "shift"),
        dst_repeat=dst.get("dst_repeat", "once"),
        retries=retries,
        retry_backoff_ms=backoff if backoff is not None else DEFAULT_RETRY_BACKOFF_MS,
        retry_backoff_max_ms=(
            backoff_max if backoff_max is not None else DEFAULT_RETRY_BACKOFF_MAX_MS
        ),
        retry_other_node=retry_other_node,
        tags=tags,
        lease_ms=lease_ms if lease_ms is not None else default_lease_ms,
        env=env,
        cwd=cwd,
        http=http,
        notify=notify,
        late_after_ms=late_after_ms,
        ping_url=ping_url,
        after=after or (),
        on=on if on is not None else "success",
        **optional,
    )


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


def _q_any(value: object) -> str:
    return _q(value) if isinstance(value, str) else _type_name(value)


def _one_of(values: Iterable[str]) -> str:
    quoted = [_q(v) for v in values]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


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


def _notify(errs: _Errors, raw: Mapping[str, Any]) -> NotifyConfig:
    """The [notify] table (defaults of every job's notifications)."""
    table = _get_table(errs, raw, "notify", "")
    _unknown_keys(errs, table, _NOTIFY_KEYS, "notify")
    webhooks: tuple[NotifyTarget, ...] = ()
    if table.get("webhooks") is not None:
        webhooks = _notify_targets(errs, table["webhooks"], "notify.webhooks") or ()
    late = _get_duration(errs, table, "late_after", "notify", DEFAULT_LATE_AFTER_MS, minimum=1_000)
    timeout = _get_duration(
        errs, table, "timeout", "notify", DEFAULT_NOTIFY_TIMEOUT_MS, minimum=100
    )
    retries = _get_int(errs, table, "retries", "notify", DEFAULT_NOTIFY_RETRIES, minimum=0)
    if retries > 20:
        errs.add("notify.retries", f"{retries} is too many (use 0-20; backoff doubles each time)")
    return NotifyConfig(
        webhooks=webhooks,
        late_after_ms=late if late is not None else DEFAULT_LATE_AFTER_MS,
        timeout_ms=timeout if timeout is not None else DEFAULT_NOTIFY_TIMEOUT_MS,
        retries=min(retries, 20),
    )


def _metrics(errs: _Errors, raw: Mapping[str, Any]) -> MetricsConfig:
    """The [metrics] table."""
    table = _get_table(errs, raw, "metrics", "")
    _unknown_keys(errs, table, _METRICS_KEYS, "metrics")
    cap = _get_int(errs, table, "max_job_series", "metrics", DEFAULT_MAX_JOB_SERIES, minimum=0)
    return MetricsConfig(max_job_series=cap)


def _env_problem(key: str, value: str) -> str | None:
    if not key or "=" in key or "\0" in key:
        return "not a valid environment variable name (no '=', no NUL, not empty)"
    if key.startswith("RAFTCRON_"):
        return "reserved (raftcron sets the RAFTCRON_* variables itself; pick another name)"
    if "\0" in value:
        return "the value contains a NUL character (environment values cannot carry NUL bytes)"
    return None


# ---------------------------------------------------------------------------- the file


def load_config(path: Path | str) -> Config:
    """Read and validate the cluster TOML file at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            [f"{path}: not found (check the path; without --config raftcron runs one local node)"]
        ) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory (give the path of the TOML file)"]) from None
    except OSError as exc:
        raise ConfigError(
            [f"{path}: cannot read: {exc.strerror or exc} (check the permissions)"]
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{path}: byte {exc.start} is not UTF-8 (save the file as UTF-8)"]
        ) from None
    del data  # not kept through the parse (19 MB for a 100,000-job file)
    return parse_config(text, path)


def parse_config(text: str, path: Path) -> Config:
    """Validate the TOML ``text`` of the file at ``path`` (relative paths resolve against
    ``path``'s directory; files it names are read)."""
    label = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_POS_RE.match(str(exc))
        if m and m.group("line"):
            where = f"line {m.group('line')}, column {m.group('col')}"
            msg = m.group("msg")
        else:
            where, msg = "end of file", m.group("msg") if m else str(exc)
        raise ConfigError(
            [f"{label}: {where}: {msg} (fix the TOML syntax, see https://toml.io)"]
        ) from None

    base_dir = Path(path).absolute().parent
    errs = _Errors()
    _unknown_keys(errs, raw, _TOP_KEYS, "")
    cluster = _cluster(errs, raw, base_dir)
    api = _api(errs, raw, base_dir, cluster.nodes)
    notify = _notify(errs, raw)
    metrics = _metrics(errs, raw)
    jobs = _jobs(errs, raw, base_dir, cluster.lease_ms)
    _check_counts(errs, raw, jobs, cluster.nodes)
    if errs.items:  # the parts built above are only trusted when nothing was reported
        raise ConfigError(f"{label}: {e}" for e in errs.items)
    return Config(
        path=Path(path), cluster=cluster, api=api, jobs=jobs, notify=notify, metrics=metrics
    )


def _check_counts(
    errs: _Errors, raw: Mapping[str, Any], jobs: Iterable[JobSpec], nodes: Iterable[NodeConfig]
) -> None:
    """A job with ``count = N`` needs N nodes matching its tags: the file lists them all."""
    nodes = list(nodes)
    if not nodes:
        return  # [cluster] itself is wrong; that is reported already
    index: dict[str, int] = {}
    for i, entry in enumerate(raw.get("jobs", []) if isinstance(raw.get("jobs"), list) else []):
        if isinstance(entry, Mapping) and isinstance(entry.get("name"), str):
            index.setdefault(entry["name"], i)
    for spec in jobs:
        if spec.count in (1, COUNT_ALL):
            continue
        want = dict(spec.tags)
        fit = [n.name for n in nodes if all(dict(n.tags).get(k) == v for k, v in want.items())]
        if len(fit) < spec.count:
            tags = ", ".join(f"{k}={v}" for k, v in spec.tags)
            errs.add(
                f"jobs[{index.get(spec.name, '?')}].count",
                f"{spec.count} instances per fire, but only {len(fit)} node(s) in "
                f'[cluster.nodes] match tags {{{tags}}} (lower count, use count = "all", or '
                "tag more nodes)",
            )


def _read_small_file(errs: _Errors, key: str, path: Path, what: str, fix: str) -> str | None:
    """The stripped text of a secret or token file, which must be private to its owner
    (no access for group or others, as ssh demands of a private key)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
        problem = private_file_problem(path)
        if problem:
            errs.add(key, problem)
            return None
        return text
    except FileNotFoundError:
        errs.add(key, f"{path}: not found ({fix})")
    except IsADirectoryError:
        errs.add(key, f"{path}: is a directory (point it at a file holding the {what})")
    except UnicodeDecodeError:
        errs.add(key, f"{path}: is not UTF-8 text (write the {what} as plain text)")
    except OSError as exc:
        errs.add(key, f"{path}: cannot read: {exc.strerror or exc} (check the permissions)")
    return None


def private_file_problem(path: Path) -> str | None:
    """Why the secret or token file at ``path`` is not private enough, or None: any
    permission bit for its group or others is refused (the ``chmod 600`` fix)."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        return (
            f"{path}: mode {mode:04o} lets its group or others read it (it holds a secret; "
            f"run: chmod 600 {path})"
        )
    return None


def secret_weakness(value: str) -> str | None:
    """Why ``value`` is too weak for the cluster secret or a token, or None. Never shows
    any part of it."""
    n = len(value)
    if n < MIN_SECRET_CHARS:
        return f"too short ({n} characters; use at least {MIN_SECRET_CHARS} random characters"
    if any(ch.isspace() for ch in value):
        return "contains white space (a random value has none"
    counts: dict[str, int] = {}
    for ch in value:
        counts[ch] = counts.get(ch, 0) + 1
    if len(counts) < MIN_SECRET_DISTINCT:
        return (
            f"too little variety ({len(counts)} different characters; a random value of "
            f"this length has many more"
        )
    if max(counts.values()) * 2 > n:
        return "one character makes up half of it (a random value has no such repeats"
    for period in range(1, n // 2 + 1):
        if all(value[i] == value[i - period] for i in range(period, n)):
            return "repeats a short pattern (a random value does not"
    steps = {ord(b) - ord(a) for a, b in itertools.pairwise(value)}
    if len(steps) == 1:
        return "a run of consecutive characters (a random value is not"
    return None


def _weak(errs: _Errors, key: str, value: str, *, file: str | None) -> bool:
    """Report ``value`` if it is too weak for a secret or a token; True if it was."""
    problem = secret_weakness(value)
    if problem is None:
        return False
    where = file or "FILE"
    how = f"openssl rand -base64 32 > {where}; chmod 600 {where}" if file else SECRET_HOWTO
    errs.add(key, f"{problem}; generate one with: {how})")
    return True


def _cluster(errs: _Errors, raw: Mapping[str, Any], base_dir: Path) -> ClusterConfig:
    """The [cluster] table; with errors reported, what it returns is partial."""
    if "cluster" not in raw:
        errs.add(
            "cluster",
            "missing (add a [cluster] table with secret or secret_file and one "
            "[cluster.nodes.NAME] table per server)",
        )
        return ClusterConfig(secret="", nodes=())
    table = _get_table(errs, raw, "cluster", "")
    _unknown_keys(errs, table, _CLUSTER_KEYS, "cluster")

    secret_fix = (
        f"set cluster.secret or cluster.secret_file, at least {MIN_SECRET_CHARS} characters"
    )
    secret = _get_str(errs, table, "secret", "cluster")
    secret_file = _get_str(errs, table, "secret_file", "cluster")
    secret_key = "cluster.secret"
    secret_path: Path | None = None
    if "secret" in table and "secret_file" in table:
        errs.add("cluster.secret_file", "set together with cluster.secret (keep only one of them)")
    elif secret_file is not None:
        secret_key = "cluster.secret_file"
        secret_path = (base_dir / secret_file).resolve()
        secret = _read_small_file(
            errs,
            secret_key,
            secret_path,
            "secret",
            f"write at least {MIN_SECRET_CHARS} random characters into it, e.g. with "
            f"openssl rand -base64 32 > {secret_path}; chmod 600 {secret_path}; "
            "`raftcron dev` creates it",
        )
    elif "secret" not in table:
        errs.add("cluster.secret", f"missing ({secret_fix})")
    if secret is not None and _weak(
        errs, secret_key, secret, file=None if secret_path is None else str(secret_path)
    ):
        secret = None

    previous_secret = _previous_secret(errs, table, base_dir, secret)
    lease_ms = _get_duration(
        errs, table, "lease", "cluster", DEFAULT_LEASE_MS, minimum=MIN_LEASE_MS
    )
    history = _get_int(errs, table, "history", "cluster", DEFAULT_HISTORY, minimum=1)
    shutdown_drain = _get_duration(
        errs, table, "shutdown_drain", "cluster", DEFAULT_SHUTDOWN_DRAIN_MS
    )
    max_lag = _get_duration(
        errs, table, "max_apply_lag", "cluster", DEFAULT_MAX_APPLY_LAG_MS,
        minimum=MIN_MAX_APPLY_LAG_MS,
    )  # fmt: skip
    nodes = _nodes(errs, table, base_dir)
    return ClusterConfig(
        secret=secret or "",
        nodes=nodes,
        lease_ms=lease_ms if lease_ms is not None else DEFAULT_LEASE_MS,
        history=history,
        shutdown_drain_ms=DEFAULT_SHUTDOWN_DRAIN_MS if shutdown_drain is None else shutdown_drain,
        max_apply_lag_ms=DEFAULT_MAX_APPLY_LAG_MS if max_lag is None else max_lag,
        previous_secret=previous_secret,
    )


def _previous_secret(
    errs: _Errors, table: Mapping[str, Any], base_dir: Path, secret: str | None
) -> str | None:
    """``previous_secret`` / ``previous_secret_file``: during a rotation, the secret being
    replaced, accepted from peers besides ``secret`` (README: Rotating the cluster secret)."""
    value = _get_str(errs, table, "previous_secret", "cluster")
    path = _get_str(errs, table, "previous_secret_file", "cluster")
    key = "cluster.previous_secret"
    if "previous_secret" in table and "previous_secret_file" in table:
        errs.add(
            "cluster.previous_secret_file",
            "set together with cluster.previous_secret (keep only one of them)",
        )
        return None
    if path is not None:
        key = "cluster.previous_secret_file"
        value = _read_small_file(
            errs,
            key,
            (base_dir / path).resolve(),
            "previous secret",
            "point it at the file holding the secret being replaced, or remove the key once "
            "every node runs with the new secret",
        )
    if value is None:
        return None
    if len(value) < MIN_SECRET_CHARS:
        errs.add(
            key,
            f"too short ({len(value)} characters; it must be the secret being replaced, at "
            f"least {MIN_SECRET_CHARS} characters)",
        )
        return None
    if value == secret:
        errs.add(
            key,
            "is the same as the cluster secret (set it to the secret being replaced during a "
            "rotation, or remove it)",
        )
        return None
    return value


def _host_port(errs: _Errors, value: object, key: str, *, reachable: bool) -> HostPort | None:
    fix = 'write "host:port", e.g. "10.0.0.1:7101"'
    if not isinstance(value, str):
        errs.add(key, f"expected a string, got {_type_name(value)} ({fix})")
        return None
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") or host.count(":"):
        errs.add(key, f"{_q(value)}: IPv6 addresses are not supported (use IPv4 or a host name)")
        return None
    if not sep or not host or not port_text.isdigit() or not port_text.isascii():
        errs.add(key, f"{_q(value)} is not host:port ({fix})")
        return None
    if any(c.isspace() for c in host):
        errs.add(key, f"{_q(value)}: the host contains white space ({fix})")
        return None
    port = int(port_text)
    if not 1 <= port <= 65535:
        errs.add(key, f"{_q(value)}: port {port} is out of range (use 1-65535)")
        return None
    if reachable and host in ("0.0.0.0", "*"):
        errs.add(
            key,
            f"{_q(value)}: other nodes cannot connect to {host} (give this server's own "
            "address; raftcron listens on exactly that address)",
        )
        return None
    return HostPort(host=host, port=port)


def _nodes(errs: _Errors, cluster: Mapping[str, Any], base_dir: Path) -> tuple[NodeConfig, ...]:
    fix = (
        'add one table per server, e.g. [cluster.nodes.a] raft = "10.0.0.1:7101" '
        'api = "10.0.0.1:8101"'
    )
    if "nodes" not in cluster:
        errs.add("cluster.nodes", f"missing ({fix})")
        return ()
    nodes_raw = _get_table(errs, cluster, "nodes", "cluster")
    if "nodes" in cluster and isinstance(cluster["nodes"], Mapping) and not nodes_raw:
        errs.add("cluster.nodes", f"no nodes (at least one is needed; {fix})")
    nodes: list[NodeConfig] = []
    used: dict[tuple[str, int], str] = {}
    data_dirs: dict[tuple[str, Path], str] = {}
    for name, table in nodes_raw.items():
        where = f"cluster.nodes.{_k(name)}"
        ok = True
        if not _NAME_RE.fullmatch(name):
            errs.add(where, f"{_q(name)} is not a valid node name ({_NAME_FIX})")
            ok = False
        if not isinstance(table, Mapping):
            errs.add(where, f"expected a table, got {_type_name(table)} ({fix})")
            continue
        _unknown_keys(errs, table, _NODE_KEYS, where)
        addrs: dict[str, HostPort] = {}
        for kind in ("raft", "api"):
            key = f"{where}.{kind}"
            if kind not in table:
                errs.add(key, f'missing ({kind} = "host:port")')
                ok = False
                continue
            hp = _host_port(errs, table[kind], key, reachable=kind == "raft")
            if hp is None:
                ok = False
                continue
            first = used.setdefault((hp.host, hp.port), key)
            if first != key:
                errs.add(
                    key,
                    f"{hp} is already used by {first} (give every raft and api address "
                    "its own port)",
                )
                ok = False
            addrs[kind] = hp
        tags = _get_str_map(errs, table, "tags", where)
        data_dir_text = _get_str(errs, table, "data_dir", where)
        if data_dir_text == "":
            errs.add(f"{where}.data_dir", 'empty (give a directory, e.g. "raftcron-data/a")')
            ok = False
        data_dir = (base_dir / (data_dir_text or f"raftcron-data/{name}")).resolve()
        max_starting = _get_int(errs, table, "max_starting", where, DEFAULT_MAX_STARTING, minimum=1)
        if "raft" in addrs:
            raft_host = addrs["raft"].host
            machine = "loopback" if _is_loopback(raft_host) else raft_host
            first = data_dirs.setdefault((machine, data_dir), where)
            if first != where:
                errs.add(
                    f"{where}.data_dir",
                    f"{data_dir} is also the data_dir of {first} on the same host (give "
                    "every node on one machine its own data_dir)",
                )
                ok = False
        if ok and "raft" in addrs and "api" in addrs:
            nodes.append(
                NodeConfig(
                    name=name,
                    raft=addrs["raft"],
                    api=addrs["api"],
                    tags=tags,
                    data_dir=data_dir,
                    max_starting=max_starting,
                )
            )
    return tuple(nodes)


def _api(
    errs: _Errors, raw: Mapping[str, Any], base_dir: Path, nodes: tuple[NodeConfig, ...]
) -> ApiConfig:
    table = _get_table(errs, raw, "api", "")
    _unknown_keys(errs, table, _API_KEYS, "api")
    insecure = _get_bool(errs, table, "insecure", "api", False)
    open_health = _get_bool(errs, table, "open_health", "api", True)

    tls: dict[str, Path] = {}
    for key in ("tls_cert", "tls_key"):
        text = _get_str(errs, table, key, "api")
        if text is None:
            continue
        p = (base_dir / text).resolve()
        if not text or not p.is_file():
            errs.add(f"api.{key}", f"{p}: not found (give the path of a PEM file)")
            continue
        tls[key] = p
    if ("tls_cert" in table) != ("tls_key" in table):
        have, lack = ("tls_cert", "tls_key") if "tls_cert" in table else ("tls_key", "tls_cert")
        errs.add(f"api.{have}", f"set without api.{lack} (set both, or neither for plain HTTP)")

    tokens: list[ApiToken] = []
    tokens_raw = table.get("tokens", [])
    if not isinstance(tokens_raw, list):
        errs.add(
            "api.tokens",
            f"expected an array of tables, got {_type_name(tokens_raw)} "
            "(write [[api.tokens]] tables)",
        )
        tokens_raw = []
    seen: dict[str, str] = {}
    named: dict[str, str] = {}
    for i, entry in enumerate(tokens_raw):
        where = f"api.tokens[{i}]"
        token = _token(errs, entry, where, base_dir, default_name=f"token-{i + 1}")
        if token is None:
            continue
        first = seen.setdefault(token.token, where)
        if first != where:
            errs.add(where, f"same token as {first} (give every token its own value)")
            continue
        first = named.setdefault(token.name, where)
        if first != where:
            errs.add(
                f"{where}.name",
                f"{_q(token.name)} is already the name of {first} (give every token its own "
                "name: the audit log tells them apart by it)",
            )
            continue
        tokens.append(token)

    if not insecure and nodes:
        exposed = [n for n in nodes if not n.api.is_loopback]
        if exposed:
            n = exposed[0]
            key = f"cluster.nodes.{_k(n.name)}.api"
            if not tokens_raw:
                errs.add(
                    "api.tokens",
                    f"none, but {key} listens on {n.api.host}, not loopback (add "
                    '[[api.tokens]] with role = "admin" or "read", or set api.insecure = true '
                    "to serve the API without tokens)",
                )
            if "tls_cert" not in table:
                errs.add(
                    "api.tls_cert",
                    f"not set, but {key} listens on {n.api.host}, not loopback, so tokens would "
                    "cross the network in clear text (set api.tls_cert and api.tls_key, or set "
                    "api.insecure = true)",
                )
    return ApiConfig(
        tokens=tuple(tokens),
        insecure=insecure,
        tls_cert=tls.get("tls_cert"),
        tls_key=tls.get("tls_key"),
        open_health=open_health,
    )


def _token(
    errs: _Errors, entry: object, where: str, base_dir: Path, *, default_name: str
) -> ApiToken | None:
    if not isinstance(entry, Mapping):
        errs.add(where, f"expected a table, got {_type_name(entry)} (write [[api.tokens]] tables)")
        return None
    _unknown_keys(errs, entry, _TOKEN_KEYS, where)
    name = _get_str(errs, entry, "name", where) if "name" in entry else default_name
    if name is not None and not _NAME_RE.fullmatch(name):
        errs.add(
            f"{where}.name",
            # (not echoed: it might be a token pasted into the wrong key)
            f'not a valid token name (use {_NAME_FIX}, e.g. name = "ci")',
        )
        name = None
    role = _get_str(errs, entry, "role", where)
    roles = " or ".join(_q(r) for r in TOKEN_ROLES)
    if "role" not in entry:
        errs.add(f"{where}.role", f"missing (role = {roles})")
    elif role is not None and role not in TOKEN_ROLES:
        errs.add(f"{where}.role", f"{_q(role)} is not a role (use {roles})")
        role = None
    token = _get_str(errs, entry, "token", where)
    token_file = _get_str(errs, entry, "token_file", where)
    token_key = f"{where}.token"
    token_fix = f"at least {MIN_SECRET_CHARS} random characters"
    token_path: Path | None = None
    if "token" in entry and "token_file" in entry:
        errs.add(f"{where}.token_file", f"set together with {where}.token (keep only one)")
        return None
    if token_file is not None:
        token_key = f"{where}.token_file"
        token_path = (base_dir / token_file).resolve()
        token = _read_small_file(
            errs,
            token_key,
            token_path,
            "token",
            f"write {token_fix} into it, e.g. openssl rand -base64 32 > {token_path}; "
            f"chmod 600 {token_path}",
        )
    elif "token" not in entry:
        errs.add(token_key, f"missing (set token or token_file, {token_fix})")
    if token is not None and _weak(
        errs, token_key, token, file=None if token_path is None else str(token_path)
    ):
        return None
    if role is None or token is None or name is None:
        return None
    if name == token:
        errs.add(
            f"{where}.name",
            "is the token itself (a name is logged with every write: pick one such as "
            '"ci" or "ops")',
        )
        return None
    return ApiToken(role=role, token=token, name=name)


def _jobs(
    errs: _Errors, raw: Mapping[str, Any], base_dir: Path, default_lease_ms: int
) -> tuple[JobSpec, ...]:
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


# ---------------------------------------------------------------------------- the host


def secret_values(cfg: Config) -> dict[str, str]:
    """The cluster secret (and, during a rotation, the previous one) and every API
    token, each with what it is (never shown)."""
    out = {t.token: "an API token" for t in cfg.api.tokens if t.token}
    if cfg.cluster.previous_secret:
        out[cfg.cluster.previous_secret] = "the previous cluster secret"
    if cfg.cluster.secret:
        out[cfg.cluster.secret] = "the cluster secret"
    return out


def passthrough_leaks(
    names: Iterable[str], environ: Mapping[str, str], secret_values: Mapping[str, str]
) -> list[tuple[str, str]]:
    """``(name, what it holds)`` for each variable named in an ``env_passthrough`` whose
    value in ``environ`` is the cluster secret or an API token (never given to a job)."""
    out = []
    for name in names:
        value = environ.get(name)
        if value is None:
            continue
        what = secret_values.get(value) or secret_values.get(value.strip())
        if what:
            out.append((name, what))
    return out


def environment_problems(
    cfg: Config, environ: Mapping[str, str], where: str = "this environment"
) -> list[str]:
    """Jobs of the file whose ``env_passthrough`` names a variable that holds the cluster
    secret or an API token in ``environ`` (the agent's environment at start; for
    ``check-config``, its own). Messages name the file, the key and the fix."""
    out = []
    values = secret_values(cfg)
    for i, spec in enumerate(cfg.jobs):
        for name, what in passthrough_leaks(spec.env_passthrough, environ, values):
            out.append(
                f"{cfg.path}: jobs[{i}].env_passthrough: {_q(name)} holds {what} in {where} "
                "(a job must never see it: remove it from env_passthrough)"
            )
    return out


def account_problems(cfg: Config, where: str = "on this machine") -> list[str]:
    """Jobs of the file whose ``user`` or ``group`` cannot be used here: an account this
    machine does not know, or an agent that is not root asked to switch. Messages name the
    file, the key and the fix."""
    from raftcron.accounts import AccountError, resolve

    out = []
    for i, spec in enumerate(cfg.jobs):
        if spec.user is None and spec.group is None:
            continue
        try:
            resolve(spec.user, spec.group)
        except AccountError as exc:
            out.append(f"{cfg.path}: jobs[{i}].{exc.key}: {exc} {where} ({exc.fix})")
    return out


# ---------------------------------------------------------------------------- default


def single_node_config(data_dir: Path) -> Config:
    """The config of ``raftcron agent`` without ``--config``: one node "local" on 127.0.0.1
    (raft 7100, api 8100), no jobs, no tokens (the API is open: it listens on loopback only).

    The secret is generated once into ``data_dir/secret`` (mode 0600) and reused after.
    """
    data_dir = Path(data_dir).resolve()
    secret_path = data_dir / "secret"
    label = str(secret_path)
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            secret = secret_path.read_text(encoding="utf-8").strip()
            private = private_file_problem(secret_path)
            if private:
                raise ConfigError([private]) from None
        else:
            secret = secrets.token_urlsafe(32)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(secret + "\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            [
                f"{label}: cannot create or read the secret: {reason} (check --data-dir and its "
                "permissions)"
            ]
        ) from None
    weak = secret_weakness(secret)
    if weak:
        raise ConfigError(
            [
                f"{label}: {weak}; delete the file and raftcron generates a new one, or write "
                f"one with: openssl rand -base64 32 > {label}; chmod 600 {label})"
            ]
        )
    raft_host, raft_port = SINGLE_NODE_RAFT.split(":")
    api_host, api_port = SINGLE_NODE_API.split(":")
    node = NodeConfig(
        name=SINGLE_NODE_NAME,
        raft=HostPort(host=raft_host, port=int(raft_port)),
        api=HostPort(host=api_host, port=int(api_port)),
        tags=(),
        data_dir=data_dir,
    )
    return Config(
        path=secret_path,
        cluster=ClusterConfig(secret=secret, nodes=(node,)),
        api=ApiConfig(),
        jobs=(),
    )
