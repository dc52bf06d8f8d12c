"""The connection options of every client verb, ``raftcron lock`` included: one definition.

``--api``, ``--token``, ``--token-file`` and ``--cacert``, with their environment variables
``RAFTCRON_API``, ``RAFTCRON_TOKEN``, ``RAFTCRON_TOKEN_FILE`` and ``RAFTCRON_CACERT``.
A token comes from, first found: ``--token``, ``--token-file``, ``RAFTCRON_TOKEN``,
``RAFTCRON_TOKEN_FILE``. A token file must be private to its owner, like the agent's own
secret and token files (``chmod 600``); its text, stripped, is the token.

``raftcron lock`` imports this module on every call: ``os`` only (not even argparse,
which its parser needs only for ``--help`` and usage errors; see :mod:`raftcron.lockcmd`).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping
    from typing import Any


class TokenFileError(Exception):
    """A token file that cannot be used; ``str()`` names it and the fix (exit code 2)."""


def add_connection_options(
    p: argparse.ArgumentParser, *, api_help: str, default: Any = None
) -> None:
    """Add the options to ``p``. ``default`` replaces every default (``raftcron lock``
    parses the options after NAME a second time with ``argparse.SUPPRESS``)."""
    p.add_argument("--api", default=default, help=api_help)
    p.add_argument("--token", default=default, help="API token (or RAFTCRON_TOKEN)")
    p.add_argument(
        "--token-file",
        default=default,
        metavar="FILE",
        help="read the API token from FILE, mode 0600 (or RAFTCRON_TOKEN_FILE)",
    )
    p.add_argument(
        "--cacert", default=default, help="CA file to verify an https API (or RAFTCRON_CACERT)"
    )


def token_from(args: argparse.Namespace | Any, environ: Mapping[str, str]) -> str | None:
    """The token the options and the environment give, or None; :class:`TokenFileError`."""
    token: str | None = getattr(args, "token", None)
    path: str | None = getattr(args, "token_file", None)
    if token and path:
        raise TokenFileError("--token and --token-file given together (keep one)")
    if token:
        return token
    if path:
        return read_token_file(path, "--token-file")
    token = environ.get("RAFTCRON_TOKEN")
    if token:
        return token
    path = environ.get("RAFTCRON_TOKEN_FILE")
    if path:
        return read_token_file(path, "RAFTCRON_TOKEN_FILE")
    return None


def read_token_file(path: str, where: str) -> str:
    """The token in the file at ``path``; ``where`` names the option it came from."""
    try:
        with open(path, encoding="utf-8") as f:
            mode = os.fstat(f.fileno()).st_mode & 0o7777  # stat.S_IMODE
            text = f.read().strip()
    except FileNotFoundError:
        raise TokenFileError(f"{where}: {path}: not found") from None
    except IsADirectoryError:
        raise TokenFileError(f"{where}: {path}: is a directory (give the token's file)") from None
    except UnicodeDecodeError:
        raise TokenFileError(f"{where}: {path}: is not UTF-8 text") from None
    except OSError as exc:
        raise TokenFileError(
            f"{where}: {path}: cannot read: {exc.strerror or exc} (check the permissions)"
        ) from None
    if mode & 0o077:
        raise TokenFileError(
            f"{where}: {path}: mode {mode:04o} lets its group or others read it (it holds a "
            f"token; run: chmod 600 {path})"
        )
    if not text:
        raise TokenFileError(f"{where}: {path}: empty (write the API token into it)")
    return text


DEFAULT_API = "http://127.0.0.1:8100"  # raftcron.client.DEFAULT_API, without importing it


def api_urls(value: str | None, environ: Mapping[str, str]) -> list[str]:
    """The members' API URLs that ``--api`` (else ``RAFTCRON_API``, else the default) names:
    one URL or a comma-separated list, in the order given (empty items are dropped, and a
    trailing ``/``). The one parser of every verb's ``--api``, ``raftcron lock``'s included;
    each URL is checked where a client is built for it (:func:`raftcron.wire.split_base`)."""
    raw = value or environ.get("RAFTCRON_API") or DEFAULT_API
    urls = [u.strip().rstrip("/") for u in raw.split(",")]
    return [u for u in urls if u] or [DEFAULT_API]
