"""What every client verb of the ``raftcron`` command shares: the options, the client, the
output (``-o table|json``), errors and exit codes.

* ``--api`` takes one URL or a comma list (or ``RAFTCRON_API``), parsed by
  :func:`raftcron.clientopts.api_urls` like ``raftcron lock``'s. :func:`client_from_args`
  gives a :class:`~raftcron.client.FailoverClient`: a member that does not answer is
  skipped. :func:`one_node_client` is for the verbs that act through one node (``drain``,
  ``undrain``, ``leader transfer``): they talk to the first URL only and never fail over.
* ``-o json`` (or ``--json``, kept as it was) prints the API's JSON; ``-o table`` (the
  default) the tables. :func:`wants_json` tells which.

Imported by every ``raftcron`` call that builds the whole parser: standard library only.
"""

from __future__ import annotations

import argparse
import json
import os

from raftcron.clientopts import (
    DEFAULT_API,
    TokenFileError,
    add_connection_options,
    api_urls,
    token_from,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TypeVar

    from raftcron.client import Client, FailoverClient

    T = TypeVar("T")

EXIT_RUNTIME = 1
EXIT_USAGE = 2
# stdout was closed by its reader (`raftcron status | head -1`): 128 + SIGPIPE, the code a
# shell shows for cat, etcdctl or any C tool killed by SIGPIPE, so `set -o pipefail` sees
# the same as with them.
EXIT_PIPE = 141

OUTPUTS = ("table", "json")


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.code = code


def add_client_options(
    p: argparse.ArgumentParser,
    request_timeout: bool = True,
    output: bool = True,
    default: Any = None,
) -> None:
    """The options every client verb takes: where the API is and how (the connection
    options are ``raftcron lock``'s too: :mod:`raftcron.clientopts`), ``--timeout`` unless
    ``request_timeout=False`` (``drain`` has its own), and ``-o``/``--json`` unless
    ``output=False`` (a verb with other formats). ``default=argparse.SUPPRESS`` for a
    sub-verb under a parser that has them too (``runs show``): what is not given there
    keeps the outer value."""
    add_connection_options(
        p,
        api_help=f"member API URL, or several comma-separated: a member that does not answer "
        f"is skipped (or RAFTCRON_API; default {DEFAULT_API})",
        default=default,
    )
    if request_timeout:
        p.add_argument(
            "--timeout",
            type=float,
            default=10.0 if default is None else default,
            help="seconds per request (default 10)",
        )
    if output:
        p.add_argument(
            "-o",
            "--output",
            choices=OUTPUTS,
            default="table" if default is None else default,
            help="table (default) or json (the API's JSON, for scripts)",
        )
        p.add_argument(
            "--json",
            action="store_true",
            default=False if default is None else default,
            help="the same as -o json",
        )


def wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False)) or getattr(args, "output", None) == "json"


def token_of(args: argparse.Namespace) -> str | None:
    try:
        return token_from(args, os.environ)
    except TokenFileError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def urls_of(args: argparse.Namespace) -> list[str]:
    return api_urls(getattr(args, "api", None), os.environ)


def _cafile(args: argparse.Namespace) -> str | None:
    return getattr(args, "cacert", None) or os.environ.get("RAFTCRON_CACERT") or None


def client_from_args(args: argparse.Namespace) -> FailoverClient:
    """The API client the options ask for, over every ``--api`` member (failing over);
    :class:`CliError` (exit 2) for a bad URL."""
    from raftcron.client import FailoverClient

    try:
        return FailoverClient(
            urls_of(args),
            token=token_of(args),
            timeout=getattr(args, "timeout", 10.0),
            cafile=_cafile(args),
        )
    except (ValueError, OSError) as exc:
        raise CliError(f"--api: {exc}", EXIT_USAGE) from None


def one_node_client(args: argparse.Namespace) -> Client:
    """A client of the first ``--api`` URL only, for a verb that acts through one node:
    it never fails over to another member (the others are ignored)."""
    from raftcron.client import Client

    try:
        return Client(
            urls_of(args)[0],
            token=token_of(args),
            timeout=getattr(args, "timeout", 10.0),
            cafile=_cafile(args),
        )
    except (ValueError, OSError) as exc:
        raise CliError(f"--api: {exc}", EXIT_USAGE) from None


def one_line(text: str) -> str:
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())


def call(fn: Callable[[], T]) -> T:
    """Run one client call; its errors become one-line :class:`CliError`s (exit 1)."""
    from raftcron.client import ApiError, ApiUnavailable

    try:
        return fn()
    except ApiUnavailable as exc:
        raise CliError(f"{exc}; set --api or RAFTCRON_API") from None
    except ApiError as exc:
        raise CliError(f"{one_line(exc.message)} (HTTP {exc.status} {exc.code})") from None


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(h) for h in header]] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def when(ts: str | None) -> str | None:
    """An RFC 3339 UTC time as the tables show it (``2026-01-01 00:00:00``)."""
    return None if ts is None else ts.replace("T", " ").replace("Z", "")


def installed_version() -> str:
    """This installation's raftcron version (pyproject.toml is its one source)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("raftcron")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e . in the checkout)"
