"""Jobs as files: what ``raftcron jobs apply`` reads and ``raftcron jobs export`` writes.

``jobs apply FILE|-`` reads TOML or JSON, from a file or stdin (``-``):

* TOML: ``[[jobs]]`` tables, or one job's keys at the top level (as before).
* JSON: ``{"jobs": [...]}`` (what ``jobs export -o json`` and ``jobs import -o json``
  write), a list of jobs, or one job; a job may also be a job as the API shows it
  (``jobs show -o json``, ``jobs list -o json``): its ``spec`` is used.

The format comes from the file's extension (``.json``, ``.toml``), else from the text.

``jobs export [-o toml|json] [FILE]`` writes the API jobs (``--all``: the cluster file's
too) as ``jobs apply`` reads them back, with their real values: it needs an admin token and
refuses a read token (which sees secrets as ``<redacted>``), and a FILE it writes is
private (0600). Apply an export and export again: the same bytes.
"""

from __future__ import annotations

import json
import os
import re
import sys

from raftcron.cliutil import EXIT_RUNTIME, EXIT_USAGE, CliError, call, client_from_args

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from typing import Any

    from raftcron.client import Client, JobInfo

REDACTED = "<redacted>"  # raftcron.api.http.REDACTED, without importing the server side


# --------------------------------------------------------------------------- reading


def read_job_tables(arg: str) -> tuple[list[dict[str, Any]], str]:
    """The job tables in the file ``arg`` (``-``: stdin) and the name to report it by."""
    from pathlib import Path

    if arg == "-":
        where, base = "stdin", Path.cwd()
        try:
            text = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CliError(f"stdin: not UTF-8 text: {exc}", EXIT_USAGE) from None
        kind = _sniff(text)
    else:
        path = Path(arg)
        where, base = str(path), path.parent
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise CliError(f"{path}: not found (check the path)", EXIT_USAGE) from None
        except IsADirectoryError:
            raise CliError(f"{path}: is a directory (give one file)", EXIT_USAGE) from None
        except OSError as exc:
            raise CliError(f"{path}: cannot read: {exc.strerror or exc}", EXIT_USAGE) from None
        except UnicodeDecodeError as exc:
            raise CliError(f"{path}: not UTF-8 text: {exc}", EXIT_USAGE) from None
        suffix = path.suffix.lower()
        kind = {".json": "json", ".toml": "toml"}.get(suffix) or _sniff(text)
    raw, container = _parse(text, kind, where)
    tables = _tables(raw, container, where)
    out = []
    for table, at in tables:
        name = table.get("name")
        if not isinstance(name, str) or not name:
            raise CliError(f"{at}.name: missing (every job needs a name)", EXIT_USAGE)
        job = dict(table)
        cwd = job.get("cwd")
        if isinstance(cwd, str) and cwd and not os.path.isabs(cwd):
            job["cwd"] = str((base / cwd).resolve())  # relative to the file, as in config
        out.append(job)
    return out, where


def _sniff(text: str) -> str:
    """JSON when the text is JSON, else TOML (``[[jobs]]`` starts with ``[`` too)."""
    stripped = text.lstrip()
    if stripped[:1] == "{":
        return "json"
    if stripped[:1] == "[" and not stripped.startswith("[["):
        try:
            json.loads(text)
        except ValueError:
            return "toml"
        return "json"
    return "toml"


def _parse(text: str, kind: str, where: str) -> tuple[Any, str]:
    if kind == "json":
        try:
            return json.loads(text), "json"
        except ValueError as exc:
            raise CliError(f"{where}: not valid JSON: {exc}", EXIT_USAGE) from None
    import tomllib

    try:
        return tomllib.loads(text), "toml"
    except tomllib.TOMLDecodeError as exc:
        raise CliError(f"{where}: not valid TOML: {exc}", EXIT_USAGE) from None


def _tables(raw: Any, kind: str, where: str) -> list[tuple[dict[str, Any], str]]:
    """Each job table with where it is (for messages)."""
    if isinstance(raw, dict) and "jobs" in raw:
        items = raw["jobs"]
        shape = "[[jobs]] tables" if kind == "toml" else 'a list of jobs: {"jobs": [...]}'
        if not isinstance(items, list) or not all(isinstance(t, dict) for t in items):
            raise CliError(f"{where}: jobs: expected {shape}", EXIT_USAGE)
        return [(_job_of(t), f"{where}: jobs[{i}]") for i, t in enumerate(items)]
    if isinstance(raw, list):
        if not all(isinstance(t, dict) for t in raw):
            raise CliError(f"{where}: expected a list of jobs (JSON objects)", EXIT_USAGE)
        return [(_job_of(t), f"{where}: [{i}]") for i, t in enumerate(raw)]
    if isinstance(raw, dict) and ("schedule" in raw or "command" in raw or "spec" in raw):
        return [(_job_of(raw), where)]
    fix = (
        "write [[jobs]] tables, or one job's keys at the top level"
        if kind == "toml"
        else 'write {"jobs": [...]}, a list of jobs, or one job'
    )
    raise CliError(f"{where}: no jobs ({fix})", EXIT_USAGE)


def _job_of(table: dict[str, Any]) -> dict[str, Any]:
    """A job table; a job as the API shows it (``jobs show -o json``) gives its ``spec``."""
    spec = table.get("spec")
    if isinstance(spec, dict) and "name" in table and "next_fire" in table:
        return spec
    return table


# --------------------------------------------------------------------------- export


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else _string(key)


def _string(text: str) -> str:
    from raftcron.importers.common import toml_string

    return toml_string(text)


def toml_value(value: Any) -> str:
    """``value`` (from the API's JSON) as a TOML value that reads back equal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items() if v is not None)
        return "{ " + inner + " }" if inner else "{}"
    raise CliError(f"cannot write a {type(value).__name__} value as TOML")


def to_toml(jobs: list[JobInfo], header: list[str]) -> str:
    parts = [f"# {h}" for h in header]
    for job in jobs:
        parts.append("")
        if job.paused:
            note = job.raw.get("pause_note")
            parts.append(
                "# paused"
                + (f" ({_comment(note)})" if note else "")
                + ": jobs apply does not pause it; run raftcron jobs pause after it"
            )
        parts.append("[[jobs]]")
        parts.extend(f"{_key(k)} = {toml_value(v)}" for k, v in job.spec.items() if v is not None)
    return "\n".join(parts) + "\n"


def _comment(text: str) -> str:
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def to_json(jobs: list[JobInfo]) -> str:
    body = {"jobs": [dict(j.spec) for j in jobs]}
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def _redacted(value: Any) -> bool:
    if isinstance(value, str):
        return value == REDACTED
    if isinstance(value, dict):
        return any(_redacted(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_redacted(v) for v in value)
    return False


READ_TOKEN = (
    "jobs export needs an admin token: {why}, and an export must hold the real values "
    "(give an admin token: --token, --token-file, RAFTCRON_TOKEN or RAFTCRON_TOKEN_FILE)"
)


def _check_admin(client: Client) -> None:
    """Refuse a token that is not an admin's: ``GET /v1/whoami`` where the cluster has it;
    a node without it shows nothing to ask, and the export then checks the values."""
    from raftcron.client import ApiError

    try:
        me = client.request("GET", "/v1/whoami")
    except ApiError as exc:
        if exc.status == 404:
            return
        raise
    role = me.get("role") if isinstance(me, dict) else None
    if role != "admin":
        raise CliError(
            READ_TOKEN.format(why=f"this token has the {role} role, which sees secrets redacted")
        )


def cmd_jobs_export(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    call(lambda: _check_admin(client))
    jobs = sorted(call(client.jobs), key=lambda j: j.name)
    kept = [j for j in jobs if j.source == "api" or (args.all and j.source == "config")]
    hidden = [j.name for j in kept if _redacted(j.spec)]
    if hidden:
        raise CliError(
            READ_TOKEN.format(why=f"the cluster sent {REDACTED} for secrets of {', '.join(hidden)}")
        )
    left = len(jobs) - len(kept)
    if args.output == "json":
        text = to_json(kept)
    else:
        what = "API" if not args.all else "API and cluster file"
        header = [
            f"raftcron jobs export: {len(kept)} {what} job(s); raftcron jobs apply FILE "
            "puts them back. It holds secrets (env, headers, URLs): keep it private."
        ]
        text = to_toml(kept, header)
    if args.file in (None, "-"):
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        _write_private(args.file, text)
    if left:
        print(
            f"exported {len(kept)} job(s); left out {left} defined in the cluster file or "
            "embedded (they are not the API's: --all adds the cluster file's)",
            file=sys.stderr,
        )
    return 0


def _write_private(name: str, text: str) -> None:
    """Write ``text`` to ``name`` as a new 0600 file, then move it into place."""
    from pathlib import Path

    path = Path(name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CliError(
            f"{path}: cannot write: {exc.strerror or exc} (check the directory)", EXIT_RUNTIME
        ) from None


def add_export_parser(jsub: Any, connection: argparse.ArgumentParser) -> None:
    """``jobs export`` under ``raftcron jobs``; ``connection`` has the client options
    without ``-o`` (export's ``-o`` is a file format)."""
    e = jsub.add_parser(
        "export",
        parents=[connection],
        help="write the API's jobs as TOML or JSON that jobs apply reads back (admin token)",
    )
    e.add_argument(
        "file", nargs="?", metavar="FILE", help="write here, mode 0600 (default: stdout)"
    )
    e.add_argument(
        "-o",
        "--output",
        choices=("toml", "json"),
        default="toml",
        help='toml ([[jobs]] tables, default) or json ({"jobs": [...]})',
    )
    e.add_argument(
        "--all",
        action="store_true",
        help="the cluster file's jobs too (to move them to another cluster)",
    )
    e.set_defaults(fn=cmd_jobs_export)


def spec_of(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A job table as the PUT body (JSON values only)."""
    body: dict[str, Any] = json.loads(json.dumps(mapping, default=str))
    return body
