"""The tools' rich consoles: terminal width on a terminal, 120 columns elsewhere.

Rich falls back to 80 columns when output goes to a file or a pipe (CI logs,
``| tee``), which truncates the stress and grade tables; 120 fits them.  In a
file or pipe, text is not wrapped either (``soft_wrap``): rich would otherwise cut
a long path or a rerun command mid-word with a newline, and a command copied
from a CI log must run as printed.  Tables still fit the width.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

PIPE_WIDTH = 120


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    terminal = stream.isatty()
    width = None if terminal or os.environ.get("COLUMNS") else PIPE_WIDTH
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=not terminal)
