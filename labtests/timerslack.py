"""Timer slack: let the kernel fire this process's timers up to 1 ms late, together.

Why: on the 2-core VM of issue 19 one wake-up of a sleeping Python thread costs
75-135 us of CPU, and most of a graded run's threads do almost nothing when they
wake (a heartbeat, a timer-lag sample, an election timer pushed back).  Linux
lets a thread say how late its timers may fire ("timer slack", 50 us by
default) and fires the timers that fall within each other's slack with one
interrupt -- on a VM, one exit to the hypervisor instead of several.  With 1 ms
instead of 50 us, 192 concurrent 2A runs took 25-30 s of CPU instead of
37-47 s and had no inconclusive run, against 5-44 (docs/performance.md,
"Session 7", "Timer slack").

What it changes for the code under test: a sleep or timed wait may end up to
1 ms later than asked.  The lab's timing works in units of 100 ms (ten
heartbeats a second, election timeouts of hundreds of ms, an overload bound of
200 ms); scheduling alone makes timers later than that on a busy machine, and
the timer-lag probe (:mod:`labtests.timing`) measures the slack with everything
else, so a verdict never excuses more than was measured.

Set per thread; threads and processes started afterwards inherit it (isolated
peers included: the slack survives ``exec``), so the harness sets it in the
thread that runs the test before the test starts anything.  Linux only;
elsewhere, or if the kernel refuses, nothing changes.
"""

from __future__ import annotations

import sys

from labtests import libc

TIMER_SLACK_NS = 1_000_000
PR_SET_TIMERSLACK = 29
PR_GET_TIMERSLACK = 30


def coalesce_timers(slack_ns: int = TIMER_SLACK_NS) -> bool:
    """Give the calling thread (and what it starts later) ``slack_ns`` of timer slack.

    True if the kernel took it; False where there is no such setting (not Linux, no
    C library with prctl) or it was refused.  Never raises: the runs are correct
    either way, only cheaper with it.
    """
    if not sys.platform.startswith("linux") or (prctl := libc.function("prctl")) is None:
        return False
    try:
        return prctl(PR_SET_TIMERSLACK, slack_ns, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def current_slack_ns() -> int | None:
    """The calling thread's timer slack in ns, or None where it cannot be read."""
    if not sys.platform.startswith("linux") or (prctl := libc.function("prctl")) is None:
        return None
    try:
        value = prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)
    except (OSError, AttributeError):
        return None
    return value if value >= 0 else None
