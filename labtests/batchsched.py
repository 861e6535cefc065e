"""Batch scheduling: a woken thread of the test waits for the running one's turn to end.

Why: under CPython's GIL only one thread of a process runs Python at a time, yet
Linux treats every wake-up of a blocked thread as urgent: the woken thread
preempts the one running (usually the very thread that woke it, still holding
the GIL), finds the GIL taken, and blocks again; the waker resumes, and so on.
A commit of the 2C churn test passes a message along a chain of threads (the
client, the leader's replicator, the network's workers, the followers'
handlers, the appliers, the tester's readers), so most of its context switches
and much of its system time were this ping-pong.  ``SCHED_BATCH`` is the Linux
policy for threads that need throughput rather than wake-up latency: a woken
batch thread does not preempt the running one; it runs when that one blocks,
yields or uses up its time slice (a few ms at most).  See docs/performance.md,
"Session 10", for the figures.

What it changes for the code under test: a wake-up may start up to a time slice
later while the CPU is busy (never later when a core is idle).  The lab's
timing works in units of 100 ms, and the timer-lag probe (:mod:`labtests.timing`)
runs under the same policy, so it measures any such delay with everything else
and a verdict never excuses more than was measured.  Nothing else changes: the
threads' order of operations is decided by the same locks and waits as before.

Set per thread; threads and processes started afterwards inherit it (isolated
peers included: the policy survives ``fork`` and ``exec``), so the harness sets it
in the thread that runs the test before the test starts anything, as it does
the timer slack (:mod:`labtests.timerslack`).  Linux only (the policy, and
``os.sched_setscheduler``); elsewhere, or if the kernel refuses, nothing changes.
Any user may switch between ``SCHED_OTHER`` and ``SCHED_BATCH``: no privilege needed.
"""

from __future__ import annotations

import os


def run_as_batch() -> bool:
    """Put the calling thread (and what it starts later) under ``SCHED_BATCH``.

    True if the thread now runs under it; False where there is no such policy, or
    the kernel refused (a container's seccomp filter), or the thread runs under a
    policy someone chose (``chrt``: real-time, idle), which is left as it is.
    Never raises: the runs are correct either way, only cheaper with it.
    """
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is None or not hasattr(os, "sched_setscheduler"):
        return False
    policy = current_policy()
    if policy == batch:
        return True
    if policy != os.SCHED_OTHER:
        return False
    try:
        os.sched_setscheduler(0, batch, os.sched_param(0))
    except (OSError, AttributeError):
        return False
    return True


def current_policy() -> int | None:
    """The calling thread's scheduling policy (``os.SCHED_*``), or None where unknown."""
    if not hasattr(os, "sched_getscheduler"):
        return None
    try:
        return os.sched_getscheduler(0)
    except OSError:
        return None
