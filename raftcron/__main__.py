"""``python -m raftcron``: the same as the ``raftcron`` command."""

import sys

from raftcron.entry import main

sys.exit(main())
