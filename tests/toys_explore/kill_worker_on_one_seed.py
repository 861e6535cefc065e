"""Hostile toy: the bundled Raft, except that on one schedule only -- the one whose seed
is in env RAFTLAB_TOY_KILL_SEED (``Schedule.seed``) -- ``make`` sends SIGKILL to its
parent process (explore's worker).  Every other schedule runs the bundled Raft.

With several workers, other seeds are in flight when the worker dies; only the seed
whose run killed it may be blamed."""

from __future__ import annotations

import os
import signal
import sys

from raft.reference import raft as reference


def _schedule_seed() -> int | None:
    """The running schedule's seed, read from the explore runner's frames (a toy's cheat)."""
    frame = sys._getframe(1)
    while frame is not None:
        schedule = frame.f_locals.get("schedule")
        if schedule is not None and hasattr(schedule, "steps") and hasattr(schedule, "seed"):
            return schedule.seed
        frame = frame.f_back
    return None


def make(peers, me, persister, apply_ch) -> reference.Raft:
    if me == 0 and str(_schedule_seed()) == os.environ.get("RAFTLAB_TOY_KILL_SEED"):
        os.kill(os.getppid(), signal.SIGKILL)
    return reference.Raft(peers, me, persister, apply_ch)
