"""How ``raftlab test`` and its child pytest find their events file and doorbell.

A module of its own, without pytest: the parent (:mod:`tools.test_run.follow`)
needs only these names, and importing the events plugin itself would load pytest
into a process that never runs a test (about 0.2 s of CPU and 15 MB per
``raftlab test``).

The events go to a file (whatever the child wrote is there when it dies); the
doorbell is the write end of a pipe the child inherits, on which it writes one
byte after each event, so that the parent can sleep until there is something to
read instead of looking every few milliseconds (:mod:`tools.test_run.follow`).
"""

from __future__ import annotations

import os
import stat

ENV_EVENTS = "RAFTLAB_TEST_EVENTS"  # set by raftlab test for its child only
ENV_DOORBELL = "RAFTLAB_TEST_DOORBELL"  # the doorbell's file descriptor number, in the child


class Doorbell:
    """The child's end of the doorbell.

    It rings only the pipe it was given: the descriptor's identity is checked at
    each ring, because the code under test runs in this process and may close a
    descriptor it does not own, after which the number can name one of its own
    files (a stray byte written there would be ours).
    """

    def __init__(self, fd: int) -> None:
        st = os.fstat(fd)
        if not stat.S_ISFIFO(st.st_mode):
            raise OSError(f"descriptor {fd} is not a pipe")
        self.fd: int | None = fd
        self._identity = (st.st_dev, st.st_ino)

    @classmethod
    def from_environment(cls) -> Doorbell | None:
        """The doorbell the parent passed down, or None (no parent waiting on one)."""
        value = os.environ.get(ENV_DOORBELL, "")
        if not value.isdigit():
            return None
        try:
            return cls(int(value))
        except OSError:
            return None

    def ring(self) -> None:
        """One byte, without blocking; after a failure the bell stays silent for good
        (the parent notices the pipe closed or quiet and looks on its own)."""
        if self.fd is None:
            return
        try:
            st = os.fstat(self.fd)
            if (st.st_dev, st.st_ino) != self._identity:
                raise OSError("the descriptor was closed and reused")
            os.write(self.fd, b".")
        except BlockingIOError:
            pass  # a full pipe is a bell already ringing: the parent has not drained it
        except OSError:
            self.fd = None
