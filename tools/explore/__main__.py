"""``python -m tools.explore``: the same as ``raftlab explore``."""

import sys

from tools.explore.command import main

sys.exit(main())
