"""``python -m tests.cluster.faulty_agent agent ...``: raftcron's agent with one fault put
in its scheduler, for ``test_broken.py``: the backfill pacing of a backfill whose id
starts with "boom" raises, as ``math.ceil(1000 / 5e-324)`` did before the API refused such
a rate (``OverflowError: cannot convert float infinity to integer``). Only the leader's
planner is patched; the replicated state machine is not."""

from __future__ import annotations

import math
import sys

from raftcron import cli
from raftcron.core import planner
from raftcron.core.model import Backfill

_real = planner.backfill_ready_ms


def _faulty(bf: Backfill) -> int:
    if bf.id.startswith("boom") and bf.done:
        return bf.last_ms + math.ceil(1000 / 5e-324)  # raises OverflowError
    return _real(bf)


planner.backfill_ready_ms = _faulty

if __name__ == "__main__":
    sys.exit(cli.main())
