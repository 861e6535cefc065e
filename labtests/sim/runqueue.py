"""How long the simulation's OS thread waited for a CPU: the machine's share of wall time.

Why: a simulated run is judged on work, not on wall time (see the limits in
:mod:`labtests.sim.scheduler`).  Its wall time splits into three parts: CPU
time (the run's work, ``time.thread_time``), time *waiting on the run queue*
(runnable, but the machine ran something else: load), and time *blocked*
(neither: the run sleeps or waits in a real call the simulation does not see,
such as a ``sleep`` bound with ``from time import sleep`` before the run).
Only the run-queue wait depends on the machine's load.  Linux reports it per
thread in ``/proc/thread-self/schedstat`` (nanoseconds on the CPU, nanoseconds
waiting on a run queue, time slices); elsewhere it is unknown (None) and the
caller must not guess.
"""

from __future__ import annotations

SCHEDSTAT = "/proc/thread-self/schedstat"


def run_delay_s() -> float | None:
    """Seconds the calling OS thread has waited on a run queue so far, or None if unknown."""
    try:
        with open(SCHEDSTAT, encoding="ascii") as f:
            fields = f.read().split()
        return int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None
