"""``python -m tests.cluster.hooked_agent agent ...``: raftcron's agent with the test hooks
of :mod:`raftcron.hooks` put in by the harness (production modules read no test switch
from the environment). Run through :meth:`tests.cluster.harness.Cluster.use_hooks`.

The harness passes them as environment variables, read here and only here:

* ``RAFTCRON_CLOCK_CONTROL=FILE``: the agent's clock is a :class:`ControlledClock` (the
  number in FILE, seconds, is added to its wall clock; the chaos suite's clock nemeses).
* ``RAFTCRON_CHAOS_POWER_CUT=1``: the journal and snapshots go through a
  :class:`CrashableFileOps`, and SIGUSR2 becomes a power cut: every byte not fsynced is
  dropped from the files (names not made durable by a directory fsync vanish) and the
  process exits at once with status 137 (the chaos suite's power-loss nemesis).
* ``RAFTCRON_COMPACT_ENTRIES=N``: a Raft snapshot every N log entries (tests that
  exercise snapshots).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from raftcron import cli, hooks
from raftcron.clock import ControlledClock
from raftcron.raft.journal import CrashableFileOps

CLOCK_CONTROL = "RAFTCRON_CLOCK_CONTROL"
POWER_CUT = "RAFTCRON_CHAOS_POWER_CUT"
COMPACT_ENTRIES = "RAFTCRON_COMPACT_ENTRIES"


def power_cut_fs() -> CrashableFileOps:
    fs = CrashableFileOps(real_fsync=True)

    def cut(signum: int, frame: object) -> None:
        fs.power_cut()
        os._exit(137)

    signal.signal(signal.SIGUSR2, cut)
    logging.getLogger("raftcron.agent").warning(
        "%s=1: SIGUSR2 simulates a power cut (chaos testing only)", POWER_CUT
    )
    return fs


def from_environment() -> hooks.AgentHooks:
    control = os.environ.get(CLOCK_CONTROL)
    entries = os.environ.get(COMPACT_ENTRIES)
    return hooks.AgentHooks(
        clock=ControlledClock(Path(control)) if control else None,
        raft_fs=power_cut_fs() if os.environ.get(POWER_CUT) == "1" else None,
        compaction_min_entries=int(entries) if entries else None,
    )


if __name__ == "__main__":
    hooks.install(from_environment())
    sys.exit(cli.main())
