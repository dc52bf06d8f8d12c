"""``raftcron init``: write a commented cluster file and a fresh secret for a new cluster.

    raftcron init --node a --nodes a=10.0.0.1:7100:8100,b=10.0.0.2,c=10.0.0.3 \\
        --out /etc/raftcron/cluster.toml --owner raftcron

writes, next to ``--out``:

- ``cluster.toml`` (0644: it holds no secret): every node, each ``data_dir`` under
  ``--data-dir`` (default ``/var/lib/raftcron``, the systemd unit's and the image's state
  directory), the API settings, and comments on every key;
- ``secret`` (0600): the cluster secret, random, the same file on every server;
- ``admin.token`` and ``read.token`` (0600), when an API listens on another address than
  loopback (the API then needs tokens, and TLS: the file names ``tls/cert.pem`` and
  ``tls/key.pem``, which the operator provides);
- ``agent.env``: ``RAFTCRON_NODE_NAME=<--node>``, this server's name for the systemd unit.

It never overwrites a file unless ``--force`` is given, and it refuses to leave a secret
where others could read or replace it: a secret or token file that does not end up 0600, or
whose directory is writable by group or others, is an error (exit 2).
"""

from __future__ import annotations

import os

from raftcron.clock import utc_now

# Every verb's parser is built on each call of the CLI, this module's add_parser too: the
# module-level imports stay this cheap, the rest is imported by run().
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from pathlib import Path
    from typing import Any


DEFAULT_RAFT_PORT = 7100  # the single-node default ports (config.SINGLE_NODE_RAFT / _API)
DEFAULT_API_PORT = 8100
DEFAULT_DATA_DIR = "/var/lib/raftcron"
SECRET_NAME = "secret"
TOKEN_NAMES = {"admin": "admin.token", "read": "read.token"}
ENV_NAME = "agent.env"
TLS_CERT = "tls/cert.pem"
TLS_KEY = "tls/key.pem"


class InitError(Exception):
    """A refusal: the message names what and how to fix it (exit 2)."""


class Member:
    """One server of ``--nodes``: its name, host, Raft port and API port."""

    __slots__ = ("api", "host", "name", "raft")

    def __init__(self, name: str, host: str, raft: int, api: int) -> None:
        self.name, self.host, self.raft, self.api = name, host, raft, api

    def __repr__(self) -> str:
        return f"Member({self.name}={self.host}:{self.raft}:{self.api})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Member) and repr(self) == repr(other)

    __hash__ = None  # type: ignore[assignment]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``init`` to the ``raftcron`` command's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "init",
        help="write a commented cluster file and a new secret (a new cluster)",
        description="Write a commented cluster file, a random cluster secret (0600) and, for "
        "an API reachable from other machines, an admin and a read token. Copy the cluster "
        "file, the secret and the tokens to every server; agent.env names this server.",
    )
    p.add_argument("--node", required=True, help="this server's name, e.g. a")
    p.add_argument(
        "--nodes",
        help="every server as NAME=HOST:RAFT_PORT:API_PORT (or NAME=HOST for ports "
        f"{DEFAULT_RAFT_PORT} and {DEFAULT_API_PORT}), comma-separated; default: "
        f"--node alone on 127.0.0.1",
    )
    p.add_argument("--out", default="cluster.toml", help="the cluster file (default cluster.toml)")
    p.add_argument(
        "--data-dir",
        default=DEFAULT_DATA_DIR,
        help=f"each node's data dir is DATA_DIR/NAME (default {DEFAULT_DATA_DIR})",
    )
    p.add_argument("--owner", help="chown the secret and token files to this user (as root)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    return p


def parse_members(spec: str | None, node: str) -> list[Member]:
    """``a=10.0.0.1:7100:8100,b=10.0.0.2`` as members; :class:`InitError` for a bad one."""
    from raftcron.jobconfig import _NAME_RE

    if not _NAME_RE.fullmatch(node):
        raise InitError(
            f"--node {node!r}: not a node name (a letter or digit, then up to 63 letters, "
            "digits, '.', '_' or '-')"
        )
    if spec is None:
        return [Member(node, "127.0.0.1", DEFAULT_RAFT_PORT, DEFAULT_API_PORT)]
    fix = "write NAME=HOST:RAFT_PORT:API_PORT or NAME=HOST, e.g. a=10.0.0.1:7100:8100"
    members: list[Member] = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, sep, addr = item.partition("=")
        if not sep or not name or not addr:
            raise InitError(f"--nodes: {item!r} ({fix})")
        if not _NAME_RE.fullmatch(name):
            raise InitError(f"--nodes: {name!r} is not a node name ({fix})")
        parts = addr.split(":")
        if len(parts) == 1:
            parts += [str(DEFAULT_RAFT_PORT), str(DEFAULT_API_PORT)]
        if len(parts) != 3 or not parts[0] or any(c.isspace() for c in parts[0]):
            raise InitError(f"--nodes: {item!r} ({fix}; IPv6 addresses are not supported)")
        if parts[0] in ("0.0.0.0", "*"):
            raise InitError(
                f"--nodes: {item!r}: other nodes cannot connect to {parts[0]} (give the "
                "server's own address)"
            )
        ports = []
        for text in parts[1:]:
            if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 65535):
                raise InitError(f"--nodes: {item!r}: port {text!r} is not 1-65535 ({fix})")
            ports.append(int(text))
        members.append(Member(name, parts[0], ports[0], ports[1]))
    names = [m.name for m in members]
    for name in names:
        if names.count(name) > 1:
            raise InitError(f"--nodes: node {name!r} is given twice")
    seen: dict[tuple[str, int], str] = {}
    for m in members:
        for what, port in (("raft", m.raft), ("api", m.api)):
            other = seen.setdefault((m.host, port), f"{m.name} {what}")
            if other != f"{m.name} {what}":
                raise InitError(f"--nodes: {m.host}:{port} is both {other} and {m.name} {what}")
    if node not in names:
        raise InitError(f"--node {node}: not in --nodes (known: {', '.join(names)})")
    return members


def render(members: list[Member], data_dir: str, out: Path, tokens: bool) -> str:
    """The commented cluster file."""

    names = ", ".join(m.name for m in members)
    today = utc_now().date().isoformat()
    raft_ports = sorted({m.raft for m in members})
    api_ports = sorted({m.api for m in members})
    lines = [
        f"# raftcron cluster file, written by `raftcron init` on {today}: nodes {names}.",
        "#",
        "# The same file goes on every server, next to the secret file"
        + (" and the token files." if tokens else "."),
        "# Each server runs its own node (the systemd unit takes the name from agent.env):",
        f"#   raftcron agent --config {out} --node <this server's name>",
        f"# Check it first:  raftcron check-config {out} --node <name>",
        "# Relative paths are relative to this file's directory. Every key is explained in",
        "# cluster.example.toml (`raftcron dev` writes it into the current directory).",
        "#",
        f"# Firewall: open the Raft port{'s' if len(raft_ports) > 1 else ''} "
        f"({', '.join(map(str, raft_ports))}/tcp) between the servers, and the",
        f"# API port{'s' if len(api_ports) > 1 else ''} ({', '.join(map(str, api_ports))}/tcp) "
        "to the machines that run the CLI, the dashboard,",
        "# metrics scrapers and load balancers.",
        "",
        "[cluster]",
        "# The cluster secret: encrypts and authenticates all Raft traffic. The same file on",
        "# every server, mode 0600, owned by the user the agent runs as (raftcron).",
        f'secret_file = "{SECRET_NAME}"',
        "# Default run lease: the node running a job must renew it within this time, or the",
        "# job is stopped. Jobs may set their own `lease`. At least 1s.",
        'lease = "30s"',
        "# Final runs kept in the run ledger per job (running ones are always kept).",
        "history = 100",
        "",
        "# One table per server: raft is listened on and dialled by the other nodes; api serves",
        "# the HTTP API and the dashboard; data_dir holds the journal, snapshots and run outputs",
        "# (never under the read-only /etc). The name is what `--node` takes and what",
        "# RAFTCRON_NODE is in a job's environment.",
    ]
    scheme = "https" if tokens else "http"
    for m in members:
        lines += [
            f"[cluster.nodes.{m.name}]",
            f'raft = "{m.host}:{m.raft}"',
            f'api = "{m.host}:{m.api}"'.ljust(40) + f"# {scheme}://{m.host}:{m.api}/",
            f'data_dir = "{data_dir.rstrip("/")}/{m.name}"',
            '# tags = { role = "db" }'.ljust(40) + "# jobs with `tags` run only on matching nodes",
            "",
        ]
    lines += ["[api]"]
    if tokens:
        lines += [
            "# The API listens on more than loopback, so every request needs a token (Bearer),",
            "# and TLS: put the certificate (with every node's address as a subject",
            "# alternative name) and its key at these paths; the same files on every server.",
            f'tls_cert = "{TLS_CERT}"',
            f'tls_key = "{TLS_KEY}"',
            "open_health = true              # /health and /metrics answer without a token",
            "# insecure = true               # a non-loopback API without TLS: only on a network",
            "#                               # you trust completely",
            "",
            "# admin: everything, including jobs that run any command on every node; read:",
            "# GET requests only (dashboards). The CLI takes --token or RAFTCRON_TOKEN.",
            "# name: who used it, in the audit log and metrics (one name per holder).",
            "[[api.tokens]]",
            'name = "admin"',
            'role = "admin"',
            f'token_file = "{TOKEN_NAMES["admin"]}"',
            "[[api.tokens]]",
            'name = "dashboard"',
            'role = "read"',
            f'token_file = "{TOKEN_NAMES["read"]}"',
        ]
    else:
        lines += [
            "# Every API here listens on loopback, so no token or TLS is required. Before you",
            "# give one a routable address, add [[api.tokens]] and tls_cert/tls_key.",
            "open_health = true              # /health and /metrics answer without a token",
            "# [[api.tokens]]",
            '# name = "ops"                   # who used it, in the audit log and metrics',
            '# role = "admin"                 # or "read": GET requests only',
            '# token_file = "admin.token"     # a file holding the token, 16+ characters',
        ]
    lines += [
        "",
        "# Notifications for every job (failure, missed, late, recovered):",
        "# [notify]",
        '# webhooks = ["https://hooks.example.com/raftcron"]',
        "",
        "# Jobs: one [[jobs]] table each (see cluster.example.toml for every key). Or add them",
        "# later without touching this file: raftcron jobs apply jobs.toml",
        "# [[jobs]]",
        '# name = "nightly-backup"',
        '# schedule = "0 3 * * *"        # minute hour day-of-month month day-of-week',
        '# timezone = "UTC"',
        '# command = ["sh", "-c", "/usr/local/bin/backup --fence $RAFTCRON_FENCE"]',
        '# overlap = "skip"               # never two at once',
        '# timeout = "1h"',
        "",
    ]
    return "\n".join(lines)


def _check_dir(directory: Path) -> None:
    import stat

    st = directory.stat()
    if st.st_mode & 0o022:
        raise InitError(
            f"{directory}: writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}), "
            f"so anyone could replace the secret in it (chmod go-w {directory}, or pick "
            "another --out)"
        )


def _write(path: Path, text: str, mode: int, force: bool) -> None:
    """Write ``text`` to ``path`` with exactly ``mode`` (whatever the umask)."""
    import secrets

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file appeared meanwhile: never overwritten
            os.unlink(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> list[str]:
    """Do ``raftcron init``; the lines to print. :class:`InitError` for a refusal."""
    import secrets
    import stat
    from pathlib import Path

    from raftcron.config import _is_loopback

    members = parse_members(args.nodes, args.node)
    out = Path(args.out).absolute()
    if not os.path.isabs(args.data_dir):
        raise InitError(
            f"--data-dir {args.data_dir}: give an absolute path (relative paths in the file "
            "would be relative to its directory, usually the read-only /etc/raftcron)"
        )
    tokens = any(not _is_loopback(m.host) for m in members)
    directory = out.parent
    files: dict[Path, tuple[str, int]] = {
        directory / SECRET_NAME: (secrets.token_urlsafe(32) + "\n", 0o600),
    }
    if tokens:
        for name in TOKEN_NAMES.values():
            files[directory / name] = (secrets.token_urlsafe(32) + "\n", 0o600)
    files[out] = (render(members, args.data_dir, out, tokens), 0o644)
    files[directory / ENV_NAME] = (
        "# This server's name in the cluster file's [cluster.nodes] (differs on each server).\n"
        f"RAFTCRON_NODE_NAME={args.node}\n"
        "# More options for `raftcron agent`, e.g. --log-json\n"
        "RAFTCRON_AGENT_OPTS=\n",
        0o644,
    )
    existing = [str(p) for p in files if p.exists() or p.is_symlink()]
    if existing and not args.force:
        raise InitError(
            f"{', '.join(existing)}: already there; not overwritten (remove "
            f"{'it' if len(existing) == 1 else 'them'}, pick another --out, or pass --force)"
        )
    owner: tuple[int, int] | None = None
    if args.owner is not None:
        import pwd

        try:
            pw = pwd.getpwnam(args.owner)
        except KeyError:
            raise InitError(
                f"--owner {args.owner}: no such user (create it first, e.g. with "
                "systemd-sysusers packaging/raftcron.sysusers)"
            ) from None
        owner = (pw.pw_uid, pw.pw_gid)
    written: list[Path] = []
    try:
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        _check_dir(directory)
        for path, (text, mode) in files.items():
            _write(path, text, mode, args.force)
            written.append(path)
            if mode == 0o600:
                if owner is not None:
                    os.chown(path, *owner)
                got = stat.S_IMODE(path.stat().st_mode)
                if got & 0o077:
                    raise InitError(
                        f"{path}: the file system keeps mode {got:04o}, not 0600, so others "
                        "could read the secret (write it to a local file system)"
                    )
    except (OSError, InitError) as exc:
        for path in written:  # all or nothing: a new cluster needs every one of them
            path.unlink(missing_ok=True)
        if isinstance(exc, InitError):
            raise
        where = exc.filename or directory
        raise InitError(
            f"{where}: {exc.strerror or exc} (check --out, --owner and the permissions)"
        ) from None
    me = args.node
    lines = [
        f"wrote {path}" + (" (0600)" if mode == 0o600 else "") for path, (_, mode) in files.items()
    ]
    lines += ["", "next:"]
    step = 1
    if len(members) > 1:
        copy = [SECRET_NAME, *(TOKEN_NAMES.values() if tokens else ()), out.name]
        lines.append(
            f"  {step}. copy {', '.join(copy)} (modes and owner kept) to {directory} on the other "
            f"servers, and write RAFTCRON_NODE_NAME=<its name> into their {ENV_NAME}"
        )
        step += 1
    if tokens:
        lines.append(
            f"  {step}. put the API's TLS certificate and key at {directory / TLS_CERT} and "
            f"{directory / TLS_KEY} on every server"
        )
        step += 1
    if owner is None and os.geteuid() == 0:
        lines.append(
            f"  {step}. let the agent's user read its secret: chown raftcron: "
            + " ".join(str(p) for p, (_, mode) in files.items() if mode == 0o600)
        )
        step += 1
    lines.append(f"  {step}. raftcron check-config {out} --node {me}")
    lines.append(
        f"  {step + 1}. systemctl enable --now raftcron   (or: raftcron agent --config {out} "
        f"--node {me})"
    )
    return lines
