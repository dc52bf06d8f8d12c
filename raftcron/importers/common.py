"""What the importers share: the report, job names, the TOML and JSON writers, and a small
reader of shell words (enough to see a lock wrapper and a program name, nothing more).

Report levels and the exit code of ``raftcron jobs import``:

* ``error``: the line (or Dkron job) was not imported. Exit 2; nothing is written unless
  ``--partial`` asks for the rest.
* ``notice``: imported, or deliberately left out, but it behaves differently in raftcron
  (``@reboot``, ``MAILTO``, Vixie cron's day rule, ...). Exit 3 when there is no error.
* ``info``: what the importer did that a reader should know (a lock wrapper removed, the
  time zone it chose). Exit 0.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from raftcron.config import ConfigError, job_spec_from_mapping

ERROR: Final = "error"
NOTICE: Final = "notice"
INFO: Final = "info"

EXIT_OK: Final = 0
EXIT_ERRORS: Final = 2
EXIT_NOTICES: Final = 3

MAX_NAME: Final = 64  # config.py's job name: [A-Za-z0-9][A-Za-z0-9._-]{0,63}
_BASE_MAX: Final = 40  # room for a prefix and a suffix
_SCRIPT_EXT: Final = re.compile(r"\.(sh|bash|py|pl|rb|php|js|ksh|zsh)$", re.IGNORECASE)


class InputError(Exception):
    """The input as a whole cannot be read (not text, too large, not JSON): one message
    naming the file, the line and the fix. ``raftcron jobs import`` exits 2."""


@dataclass(frozen=True, slots=True)
class Entry:
    """One line of the report. ``where`` is ``line N`` (a crontab) or ``job NAME``."""

    level: str
    where: str
    text: str

    def line(self, source: str) -> str:
        return f"{self.level}: {source}: {self.where}: {self.text}"


@dataclass(slots=True)
class Imported:
    """One job to write: its ``[[jobs]]`` keys, where it came from (a comment above it)."""

    table: dict[str, Any]
    where: str
    origin: str  # the source line or a short description
    notes: list[str] = field(default_factory=list)  # comments written above the table


@dataclass(slots=True)
class Result:
    source: str  # the file name for messages ("-" is "stdin")
    jobs: list[Imported] = field(default_factory=list)
    report: list[Entry] = field(default_factory=list)

    def add(self, level: str, where: str, text: str) -> None:
        self.report.append(Entry(level, where, text))

    def count(self, level: str) -> int:
        return sum(1 for e in self.report if e.level == level)

    @property
    def exit_code(self) -> int:
        if self.count(ERROR):
            return EXIT_ERRORS
        return EXIT_NOTICES if self.count(NOTICE) else EXIT_OK

    def report_lines(self) -> list[str]:
        lines = [e.line(self.source) for e in self.report]
        errors, notices = self.count(ERROR), self.count(NOTICE)
        lines.append(
            f"{self.source}: {len(self.jobs)} jobs imported, {errors} "
            f"{'error' if errors == 1 else 'errors'} (not imported), {notices} "
            f"{'notice' if notices == 1 else 'notices'}"
        )
        return lines


def check_job(result: Result, where: str, table: Mapping[str, Any]) -> bool:
    """Validate ``table`` exactly as the cluster file and ``PUT /v1/jobs`` do; report every
    problem as an error at ``where``. True if it is a valid job."""
    try:
        job_spec_from_mapping(table, "the job")
    except ConfigError as exc:
        for message in exc.errors:
            result.add(ERROR, where, message.removeprefix("the job: "))
        return False
    return True


# --------------------------------------------------------------------------- names


def sanitize(text: str) -> str:
    """``text`` as a piece of a job name: letters, digits, '.', '_', '-' only."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text)
    out = re.sub(r"-{2,}", "-", out).strip("-._")
    return out[:_BASE_MAX].rstrip("-._")


def stem(path: str) -> str:
    """A program or script path as a name piece: its base name without a script suffix."""
    base = path.rstrip("/").rsplit("/", 1)[-1]
    return sanitize(_SCRIPT_EXT.sub("", base))


def unique_names(
    bases: Sequence[str], hints: Sequence[str], keys: Sequence[str], prefix: str
) -> list[str]:
    """Stable, unique, valid job names: ``base`` where it is unique; where several jobs
    share a base, ``base-hint`` (their first argument) if that tells them apart, else
    ``base-<6 hex digits of key>`` (``key``: schedule and command, so reordering the input
    does not rename a job); exact duplicates get ``-2``, ``-3``. ``prefix`` goes in front
    (with a ``-`` unless it ends in one of ``-_.``)."""
    bases = [b or "job" for b in bases]
    counts: dict[str, int] = {}
    for b in bases:
        counts[b] = counts.get(b, 0) + 1
    names: list[str] = []
    shared = [i for i, b in enumerate(bases) if counts[b] > 1]
    cands = {i: f"{bases[i]}-{hints[i]}" if hints[i] else "" for i in shared}
    taken = [c for c in cands.values() if c]
    for i, b in enumerate(bases):
        if counts[b] == 1:
            names.append(b)
        elif cands[i] and taken.count(cands[i]) == 1 and cands[i] not in counts:
            names.append(cands[i])
        else:
            digest = hashlib.sha256(keys[i].encode("utf-8", "surrogateescape")).hexdigest()
            names.append(f"{b}-{digest[:6]}")
    seen: dict[str, int] = {}
    out = []
    sep = "" if not prefix or prefix[-1] in "-_." else "-"
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        full = f"{prefix}{sep}{n}" + (f"-{seen[n]}" if seen[n] > 1 else "")
        out.append(full[:MAX_NAME])
    return out


# --------------------------------------------------------------------------- output

_BARE_KEY: Final = re.compile(r"[A-Za-z0-9_-]+")


def toml_string(text: str) -> str:
    """A TOML basic string that reads back as exactly ``text``."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF:
            out.append(f"\\u{ord(ch) & 0xFFFF:04X}" if ord(ch) <= 0xFFFF else ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        inner = ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def _comment(text: str) -> str:
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def to_toml(result: Result, header: Iterable[str] = ()) -> str:
    """The jobs as ``[[jobs]]`` tables, each under comments saying where it came from."""
    parts = [f"# {_comment(h)}" for h in header]
    for job in result.jobs:
        if parts:
            parts.append("")
        parts.append(f"# {job.where}: {_comment(job.origin)}")
        parts.extend(f"# {_comment(n)}" for n in job.notes)
        parts.append("[[jobs]]")
        parts.extend(f"{_toml_key(k)} = {toml_value(v)}" for k, v in job.table.items())
    return "\n".join(parts) + "\n"


def to_json(result: Result) -> str:
    """``{"jobs": [...]}``: the same tables as JSON."""
    return json.dumps({"jobs": [j.table for j in result.jobs]}, indent=2, ensure_ascii=False) + "\n"


# --------------------------------------------------------------------------- shell words


@dataclass(frozen=True, slots=True)
class Word:
    """A shell word with its quotes removed, and where it stands in the text; or an
    operator (``kind`` "control" for ``;``, ``&&``, ``||``, ``|``, ``&``, ``(``, ``)``,
    newline; "redirect" for ``>``, ``>>``, ``<``, ``2>&1``, ``&>``, ...)."""

    value: str
    start: int
    end: int
    kind: str = "word"


def shell_words(text: str) -> list[Word] | None:
    """The words and operators of a POSIX shell command line, or None if it is beyond this
    reader (an unterminated quote). ``$(...)`` and backquotes outside double quotes are not
    followed: their parentheses count as control operators, so nothing is unwrapped."""
    words: list[Word] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t":
            i += 1
            continue
        if ch == "#" and (i == 0 or text[i - 1] in " \t"):
            break  # a comment to the end of the line
        if ch in ";()\n":
            words.append(Word(ch, i, i + 1, "control"))
            i += 1
            continue
        if ch == "|":
            j = i + 2 if text.startswith("||", i) else i + 1
            words.append(Word(text[i:j], i, j, "control"))
            i = j
            continue
        if ch == "&":
            if text.startswith("&&", i):
                words.append(Word("&&", i, i + 2, "control"))
                i += 2
            elif text.startswith("&>", i):
                j = i + 2
                while j < n and text[j] in ">":
                    j += 1
                words.append(Word(text[i:j], i, j, "redirect"))
                i = j
            else:
                words.append(Word("&", i, i + 1, "control"))
                i += 1
            continue
        if ch in "<>":
            j = i + 1
            while j < n and text[j] in "<>&|":
                j += 1
            words.append(Word(text[i:j], i, j, "redirect"))
            i = j
            continue
        start, value = i, []
        while i < n and text[i] not in " \t;()|&<>\n":
            ch = text[i]
            if ch == "\\" and i + 1 < n:
                value.append(text[i + 1])
                i += 2
            elif ch == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    return None
                value.append(text[i + 1 : end])
                i = end + 1
            elif ch == '"':
                j = i + 1
                while j < n and text[j] != '"':
                    if text[j] == "\\" and j + 1 < n and text[j + 1] in '$`"\\\n':
                        value.append(text[j + 1])
                        j += 2
                    else:
                        value.append(text[j])
                        j += 1
                if j >= n:
                    return None
                i = j + 1
            else:
                value.append(ch)
                i += 1
        words.append(Word("".join(value), start, i))
    return words


def simple_command(words: Sequence[Word]) -> list[Word]:
    """The words of the first simple command in ``words``: up to the first control
    operator, without redirections (``>f``, ``2>&1``, their targets and fd numbers)."""
    out: list[Word] = []
    target = False
    for w in words:
        if w.kind == "control":
            break
        if w.kind == "redirect":
            if out and out[-1].end == w.start and out[-1].value.isdigit():
                out.pop()  # the 2 of 2>&1
            target = True
        elif target:
            target = False
        else:
            out.append(w)
    return out
