"""Seed a member's Raft directory offline (``raftcron snapshot restore``).

The agent keeps Raft's files in ``<data dir>/raft`` (``raftcron/node.py``): the journal
(``raft.journal`` and its ``.meta``) and the snapshot ``snapshot.bin`` (``SnapshotStore``,
``raftcron/raft/journal.py``). A seeded directory holds only the snapshot, whose last
applied entry is pysyncobj's no-op at index :data:`SEED_INDEX`, term 0; at start the agent
loads it as it loads any snapshot (pysyncobj puts the two entries it names in the new
journal and applies nothing before them). Every member of the new cluster is seeded with
the same bytes, so their logs agree on that prefix and the first leader of term 1 goes on
from there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from raftcron.raft.journal import Entry, FileOps, encode_snapshot, write_file_durably
from raftcron.raft.seam import NO_OP_ENTRY

RAFT_SUBDIR: Final = "raft"  # raftcron/node.py: RaftSettings(data_dir=data_dir / "raft")
SNAPSHOT_FILE: Final = "snapshot.bin"  # raftcron/raft/node.py: fullDumpFile
# Not 2: the entry before the last one (index SEED_INDEX - 1, term 0) must not be pysyncobj's
# first entry of every new log, (no-op, 1, 0). With SEED_INDEX 2 a new member started empty
# (raftcron members add) held that entry, so the leader sent it the log after it instead of
# the snapshot, and it never got the restored state (found by bench/membership_catchup.py).
SEED_INDEX: Final = 3
_NO_OP: Final = NO_OP_ENTRY


def seed_entries() -> tuple[Entry, Entry]:
    """(last applied, previous) entries of a seeded snapshot."""
    return (_NO_OP, SEED_INDEX, 0), (_NO_OP, SEED_INDEX - 1, 0)


def seed_raft_dir(data_dir: Path, state: bytes, raft_addresses: list[str]) -> Path:
    """Write ``<data_dir>/raft/snapshot.bin`` holding ``state`` (directories 0700, the file
    0600, fsynced); the caller checked that ``data_dir`` is empty or missing."""
    raft = data_dir / RAFT_SUBDIR
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    raft.mkdir(mode=0o700)
    fs = FileOps()
    last, prev = seed_entries()
    blob = encode_snapshot(last, prev, sorted(raft_addresses), state)
    path = raft / SNAPSHOT_FILE
    write_file_durably(fs, str(path), blob, tmp_path=str(path) + ".rc-writing")
    fs.fsync_dir(str(data_dir))
    os.chmod(path, 0o600)
    return path
