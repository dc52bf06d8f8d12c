"""``python -m raftcron``: the same as the ``raftcron`` command."""

import sys

from raftcron.cli import main

sys.exit(main())
