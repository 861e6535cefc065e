"""The tools' rich consoles: terminal width on a terminal, 120 columns elsewhere.

Rich falls back to 80 columns when output goes to a file or a pipe (CI logs,
``| tee``), which truncates the stress and grade tables; 120 fits them.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPE_WIDTH = 120


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(stderr=stderr, highlight=False, width=width)
