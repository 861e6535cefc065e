"""The private per-run folder in /tmp (``raftlab-grade-*``): made, held, removed, reclaimed.

Why: a grading run stages the submission and its scratch folder in a fresh folder
under the temporary directory (code and work, each 0700 and owned by the run's
user).  The grader removes it after the run; but a grader killed outright
(SIGKILL, the OOM killer, a power cut of the session) cannot, and nothing else
knew the folder was dead: it stayed, holding a student's code, forever.  So it is
a held folder (:mod:`tools.scratch`: a lock file that every process using the
folder holds), held by the grader from the folder's first moment and by each
run's supervisor (``--hold``, :mod:`.isolation`) to its last sweep.  A folder whose
lock can be taken exclusively is used by no live grader and no live supervisor: the
next grade run removes it (:func:`reclaim_stale`).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tools import scratch
from tools.scratch import HeldFolder

PREFIX = "raftlab-grade-"
REMOVE_WAIT_S = 60.0  # supervisors' last sweep: 10 + 10 + 5 s, with a margin for load


class RunFolder(HeldFolder):
    """A fresh private run folder, held (shared lock) by this process until removed."""

    @classmethod
    def make(cls, parent: str | Path | None = None) -> RunFolder:
        """Make ``<tmp>/raftlab-grade-XXXX`` (0711: the run user may enter, not list)."""
        return cls.create(PREFIX, parent, mode=0o711)

    def remove(self, wait_s: float = REMOVE_WAIT_S) -> bool:
        """Remove the folder once no supervisor of its runs is alive; whether it is gone.

        Waits up to ``wait_s`` for the supervisors (a stopped run's may still be
        sweeping, and a process it has not killed yet could still write in the
        folder); else a later grade run reclaims it (:meth:`HeldFolder.remove`).
        """
        return super().remove(wait_s)


def hold(lock: Path) -> int:
    """For a supervisor: hold ``lock`` (shared) while this process lives; the fd.

    Raises OSError if the folder is gone or being reclaimed (its grader is dead):
    the run must not start then.
    """
    fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(f"{lock.parent} is being removed: its grader is no longer running"
                      ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def reclaim_stale(parent: Path | None = None) -> list[Path]:
    """Remove the run folders of grade runs that are dead (no live grader or supervisor
    holds their lock); the folders removed.  Never waits."""
    return scratch.reclaim_stale(PREFIX, parent)
