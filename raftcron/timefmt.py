"""Instants as text: the one RFC 3339 formatter of the API, the job environment
(``RAFTCRON_SCHEDULED_AT``), webhooks and the CLI's views. Pure: no clock.

(Log lines stamp their own time with ``logs.utc_stamp``, from a float of seconds.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def rfc3339(ms: int) -> str:
    """Epoch ms as RFC 3339 UTC, always with a four-digit year (``strftime("%Y")`` prints
    year 267 as "267"); exact (integer arithmetic, no float rounding); milliseconds only
    when there are any (``2026-12-07T05:01:02Z``, ``2026-12-07T05:01:02.345Z``)."""
    secs, frac_ms = divmod(ms, 1000)
    dt = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=secs)
    frac = f".{frac_ms:03d}" if frac_ms else ""
    return (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
        f"{dt.second:02d}{frac}Z"
    )
