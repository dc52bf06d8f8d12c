"""The ``raftcron`` command's entry point (``[project.scripts]``, ``python -m raftcron``).

``raftcron lock`` is often the whole of a crontab line and most of its run time is start-up,
so its plain forms (:func:`raftcron.lockcmd.parse_fast`) go straight to
:mod:`raftcron.lockcmd` without importing :mod:`raftcron.cli` (argparse, json and the
other verbs), and the process ends with ``os._exit`` once its output is flushed: nothing
of the lock path needs the interpreter's clean-up (no threads, no atexit handlers), which
costs 2-4 ms here. Everything else, ``raftcron lock --help`` and usage errors included, is
:func:`raftcron.cli.main`, unchanged.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def lock_fast(words: Sequence[str]) -> int | None:
    """``raftcron lock``'s exit code if ``words`` (after ``raftcron``) are a plain lock
    call, which it then ran; None for everything else."""
    if words[:1] != ["lock"]:
        return None
    from raftcron import lockcmd

    args = lockcmd.parse_fast(words[1:])
    if args is None:
        return None
    try:
        return lockcmd.run(args)
    except KeyboardInterrupt:  # as raftcron.cli.main answers it
        return 130


def main() -> int:
    words = sys.argv[1:]
    code = lock_fast(words)
    if code is not None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    from raftcron.cli import main as cli_main

    return cli_main(words)


if __name__ == "__main__":
    sys.exit(main())
