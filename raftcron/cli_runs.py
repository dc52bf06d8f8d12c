"""``raftcron runs``: the run ledger (newest first), ``runs show ID`` (a run's record and
its output tail), ``runs logs ID`` (the stored output tail alone) and ``runs kill ID``.

The listing keeps its options at the ``runs`` level (``raftcron runs --job backup``); the
sub-verbs take the client options too (``raftcron runs show ID --api ...``)."""

from __future__ import annotations

import argparse
import sys

from raftcron.cliutil import (
    add_client_options,
    call,
    client_from_args,
    one_line,
    print_json,
    table,
    wants_json,
    when,
)
from raftcron.clock import wall_ms

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from raftcron.client import RunInfo

REASON_WIDTH = 60  # the listing cuts reasons here unless --wide


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``runs`` and its sub-verbs under the top-level ``sub``; ``common`` holds the client
    options of the listing."""
    r: argparse.ArgumentParser = sub.add_parser(
        "runs",
        parents=[common],
        help="the run ledger, newest first; runs show|logs|kill RUN_ID",
        description="The run ledger, newest first (filters below). "
        "`raftcron runs show RUN_ID`: one run and its output tail; "
        "`raftcron runs logs RUN_ID`: the output tail only; "
        "`raftcron runs kill RUN_ID`: stop a run.",
    )
    r.add_argument("--job", help="only this job")
    r.add_argument("--node", help="only runs granted to this node")
    r.add_argument("--status", help="e.g. failed or failed,lost")
    r.add_argument("--limit", type=int, default=50, help="page size (1-1000, default 50)")
    r.add_argument("--before", help="cursor: the run id printed at the end of a page")
    r.add_argument("--wide", action="store_true", help="the whole reason and the trigger (no cut)")
    r.set_defaults(fn=cmd_runs)
    # A sub-verb's client options default to "not given", so that `runs --api X show ID`
    # keeps X (argparse copies a sub-parser's defaults over the outer values).
    inner = argparse.ArgumentParser(add_help=False)
    add_client_options(inner, default=argparse.SUPPRESS)
    rsub = r.add_subparsers(dest="runs_verb", metavar="{show,logs,kill}")
    s = rsub.add_parser("show", parents=[inner], help="one run: its record and its output tail")
    s.add_argument("run_id", metavar="RUN_ID")
    s.set_defaults(fn=cmd_runs_show)
    lg = rsub.add_parser(
        "logs", parents=[inner], help="the output tail the ledger keeps for a run (no follow)"
    )
    lg.add_argument("run_id", metavar="RUN_ID")
    lg.set_defaults(fn=cmd_runs_logs)
    k = rsub.add_parser(
        "kill", parents=[inner], help="stop a run (SIGTERM, the job's grace, SIGKILL)"
    )
    k.add_argument("run_id", metavar="RUN_ID")
    k.add_argument("--reason", help="why (kept in the ledger)")
    k.add_argument("--hard", action="store_true", help="SIGKILL at once")
    k.set_defaults(fn=cmd_runs_kill)
    return r


# --------------------------------------------------------------------------- durations


def _ms(ts: str | None) -> int | None:
    from datetime import datetime

    if ts is None:
        return None
    try:
        return round(datetime.fromisoformat(ts).timestamp() * 1000)
    except ValueError:
        return None


def duration_text(ms: int) -> str:
    """``ms`` for a table: ``850ms``, ``12.3s``, ``4m05s``, ``2h03m``, ``3d04h``."""
    if ms < 1000:
        return f"{ms}ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f}s"
    s = ms // 1000
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86_400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86_400}d{s % 86_400 // 3600:02d}h"


def run_duration(run: RunInfo, now_ms: int | None = None) -> str | None:
    """How long the run took (start to finish), or has run so far (``+`` after it) while
    it runs; None before it started."""
    start = _ms(run.started_at)
    if start is None:
        return None
    end = _ms(run.finished_at)
    if end is not None:
        return duration_text(max(0, end - start))
    if now_ms is None or run.status not in ("running", "claimed"):
        return None
    return duration_text(max(0, now_ms - start)) + "+"


def _now_ms() -> int:

    return wall_ms()


# --------------------------------------------------------------------------- verbs


def cmd_runs(args: argparse.Namespace) -> int:
    import shlex

    client = client_from_args(args)
    page = call(
        lambda: client.runs(
            job=args.job, node=args.node, status=args.status, limit=args.limit, before=args.before
        )
    )
    if wants_json(args):
        print_json({"runs": [r.raw for r in page.runs], "next": page.next, "total": page.total})
        return 0
    now = _now_ms()
    rows: list[list[Any]] = []
    for r in page.runs:
        reason = one_line(r.reason)
        if not args.wide and len(reason) > REASON_WIDTH:
            reason = reason[: REASON_WIDTH - 3] + "..."
        row: list[Any] = [
            r.id,
            r.status,
            r.node,
            r.attempt,
            r.fence or None,
            when(r.scheduled_at),
            run_duration(r, now),
            r.exit_code,
        ]
        if args.wide:
            row.append(r.trigger or None)
        rows.append([*row, reason or None])
    header = ["run", "status", "node", "attempt", "fence", "scheduled (UTC)", "duration", "exit"]
    print(table(rows, [*header, *(["trigger"] if args.wide else []), "reason"]))
    if page.next is not None:
        print(f"({len(page.runs)} of {page.total}; older: --before {shlex.quote(page.next)})")
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    run = call(lambda: client_from_args(args).run(args.run_id))
    if wants_json(args):
        print_json(run.raw)
        return 0
    raw = run.raw
    lines: list[tuple[str, Any]] = [
        ("run", run.id),
        ("job", run.job),
        ("status", run.status + (f" ({raw['kill']})" if raw.get("kill") else "")),
        ("attempt", run.attempt),
        ("trigger", run.trigger or None),
        ("node", run.node),
        ("fence", run.fence or None),
        ("scheduled", when(run.scheduled_at)),
        ("claimed", when(raw.get("claimed_at"))),
        ("started", when(run.started_at)),
        ("finished", when(run.finished_at)),
        ("duration", run_duration(run, _now_ms())),
        ("exit code", run.exit_code),
        ("reason", one_line(run.reason) or None),
    ]
    if run.parents:
        lines.append(("parents", ", ".join(run.parents)))
    if raw.get("instances"):
        lines.append(("instance", f"{raw.get('instance')} of {raw['instances']}"))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k.ljust(width)}  {'-' if v is None else v}")
    print("output (tail):" if run.output else f"output: {_no_output(run)}")
    if run.output:
        _write_output(run.output)
    return 0


def cmd_runs_logs(args: argparse.Namespace) -> int:
    run = call(lambda: client_from_args(args).run(args.run_id))
    if wants_json(args):
        print_json(run.raw)
        return 0
    if run.output:
        _write_output(run.output)
    else:
        print(f"{run.id}: {_no_output(run)}", file=sys.stderr)
    return 0


def _no_output(run: RunInfo) -> str:
    if run.status in ("buffered", "pending", "claimed", "running"):
        return "none yet (the tail is stored when the run ends)"
    return "none stored (it printed nothing, or the tail was dropped: the ledger keeps it for each job's newest runs only)"  # noqa: E501


def _write_output(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def cmd_runs_kill(args: argparse.Namespace) -> int:
    import shlex

    res = call(lambda: client_from_args(args).kill(args.run_id, args.reason, args.hard))
    if wants_json(args):
        print_json(res.raw)
    elif res.result == "killed":
        print(f"{res.run}: killed")
    else:
        how = "SIGKILL" if args.hard else "SIGTERM, then SIGKILL after the grace"
        print(f"{res.run}: stopping ({how}); see raftcron runs show {shlex.quote(res.run)}")
    return 0
