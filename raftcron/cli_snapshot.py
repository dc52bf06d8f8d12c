"""``raftcron snapshot save|restore``: back up a cluster's replicated state, and seed a NEW
cluster's member from a backup (docs/operations.md, "Back up and restore"; ``raftcron/backup.py``).

``save FILE`` asks the leader (``GET /v1/snapshot``, admin token; a follower's 409
``not_leader`` sends it on to the next ``--api`` member), verifies what came back and writes
it to FILE atomically with mode 0600.

``restore FILE --data-dir DIR`` runs offline, on each member of the new cluster, before its
agent first starts: it verifies the file (a corrupt, truncated or unknown file is refused
and nothing is written), refuses a DIR that holds anything, and writes the state there as
the Raft snapshot the agent loads at start, with a new cluster id, every lease and lock
ended, the fence counter raised and the jobs paused (unless ``--resume``). Membership is
the new cluster file's (``--config``); every member must be restored from the same file
with the same options (they then derive the same cluster id; otherwise they refuse each
other).
"""

from __future__ import annotations

import argparse

from raftcron.cliutil import (
    EXIT_USAGE,
    CliError,
    call,
    client_from_args,
    print_json,
    wants_json,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def add_parser(sub: Any, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "snapshot", help="back up the cluster's state (save) or seed a new cluster (restore)"
    )
    ssub = p.add_subparsers(dest="snapshot_verb", metavar="VERB")

    def usage(_: argparse.Namespace) -> int:
        import sys

        p.print_help(sys.stderr)
        return EXIT_USAGE

    p.set_defaults(fn=usage)
    s = ssub.add_parser(
        "save",
        parents=[common],
        help="write a checksummed backup of the replicated state from the leader (admin)",
    )
    s.add_argument("file", help="where to write the backup (mode 0600, replaced atomically)")
    s.set_defaults(fn=cmd_save)
    r = ssub.add_parser(
        "restore",
        help="seed a NEW cluster member's empty data dir from a backup (offline)",
    )
    r.add_argument("file", help="a backup written by `raftcron snapshot save`")
    r.add_argument(
        "--data-dir",
        help="the member's data dir (empty or missing; default: the node's data_dir in --config)",
    )
    r.add_argument("--config", help="the NEW cluster's file: its members form the cluster")
    r.add_argument("--node", help="this member's name in --config")
    r.add_argument(
        "--resume",
        action="store_true",
        help="keep each job paused or not as in the backup (default: pause every job)",
    )
    r.add_argument(
        "--cluster-id",
        help="the new cluster's id (default: derived from the backup, the members and the "
        "options, the same on every member)",
    )
    r.add_argument("-o", "--output", choices=("table", "json"), default="table")
    r.add_argument("--json", action="store_true", help="the same as -o json")
    r.set_defaults(fn=cmd_restore)
    return p


def _describe(header: dict[str, Any]) -> str:
    return (
        f"{header.get('jobs', '?')} jobs, {header.get('runs', '?')} runs, "
        f"{header.get('locks', '?')} locks; from {header.get('leader', '?')} at "
        f"{header.get('created_at', '?')} (raftcron {header.get('raftcron_version', '?')}, "
        f"cluster id {header.get('cluster_id') or 'none'})"
    )


def cmd_save(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raftcron.backup import BackupError, read_backup, write_private
    from raftcron.clock import monotonic

    client = client_from_args(args)
    started = monotonic()
    data = call(client.snapshot)
    fetched = monotonic()
    try:
        backup = read_backup(data, "the leader's answer")
    except BackupError as exc:
        raise CliError(f"{exc}; nothing written") from None
    try:
        write_private(Path(args.file), data)
    except OSError as exc:
        raise CliError(f"{args.file}: cannot write: {exc.strerror or exc}") from None
    done = monotonic()
    if wants_json(args):
        print_json(
            {
                "file": args.file,
                "bytes": len(data),
                "header": backup.header,
                "fetch_seconds": round(fetched - started, 3),
                "seconds": round(done - started, 3),
            }
        )
        return 0
    print(
        f"{args.file}: {len(data)} bytes, {_describe(backup.header)}; "
        f"sha256 {backup.body_sha256[:16]}...; {done - started:.2f}s"
    )
    return 0


def _members(args: argparse.Namespace) -> tuple[list[str], str | None]:
    """The new cluster's raft addresses, and the node's data dir from the file if any."""
    if args.config is None:
        if args.node is not None:
            raise CliError("--node needs --config (the new cluster's file)", EXIT_USAGE)
        return [], None
    from pathlib import Path

    from raftcron.config import ConfigError, load_config

    try:
        cfg = load_config(Path(args.config))
        me = cfg.node(args.node) if args.node is not None else None
    except ConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    addresses = [str(n.raft) for n in cfg.cluster.nodes]
    return addresses, None if me is None else str(me.data_dir)


def cmd_restore(args: argparse.Namespace) -> int:
    from pathlib import Path

    from raftcron.backup import BackupError, read_backup, restore_into
    from raftcron.clock import monotonic

    addresses, node_dir = _members(args)
    data_dir = args.data_dir or node_dir
    if data_dir is None:
        raise CliError("--data-dir is needed (or --config with --node)", EXIT_USAGE)
    started = monotonic()
    try:
        with open(args.file, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise CliError(f"{args.file}: cannot read: {exc.strerror or exc}") from None
    try:
        backup = read_backup(data, args.file)
        del data
        restored = restore_into(
            backup,
            Path(data_dir),
            addresses,
            cluster_id=args.cluster_id,
            resume=args.resume,
            source=args.file,
        )
    except BackupError as exc:
        raise CliError(f"{exc}; nothing written") from None
    except OSError as exc:
        raise CliError(f"{data_dir}: cannot write: {exc.strerror or exc}") from None
    seconds = monotonic() - started
    st = restored.state
    summary = {
        "file": args.file,
        "data_dir": data_dir,
        "cluster_id": restored.cluster_id,
        "previous_cluster_id": backup.cluster_id,
        "members": addresses,
        "jobs": len(st.jobs),
        "paused": not args.resume,
        "runs": len(st.runs),
        "leases_ended": restored.leases_ended,
        "locks_ended": restored.locks_ended,
        "fence": st.counters.fence,
        "snapshot": str(restored.snapshot_path),
        "seconds": round(seconds, 3),
    }
    if wants_json(args):
        print_json(summary)
        return 0
    jobs = "every job paused" if not args.resume else "jobs paused as in the backup"
    print(
        f"restored {args.file} into {data_dir} in {seconds:.2f}s: cluster id "
        f"{restored.cluster_id}, {len(st.jobs)} jobs ({jobs}), {len(st.runs)} runs, "
        f"{restored.leases_ended} live runs recorded lost, {restored.locks_ended} locks "
        f"ended, fence counter now {st.counters.fence}"
    )
    print(
        "restore every member of the new cluster from this file with the same options, "
        "then start the agents"
        + ("; `raftcron jobs resume NAME` when ready" if not args.resume else "")
    )
    return 0
