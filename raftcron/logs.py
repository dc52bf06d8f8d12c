"""How an agent logs: one line per record on stderr, as text or as JSON (``--log-json``).

Both formats stamp a record with its UTC time in RFC 3339 with milliseconds
(``2026-12-07T05:01:02.345Z``), whatever the machine's zone.

* Text: ``<ts> <LEVEL> [<node>] <logger>: <message>``. Control characters in the message
  are escaped, so user text (a pause note, a path) can never start a line of its own; a
  traceback after it keeps its lines.
* JSON: one object per line with ``ts``, ``level``, ``logger``, ``msg`` and, whenever they
  apply, the fields of :data:`FIELDS` (and ``exc`` with a traceback).

Where the fields come from, without ever re-reading the message text:

1. ``node``: the agent's own name, on every line;
2. :func:`bound`: fields set for everything logged in the current task and the tasks it
   starts (an API request binds its job or run id);
3. a :class:`LogCtx` among the record's arguments: a line's subject as text carrying the
   same facts as fields (``run_ctx`` in ``raftcron.executor.lease`` makes the one every
   run line starts with, so ``"%s: finished", ctx`` needs nothing more);
4. ``extra={...}`` of the logging call (``event``, ``term``, the audit fields), which wins.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "FIELDS",
    "JsonFormatter",
    "LogCtx",
    "TextFormatter",
    "bound",
    "fields_of",
    "setup",
    "utc_stamp",
]

FIELDS: Final = (
    "node",
    "job",
    "run_id",
    "fence",
    "term",
    "event",
    # the audit line of an API write (``raftcron.api.audit``)
    "token",
    "role",
    "method",
    "path",
    "status",
)
"""The structured fields a JSON line may carry, in the order they are written."""

_NONE: Final[Mapping[str, object]] = MappingProxyType({})
_bound: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "raftcron_log_fields", default=_NONE
)


class LogCtx(str):
    """The subject of a log line as text (``job=x run=... fence=7 node=a``), carrying the
    same facts as :attr:`fields` for the JSON format. It is a ``str``, so it goes wherever
    the text went before: ``logger.info("%s: started", ctx)``."""

    fields: Mapping[str, object]

    def __new__(cls, text: str, **fields: object) -> LogCtx:
        obj = super().__new__(cls, text)
        obj.fields = {k: v for k, v in fields.items() if v is not None}
        return obj


@contextlib.contextmanager
def bound(**fields: object) -> Iterator[None]:
    """Add ``fields`` to every record logged inside the block, in this task and in the
    tasks it starts (context variables)."""
    token = _bound.set({**_bound.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _bound.reset(token)


def fields_of(record: logging.LogRecord, node: str = "") -> dict[str, Any]:
    """The structured fields of ``record`` (see the module docstring for the order)."""
    found: dict[str, Any] = {"node": node} if node else {}
    found.update(_bound.get())
    if isinstance(record.args, tuple):
        for arg in record.args:
            if isinstance(arg, LogCtx):
                found.update(arg.fields)
    attrs = record.__dict__
    for key in FIELDS:
        if attrs.get(key) is not None:
            found[key] = attrs[key]
    return {k: found[k] for k in FIELDS if k in found and found[k] is not None}


def utc_stamp(created: float) -> str:
    """``created`` (epoch seconds) as ``2026-12-07T05:01:02.345Z``."""
    whole = int(created)
    ms = int((created - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{ms:03d}Z"


def _escaped(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class TextFormatter(logging.Formatter):
    """``<ts> <LEVEL> [<node>] <logger>: <message>``, the message on one line."""

    def __init__(self, node: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s [{node}] %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_stamp(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = _escaped(record.message)
        return super().formatMessage(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``msg``, the fields."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": utc_stamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in fields_of(record, self.node).items():
            out[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out)  # (ASCII: no raw U+2028 either)


def setup(level: str, as_json: bool, node: str) -> None:
    """Send every record to stderr in the chosen format, at ``level`` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(node) if as_json else TextFormatter(node))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
