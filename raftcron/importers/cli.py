"""``raftcron jobs import crontab [FILE|-]`` and ``raftcron jobs import dkron FILE``.

The jobs go to stdout (TOML ``[[jobs]]`` tables, or ``{"jobs": [...]}`` with ``-o json``),
ready for ``raftcron jobs apply`` or the cluster file; the report goes to stderr, one line
per skipped line, notice and remark, then a summary. Exit codes: 0 everything imported; 3
imported with notices (``@reboot``, ``MAILTO``, Vixie cron's day rule, ...); 2 errors:
nothing is written unless ``--partial`` (then the valid jobs are, and the code is still 2).
"""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False  # imported by every `raftcron` call to build its parser: stay light
if TYPE_CHECKING:
    from typing import Any

    from raftcron.importers.common import Result

__all__ = ["add_parser", "host_zone"]

EXIT_ERRORS = 2  # common.EXIT_ERRORS, without importing the config machinery here


def add_parser(jobs_sub: Any) -> argparse.ArgumentParser:
    """Add ``import`` (with ``crontab`` and ``dkron``) to ``raftcron jobs``."""
    p: argparse.ArgumentParser = jobs_sub.add_parser(
        "import",
        help="turn a crontab or Dkron's jobs into [[jobs]] tables (stdout; report on stderr)",
    )
    sub = p.add_subparsers(dest="import_from", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--tz",
        help="time zone of jobs that name none (default: this host's zone, as cron used)",
    )
    common.add_argument("--prefix", default="", help="put this in front of every job name")
    common.add_argument(
        "--partial",
        action="store_true",
        help="write the jobs that are valid even when some lines are not (exit code 2 still)",
    )
    common.add_argument(
        "-o",
        dest="output",
        choices=("toml", "json"),
        default="toml",
        help='toml ([[jobs]] tables, default) or json ({"jobs": [...]})',
    )
    c = sub.add_parser(
        "crontab",
        parents=[common],
        help="a crontab (user format, or /etc/crontab and /etc/cron.d/* with a user field)",
    )
    c.add_argument("file", nargs="?", default="-", help="the crontab file, or - for stdin")
    c.add_argument(
        "--system",
        action="store_true",
        help="system format (a user field after the 5 time fields); "
        "the default for /etc/crontab and /etc/cron.d/*",
    )
    c.add_argument("--user", help="the account whose crontab it is: the jobs' user")
    c.add_argument(
        "--per-host",
        action="store_true",
        help='lines not wrapped in a lock run on every node (count = "all"), as they did '
        "on every server; default: once in the cluster",
    )
    c.set_defaults(fn=cmd_import_crontab)
    d = sub.add_parser("dkron", parents=[common], help="Dkron's jobs: the JSON of GET /v1/jobs")
    d.add_argument("file", help="the JSON file (curl http://dkron:8080/v1/jobs > jobs.json), or -")
    d.set_defaults(fn=cmd_import_dkron)
    return p


def host_zone(
    environ: dict[str, str] | None = None,
    localtime: str = "/etc/localtime",
    timezone_file: str = "/etc/timezone",
) -> str | None:
    """This host's IANA zone, as cron sees it: ``TZ``, else what ``/etc/localtime`` links
    to, else ``/etc/timezone``; None if none of them names a zone."""
    from raftcron.importers.crontab import zone_problem

    env = os.environ if environ is None else environ
    candidates: list[str] = []
    if env.get("TZ"):
        candidates.append(env["TZ"].removeprefix(":"))
    try:
        target = os.path.realpath(localtime)
        if "/zoneinfo/" in target:
            candidates.append(target.split("/zoneinfo/", 1)[1])
    except OSError:
        pass
    try:
        with open(timezone_file, encoding="utf-8") as f:
            candidates.append(f.read().strip())
    except (OSError, UnicodeDecodeError):
        pass
    for zone in candidates:
        if zone and not zone.startswith("/") and zone_problem(zone) is None:
            return zone
    return None


def _read(path: str) -> tuple[bytes, str]:
    from raftcron.importers.common import InputError
    from raftcron.importers.crontab import MAX_BYTES

    try:
        if path == "-":
            return sys.stdin.buffer.read(MAX_BYTES + 1), "stdin"
        with open(path, "rb") as f:
            return f.read(MAX_BYTES + 1), path
    except FileNotFoundError:
        raise InputError(f"{path}: not found (check the path)") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory (give one crontab file)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _zone_option(args: argparse.Namespace) -> str | None:
    from raftcron.importers.common import InputError
    from raftcron.importers.crontab import zone_problem

    if args.tz is not None and zone_problem(args.tz):
        raise InputError(f"--tz {args.tz}: {zone_problem(args.tz)}")
    tz: str | None = args.tz
    return tz


def _is_account(word: str) -> bool:
    """A word that is an account here and no program on PATH (``root`` before a command:
    a system crontab line read as a user one)."""
    import pwd
    import shutil

    try:
        pwd.getpwnam(word)
    except KeyError:
        return False
    return shutil.which(word) is None


def _finish(result: Result, args: argparse.Namespace, header: list[str]) -> int:
    from raftcron.importers.common import to_json, to_toml

    code = result.exit_code
    for line in result.report_lines():
        print(line, file=sys.stderr)
    if code == EXIT_ERRORS and not args.partial:
        print(
            f"{result.source}: nothing written (fix the errors above, or give --partial to "
            f"write the {len(result.jobs)} valid jobs)",
            file=sys.stderr,
        )
        return code
    text = to_json(result) if args.output == "json" else to_toml(result, header)
    sys.stdout.write(text)
    return code


def cmd_import_crontab(args: argparse.Namespace) -> int:
    from raftcron.importers.common import InputError
    from raftcron.importers.crontab import Options, decode, import_crontab, is_system_path

    try:
        tz = _zone_option(args)
        data, source = _read(args.file)
        text = decode(data, source)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERRORS
    system = args.system or (args.file != "-" and is_system_path(os.path.abspath(args.file)))
    if system and args.user:
        print(
            "error: --user: a system crontab names the user on each line (leave out --user, "
            "or --system if it is a user crontab)",
            file=sys.stderr,
        )
        return EXIT_ERRORS
    opts = Options(
        system=system,
        user=args.user,
        tz=tz,
        host_zone=None if tz else host_zone(),
        prefix=args.prefix,
        per_host=args.per_host,
    )
    result = import_crontab(text, source, opts, is_account=_is_account)
    what = "system crontab" if system else "crontab"
    header = [f"imported by `raftcron jobs import crontab` from {source} ({what})"]
    return _finish(result, args, header)


def cmd_import_dkron(args: argparse.Namespace) -> int:
    from raftcron.importers.common import InputError
    from raftcron.importers.dkron import import_dkron

    try:
        tz = _zone_option(args)
        data, source = _read(args.file)
        result = import_dkron(
            data, source, tz=tz, host_zone=None if tz else host_zone(), prefix=args.prefix
        )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERRORS
    header = [f"imported by `raftcron jobs import dkron` from {source}"]
    return _finish(result, args, header)
