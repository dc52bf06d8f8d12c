"""A crontab (user or system format) as ``[[jobs]]`` tables, with Vixie cron's meaning.

What each line becomes (docs/migrating.md has the same as a table):

* A schedule: the five fields as written, or ``@hourly``, ``@daily``/``@midnight``,
  ``@weekly``, ``@monthly``, ``@yearly``/``@annually``. ``@reboot`` is not a schedule: it is
  reported (a notice) and not imported.
* The command: ``[SHELL, "-c", command]`` (``SHELL`` from the crontab, else ``/bin/sh``,
  as cron runs it). The first unescaped ``%`` ends the command; the text after it is the
  job's ``stdin``, each further unescaped ``%`` a newline; ``\\%`` is a literal ``%`` (Vixie
  cron's do_command.c, byte for byte: no newline is added at the end).
* Environment lines (``NAME=value``, ``NAME = "value"``; quotes around the whole value are
  removed, nothing is expanded) go into the ``env`` of every later job, except: ``SHELL``
  (the argv), ``CRON_TZ`` (the ``timezone`` of later jobs), ``MAILTO`` (reported with its
  ``[notify]`` equivalent), ``MAILFROM``/``CONTENT_TYPE``/``CONTENT_TRANSFER_ENCODING``
  (mail settings: reported), ``RANDOM_DELAY`` (cronie: minutes, becomes ``jitter``). ``TZ``
  stays in ``env``, as in cron (it does not move the schedule).
* The time zone: every job gets one: ``CRON_TZ``, else ``--tz``, else the host's zone (the
  command line finds it and the report says so).
* ``user``: the user field of a system crontab, or ``--user`` for a user crontab.
* A command wrapped in a lock (``flock -n FILE CMD``, ``flock -n FILE -c CMD``,
  ``etcdctl lock NAME CMD``, ``redis-cli ... SET KEY V NX ... && CMD``, ``raftcron lock NAME
  -- CMD``) loses the wrapper and gets ``overlap = "skip"``: raftcron runs it once in the
  cluster, never beside itself. A line without one ran on every server that had the
  crontab: it is imported to run once (``--per-host``: ``count = "all"``, once per node).
* Daylight saving time, as Vixie cron: a line whose minute or hour field starts with ``*``
  (``@hourly`` too) runs by real time: ``dst_gap = "skip"``, ``dst_repeat = "twice"``; any
  other line keeps raftcron's defaults, which are cron's rule for fixed times (a fire in the
  spring-forward gap runs when it ends, one in the repeated hour runs once). The one
  difference left: two fixed-time fires of one line inside the same gap run once, not twice.
* Vixie cron's day rule: a day-of-month or day-of-week field that starts with ``*`` (as
  ``*/2``) makes cron require BOTH day fields to match; raftcron (like croniter) reads such
  a field as restricted and, when both are restricted, fires when EITHER matches. Every
  line where the readings differ is imported as written and reported (a notice).

Pure: no clock, no file access; :func:`import_crontab` takes the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from raftcron.importers.common import (
    ERROR,
    INFO,
    NOTICE,
    Imported,
    InputError,
    Result,
    Word,
    check_job,
    sanitize,
    shell_words,
    simple_command,
    stem,
    unique_names,
)

MAX_BYTES: Final = 1 << 20  # a crontab is a few kB; Vixie cron caps a line at ~1000 bytes
DEFAULT_SHELL: Final = "/bin/sh"
ALIASES: Final = (
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
)
SYSTEM_PATHS: Final = ("/etc/crontab",)
SYSTEM_DIRS: Final = ("/etc/cron.d/",)
_MAIL_SETTINGS: Final = ("MAILFROM", "CONTENT_TYPE", "CONTENT_TRANSFER_ENCODING", "MAILCMD")
_ENV_RE: Final = re.compile(r"""\s*(?:"([^"]*)"|'([^']*)'|([^\s='"]+))\s*=(.*)$""")
# A word that is a cron field, not a program: what a 6th time field looks like.
_FIELD_RE: Final = re.compile(
    r"[0-9*?/,LW#-]+|(?:(?:MON|TUE|WED|THU|FRI|SAT|SUN|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|"
    r"OCT|NOV|DEC)[,-]?)+",
    re.IGNORECASE,
)
_LOCK_HINT: Final = re.compile(r"\b(flock|etcdctl|redis-cli|GET_LOCK|raftcron\s+lock)\b", re.I)
_SKIP_PROGRAMS: Final = frozenset(
    {"cd", "test", "[", "[[", "sleep", "true", ":", "export", "source", ".", "set", "umask"}
)
_WRAPPERS: Final = frozenset(
    {"nice", "ionice", "nohup", "timeout", "sudo", "env", "exec", "chronic", "time", "setsid"}
)
_WRAPPER_VALUE_OPTS: Final = frozenset({"-n", "-u", "-c", "-g", "-p", "-s", "-k", "-t", "-C"})
_INTERPRETERS: Final = frozenset(
    {"sh", "bash", "dash", "zsh", "ksh", "python", "python3", "perl", "ruby", "php", "node"}
)


def is_system_path(path: str) -> bool:
    """``/etc/crontab`` and ``/etc/cron.d/*`` are in the system format (a user field)."""
    return path in SYSTEM_PATHS or any(path.startswith(d) for d in SYSTEM_DIRS)


def decode(data: bytes, source: str) -> str:
    """The crontab's text, or :class:`InputError` for a file that is not a crontab: larger
    than ``MAX_BYTES``, holding a NUL byte, or not UTF-8 (each named with its line)."""
    if len(data) > MAX_BYTES:
        line = data[:MAX_BYTES].count(b"\n") + 1
        raise InputError(
            f"{source}: line {line}: the file is larger than {MAX_BYTES // 1024} KiB there "
            "(a crontab is a few kB; is this the right file? split it and import each part "
            "with its own --prefix)"
        )
    nul = data.find(b"\0")
    if nul >= 0:
        line = data[:nul].count(b"\n") + 1
        raise InputError(
            f"{source}: line {line}: a NUL byte: this is a binary file, not a crontab "
            "(give the text file: `crontab -l > mine.txt`, /etc/crontab, /etc/cron.d/NAME)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{source}: line {line}: byte {exc.start} is not UTF-8: this is not a text "
            "crontab (convert it: iconv -f LATIN1 -t UTF-8)"
        ) from None


@dataclass(frozen=True, slots=True)
class Options:
    system: bool = False
    user: str | None = None
    tz: str | None = None  # --tz
    host_zone: str | None = None  # the zone the host's cron ran in, if known
    prefix: str = ""
    per_host: bool = False


def split_percent(command: str) -> tuple[str, str | None]:
    """Vixie cron's ``%``: ``(command, stdin)``; stdin is None without an unescaped ``%``.

    In the command ``\\%`` is ``%`` and any other backslash stays; in the input each
    unescaped ``%`` is a newline, ``\\%`` is ``%``, other backslashes stay."""
    cmd: list[str] = []
    escaped = False
    for i, ch in enumerate(command):
        if escaped:
            escaped = False
            if ch == "%":
                cmd[-1] = "%"  # the backslash before it goes
                continue
        elif ch == "\\":
            escaped = True
        elif ch == "%":
            return "".join(cmd), _stdin_text(command[i + 1 :])
        cmd.append(ch)
    return "".join(cmd), None


def _stdin_text(rest: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in rest:
        if escaped:
            if ch != "%":
                out.append("\\")
        elif ch == "%":
            ch = "\n"
        escaped = ch == "\\"
        if not escaped:
            out.append(ch)
    if escaped:
        out.append("\\")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Unwrapped:
    command: str
    wrapper: str  # how it was locked, for the report


def unwrap_lock(command: str) -> Unwrapped | None:
    """The command inside a recognised lock wrapper, or None."""
    words = shell_words(command)
    if not words:
        return None
    redis = _redis(command, words)
    if redis is not None:
        return redis
    if any(w.kind == "control" for w in words):
        return None  # more than one command: the lock covers only part of it
    simple = [w for w in words if w.kind == "word"]
    first = simple[0].value.rsplit("/", 1)[-1]
    if first == "flock":
        return _flock(command, simple)
    if first == "etcdctl" or (
        first.startswith("ETCDCTL_") and "=" in first and any(w.value == "lock" for w in simple)
    ):
        return _etcdctl(command, simple)
    if first == "raftcron" and len(simple) > 2 and simple[1].value == "lock":
        for i, w in enumerate(simple):
            if w.value == "--" and i + 1 < len(simple):
                return Unwrapped(command[simple[i + 1].start :].strip(), "raftcron lock")
    return None


_FLOCK_FLAGS: Final = re.compile(r"-[xenoFv]+|--(exclusive|nonblock|nb|close|no-fork|verbose)")
_FLOCK_VALUES: Final = frozenset({"-w", "--wait", "--timeout", "-E", "--conflict-exit-code"})


def _flock(command: str, words: list[Word]) -> Unwrapped | None:
    i, nonblock = 1, False
    while i < len(words) and words[i].value.startswith("-"):
        opt = words[i].value
        if opt in _FLOCK_VALUES:
            i += 2
            continue
        if not _FLOCK_FLAGS.fullmatch(opt):
            return None  # shared, unlock or something unknown: not a "run once" lock
        nonblock = nonblock or opt in ("--nonblock", "--nb") or (opt[1] != "-" and "n" in opt)
        i += 1
    if not nonblock or i + 1 >= len(words) or words[i].value.isdigit():
        return None
    rest = words[i + 1 :]
    if rest[0].value in ("-c", "--command"):
        if len(rest) < 2:
            return None
        inner = rest[1].value
        tail = command[rest[1].end :].strip()
        return Unwrapped(f"( {inner} ) {tail}" if tail else inner, "flock -n")
    return Unwrapped(command[rest[0].start :].strip(), "flock -n")


_ETCD_VALUES: Final = frozenset(
    {
        "--endpoints",
        "--dial-timeout",
        "--command-timeout",
        "--keepalive-time",
        "--keepalive-timeout",
        "--cacert",
        "--cert",
        "--key",
        "--user",
        "--password",
        "--discovery-srv",
        "--discovery-srv-name",
        "-w",
        "--write-out",
        "--ttl",
    }
)


def _etcdctl(command: str, words: list[Word]) -> Unwrapped | None:
    i = 0
    while i < len(words) and "=" in words[i].value and not words[i].value.startswith("-"):
        i += 1  # ETCDCTL_API=3 etcdctl ...
    i += 1
    seen_lock = False
    name_seen = False
    while i < len(words):
        v = words[i].value
        if v.startswith("-"):
            i += 2 if ("=" not in v and v in _ETCD_VALUES) else 1
            continue
        if not seen_lock:
            if v != "lock":
                return None
            seen_lock = True
        elif not name_seen:
            name_seen = True
        else:
            return Unwrapped(command[words[i].start :].strip(), "etcdctl lock")
        i += 1
    return None


_REDIS_SET_NX: Final = re.compile(r"\bSET\b.*\bNX\b", re.IGNORECASE)
_REDIS_DEL: Final = re.compile(r"\s*(?:;|&&)\s*redis-cli\b[^;&|]*\bDEL\b[^;&|]*$", re.IGNORECASE)


def _redis(command: str, words: list[Word]) -> Unwrapped | None:
    """``redis-cli ... SET key v NX ... && CMD`` (any test of the SET's answer before the
    first ``&&``), with a trailing ``; redis-cli ... DEL key`` dropped."""
    amp = next((w for w in words if w.kind == "control" and w.value == "&&"), None)
    if amp is None:
        return None
    left = command[: amp.start]
    if "redis-cli" not in left or not _REDIS_SET_NX.search(left):
        return None
    inner = _REDIS_DEL.sub("", command[amp.end :]).strip()
    return Unwrapped(inner, "redis-cli SET ... NX") if inner else None


def name_parts(command: str) -> tuple[str, str]:
    """``(base, hint)`` of a job's name from its command: the program (the script an
    interpreter runs, past ``cd DIR &&``, ``nice``, ``timeout 5m`` and the like), and its
    first argument (what tells two jobs of one program apart)."""
    words = shell_words(command) or [Word(w, 0, 0) for w in command.split()]
    segments: list[list[Word]] = [[]]
    for w in words:
        if w.kind == "control":
            segments.append([])
        else:
            segments[-1].append(w)
    for seg in segments:
        simple = [w.value for w in simple_command(seg)]
        while simple and "=" in simple[0] and not simple[0].startswith("-"):
            simple.pop(0)  # VAR=value cmd
        if not simple or simple[0] in _SKIP_PROGRAMS:
            continue
        while simple and simple[0].rsplit("/", 1)[-1] in _WRAPPERS:
            wrapper = simple.pop(0).rsplit("/", 1)[-1]
            while simple and (simple[0].startswith("-") or "=" in simple[0]):
                opt = simple.pop(0)
                if opt in _WRAPPER_VALUE_OPTS and simple:
                    simple.pop(0)
            if wrapper == "timeout" and simple and simple[0][:1].isdigit():
                simple.pop(0)
        if not simple:
            continue
        program = simple[0].rsplit("/", 1)[-1]
        args = [a for a in simple[1:] if not a.startswith("-")]
        if program in _INTERPRETERS:
            if "-c" in simple[1:]:
                at = simple.index("-c")
                if at + 1 < len(simple):
                    return name_parts(simple[at + 1])
            if args:
                return stem(args[0]), stem(args[1]) if len(args) > 1 else ""
        return stem(program), stem(args[0]) if args else ""
    return "", ""


@dataclass(frozen=True, slots=True)
class _Line:
    number: int
    text: str
    schedule: str
    fields: tuple[str, ...]  # the five fields ((): an alias)
    user: str | None
    command: str


def _split_entry(
    result: Result, n: int, line: str, opts: Options, account: Callable[[str], bool]
) -> _Line | None:
    where = f"line {n}"
    body = line.strip()
    fields: tuple[str, ...] = ()
    if body.startswith("@"):
        alias, rest = _first_word(body)
        alias = alias.lower()
        if alias == "@reboot":
            result.add(
                NOTICE,
                where,
                "@reboot is not a schedule: not imported (it ran when each server booted; "
                "start it from the service manager, e.g. a systemd unit with "
                "WantedBy=multi-user.target, or run it once with `raftcron trigger` after "
                "creating it as a job)",
            )
            return None
        if alias not in ALIASES:
            result.add(
                ERROR,
                where,
                f"{alias!r} is not a cron schedule (use one of {', '.join(ALIASES)}, "
                "@reboot, or five fields)",
            )
            return None
        schedule = alias
    else:
        parts = body.split(None, 5)
        if len(parts) < 6:
            result.add(
                ERROR,
                where,
                f"{len(parts)} fields and no command (a crontab line is minute hour "
                "day-of-month month day-of-week, then the command)",
            )
            return None
        fields = tuple(parts[:5])
        schedule, rest = " ".join(fields), parts[5]
    user = opts.user
    if opts.system:
        user_field, rest = _first_word(rest)
        if _FIELD_RE.fullmatch(user_field):
            result.add(
                ERROR,
                where,
                f"6 time fields ({schedule} {user_field}) before the user: a crontab line "
                "has 5 (minute hour day-of-month month day-of-week); for seconds write a "
                "[[jobs]] table with a 6th field, seconds LAST",
            )
            return None
        if not rest:
            result.add(
                ERROR,
                where,
                f"no command after the user field {user_field!r} (a system crontab line "
                "is 5 time fields, a user, the command; is this a user crontab? then "
                "leave out --system)",
            )
            return None
        user = user_field
    else:
        first = rest.split(None, 1)[0]
        if fields and _FIELD_RE.fullmatch(first):
            result.add(
                ERROR,
                where,
                f"7 fields: 6 time fields ({schedule} {first}) before the command; a "
                f"crontab line has 5 (minute hour day-of-month month day-of-week), so "
                f"cron would run {first!r} as the command. Seconds-first (Quartz, Spring, "
                "Dkron)? write a [[jobs]] table with the seconds LAST; a system crontab? "
                "use --system",
            )
            return None
        if len(rest.split(None, 1)) > 1 and account(first):
            result.add(
                ERROR,
                where,
                f"{first!r} before the command is an account on this host, not a program: "
                "this looks like a system crontab line (5 fields, a user, the command); "
                "import it with --system",
            )
            return None
    return _Line(n, line, schedule, fields, user, rest)


def _first_word(text: str) -> tuple[str, str]:
    parts = text.strip().split(None, 1)
    return (parts[0], parts[1] if len(parts) > 1 else "") if parts else ("", "")


def vixie_day_rule_differs(fields: tuple[str, ...]) -> bool:
    """True if Vixie cron and raftcron read the day fields differently: both restricted
    for raftcron (neither exactly ``*`` or ``?``) while one starts with ``*`` (Vixie:
    both must match; raftcron: either)."""
    if not fields:
        return False
    dom, dow = fields[2], fields[4]
    unrestricted = ("*", "?")
    if dom in unrestricted or dow in unrestricted:
        return False
    return dom.startswith("*") or dow.startswith("*")


def runs_by_real_time(line: _Line) -> bool:
    """Vixie cron's "wildcard" job (minute or hour starts with ``*``, or ``@hourly``):
    across a DST change it runs by real time, not by wall-clock time."""
    if not line.fields:
        return line.schedule == "@hourly"
    return line.fields[0].startswith("*") or line.fields[1].startswith("*")


def _no_account(_: str) -> bool:
    return False


def import_crontab(
    text: str,
    source: str,
    opts: Options,
    *,
    is_account: Callable[[str], bool] = _no_account,
) -> Result:
    """Every line of ``text``: jobs, and the report. ``is_account`` says whether a word is
    an account on this host (a user crontab line that starts with one is a system line)."""
    result = Result(source=source)
    env: dict[str, str] = {}
    shell = DEFAULT_SHELL
    cron_tz: str | None = None
    bad_tz: int | None = None  # the line of an invalid CRON_TZ still in force
    jitter: str | None = None
    lines: list[tuple[_Line, dict[str, Any], list[str], bool]] = []
    unwrapped: list[int] = []
    host_zone_used = False
    for n, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        where = f"line {n}"
        m = _ENV_RE.match(line)
        if m and not body.startswith("@"):
            name = next(g for g in m.groups()[:3] if g is not None)
            value = m.group(4).strip()
            if len(value) >= 2 and value[0] in "'\"" and value[-1] == value[0]:
                value = value[1:-1]
            if name == "SHELL":
                if not value:
                    result.add(ERROR, where, "SHELL is empty (name the shell, e.g. /bin/bash)")
                    continue
                shell = value
            elif name == "CRON_TZ":
                if zone_problem(value):
                    result.add(
                        ERROR,
                        where,
                        f"CRON_TZ={value!r}: {zone_problem(value)}; the jobs after it are "
                        "not imported",
                    )
                    bad_tz = n
                else:
                    cron_tz, bad_tz = value, None
            elif name == "MAILTO":
                if value:
                    result.add(
                        NOTICE,
                        where,
                        f"MAILTO={value}: raftcron sends no mail. To be told when these jobs "
                        'fail, add [notify] webhooks = ["https://..."] to the cluster file '
                        "(or a job's notify key) pointing at a hook that mails "
                        f"{value}; each run's output is kept in the ledger "
                        "(`raftcron runs --job NAME`), not mailed",
                    )
                else:
                    result.add(INFO, where, "MAILTO is empty: no mail, as in raftcron")
            elif name in _MAIL_SETTINGS:
                result.add(NOTICE, where, f"{name}: a mail setting; raftcron sends no mail")
            elif name == "RANDOM_DELAY":
                if not value.isdigit():
                    result.add(ERROR, where, f"RANDOM_DELAY={value!r} is not a number of minutes")
                    continue
                jitter = f"{int(value)}m" if int(value) else None
                result.add(
                    INFO,
                    where,
                    f"RANDOM_DELAY={value}: later jobs get jitter = "
                    f'"{value}m" (a fixed offset per job below it, not a new random one '
                    "each time)",
                )
            elif name.startswith("RAFTCRON_"):
                result.add(
                    ERROR,
                    where,
                    f"{name}: reserved (raftcron sets the RAFTCRON_* variables of a run "
                    "itself; rename it in the crontab and its scripts)",
                )
            else:
                env[name] = value
            continue
        entry = _split_entry(result, n, line, opts, is_account)
        if entry is None:
            continue
        if bad_tz is not None:
            result.add(ERROR, where, f"not imported: CRON_TZ on line {bad_tz} is not a zone")
            continue
        command, stdin = split_percent(entry.command)
        command = command.rstrip(" \t")
        if not command.strip():
            result.add(ERROR, where, "no command before the first % (nothing to run)")
            continue
        notes: list[str] = []
        wrapped = unwrap_lock(command)
        if wrapped is not None:
            command = wrapped.command
            notes.append(f'lock wrapper ({wrapped.wrapper}) removed: overlap = "skip"')
            result.add(
                INFO,
                where,
                f'{wrapped.wrapper} wrapper removed, overlap = "skip": raftcron runs it '
                "once in the cluster and never beside a run of itself"
                + (
                    " (flock's lock was per server unless its file was on shared storage)"
                    if wrapped.wrapper == "flock -n"
                    else ""
                ),
            )
        elif _LOCK_HINT.search(command):
            result.add(
                INFO,
                where,
                "mentions a lock tool in a form not recognised: kept as written (remove the "
                'lock by hand and set overlap = "skip"; docs/migrating.md)',
            )
        if wrapped is None:
            unwrapped.append(n)
        zone = cron_tz or opts.tz or opts.host_zone or "UTC"
        host_zone_used = host_zone_used or not (cron_tz or opts.tz)
        table: dict[str, Any] = {
            "name": "",
            "schedule": entry.schedule,
            "timezone": zone,
            "command": [shell, "-c", command],
        }
        if stdin:  # (an empty one reads as /dev/null does: nothing)
            table["stdin"] = stdin
            notes.append("text after the first % becomes stdin")
        if env:
            table["env"] = dict(env)
        if entry.user is not None:
            table["user"] = entry.user
        if wrapped is not None:
            table["overlap"] = "skip"
        elif opts.per_host:
            table["count"] = "all"
        if jitter:
            table["jitter"] = jitter
        if runs_by_real_time(entry) and zone != "UTC" and not zone.startswith("Etc/"):
            table["dst_gap"] = "skip"
            table["dst_repeat"] = "twice"
            notes.append("minute or hour starts with *: runs by real time across DST, as cron")
        if vixie_day_rule_differs(entry.fields):
            dom, dow = entry.fields[2], entry.fields[4]
            result.add(
                NOTICE,
                where,
                f"day fields {dom!r} and {dow!r}: cron runs it on days matching BOTH (a day "
                "field starting with * makes cron require both), raftcron on days matching "
                "EITHER; imported as written: check its fires (`raftcron check-config`), or "
                "keep one day field and test the other in the command (docs/migrating.md)",
            )
            notes.append("day rule differs from Vixie cron: see the report")
        lines.append((entry, table, notes, wrapped is not None))
    _name_and_check(result, lines, opts)
    _summary(result, opts, unwrapped, host_zone_used)
    return result


def zone_problem(zone: str) -> str | None:
    from raftcron.core.schedule import ScheduleError, parse

    try:
        parse("* * * * *", zone)
    except ScheduleError as exc:
        return str(exc)
    return None


def _name_and_check(
    result: Result, lines: list[tuple[_Line, dict[str, Any], list[str], bool]], opts: Options
) -> None:
    parts = [name_parts(t["command"][2]) for _, t, _, _ in lines]
    names = unique_names(
        [p[0] for p in parts],
        [p[1] for p in parts],
        [f"{e.schedule}\0{e.command}" for e, _, _, _ in lines],
        sanitize(opts.prefix) if opts.prefix else "",
    )
    for (entry, table, notes, _), name in zip(lines, names, strict=True):
        table["name"] = name
        where = f"line {entry.number}"
        if check_job(result, where, table):
            result.jobs.append(Imported(table, where, entry.text.strip(), notes))


def _summary(result: Result, opts: Options, unwrapped: list[int], host_zone_used: bool) -> None:
    if unwrapped and result.jobs:
        lines = ", ".join(str(n) for n in unwrapped)
        how = (
            'imported with count = "all": each fire runs once on every node'
            if opts.per_host
            else "imported to run ONCE in the cluster (for once per node: --per-host, "
            'count = "all")'
        )
        result.add(
            INFO,
            f"line{'s' if len(unwrapped) > 1 else ''} {lines}",
            f"not wrapped in a lock: on N servers with this crontab it ran N times; {how}",
        )
    if result.jobs and host_zone_used and opts.host_zone:
        result.add(
            INFO,
            "time zone",
            f"jobs without CRON_TZ run in {opts.host_zone}, this host's zone (cron used the "
            "local time of each server; give --tz ZONE if theirs differs)",
        )
    if result.jobs and host_zone_used and not opts.host_zone:
        result.add(
            NOTICE,
            "time zone",
            "this host's zone is unknown: jobs without CRON_TZ were given UTC (cron used "
            "each server's local time; give --tz ZONE)",
        )
    if result.jobs and not opts.system and opts.user is None:
        result.add(
            INFO,
            "user",
            "no --user: the jobs run as the agent's account (give --user NAME for the "
            "account whose crontab this was)",
        )
    if any(j.table.get("user") == "root" for j in result.jobs):
        result.add(INFO, "user", 'jobs with user = "root" need an agent running as root')


def lines_of(result: Result) -> Mapping[str, Imported]:
    """The imported jobs by name (for tests and the CLI)."""
    return {j.table["name"]: j for j in result.jobs}
