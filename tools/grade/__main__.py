"""``python -m tools.grade`` (the same as ``raftlab grade``)."""

import sys

from tools.grade.command import main

sys.exit(main())
