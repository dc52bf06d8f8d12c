"""The ``raftcron`` command.

Exit codes: 0 ok, 1 a runtime failure (API unreachable, request refused), 2 bad usage or a
bad config file. Errors print one line (``error: ...``) and no traceback.

The client verbs go through :mod:`raftcron.client` (``http.client``, not aiohttp), imported
when a verb runs: a one-shot CLI call should start fast. ``raftcron lock`` goes further (it
wraps other commands, often from cron): it builds only its own parser and imports neither
``http.client`` nor the config machinery (see :mod:`raftcron.lockcmd`). Module-level imports
here are what every verb pays for; keep them to the few stdlib modules below.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time

from raftcron import cliutil, lockcmd
from raftcron.clock import monotonic, wall_ms

TYPE_CHECKING = False  # typing and pathlib cost import time; mypy reads the block below
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from typing import Any

    from raftcron.client import Client, JobInfo

EXIT_RUNTIME = cliutil.EXIT_RUNTIME
EXIT_USAGE = cliutil.EXIT_USAGE
CliError = cliutil.CliError
add_client_options = cliutil.add_client_options
client_from_args = cliutil.client_from_args
_one_line = cliutil.one_line
_call = cliutil.call
_print_json = cliutil.print_json
_table = cliutil.table
_when = cliutil.when


# --------------------------------------------------------------------------- logging


def _setup_logging(level: str, as_json: bool, node: str) -> None:
    from raftcron import logs  # here, not at the top: the one-shot client verbs never log

    logs.setup(level, as_json, node)


# --------------------------------------------------------------------------- config verbs


def _load(path: str, node: str | None = None) -> Any:
    from pathlib import Path

    from raftcron.config import ConfigError, load_config

    try:
        cfg = load_config(Path(path))
        if node is not None:
            cfg.node(node)
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return cfg


def cmd_check_config(args: argparse.Namespace) -> int:
    from raftcron.config import account_problems, environment_problems

    cfg = _load(args.file, args.node)
    # What the file alone cannot tell: accounts (users, groups) and the environment are
    # this machine's. Run it on each node, as the account the agent runs as.
    problems = account_problems(cfg) + environment_problems(cfg, os.environ)
    if problems:
        raise CliError("\n".join(problems), EXIT_USAGE)
    names = ", ".join(n.name for n in cfg.cluster.nodes)
    print(f"{args.file}: ok ({len(cfg.cluster.nodes)} nodes: {names}; {len(cfg.jobs)} jobs)")
    _print_what_jobs_mean(args.file, cfg.jobs)
    if args.api:
        return _check_members(args, cfg)
    return 0


def _check_members(args: argparse.Namespace, cfg: Any) -> int:
    """``check-config FILE --api URL``: the file's [cluster.nodes] against the cluster's
    replicated membership (the truth once seeded; raftcron/membership.py). Exit 1 when they
    disagree, naming each difference."""
    from raftcron.core.model import Member
    from raftcron.membership import file_disagreement

    body = _call(lambda: cliutil.client_from_args(args).request("GET", "/v1/members"))
    if not body.get("seeded"):
        print("the cluster's membership is not seeded yet: the file is the truth")
        return 0
    members = [
        Member(name=m["name"], raft=m["raft"], api=m["api"],
               tags=tuple(sorted(m["tags"].items())))
        for m in body["members"]
    ]  # fmt: skip
    lines = file_disagreement(cfg.cluster.nodes, members)
    if not lines:
        print(f"{args.file}: [cluster.nodes] agrees with the cluster's membership")
        return 0
    for line in lines:
        print(f"{args.file}: disagrees with the cluster's membership: {line}", file=sys.stderr)
    raise CliError(
        f"{args.file}: [cluster.nodes] differs from the replicated membership (raftcron "
        "members list): update the file to match (it only seeds a new cluster)"
    )


# --------------------------------------------------------------------------- fire times

CHECK_FIRES = 3  # check-config and jobs apply show this many next fires of each job


def _now_ms() -> int:
    return wall_ms()


def _fire_lines(fires_ms: Sequence[int], zone: str) -> list[str]:
    """One line per fire: the wall time in ``zone`` with its abbreviation and offset, then
    UTC (just UTC for a UTC job)."""
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    tz = None if zone == "UTC" else ZoneInfo(zone)
    rows = []
    for at in fires_ms:
        utc = datetime.fromtimestamp(at / 1000, UTC)
        utc_text = f"{utc:%Y-%m-%d %H:%M:%S} UTC"
        if tz is None:
            rows.append([utc_text])
            continue
        local = utc.astimezone(tz)
        abbr = local.tzname() or ""
        offset = local.isoformat()[-6:]
        name = f"{abbr} ({offset})" if abbr.isalpha() else offset
        rows.append([f"{local:%Y-%m-%d %H:%M:%S} {name}", utc_text])
    if not rows:
        return []
    return ["  " + line for line in _table(rows, [""] * len(rows[0])).splitlines()[1:]]


def _print_what_jobs_mean(path: str, jobs: Sequence[Any]) -> None:
    """``check-config``: each job's next fires in its zone and UTC (an ``@every`` job as if
    created now: it counts from its creation), and the warnings of each job (stderr)."""
    from raftcron.config import job_warnings
    from raftcron.core.planner import schedule_of

    now = _now_ms()
    for i, spec in enumerate(jobs):
        if not spec.schedule:
            parents = ", ".join(spec.after)
            print(f"{spec.name}: runs after {parents} (on {spec.on}); no fires of its own")
        else:
            every = spec.schedule.lstrip().lower().startswith("@every")
            note = ", counted from the job's creation (shown as if created now)" if every else ""
            try:
                fires = schedule_of(spec, now).fires_between(now, 2**62, CHECK_FIRES)
            except ValueError:
                fires = []
            print(f"{spec.name}: {spec.schedule} ({spec.timezone}){note}; next {len(fires)} fires:")
            print("\n".join(_fire_lines(fires, spec.timezone)) or "  (none before the year 10000)")
        for warning in job_warnings(spec):
            print(f"warning: {path}: jobs[{i}].{warning}", file=sys.stderr)


def cmd_agent(args: argparse.Namespace) -> int:
    import asyncio
    from pathlib import Path

    from raftcron.config import (
        ConfigError,
        account_problems,
        environment_problems,
        single_node_config,
    )
    from raftcron.hardening import private_umask, raise_open_files_limit
    from raftcron.raft import seam

    try:  # the pysyncobj internals raftcron relies on (raftcron/raft/seam.py)
        seam.check()
    except seam.SeamError as exc:
        raise CliError(str(exc), EXIT_RUNTIME) from None
    private_umask()  # before anything is created: files private to the agent's account
    from raftcron import memory

    memory.limit_malloc_arenas()  # before any thread allocates: see there
    if args.config is None:
        try:
            cfg = single_node_config(Path(args.data_dir))
        except ConfigError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
        name = cfg.cluster.nodes[0].name
    else:
        if args.node is None:
            raise CliError("--node is required with --config (the name of this server)", EXIT_USAGE)
        cfg = _load(args.config, args.node)
        name = args.node
    leaks = environment_problems(cfg, os.environ, "the agent's environment")
    if leaks:
        raise CliError("\n".join(leaks), EXIT_USAGE)
    from raftcron.datadir import DataDirInUse, DataDirLock

    # One agent per data dir: locked before anything (Raft, the executor) touches it.
    try:
        dir_lock = DataDirLock.acquire(cfg.node(name).data_dir)
    except DataDirInUse as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    _setup_logging(args.log_level, args.log_json, name)
    raise_open_files_limit(name)
    import logging

    for problem in account_problems(cfg, f"on node {name}"):  # jobs granted here fail
        logging.getLogger("raftcron.agent").warning("%s", problem)
    from raftcron.node import Node

    node = Node(cfg, name, dir_lock=dir_lock, cluster_id=args.cluster_id or "")
    del cfg  # the node keeps the file's jobs packed: let the parsed ones go
    # The agent's process only (an embedding application keeps its own GC policy): full
    # collections look only at what became long-lived since the last one.
    memory.short_full_collections()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():  # a second signal: skip the rest of the shutdown drain
                node.skip_drain()
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        loop.add_signal_handler(signal.SIGHUP, node.configctl.reload_soon)  # raftcron/reload.py
        await node.run(stop)

    asyncio.run(main())
    if node.failed is not None:
        raise CliError(f"node {name} stopped: {node.failed}")
    if node.membership.removed is not None:  # removed from the cluster, or a wrong id
        raise CliError(node.membership.removed, EXIT_USAGE)
    return 0


# --------------------------------------------------------------------------- client verbs


def cmd_status(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    st = _call(client.status)
    lags = {m.name: m.lag for m in st.members}
    if st.role != "leader" and st.leader is not None:
        # Only the leader knows how far each member lags: ask it, briefly, if it answers.
        leader_api = next((m.api for m in st.members if m.name == st.leader), None)
        if leader_api:
            from raftcron.client import Client, ClientError

            try:
                other = Client(leader_api, token=client.token, timeout=2.0)
                lags = {m.name: m.lag for m in other.status().members}
            except (ClientError, ValueError, OSError):
                pass
    if args.json:
        body = dict(st.raw)
        body["members"] = [dict(m, lag=lags.get(m["name"])) for m in st.raw.get("members", ())]
        _print_json(body)
        return 0
    print(
        f"node {st.node} ({st.role})  leader {st.leader or '- (none)'}  term {st.term}  "
        f"commit {st.commit_index}  applied {st.last_applied}  jobs {st.jobs}  runs {st.runs}"
    )
    rows = [
        [
            m.name + (" *" if m.is_self else ""),
            m.role if m.healthy else "unreachable",  # the answering node cannot reach it
            "up" if m.healthy else "DOWN",
            m.raft,
            m.api,
            lags.get(m.name),
            m.drain,  # draining/drained: it gets no new runs
            m.version,  # as advertised in the replicated state (- : nothing, older release)
            m.feature_level,
        ]
        for m in st.members
    ]
    heads = ["member", "role", "health", "raft", "api", "lag", "drain", "version", "level"]
    print(_table(rows, heads))
    top = max((m.feature_level for m in st.members), default=0)
    behind = [m.name for m in st.members if m.feature_level < top]
    if behind:
        print(f"mixed versions: {', '.join(behind)} below feature level {top}: the features "
              "of that level are refused until they are upgraded")  # fmt: skip
    drift = st.raw.get("config_drift") or []
    if drift:
        print(f"config drift: {', '.join(drift)} read a cluster file that differs from the "
              f"leader's (config_hash per member: raftcron status --json)")  # fmt: skip
    for line in st.raw.get("membership_file_disagrees") or ():
        print(f"membership: {st.node}'s cluster file disagrees with the cluster's members: "
              f"{line} (raftcron members list; update the file)")  # fmt: skip
    return 0


# --------------------------------------------------------------------------- drain


def _drain_line(body: Mapping[str, Any]) -> str:
    drain = body.get("drain")
    if not body.get("drained") or not drain:
        return f"{body['node']}: not drained (it gets new runs)"
    live = int(drain.get("live_runs") or 0)
    lead = "; it still leads (handing leadership off)" if body.get("leader") else ""
    kind = "" if drain.get("kind") == "operator" else f" ({drain.get('kind')})"
    if live:
        return f"{body['node']}: draining{kind}: no new runs, {live} live run(s) finishing{lead}"
    return f"{body['node']}: drained{kind}: no new runs, none running{lead}"


def cmd_drain(args: argparse.Namespace) -> int:
    """Drain one member, named; with --wait, until it holds no live run. Every request
    goes to one node, the first --api URL: nothing falls back to another member."""
    import contextlib

    from raftcron.durations import ConfigError, parse_duration

    raw: object = args.wait_timeout
    with contextlib.suppress(ValueError):
        raw = float(args.wait_timeout)  # a bare number of seconds
    try:
        limit_s = parse_duration(raw, "--timeout") / 1000
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    client = cliutil.one_node_client(args)
    body = _call(lambda: client.drain(args.node))
    if not args.wait:
        print(json.dumps(body, indent=2) if args.json else _drain_line(body))
        return 0
    if not args.json:
        print(_drain_line(body))
    deadline = monotonic() + limit_s
    while True:
        drain = body.get("drain") or {}
        if body.get("drained") and not drain.get("live_runs"):
            break
        if monotonic() >= deadline:
            live = drain.get("live_runs")
            raise CliError(
                f"{args.node} still holds {live} live run(s) after {args.wait_timeout} (it stays "
                f"drained; see raftcron runs --node {args.node} --status claimed,running)"
            )
        time.sleep(0.5)
        try:
            body = _call(lambda: client.drain_status(args.node))
        except CliError:
            if monotonic() >= deadline:
                raise
            continue  # the node we ask may be restarting: ask it again, no other
    print(json.dumps(body, indent=2) if args.json else _drain_line(body))
    return 0


def cmd_undrain(args: argparse.Namespace) -> int:
    body = _call(lambda: cliutil.one_node_client(args).undrain(args.node))
    print(json.dumps(body, indent=2) if args.json else _drain_line(body))
    return 0


def cmd_reload(args: argparse.Namespace) -> int:
    """Member NODE re-reads its cluster file. The request goes to NODE itself (the first
    --api node if it is NODE, else NODE's API as that node's status names it), never to
    another member."""
    from raftcron.client import ApiError, Client

    client = cliutil.one_node_client(args)
    st = _call(client.status)
    if st.node != args.node:
        api = next((m.api for m in st.members if m.name == args.node), None)
        if api is None:
            raise CliError(f"no member named {args.node} (members: "
                           f"{', '.join(m.name for m in st.members)})")  # fmt: skip
        client = Client(api, token=client.token, timeout=client.timeout,
                        ssl_context=client.ssl_context)  # fmt: skip
    try:
        body = client.reload(args.node)
    except ApiError as exc:
        raise CliError(f"{args.node}: {exc.message} (HTTP {exc.status} {exc.code})") from None
    except Exception as exc:
        raise CliError(f"{args.node} at {client.base_url}: {exc}") from None
    if args.json:
        _print_json(body)
        return 0
    print(f"{body['node']}: reloaded {body['file']}: config_hash {body['config_hash']} "
          f"(was {body.get('previous_config_hash')})")  # fmt: skip
    if body.get("reconciled"):
        changed = body.get("jobs_changed") or []
        print(
            f"leader: its file is now the cluster's; jobs changed: {', '.join(changed) or 'none'}"
        )
    elif body.get("note"):
        print(body["note"])
    if body.get("restart_needed"):
        print(f"restart the agent to apply: {', '.join(body['restart_needed'])}")
    return 0


def cmd_leader_transfer(args: argparse.Namespace) -> int:
    """Ask the leader to hand leadership to ``--to`` (or the best other member), through
    the first --api URL only (no fail-over). A follower answers 409 not_leader: the
    request then goes to the leader it names, once."""
    from raftcron.client import ApiError, Client

    client = cliutil.one_node_client(args)
    try:
        body = _call(lambda: client.transfer_leader(args.to))
    except CliError:
        st = _call(client.status)
        leader_api = next((m.api for m in st.members if m.name == st.leader), None)
        if st.role == "leader" or leader_api is None:
            raise
        leader = Client(
            leader_api, token=client.token, timeout=client.timeout, ssl_context=client.ssl_context
        )
        try:
            body = leader.transfer_leader(args.to)
        except ApiError as exc:
            raise CliError(f"{_one_line(exc.message)} (HTTP {exc.status} {exc.code})") from None
        except Exception as exc:
            raise CliError(f"{leader_api}: {exc}") from None
    if args.json:
        _print_json(body)
    elif body.get("moved"):
        print(f"leadership moved: {body['from']} -> {body['to']} (term {body['term']})")
    else:
        print(f"{body['to']} already leads (term {body['term']})")
    return 0


def cmd_jobs_list(args: argparse.Namespace) -> int:
    jobs = _call(client_from_args(args).jobs)
    if args.json:
        _print_json([j.raw for j in jobs])
        return 0
    rows = [
        [
            j.name,
            j.schedule or "after " + ",".join(j.raw.get("after") or ()),
            j.timezone,
            "broken" if j.broken else "paused" if j.paused else "active",
            _when(j.next_fire),
            None if j.last_run is None else f"{j.last_run.status} {_when(j.last_run.scheduled_at)}",
            j.source,
        ]
        for j in jobs
    ]
    print(_table(rows, ["job", "schedule", "timezone", "state", "next fire (UTC)", "last", "from"]))
    return 0


def _what(job: JobInfo, raw: Mapping[str, Any]) -> tuple[str, str]:
    """What the job runs: its command, its HTTP request or its embedded callable."""
    import shlex

    if job.command:
        return ("command", " ".join(shlex.quote(a) for a in job.command))
    if "http" in job.spec:
        return ("http", f"{job.spec['http']['method']} {job.spec['http']['url']}")
    return ("call", raw.get("call") or "-")


def cmd_jobs_show(args: argparse.Namespace) -> int:
    from raftcron.core.jobfields import JOB_FIELDS  # (here: `raftcron lock` starts lean)

    job = _call(lambda: client_from_args(args).job(args.name))
    if args.json:
        _print_json(job.raw)
        return 0
    raw = job.raw
    state = "paused" + (f" ({job.raw.get('pause_note')})" if raw.get("pause_note") else "")
    lines = [
        ("job", job.name),
        (
            ("schedule", f"{job.schedule}  ({job.timezone})")
            if job.schedule
            else ("after", f"{', '.join(raw.get('after') or ())}  (on {raw.get('on')})")
        ),
        _what(job, raw),
        ("state", state if job.paused else "active"),
        *(
            [("broken", f"{job.broken} (fires are recorded missed; a PUT or resume clears it)")]
            if job.broken
            else []
        ),
        ("source", {"config": "config file", "embedded": "embedded"}.get(job.source, "API")),
        ("overlap", raw.get("overlap")),
        ("watermark", raw.get("watermark") or "-"),
        ("running", ", ".join(raw.get("running") or ()) or "-"),
    ]
    if raw.get("buffered"):
        lines.append(("buffered", ", ".join(raw["buffered"])))
    bf = raw.get("backfill")
    if bf:
        lines.append(
            (
                "backfill",
                f"{bf['id']}: {bf['done']} of {bf['total']} claimed ({bf['from']} .. {bf['to']}, "
                f"{bf['rate']:g}/s), next {bf['next'] or '-'}",
            )
        )
    for p in raw.get("pending_retries") or ():
        lines.append(("pending retry", f"{p['run']} attempt {p['attempt']} due {p['due_at']}"))
    for rid in raw.get("dependency_fires") or ():
        lines.append(("dependency fire", f"{rid} (pending: waiting for a node)"))
    for w in raw.get("waiting_parents") or ():
        got = ", ".join(f"{v['run']} {v['status']}" for v in w["settled"].values())
        wait = ", ".join(w["waiting_for"])
        lines.append(("fan-in", f"{w['scheduled_at']}: settled {got}; waiting for {wait}"))
    spec = job.spec
    for f in sorted((f for f in JOB_FIELDS if f.show and f.key), key=lambda f: f.show):
        value = spec.get(f.key or "")
        if value not in ({}, None) and (not f.show_if or spec.get(f.show_if)):
            lines.append((f.key or "", json.dumps(value) if f.show_json else value))
    last = job.last_run
    if last is not None:
        exit_text = "" if last.exit_code is None else f" exit={last.exit_code}"
        reason = f"  {last.reason}" if last.reason else ""
        lines.append(
            (
                "last run",
                f"{last.id} {last.status} node={last.node or '-'} fence={last.fence}"
                f"{exit_text}{reason}",
            )
        )
    else:
        lines.append(("last run", "-"))
    width = max(len(k) for k, _ in lines)
    for k, v in lines:
        print(f"{k.ljust(width)}  {v}")
    zone = "" if job.timezone == "UTC" else f"{job.timezone}, "
    print(f"next fires ({zone}UTC):")
    for line in _fire_lines([f.at_ms for f in job.next_fires], job.timezone):
        print(line)
    return 0


def cmd_jobs_apply(args: argparse.Namespace) -> int:
    from raftcron.cli_jobsfile import read_job_tables, spec_of
    from raftcron.client import ApiError, ApiUnavailable

    jobs, path = read_job_tables(args.file)
    client = client_from_args(args)
    results: list[dict[str, Any]] = []
    failed = 0
    for job in jobs:
        name = job["name"]
        try:
            res = client.put_job(name, spec_of(job))
            entry: dict[str, Any] = {"job": name, "result": res.result}
            entry["warnings"] = list(res.warnings)
            where = f"{path}: {name}"
            entry["next_fires"] = _applied_fires(client, job, entry, where, args.json)
            results.append(entry)
        except ApiUnavailable as exc:
            raise CliError(f"{exc}; set --api or RAFTCRON_API") from None
        except ApiError as exc:
            failed += 1
            results.append({"job": name, "error": {"code": exc.code, "message": exc.message}})
            if not args.json:
                print(f"error: {path}: {name}: {_one_line(exc.message)}", file=sys.stderr)
    if args.json:
        _print_json(results)
    return EXIT_RUNTIME if failed else 0


def _applied_fires(
    client: Client, job: Mapping[str, Any], entry: Mapping[str, Any], where: str, quiet: bool
) -> list[dict[str, Any]]:
    """``jobs apply``: after a job's PUT, its next fires as the cluster computes them (an
    ``@every`` job counts from its creation there), printed with the PUT's warnings (named
    ``where``: file and job) unless ``quiet`` (``--json``)."""
    from raftcron.client import ApiError

    name, result = entry["job"], entry["result"]
    nxt, problem = None, ""
    if job.get("after") is None:
        try:
            nxt = client.next_fires(name, None, CHECK_FIRES)
        except ApiError as exc:  # the job was saved: say so, and why its fires are missing
            problem = _one_line(exc.message)
    if not quiet:
        if problem:
            print(f"{name}: {result}; next fires unavailable: {problem}")
        elif nxt is None:
            print(f"{name}: {result}; runs after {', '.join(job['after'])}")
        else:
            print(f"{name}: {result}; {nxt.timezone}; next {len(nxt.fires)} fires:")
            print("\n".join(_fire_lines([f.at_ms for f in nxt.fires], nxt.timezone)))
        for warning in entry["warnings"]:
            print(f"warning: {where}: {warning}", file=sys.stderr)
    if nxt is None:
        return []
    return [{"utc": f.utc, "local": f.local, "at_ms": f.at_ms} for f in nxt.fires]


def cmd_jobs_delete(args: argparse.Namespace) -> int:
    _call(lambda: client_from_args(args).delete_job(args.name))
    if args.json:
        _print_json({"job": args.name, "result": "deleted"})
    else:
        print(f"{args.name}: deleted")
    return 0


def cmd_jobs_pause(args: argparse.Namespace) -> int:
    job = _call(lambda: client_from_args(args).pause(args.name, args.note))
    if args.json:
        _print_json(job.raw)
    else:
        print(f"{job.name}: paused" + (f" ({args.note})" if args.note else ""))
    return 0


def cmd_jobs_resume(args: argparse.Namespace) -> int:
    job = _call(lambda: client_from_args(args).resume(args.name))
    if args.json:
        _print_json(job.raw)
    else:
        print(f"{job.name}: resumed (next fire {job.next_fire or '-'})")
    return 0


def cmd_jobs_next(args: argparse.Namespace) -> int:
    nxt = _call(lambda: client_from_args(args).next_fires(args.name, args.from_, args.count))
    if args.json:
        _print_json([{"utc": f.utc, "local": f.local, "at_ms": f.at_ms} for f in nxt.fires])
        return 0
    print(_table([[f.utc, f.local] for f in nxt.fires], ["utc", f"local ({nxt.timezone})"]))
    return 0


def cmd_jobs_backfill(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    if args.cancel:
        bf = _call(lambda: client.cancel_backfill(args.name))
    else:
        if not (args.from_ and args.to):
            print("raftcron: jobs backfill needs --from and --to (or --cancel)", file=sys.stderr)
            return 2
        bf = _call(lambda: client.backfill(args.name, args.from_, args.to, args.rate, args.id))
    if args.json:
        _print_json(bf.raw)
    elif bf.cancelled:
        print(f"{bf.job}: backfill {bf.id} cancelled after {bf.done} of {bf.total} fire(s)")
    else:
        print(
            f"{bf.job}: backfill {bf.id}: {bf.total} fire(s) from {bf.from_} to {bf.to}, "
            f"one at a time, at most {bf.rate:g}/s; progress in `raftcron jobs show {bf.job}`"
        )
    return 0


def cmd_trigger(args: argparse.Namespace) -> int:
    res = _call(lambda: client_from_args(args).trigger(args.job))
    if args.json:
        _print_json(res.raw)
        return 0
    each = res.raw.get("instances") or [res.raw]  # a job with count: one line per instance
    for inst in each:
        run, status, reason = inst["run"], inst["status"], inst.get("reason") or ""
        if status in ("skipped", "buffered"):
            print(f"{res.job}: {run} {status}: {reason}")
        else:
            on, fence = inst.get("node") or "-", inst.get("fence")
            print(f"{res.job}: {run} {status} on node {on} fence {fence}")
    return 0


# --------------------------------------------------------------------------- dev


def _ensure_secret(config: Path) -> None:
    """``raftcron dev``: create the secret_file the config names, if it is missing."""
    import secrets
    import tomllib

    try:
        raw = tomllib.loads(config.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return  # load_config reports it properly
    secret_file = raw.get("cluster", {}).get("secret_file")
    if not isinstance(secret_file, str):
        return
    path = (config.parent / secret_file).resolve()
    if path.exists():
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    print(f"generated a cluster secret in {path}")


EXAMPLE_CONFIG = "cluster.example.toml"


def example_config() -> bytes:
    """The example cluster file shipped in the package (in a checkout, a link to the
    top-level cluster.example.toml: one file, so the two cannot differ)."""
    from importlib.resources import files

    return files("raftcron").joinpath(EXAMPLE_CONFIG).read_bytes()


def _write_example(path: Path) -> bool:
    """``raftcron dev`` without ``--config``: put the example at ``path`` unless a file is
    there (never overwritten); True if it was written."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    except OSError as exc:
        raise CliError(
            f"{path}: cannot write: {exc.strerror} (run it in a writable directory)"
        ) from None
    with os.fdopen(fd, "wb") as f:
        f.write(example_config())
    return True


def cmd_dev(args: argparse.Namespace) -> int:
    import subprocess
    from pathlib import Path

    from raftcron.client import Client, ClientError

    if args.config is None:
        config = Path(EXAMPLE_CONFIG)
        if _write_example(config):
            print(f"wrote {config} (the example cluster: three nodes on 127.0.0.1; edit it)")
    else:
        config = Path(args.config)
        if not config.exists():
            raise CliError(f"{config}: not found (check the path, or omit --config)", EXIT_USAGE)
    _ensure_secret(config)
    cfg = _load(str(config))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {}
    for n in cfg.cluster.nodes:
        n.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(n.data_dir / "agent.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        log = open(fd, "ab")  # noqa: SIM115 - closed below
        logs[n.name] = log
        procs[n.name] = subprocess.Popen(
            [sys.executable, "-m", "raftcron", "agent", "--config", str(config), "--node", n.name],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    apis = {n.name: f"http://{n.api}" for n in cfg.cluster.nodes}
    try:
        deadline = monotonic() + 60
        up: set[str] = set()
        while len(up) < len(apis) and not stopping:
            for name, url in apis.items():
                if name in up:
                    continue
                if procs[name].poll() is not None:
                    log_path = (
                        next(n.data_dir for n in cfg.cluster.nodes if n.name == name) / "agent.log"
                    )
                    raise CliError(
                        f"node {name} exited with code {procs[name].returncode}; see {log_path}"
                    )
                try:
                    Client(url, timeout=1.0).status()
                    up.add(name)
                    print(f"node {name}: {url}  (dashboard: {url}/)")
                except ClientError:
                    pass
            if monotonic() > deadline:
                raise CliError("the cluster did not come up within 60s; see the agent.log files")
            time.sleep(0.2)
        print("cluster up; Ctrl-C stops everything. Live view of leader and runs:")
        _live_view(apis, lambda: stopping, args.duration)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = monotonic() + 10
        for p in procs.values():
            try:
                p.wait(max(0.1, end - monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs.values():
            log.close()
        print("stopped all nodes")
    return 0


def _live_view(apis: dict[str, str], stopping: Any, duration: float | None) -> None:
    from raftcron.client import Client, ClientError

    seen: dict[str, str] = {}
    leader = None
    end = None if duration is None else monotonic() + duration
    while not stopping() and (end is None or monotonic() < end):
        for url in apis.values():
            try:
                client = Client(url, timeout=1.0)
                st = client.status().raw
                runs = [r.raw for r in client.runs(limit=30).runs]
                break
            except ClientError:
                continue
        else:
            print("no node answers")
            time.sleep(1.0)
            continue
        if st["leader"] != leader:
            leader = st["leader"]
            print(f"leader: {leader or '(election)'} term {st['term']}")
        for r in reversed(runs):
            if seen.get(r["id"]) != r["status"] and r["status"] not in ("claimed",):
                seen[r["id"]] = r["status"]
                print(
                    f"  {r['scheduled_at']}  {r['job']:<12} {r['status']:<10} "
                    f"node={r['node'] or '-'} fence={r['fence']} {r['reason']}".rstrip()
                )
        time.sleep(1.0)


# --------------------------------------------------------------------------- main


def build_parser(only_lock: bool = False) -> argparse.ArgumentParser:
    """The whole command line; with ``only_lock``, just ``raftcron lock`` (what a lock call
    parses with: building the other eighteen subparsers would cost it several ms)."""
    p = argparse.ArgumentParser(
        prog="raftcron", description="Highly available cron on its own Raft cluster."
    )
    p.add_argument("--version", action=_VersionAction)
    sub = p.add_subparsers(dest="verb", metavar="VERB")
    p.set_defaults(fn=_usage(p))  # bare `raftcron`: the help, exit 2
    if only_lock:
        lockcmd.add_parser(sub)
        return p

    a = sub.add_parser("agent", help="run one cluster node")
    a.add_argument(
        "--config", help="cluster TOML file (omit for a single-node cluster on 127.0.0.1)"
    )
    a.add_argument("--node", help="this server's name in [cluster.nodes]")
    a.add_argument(
        "--data-dir", default="raftcron-data", help="data dir of the single-node default"
    )
    a.add_argument("--log-level", default=os.environ.get("RAFTCRON_LOG_LEVEL", "info"))
    a.add_argument("--log-json", action="store_true", help="one JSON object per log line")
    a.add_argument(
        "--cluster-id",
        help="a new member of a cluster with an id (a restored one), started with an empty "
        "data dir: the id raftcron members add printed",
    )
    a.set_defaults(fn=cmd_agent)

    d = sub.add_parser("dev", help="run a local 3-node cluster (the demo)")
    d.add_argument(
        "--config",
        help="cluster TOML file (default: ./cluster.example.toml, written from the package's "
        "copy if it is not there)",
    )
    d.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    d.set_defaults(fn=cmd_dev)

    from raftcron import initcmd

    initcmd.add_parser(sub).set_defaults(fn=cmd_init)

    c = sub.add_parser(
        "check-config", help="validate a cluster TOML file; show each job's next 3 fires"
    )
    c.add_argument("file")
    c.add_argument("--node", help="also check that this node is in the file")
    c.add_argument(
        "--api",
        help="also compare [cluster.nodes] with this cluster's replicated membership "
        "(a member API URL, or several comma-separated)",
    )
    c.add_argument("--token", help="API token (or RAFTCRON_TOKEN)")
    c.add_argument("--token-file", metavar="FILE", help="read the API token from FILE")
    c.add_argument("--cacert", help="CA file to verify an https API")
    c.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    c.set_defaults(fn=cmd_check_config)

    common = argparse.ArgumentParser(add_help=False)
    add_client_options(common)

    s = sub.add_parser("status", parents=[common], help="members, roles, health, leader, lag")
    s.set_defaults(fn=cmd_status)

    j = sub.add_parser(
        "jobs",
        help="list, show, apply, export, delete, pause, resume, preview, backfill, import jobs",
    )
    jsub = j.add_subparsers(dest="jobs_verb", metavar="VERB")
    j.set_defaults(fn=_usage(j))
    jl = jsub.add_parser("list", parents=[common], help="every job with next fire and last run")
    jl.set_defaults(fn=cmd_jobs_list)
    js = jsub.add_parser("show", parents=[common], help="one job with its next 5 fires")
    js.add_argument("name")
    js.set_defaults(fn=cmd_jobs_show)
    ja = jsub.add_parser(
        "apply",
        parents=[common],
        help="create or update the jobs of a TOML or JSON file, or - for stdin (prints each "
        "job's next 3 fires)",
    )
    ja.add_argument(
        "file",
        metavar="FILE",
        help='TOML ([[jobs]] tables, or one job\'s keys) or JSON ({"jobs": [...]}, a list, '
        "one job, or jobs show/list -o json); - reads stdin",
    )
    ja.set_defaults(fn=cmd_jobs_apply)
    from raftcron import cli_jobsfile

    connection = argparse.ArgumentParser(add_help=False)
    add_client_options(connection, output=False)
    cli_jobsfile.add_export_parser(jsub, connection)
    jd = jsub.add_parser("delete", parents=[common], help="delete a job")
    jd.add_argument("name")
    jd.set_defaults(fn=cmd_jobs_delete)
    jp = jsub.add_parser("pause", parents=[common], help="pause a job (fires are skipped)")
    jp.add_argument("name")
    jp.add_argument("--note", help="why (shown with the job until it is resumed)")
    jp.set_defaults(fn=cmd_jobs_pause)
    jr = jsub.add_parser("resume", parents=[common], help="resume a paused job")
    jr.add_argument("name")
    jr.set_defaults(fn=cmd_jobs_resume)
    jn = jsub.add_parser("next", parents=[common], help="preview fire times (DST included)")
    jn.add_argument("name")
    jn.add_argument("--from", dest="from_", help="RFC 3339 start, e.g. 2026-03-29T00:00:00Z")
    jn.add_argument("--count", type=int, default=5, help="how many (1-1000, default 5)")
    jn.set_defaults(fn=cmd_jobs_next)
    jb = jsub.add_parser(
        "backfill", parents=[common], help="run a job's past fires in a time range again"
    )
    jb.add_argument("name")
    jb.add_argument("--from", dest="from_", help="RFC 3339, e.g. 2026-11-27T00:00:00Z")
    jb.add_argument("--to", help="RFC 3339 (inclusive, not in the future)")
    jb.add_argument("--rate", type=float, help="fires per second at most (default 1)")
    jb.add_argument("--id", help="idempotency key: repeating the request returns that backfill")
    jb.add_argument("--cancel", action="store_true", help="stop the job's backfill")
    jb.set_defaults(fn=cmd_jobs_backfill)
    from raftcron.importers import cli as import_cli

    import_cli.add_parser(jsub)

    wait_common = argparse.ArgumentParser(add_help=False)
    add_client_options(wait_common, request_timeout=False)
    dr = sub.add_parser(
        "drain",
        parents=[wait_common],
        help="drain a member: no new runs, its runs finish, it hands leadership off",
    )
    dr.add_argument("node", help="the member to drain (by name; never another one)")
    dr.add_argument("--wait", action="store_true", help="wait until it holds no live run")
    dr.add_argument(
        "--timeout",
        dest="wait_timeout",
        default="10m",
        help="with --wait: give up after this long (e.g. 90s, 10m; default 10m)",
    )
    dr.set_defaults(fn=cmd_drain)
    ud = sub.add_parser("undrain", parents=[common], help="let a drained member get runs again")
    ud.add_argument("node", help="the member to undrain")
    ud.set_defaults(fn=cmd_undrain)
    rl = sub.add_parser(
        "reload", parents=[common], help="a member re-reads its cluster file (like SIGHUP)"
    )
    rl.add_argument("node", help="the member to reload (by name; never another one)")
    rl.set_defaults(fn=cmd_reload)
    ld = sub.add_parser("leader", help="leadership: transfer")
    lsub = ld.add_subparsers(dest="leader_verb", metavar="VERB")
    ld.set_defaults(fn=_usage(ld))
    lt = lsub.add_parser(
        "transfer", parents=[common], help="hand leadership to another member (Raft TimeoutNow)"
    )
    lt.add_argument("--to", help="the member to hand it to (default: the best other member)")
    lt.set_defaults(fn=cmd_leader_transfer)

    t = sub.add_parser("trigger", parents=[common], help="fire a job now (obeys overlap)")
    t.add_argument("job")
    t.set_defaults(fn=cmd_trigger)

    from raftcron import cli_runs

    cli_runs.add_parser(sub, common)

    from raftcron import cli_members

    cli_members.add_parser(sub, common)

    lockcmd.add_parser(sub)
    from raftcron import cli_version

    cli_version.add_parser(sub, common)
    from raftcron import cli_snapshot

    cli_snapshot.add_parser(sub, common)
    return p


def _usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """A verb group given without its verb (bare ``raftcron``, ``raftcron jobs``): its help
    with the verbs, on stderr, exit 2 (a usage error, like etcdctl's and git's)."""

    def show(_: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    return show


class _VersionAction(argparse.Action):
    """``--version``: the installed distribution's version (pyproject.toml is its one source),
    looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        print(f"raftcron {cliutil.installed_version()}")
        parser.exit()


def cmd_init(args: argparse.Namespace) -> int:
    from raftcron import initcmd

    try:
        lines = initcmd.run(args)
    except initcmd.InitError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(only_lock=words[:1] == ["lock"]).parse_args(words)
        if cliutil.wants_json(args):
            args.json = True  # -o json and --json are one option
        code: int = args.fn(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is answered below
        return code
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # stdout's reader went away (`raftcron runs | head -1`)
        _drop_stdout()
        return cliutil.EXIT_PIPE


def _drop_stdout() -> None:
    """Point stdout at /dev/null: the interpreter's flush at exit then has nowhere to
    fail (no "Exception ignored ... BrokenPipeError" on stderr)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
