"""``python -m tools.stress`` (the same as ``raftlab stress``)."""

import sys

from tools.stress.command import main

sys.exit(main())
