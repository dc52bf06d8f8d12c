"""Dkron's jobs (the JSON of ``GET /v1/jobs``, a list of job objects, or one job) as
``[[jobs]]`` tables. docs/migrating.md has the mapping as a table:

* ``name`` as it is (Dkron's names are valid raftcron names); ``--prefix`` in front.
* ``schedule``: robfig/cron with the seconds FIRST (``s m h dom mon dow``) becomes
  raftcron's order, seconds LAST, or five fields when the seconds are ``0``; descriptors
  (``@daily``, ``@every 10s``) as they are; a ``TZ=``/``CRON_TZ=`` prefix becomes
  ``timezone``. ``@at`` (one run at a date) and ``@manually`` have no raftcron schedule:
  not imported (errors).
* ``timezone``: as given; empty means the Dkron agent's local time: ``--tz``, else the
  host's zone (as for a crontab).
* ``executor = "shell"``: ``command`` (``shell = "true"``: ``["/bin/sh", "-c", command]``,
  else split into words as Dkron does), ``env`` (``"A=1,B=2"``), ``cwd``, ``timeout`` (a
  Go duration), ``payload`` (base64: the job's ``stdin``), ``su`` (``user[:group]``).
* ``executor = "http"``: ``url``, ``method``, ``headers`` (a JSON list of ``"Name:
  value"``), ``body``, ``timeout`` (seconds), ``expectCode``; ``expectBody`` and
  ``tlsNoVerify`` have no raftcron equivalent (notices). Other executors: not imported.
* ``concurrency = "forbid"``: ``overlap = "skip"``; ``retries`` as it is.
* ``tags``: ``{"role": "web:2"}`` means 2 nodes tagged ``role=web``: ``tags = { role =
  "web" }``, ``count = 2``; without a ``:N`` (and without tags) Dkron runs the job on EVERY
  matching node: ``count = "all"`` (reported). ``dkron_*`` tags are Dkron's own: dropped.
* ``parent_job``: ``after = [parent]``, ``on = "success"``, no schedule of its own.
* ``disabled``: not imported (a notice: raftcron pauses jobs, it does not define them
  paused). ``owner_email``: a notice with the ``[notify]`` equivalent. ``ephemeral``,
  ``expires_at``, ``processors``, ``metadata``: notices (nothing equivalent).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
from collections.abc import Mapping
from typing import Any, Final

from raftcron.importers.common import (
    ERROR,
    INFO,
    NOTICE,
    Imported,
    InputError,
    Result,
    check_job,
)
from raftcron.importers.crontab import MAX_BYTES, zone_problem

_GO_UNITS: Final = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "μs": 1e-3, "ms": 1.0, "s": 1e3}
_GO_UNITS.update({"m": 60e3, "h": 3600e3})
_GO_PART: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_TZ_PREFIX: Final = re.compile(r"^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$")


def go_duration_ms(text: str) -> int | None:
    """A Go duration (``"1h30m"``, ``"90s"``, ``"1.5h"``, ``"500ms"``) in whole
    milliseconds, or None if it is not one (negative ones included)."""
    text = text.strip()
    if text == "0":
        return 0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _GO_PART.match(text, pos)
        if not m:
            return None
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    return round(total) if text else None


def duration_text(ms: int) -> str:
    if ms % 1000:
        return f"{ms}ms"
    s = ms // 1000
    for unit, size in (("h", 3600), ("m", 60)):
        if s % size == 0 and s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def schedule_of(spec: str) -> tuple[str, str | None, str | None]:
    """``(schedule, zone, problem)``: Dkron's schedule in raftcron's form, the zone of a
    ``TZ=`` prefix, or why there is none."""
    spec = spec.strip()
    zone = None
    m = _TZ_PREFIX.match(spec)
    if m:
        zone, spec = m.group(1), m.group(2).strip()
    if spec == "@manually":
        return (
            "",
            zone,
            (
                "@manually: runs only when triggered; raftcron has no manual-only job (give it "
                "a schedule and pause it, then `raftcron trigger NAME`)"
            ),
        )
    if spec.startswith("@at "):
        return (
            "",
            zone,
            (
                f"{spec!r}: one run at a date; raftcron has no one-shot schedule (create the job "
                "with any schedule, pause it, and `raftcron trigger` it then; or use at(1))"
            ),
        )
    if spec.startswith("@"):
        return spec, zone, None
    fields = spec.split()
    if len(fields) == 6:  # seconds first -> seconds last (or none)
        sec, rest = fields[0], fields[1:]
        return " ".join(rest if sec == "0" else [*rest, sec]), zone, None
    if len(fields) == 5:  # a standard cron line: robfig's parser refuses it, raftcron not
        return spec, zone, None
    return spec, zone, f"{spec!r} has {len(fields)} fields (Dkron's form has 6, seconds first)"


def _shell(job: Mapping[str, Any], cfg: Mapping[str, Any], table: dict[str, Any]) -> list[str]:
    """The shell executor's keys into ``table``; problems (errors) returned."""
    problems: list[str] = []
    command = str(cfg.get("command") or "")
    if not command.strip():
        return ["executor_config.command is empty (nothing to run)"]
    if str(cfg.get("shell", "")).lower() in ("true", "1", "t", "yes"):
        table["command"] = ["/bin/sh", "-c", command]
    else:
        try:
            table["command"] = shlex.split(command)
        except ValueError as exc:
            return [f"executor_config.command {command!r} cannot be split into words: {exc}"]
    env: dict[str, str] = {}
    for item in str(cfg.get("env") or "").split(","):
        if item.strip():
            key, eq, value = item.partition("=")
            if not eq:
                problems.append(f"executor_config.env: {item!r} is not NAME=value")
            env[key.strip()] = value
    if env:
        table["env"] = env
    if cfg.get("cwd"):
        table["cwd"] = str(cfg["cwd"])
    if cfg.get("timeout"):
        ms = go_duration_ms(str(cfg["timeout"]))
        if ms is None:
            problems.append(f"executor_config.timeout {cfg['timeout']!r} is not a duration")
        elif ms:
            table["timeout"] = duration_text(ms)
    if cfg.get("payload"):
        try:
            table["stdin"] = base64.b64decode(str(cfg["payload"]), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            problems.append(f"executor_config.payload is not base64 of UTF-8 text: {exc}")
    if cfg.get("su"):
        user, _, group = str(cfg["su"]).partition(":")
        table["user"] = user
        if group:
            table["group"] = group
    return problems


def _http(result: Result, where: str, cfg: Mapping[str, Any], table: dict[str, Any]) -> list[str]:
    http: dict[str, Any] = {"url": str(cfg.get("url") or "")}
    if cfg.get("method"):
        http["method"] = str(cfg["method"]).upper()
    if cfg.get("headers"):
        try:
            items = json.loads(str(cfg["headers"]))
            http["headers"] = {
                str(h).split(":", 1)[0].strip(): str(h).split(":", 1)[1].strip()
                for h in items
                if ":" in str(h)
            }
        except (ValueError, TypeError):
            return [f"executor_config.headers {cfg['headers']!r} is not a JSON list of 'Name: v'"]
    if cfg.get("body"):
        http["body"] = str(cfg["body"])
    if cfg.get("expectCode"):
        try:
            http["expect"] = int(str(cfg["expectCode"]))
        except ValueError:
            return [f"executor_config.expectCode {cfg['expectCode']!r} is not a status code"]
    if cfg.get("timeout"):
        try:
            table["timeout"] = f"{int(str(cfg['timeout']))}s"
        except ValueError:
            return [f"executor_config.timeout {cfg['timeout']!r} is not a number of seconds"]
    if cfg.get("expectBody"):
        result.add(
            NOTICE, where, "expectBody: raftcron checks the status only; the body is not matched"
        )
    if str(cfg.get("tlsNoVerify", "")).lower() == "true":
        result.add(NOTICE, where, "tlsNoVerify: raftcron always verifies TLS certificates")
    table["http"] = http
    return []


def _tags(result: Result, where: str, tags: Mapping[str, Any], table: dict[str, Any]) -> None:
    clean: dict[str, str] = {}
    count: int | None = None
    dropped = []
    for key, raw in tags.items():
        if str(key).startswith("dkron_"):
            dropped.append(str(key))
            continue
        value, _, card = str(raw).partition(":")
        clean[str(key)] = value
        if card.isdigit():
            count = int(card) if count is None else min(count, int(card))
    if dropped:
        result.add(INFO, where, f"Dkron's own tags dropped: {', '.join(sorted(dropped))}")
    if clean:
        table["tags"] = clean
    if count is None:
        table["count"] = "all"
        result.add(
            NOTICE,
            where,
            'no ":N" in its tags: Dkron ran it on every matching node, so count = "all" '
            "(for once in the cluster, remove count)",
        )
    elif count != 1:
        table["count"] = count


def import_dkron(
    data: bytes, source: str, *, tz: str | None, host_zone: str | None, prefix: str
) -> Result:
    """Dkron's jobs JSON into jobs and a report (:class:`InputError` if it is not JSON)."""
    if len(data) > MAX_BYTES * 16:
        raise InputError(f"{source}: larger than {MAX_BYTES * 16 // (1 << 20)} MiB")
    try:
        jobs = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{source}: byte {exc.start} is not UTF-8: not Dkron's JSON") from None
    except ValueError as exc:
        raise InputError(
            f"{source}: not JSON: {exc} (save the output of GET /v1/jobs: "
            "curl -s http://DKRON:8080/v1/jobs > jobs.json)"
        ) from None
    if isinstance(jobs, dict):
        jobs = [jobs]
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise InputError(f"{source}: expected a list of job objects (GET /v1/jobs)")
    result = Result(source=source)
    sep = "" if not prefix or prefix[-1] in "-_." else "-"
    used_host_zone = False
    for i, job in enumerate(jobs):
        name = str(job.get("name") or "")
        where = f"job {name or f'#{i + 1}'}"
        if job.get("disabled"):
            result.add(
                NOTICE,
                where,
                "disabled in Dkron: not imported (import it by hand and `raftcron jobs pause` "
                "it if it should exist)",
            )
            continue
        table: dict[str, Any] = {"name": f"{prefix}{sep}{name}" if prefix else name}
        said = Result(source=source)  # this job's notices: reported if it is imported
        parent = str(job.get("parent_job") or "")
        problems: list[str] = []
        schedule, zone, why = schedule_of(str(job.get("schedule") or ""))
        if parent:
            table["after"] = [f"{prefix}{sep}{parent}" if prefix else parent]
            table["on"] = "success"
        elif why:
            problems.append(why)
        else:
            table["schedule"] = schedule
        zone = zone or str(job.get("timezone") or "") or tz or host_zone
        if zone is None:
            zone = "UTC"
        elif not job.get("timezone") and not tz:
            used_host_zone = True
        if zone_problem(zone):
            problems.append(f"timezone {zone!r}: {zone_problem(zone)}")
        table["timezone"] = zone
        executor = str(job.get("executor") or "shell")
        cfg = job.get("executor_config") or {}
        if not isinstance(cfg, Mapping):
            problems.append("executor_config is not an object")
        elif executor == "shell":
            problems += _shell(job, cfg, table)
        elif executor == "http":
            problems += _http(said, where, cfg, table)
        else:
            problems.append(
                f"executor {executor!r}: raftcron runs commands and HTTP requests only "
                "(wrap the call in a command, e.g. a CLI of that system)"
            )
        if job.get("concurrency") == "forbid":
            table["overlap"] = "skip"
        if job.get("retries"):
            table["retries"] = int(job["retries"])
        tags = job.get("tags") or {}
        if isinstance(tags, Mapping):
            _tags(said, where, tags, table)
        if job.get("owner_email"):
            said.add(
                NOTICE,
                where,
                f"owner_email {job['owner_email']}: raftcron sends no mail; add [notify] "
                "webhooks (or the job's notify key) pointing at a hook that mails it",
            )
        for key, why_not in (
            ("ephemeral", "raftcron keeps a job until it is deleted"),
            ("expires_at", "raftcron has no expiry date (delete the job then)"),
            ("processors", "its output is kept in the ledger (`raftcron runs --job NAME`)"),
            ("metadata", "raftcron's tags are for placement only"),
        ):
            if job.get(key) and not (key == "expires_at" and job[key] in (None, "")):
                said.add(INFO if key != "ephemeral" else NOTICE, where, f"{key}: {why_not}")
        for problem in problems:
            result.add(ERROR, where, problem)
        if not problems and check_job(result, where, table):
            result.report.extend(said.report)
            result.jobs.append(Imported(table, where, f"schedule {job.get('schedule')!r}"))
    if used_host_zone and result.jobs:
        result.add(
            INFO,
            "time zone",
            f"jobs with no timezone run in {host_zone}, this host's zone (Dkron used its "
            "agent's; give --tz ZONE if that differs)",
        )
    return result
