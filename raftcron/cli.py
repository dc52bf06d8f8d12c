"""The ``raftcron`` command.

Exit codes: 0 ok, 1 a runtime failure (API unreachable, request refused), 2 bad usage or a
bad config file. Errors print one line (``error: ...``) and no traceback.

The client verbs use urllib, not aiohttp: a one-shot CLI call should start fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_RUNTIME) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- logging


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                "level": record.levelname,
                "logger": record.name,
                "msg": record.getMessage(),
            }
        )


def _setup_logging(level: str, as_json: bool, node: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s [{node}] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


# --------------------------------------------------------------------------- config verbs


def _load(path: str, node: str | None = None) -> Any:
    from raftcron.config import ConfigError, load_config

    try:
        cfg = load_config(Path(path))
        if node is not None:
            cfg.node(node)
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    return cfg


def cmd_check_config(args: argparse.Namespace) -> int:
    cfg = _load(args.file, args.node)
    names = ", ".join(n.name for n in cfg.cluster.nodes)
    print(f"{args.file}: ok ({len(cfg.cluster.nodes)} nodes: {names}; {len(cfg.jobs)} jobs)")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    import asyncio

    from raftcron.config import ConfigError, single_node_config

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
    _setup_logging(args.log_level, args.log_json, name)
    from raftcron.node import Node

    node = Node(cfg, name)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await node.run(stop)

    asyncio.run(main())
    if node.failed is not None:
        raise CliError(f"node {name} stopped: {node.failed}")
    return 0


# --------------------------------------------------------------------------- client verbs


def _api(args: argparse.Namespace) -> str:
    url: str = args.api or os.environ.get("RAFTCRON_API") or "http://127.0.0.1:8100"
    return url.rstrip("/")


def _get(base: str, path: str, token: str | None = None, timeout: float = 5.0) -> Any:
    req = urllib.request.Request(base + path)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
            message = body["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise CliError(f"{base}{path}: HTTP {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(
            f"cannot reach the raftcron API at {base} ({reason}); set --api or RAFTCRON_API"
        ) from None


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(h) for h in header]] + [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def cmd_status(args: argparse.Namespace) -> int:
    st = _get(_api(args), "/v1/status", _token(args))
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(
        f"node {st['node']}  leader {st['leader'] or '-'}  term {st['term']}  "
        f"commit {st['commit_index']}  jobs {st['jobs']}  runs {st['runs']}"
    )
    rows = [
        [m["name"], m["role"], "up" if m["healthy"] else "DOWN", m["raft"], m["api"], m.get("lag")]
        for m in st["members"]
    ]
    print(_table(rows, ["member", "role", "health", "raft", "api", "lag"]))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    q = f"/v1/runs?limit={args.limit}"
    if args.job:
        q += f"&job={urllib.parse.quote(args.job)}"
    body = _get(_api(args), q, _token(args))
    if args.json:
        print(json.dumps(body["runs"], indent=2))
        return 0
    rows = [
        [
            r["id"],
            r["status"],
            r["node"],
            r["fence"],
            r["scheduled_at"],
            r["exit_code"],
            r["reason"][:60],
        ]
        for r in body["runs"]
    ]
    print(_table(rows, ["run", "status", "node", "fence", "scheduled_at", "exit", "reason"]))
    return 0


def _token(args: argparse.Namespace) -> str | None:
    tok: str | None = getattr(args, "token", None) or os.environ.get("RAFTCRON_TOKEN")
    return tok


# --------------------------------------------------------------------------- dev


def _ensure_secret(config: Path) -> None:
    """``raftcron dev``: create the secret_file the config names, if it is missing."""
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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    print(f"generated a cluster secret in {path}")


def cmd_dev(args: argparse.Namespace) -> int:
    config = Path(args.config)
    if not config.exists():
        raise CliError(
            f"{config}: not found (run from the repository root or pass --config)", EXIT_USAGE
        )
    _ensure_secret(config)
    cfg = _load(str(config))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = {}
    for n in cfg.cluster.nodes:
        n.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(n.data_dir / "agent.log", "ab")  # noqa: SIM115 - closed below
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
        deadline = time.monotonic() + 60
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
                    _get(url, "/v1/status", timeout=1.0)
                    up.add(name)
                    print(f"node {name}: {url}")
                except CliError:
                    pass
            if time.monotonic() > deadline:
                raise CliError("the cluster did not come up within 60s; see the agent.log files")
            time.sleep(0.2)
        print("cluster up; Ctrl-C stops everything. Live view of leader and runs:")
        _live_view(apis, lambda: stopping, args.duration)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        end = time.monotonic() + 10
        for p in procs.values():
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for log in logs.values():
            log.close()
        print("stopped all nodes")
    return 0


def _live_view(apis: dict[str, str], stopping: Any, duration: float | None) -> None:
    seen: dict[str, str] = {}
    leader = None
    end = None if duration is None else time.monotonic() + duration
    while not stopping() and (end is None or time.monotonic() < end):
        for url in apis.values():
            try:
                st = _get(url, "/v1/status", timeout=1.0)
                runs = _get(url, "/v1/runs?limit=30", timeout=1.0)["runs"]
                break
            except CliError:
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raftcron", description="Highly available cron on its own Raft cluster."
    )
    sub = p.add_subparsers(dest="verb", required=True)

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
    a.set_defaults(fn=cmd_agent)

    d = sub.add_parser("dev", help="run a local 3-node cluster (the demo)")
    d.add_argument("--config", default="cluster.example.toml")
    d.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    d.set_defaults(fn=cmd_dev)

    c = sub.add_parser("check-config", help="validate a cluster TOML file")
    c.add_argument("file")
    c.add_argument("--node", help="also check that this node is in the file")
    c.set_defaults(fn=cmd_check_config)

    for name, fn, helptext in (
        ("status", cmd_status, "cluster status"),
        ("runs", cmd_runs, "the run ledger"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--api", help="node API URL (or RAFTCRON_API)")
        s.add_argument("--token", help="API token (or RAFTCRON_TOKEN)")
        s.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "runs":
            s.add_argument("--job")
            s.add_argument("--limit", type=int, default=50)
        s.set_defaults(fn=fn)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.fn(args)
        return code
    except CliError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
