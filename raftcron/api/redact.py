"""What a read token does not see: the secrets in job definitions, replaced by one marker.

A job's definition can carry credentials: ``env`` values (a database password), HTTP-job
``headers`` (an ``Authorization``), ``notify`` webhook URLs and the ``ping_url`` (their
path is the secret, e.g. a Slack hook or a healthchecks.io check), an HTTP job's ``url``
when it has user info or a query, and a command job's ``stdin``. An admin token sees them
(it can change the job anyway); a read token sees :data:`~raftcron.api.http.REDACTED`
instead, in every view of a job (``GET /v1/jobs``, ``GET /v1/jobs/{name}``, hence the
dashboard and ``raftcron jobs``), and any of those values that appears in a run's
``reason`` or ``output`` (a job that prints its own ``env``) is replaced the same way.
Keys (env names, header names) stay visible. ``PUT`` refuses a body that carries the
marker (``http.refuse_redacted``).

Pure functions: no I/O.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable
from typing import Any, Final

from raftcron.api.http import REDACTED
from raftcron.core.model import JobSpec

__all__ = ["REDACTED", "redact_table", "scrub", "secrets_of", "url_has_credentials"]

# Shorter values are not scrubbed from run text: "1" or "on" would blank half the output.
MIN_SCRUB_CHARS: Final = 4


def url_has_credentials(url: str) -> bool:
    """A URL with user info (``https://user:pass@host``) or a query (``?token=...``)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return True  # unparsable: do not guess what part of it is safe
    return bool(parts.username or parts.password or parts.query or "@" in parts.netloc)


def redact_table(table: dict[str, Any]) -> dict[str, Any]:
    """A copy of a job's ``[[jobs]]`` table (``app.spec_table``) with its secrets replaced
    by the marker; the input is not changed."""
    out = dict(table)
    if isinstance(out.get("env"), dict):
        out["env"] = {k: REDACTED for k in out["env"]}
    http = out.get("http")
    if isinstance(http, dict):
        http = dict(http)
        if isinstance(http.get("headers"), dict):
            http["headers"] = {k: REDACTED for k in http["headers"]}
        if isinstance(http.get("url"), str) and url_has_credentials(http["url"]):
            http["url"] = REDACTED
        out["http"] = http
    if isinstance(out.get("notify"), list):
        out["notify"] = [
            {**t, "url": REDACTED} if isinstance(t, dict) else REDACTED for t in out["notify"]
        ]
    if out.get("ping_url") is not None:
        out["ping_url"] = REDACTED
    if out.get("stdin"):
        out["stdin"] = REDACTED  # a password piped to a client, a mail body
    return out


def secrets_of(spec: JobSpec) -> list[str]:
    """The values of ``spec`` that a read token must not see, longest first."""
    found: set[str] = {v for _, v in spec.env}
    if spec.http is not None:
        found.update(v for _, v in spec.http.headers)
        if url_has_credentials(spec.http.url):
            found.add(spec.http.url)
            parts = urllib.parse.urlsplit(spec.http.url)
            found.update(p for p in (parts.password, parts.query) if p)
    found.update(t.url for t in spec.notify or ())
    if spec.ping_url:
        found.add(spec.ping_url)
    if spec.stdin:
        found.add(spec.stdin)
    return sorted((s for s in found if len(s) >= MIN_SCRUB_CHARS), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by the marker."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
