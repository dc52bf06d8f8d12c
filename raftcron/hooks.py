"""What a test harness may put into an agent process; nothing in production sets it.

Production modules never read test switches from the environment: a harness builds an
:class:`AgentHooks` and :func:`install`\\ s it before the agent starts
(``tests/cluster/hooked_agent.py`` does it for the cluster and chaos suites). Unset, every
field means "as in production".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from raftcron.clock import Clock
    from raftcron.raft.journal import FileOps


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentHooks:
    # The agent's clock instead of the system's (the chaos suite jumps a node's wall clock
    # with a ControlledClock).
    clock: Clock | None = None
    # The file operations of the Raft journal and snapshots (the chaos suite's power cut:
    # a CrashableFileOps that drops what was not fsynced).
    raft_fs: FileOps | None = None
    # Take a Raft snapshot after this many log entries (tests shrink it to exercise
    # snapshots; None: RaftSettings' default).
    compaction_min_entries: int | None = None


_current = AgentHooks()


def install(hooks: AgentHooks) -> None:
    """Use ``hooks`` in this process from now on (before the agent is built)."""
    global _current
    _current = hooks


def current() -> AgentHooks:
    return _current
