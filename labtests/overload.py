"""The verdict "inconclusive": a failure on a machine too loaded for the lab's timing.

A failing graded test is *inconclusive (machine overloaded: timers late by N ms)*
instead of failed when, during the test, the machine made this process's timers
late by :data:`LAG_BOUND_MS` or more (measured by :mod:`labtests.timing`; lag the
process caused itself by using the CPU does not count).  A passing test stays a
pass whatever the lag.  The bound and its reasoning are in docs/harness.md
("Timer lag and inconclusive runs"): heartbeats come at most every 100 ms (the
lab's ten a second) and election timeouts start around 300 ms, so a leader's
heartbeat 200 ms late uses up the whole slack and a correct Raft sees a spurious
election; an idle machine measures a few ms, a busy one tens of ms.

Some failures no amount of lateness can cause in a correct Raft: a safety
violation (two leaders in one term, different commands committed at one index,
an apply out of order, a commit without a majority) or an error in the
implementation itself (an implementation that cannot be imported, an exception,
an argument that cannot cross the network
or cannot be encoded, an unknown method, a cleanup that did not end because a
``kill()`` never returned: the harness waits 10 s for it plus ten times the
machine's measured timer lag, so lateness alone cannot cause it).
These stay failures on any machine.

Exit status: a pytest run whose only failures are inconclusive exits with
:data:`EXIT_INCONCLUSIVE` (6; pytest's own codes are 0-5), so scripts can tell
"rerun on a quieter machine" from "the Raft is wrong".
"""

from __future__ import annotations

import re
from typing import Any

from labtests.timing import LagSummary

LAG_BOUND_MS = 200.0
EXIT_INCONCLUSIVE = 6
VERDICT_KEY = "verdict"  # user property; value INCONCLUSIVE on an inconclusive failure
DETAIL_KEY = "verdict_detail"  # user property: what overloaded means when not timer lag (--sim)
INCONCLUSIVE = "inconclusive"

# Failures that timing cannot explain: they stay failures however late the timers were.
NEVER_TIMING = re.compile(
    r"has \d+ \(>1\) leaders"
    r"|committed values do not match"
    r"|apply error"
    r"|committed but no majority"
    r"|snapshot doesn't match"
    r"|cannot cross (?:a|the) network"  # labrpc.codec, and the tester's wording of it
    r"|cannot be encoded"  # labrpc.codec: pickle refused a value
    r"|cleanup did not end"  # labtests.context: a kill() or thread that never returns
    r"|unknown method"
    r"|uncaught exception in thread"
    r"|RPC handler .* raised"
    r"|kill\(\) raised"
    r"|lacks required method"
    r"|cannot import the Raft implementation"  # labtests.impl_loader
    r"|wrong command type"
)


OUT_OF_THREADS = re.compile(r"can't start new thread")
MANY_THREADS = 1000  # a process's share of the machine's threads when its limit is unknown


def machine_thread_limit() -> int | None:
    """How many threads this machine lets exist at once, or None if it cannot be read.

    Every thread takes a pid, so the least of the kernel's ``pid_max`` and
    ``threads-max``, the user's ``RLIMIT_NPROC`` and a cgroup's ``pids.max``.
    """
    limits: list[int] = []
    for path in ("/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max",
                 "/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/pids/pids.max"):
        try:
            with open(path) as f:
                limits.append(int(f.read().strip()))
        except (OSError, ValueError):  # absent, or "max": no limit there
            pass
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NPROC)[0]
        if soft != resource.RLIM_INFINITY:
            limits.append(soft)
    except (ImportError, OSError, ValueError):
        pass
    return min(limits) if limits else None


def many_threads() -> int:
    """A thread count at which running out of threads is this process's own doing.

    A quarter of the machine's limit: a Raft that leaks threads until the machine
    refuses more holds most of them itself, while a correct Raft among a hundred
    parallel runs holds a small share (the reference Raft peaks at about 1,100 in
    ``test_many_elections_2a`` when the machine lags by a second).
    """
    limit = machine_thread_limit()
    return max(MANY_THREADS, limit // 4) if limit else MANY_THREADS


def overloaded(summary: LagSummary, bound_ms: float = LAG_BOUND_MS) -> bool:
    """Whether the machine made timers late beyond what the lab's timing tolerates."""
    return summary.measured and summary.max_ms >= bound_ms


def timing_can_explain(message: str) -> bool:
    """False for failures no lateness can cause in a correct Raft (see module doc)."""
    return NEVER_TIMING.search(message) is None


def is_inconclusive(summary: LagSummary, message: str) -> bool:
    """A failure with ``message`` during which the machine lagged as ``summary`` says.

    One failure that is not about timing counts too: a thread that could not be
    started (``can't start new thread``) on an overloaded machine while this
    process had fewer than :func:`many_threads` threads (a quarter of the machine's
    limit) -- the machine ran out of threads (a limit shared by every process), not
    this Raft.  A Raft that leaks threads until the machine refuses more still fails.
    """
    if not overloaded(summary):
        return False
    if OUT_OF_THREADS.search(message):
        return summary.threads_max < many_threads()
    return timing_can_explain(message)


def verdict_text(summary: LagSummary) -> str:
    """The words every tool prints for an inconclusive run."""
    return f"inconclusive (machine overloaded: timers late by {summary.max_ms:.0f} ms)"


def inconclusive_text(props: dict[str, Any]) -> str | None:
    """The verdict text from a report's user properties, or None if not inconclusive."""
    if props.get(VERDICT_KEY) != INCONCLUSIVE:
        return None
    if props.get(DETAIL_KEY):
        return f"inconclusive (machine overloaded: {props[DETAIL_KEY]})"
    return f"inconclusive (machine overloaded: timers late by {props['timer_lag_max_ms']:.0f} ms)"
