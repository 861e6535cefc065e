"""Signals the tests send must reach the commands they start, however pytest was started.

Several tests stop a command they started (``raftlab test``, ``stress``, ``grade``,
``explore``) with SIGINT or SIGHUP and check what it does.  A process started with a
signal *ignored* passes that on to every program it executes: a background job of a
non-interactive shell ignores SIGINT, ``nohup`` ignores SIGHUP.  Run that way, the
commands under test were deaf to the very signals the tests send, and those tests
failed for a reason that has nothing to do with the code (seen in a CI dry run
started with ``setsid nohup ... &``).

So an ignored SIGINT or SIGHUP becomes a handler that does nothing: pytest itself
still ignores the signal, as whoever started it wanted, but a handler (unlike
``SIG_IGN``) is reset to the default when a child executes a program, so every
command a test starts gets the default action.
"""

from __future__ import annotations

import signal
from types import FrameType

RESTORED = (signal.SIGINT, signal.SIGHUP)


def _still_ignored(_signum: int, _frame: FrameType | None) -> None:
    """Ignore the signal in this process only (children start with the default)."""


def pytest_configure(config: object) -> None:
    for sig in RESTORED:
        if signal.getsignal(sig) == signal.SIG_IGN:
            signal.signal(sig, _still_ignored)
