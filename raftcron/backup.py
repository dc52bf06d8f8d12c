"""Backup files (``raftcron snapshot save``) and seeding a new cluster from one
(``raftcron snapshot restore``).

The file format (version 1; docs/operations.md, "Back up and restore")::

    RAFTCRON-BACKUP\\n          16 bytes: the magic
    {"format": 1, ...}\\n       one line of JSON (UTF-8, at most 64 KiB): the header
    <body>                     ``body_bytes`` bytes of msgpack

Header keys: ``format`` (1), ``raftcron_version`` (of the leader that wrote it),
``cluster_id`` ("" for a cluster that never had one), ``created_at`` (RFC 3339, UTC) and
``created_at_ms``, ``leader`` (the member that answered) and ``raft_term`` (its term),
``jobs``, ``runs``, ``locks`` (counts, for people), ``body_bytes`` and
``body_sha256`` (hex). Readers ignore keys they do not know; a new key never needs a new
format version, a change of the body does.

The body is a msgpack map: ``state`` (bytes: the replicated state in the snapshot encoding
of :meth:`raftcron.core.state.State.snapshot`, captured at one applied entry) and
``members`` (the old cluster's members as its file named them: name, raft, api; for
people and for checks, never used to form a cluster).

:func:`read_backup` refuses, with a message naming what is wrong, a file that is not a
backup, is of another format version, is truncated or longer than its header says, or
whose body fails its checksum or does not decode; nothing is written before it has
checked all of that.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgpack

from raftcron.core.restore import FENCE_GAP, seal
from raftcron.core.state import State

MAGIC: Final = b"RAFTCRON-BACKUP\n"
FORMAT: Final = 1
MAX_HEADER: Final = 64 * 1024
FILE_MODE: Final = 0o600


class BackupError(Exception):
    """A backup file cannot be used (the message says why and what to do)."""


@dataclass(frozen=True, slots=True)
class Backup:
    """A verified backup: its header, the state's bytes and the old cluster's members."""

    header: dict[str, Any]
    state: bytes
    members: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cluster_id(self) -> str:
        return str(self.header.get("cluster_id") or "")

    @property
    def body_sha256(self) -> str:
        return str(self.header["body_sha256"])


def rfc3339(ms: int) -> str:
    t = _dt.datetime.fromtimestamp(ms / 1000, tz=_dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def encode_backup(
    state: bytes,
    members: list[dict[str, Any]],
    *,
    raftcron_version: str,
    cluster_id: str,
    created_ms: int,
    leader: str,
    raft_term: int,
    counts: dict[str, int] | None = None,
) -> bytes:
    """The bytes of a backup file (the module docstring)."""
    body = msgpack.packb({"state": state, "members": members}, use_bin_type=True)
    header: dict[str, Any] = {
        "format": FORMAT,
        "raftcron_version": raftcron_version,
        "cluster_id": cluster_id,
        "created_at": rfc3339(created_ms),
        "created_at_ms": created_ms,
        "leader": leader,
        "raft_term": raft_term,
        **(counts or {}),
        "body_bytes": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    line = json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    return MAGIC + line + body


def read_backup(data: bytes, source: str = "the backup") -> Backup:
    """Verify and decode a backup file's bytes; :class:`BackupError` says what is wrong."""
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise BackupError(f"{source} is truncated ({len(data)} bytes, not even a header)")
        raise BackupError(
            f"{source} is not a raftcron backup (it does not start with {MAGIC!r}); "
            "use a file written by `raftcron snapshot save`"
        )
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER)
    if end < 0:
        raise BackupError(f"{source} is truncated or damaged: its header line never ends")
    try:
        header = json.loads(data[len(MAGIC) : end])
    except ValueError as exc:
        raise BackupError(f"{source} is damaged: its header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise BackupError(f"{source} is damaged: its header is not a JSON object")
    fmt = header.get("format")
    if fmt != FORMAT:
        raise BackupError(
            f"{source} has format version {fmt!r}; this raftcron "
            f"({header.get('raftcron_version', '?')} wrote it) reads format {FORMAT} only: "
            "restore it with the raftcron version that wrote it, or a newer one"
        )
    want_len, want_sha = header.get("body_bytes"), header.get("body_sha256")
    if not isinstance(want_len, int) or not isinstance(want_sha, str):
        raise BackupError(f"{source} is damaged: its header lacks body_bytes/body_sha256")
    body = memoryview(data)[end + 1 :]
    if len(body) < want_len:
        raise BackupError(
            f"{source} is truncated: its body has {len(body)} of {want_len} bytes "
            "(an interrupted copy? take or fetch the backup again)"
        )
    if len(body) > want_len:
        raise BackupError(
            f"{source} is damaged: {len(body) - want_len} bytes follow the body its header "
            "announces"
        )
    got = hashlib.sha256(body).hexdigest()
    if got != want_sha:
        raise BackupError(
            f"{source} is corrupt: the body's sha256 is {got}, the header says {want_sha}"
        )
    try:
        doc = msgpack.unpackb(body, raw=False)
    except Exception as exc:
        raise BackupError(f"{source} is damaged: its body does not decode ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("state"), bytes):
        raise BackupError(f"{source} is damaged: its body has no state")
    members = doc.get("members")
    return Backup(
        header=header,
        state=doc["state"],
        members=list(members) if isinstance(members, list) else [],
    )


def decode_state(backup: Backup, source: str = "the backup") -> State:
    try:
        return State.restore(backup.state)
    except Exception as exc:
        raise BackupError(f"{source}: its state does not decode ({exc})") from None


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600: a temporary file in the same
    directory (created 0600, exclusive), fsync, rename over ``path``, directory fsync. The
    file is never seen half-written, and never readable by others."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, FILE_MODE)  # (a umask cannot loosen it, but be explicit)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# --------------------------------------------------------------------------- restore


def derive_cluster_id(body_sha256: str, raft_addresses: list[str], resume: bool, gap: int) -> str:
    """The id a restore gives the new cluster when none is named: the same on every node
    restored from the same file into the same member addresses with the same options (so
    the nodes, each restored on its own, agree), different otherwise; never "" (a cluster
    without an id) and never the old cluster's (which was "" or another derivation)."""
    seed = "\n".join(
        ["raftcron-restore", body_sha256, *sorted(raft_addresses), f"{resume}", f"{gap}"]
    )
    return "rc-" + hashlib.sha256(seed.encode()).hexdigest()[:24]


@dataclass(frozen=True, slots=True)
class Restored:
    cluster_id: str
    state: State
    snapshot_path: Path
    leases_ended: int
    locks_ended: int


def data_dir_problem(data_dir: Path) -> str | None:
    """Why ``data_dir`` cannot be seeded (it holds anything), or None."""
    if not data_dir.exists():
        return None
    if not data_dir.is_dir():
        return f"{data_dir} exists and is not a directory"
    found = sorted(p.name for p in data_dir.iterdir())
    if found:
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        return (
            f"{data_dir} already holds data ({shown}); a restore seeds a NEW member: give it "
            "an empty or missing directory (move the old one away first if it is yours)"
        )
    return None


def restore_into(
    backup: Backup,
    data_dir: Path,
    raft_addresses: list[str],
    *,
    cluster_id: str | None = None,
    resume: bool = False,
    fence_gap: int = FENCE_GAP,
    source: str = "the backup",
) -> Restored:
    """Seed ``data_dir`` (a member's data dir, empty or missing) from ``backup``: the sealed
    state (:func:`raftcron.core.restore.seal`) as the Raft snapshot the agent loads at start,
    with ``raft_addresses`` (the new cluster file's members) as its membership."""
    from raftcron.raft.seed import seed_raft_dir

    problem = data_dir_problem(data_dir)
    if problem is not None:
        raise BackupError(problem)
    state = decode_state(backup, source)
    new_id = cluster_id or derive_cluster_id(backup.body_sha256, raft_addresses, resume, fence_gap)
    if new_id == backup.cluster_id:
        raise BackupError(
            f"the new cluster id {new_id!r} is the backed-up cluster's: a restored cluster "
            "must never be able to join the old one; name another with --cluster-id"
        )
    leases, locks = len(state.leases), len(state.locks)
    seal(state, cluster_id=new_id, fence_gap=fence_gap, resume=resume)
    path = seed_raft_dir(data_dir, state.snapshot(), raft_addresses)
    return Restored(new_id, state, path, leases_ended=leases, locks_ended=locks)
