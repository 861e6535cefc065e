"""Clean-up steps of ``raftlab grade`` that a second (or third) stop signal must not cut.

Why: after a first Ctrl-C (or SIGTERM, SIGHUP) the grader stops the running tests,
kills what is left of the run user's processes and removes the private run folder.
A second signal in the middle of that raised a new KeyboardInterrupt there and
skipped the rest: the staged code (0700, the run user's) stayed in /tmp, processes
of the run user could be left.  A second Ctrl-C means "hurry", not "leave a mess";
every step here is bounded (``kill_uid`` 10 s, the wait for the supervisors'
last sweep 60 s), so it is let finish.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tools.termination import interrupts_deferred


@contextmanager
def whole(stopping: BaseException | None) -> Iterator[None]:
    """Run the block whole: stop signals wait until its end, then act -- unless the
    command is already stopping (``stopping`` is the KeyboardInterrupt on its way
    out): what a later signal asks for is then under way, and the first signal
    keeps its say (the exit status, the last words).  A third signal is no
    different from a second."""
    try:
        with interrupts_deferred():
            yield
    except KeyboardInterrupt:
        if not isinstance(stopping, KeyboardInterrupt):
            raise
