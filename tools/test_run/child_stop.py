"""The Ctrl-C of ``raftlab test``'s child: one stop, however many SIGINTs reach it.

Why: the command passes every first stop on to its child as SIGINT -- SIGTERM and
SIGHUP, which reach the command alone, and Ctrl-C too, which a terminal sends to the
whole process group but ``kill -INT`` to the command alone (that one used to be
ignored until the whole suite had run, and the command then exited 0).  After a Ctrl-C
at the terminal the child so gets two SIGINTs a moment apart; the second one raised a
second ``KeyboardInterrupt`` inside pytest's handling of the first (its report, the
running test's clean-up).  Here the first SIGINT stops pytest as before and the later
ones are dropped: a second stop is the command's to act on, and it kills the child.

The command starts the child with SIGINT blocked (:func:`tools.test_run.follow._child_setup`)
and :func:`install` unblocks it, so a Ctrl-C that came while the interpreter started is
one stop here, not a traceback from the middle of an import.  This module imports
nothing from pytest: it runs first in the child.
"""

from __future__ import annotations

import signal
from types import FrameType

EXIT_INTERRUPTED = 2  # pytest's own status for a session stopped by Ctrl-C

_stopped = False


def _first_sigint_only(signum: int, frame: FrameType | None) -> None:
    global _stopped
    if _stopped:
        return
    _stopped = True
    raise KeyboardInterrupt


def install() -> None:
    """In the child, first thing: SIGINT raises ``KeyboardInterrupt`` once, and is
    unblocked."""
    signal.signal(signal.SIGINT, _first_sigint_only)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
