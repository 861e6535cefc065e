"""How late this process's timers fire during a test: the harness's measure of overload.

The graded tests are timing-based: a leader's heartbeat that fires 300 ms late
looks, to its followers, like a dead leader.  On a machine asked to run more
than it can (96 parallel runs on 2 cores), a correct Raft fails this way and
nothing in its code is wrong.  So instead of guessing from the load average,
the harness *measures* what the Raft experiences: a light sampler in the
test process (a job of its one harness thread, :mod:`labtests.ticker`) waits a
fixed interval (:data:`SAMPLE_INTERVAL_S`) over and over and records how much
later than asked each wait returned.  A Raft's own timers (sleeps, timed waits
on conditions) are late by the same amount, because the lateness comes from the
operating system not running the process, or from the thread that holds the
GIL having been preempted.

Lateness the process caused itself is set apart.  A Raft that spins the CPU
makes the sampler wait for the GIL too, but then the process was *running*.
So each sample also reads the process's CPU time, and only the part of the
lateness during which the process did not run counts as the machine's:
``machine lag = lateness - CPU time the process used meanwhile`` (never below
0).  On an idle machine a CPU-hungry Raft's lateness is all its own; when the
machine runs other work instead of this process, the lateness is the
machine's.  The machine's lag is what the verdict (:mod:`labtests.overload`)
and the leak check's grace (:func:`leak_grace_s`) use, so a CPU-hungry Raft
cannot excuse itself.

Cost: one wake-up every 50 ms, about 0.1 ms of CPU each on the 2-core VM of
issue 19 (``benchmarks/wakeup_cost.py``): about 0.2 % of a core per test
process.  Why not one probe for many processes: a process's threads also wait
for the GIL behind a thread the machine preempted while holding it, and only a
probe inside the process sees that (docs/performance.md, "Session 7": the
workers' own probes saw a median 3.7x the lag a shared probe saw).  In
simulated time there is no lateness to measure (virtual time advances only when
every thread waits), so the sampler is not started there and reports
``measured=False``.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labtests import ticker

SAMPLE_INTERVAL_S = 0.05  # fine enough next to a 100 ms heartbeat; 20 wake-ups a second
LEAK_GRACE_LAG_FACTOR = 10.0  # a thread needs a few late wake-ups to notice kill() and return
LEAK_GRACE_CAP_S = 60.0  # however late the timers, the leak check ends (the watchdog is 180 s)


def loadavg() -> tuple[float, float, float]:
    """The 1, 5 and 15-minute load averages (zeros where the platform has none)."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def _percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0 < q <= 1) of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class LagSummary:
    """What the sampler saw during one test (milliseconds, rounded to 0.1)."""

    measured: bool  # False in simulated time (no sampler ran)
    samples: int = 0
    max_ms: float = 0.0  # the machine's: late while the process did not keep a core busy
    p99_ms: float = 0.0  # 99th percentile of the machine's lag over all samples
    self_max_ms: float = 0.0  # the process's own part: late while it was using the CPU
    threads_max: int = 0  # the most threads this process had at a sample
    loadavg_start: tuple[float, ...] = ()
    loadavg_end: tuple[float, ...] = ()

    def properties(self) -> list[tuple[str, Any]]:
        """The ``report.user_properties`` entries (documented in docs/harness.md)."""
        if not self.measured:
            return [("timer_lag_measured", False)]
        return [
            ("timer_lag_measured", True),
            ("timer_lag_max_ms", self.max_ms),
            ("timer_lag_p99_ms", self.p99_ms),
            ("timer_lag_self_max_ms", self.self_max_ms),
            ("timer_lag_samples", self.samples),
            ("threads_max", self.threads_max),
            ("loadavg_start", list(self.loadavg_start)),
            ("loadavg_end", list(self.loadavg_end)),
        ]


class LagSampler:
    """Measures how late a fixed-interval wait returns (see module doc), as a job of the
    process's one harness thread (:mod:`labtests.ticker`) shared with the timeline's
    supervisor: no thread of its own to start, wake and end with every test.

    ``clock`` and ``cpu_clock`` are seams for tests; the harness uses the defaults.
    """

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.process_time,
                 on_new_max: Callable[[float], None] | None = None) -> None:
        self.interval_s = interval_s
        # Told each new worst machine lag (s), on the harness thread: the CPU pin's
        # release (labtests.cpupin).  Rare (only a new maximum), so free per sample.
        self.on_new_max = on_new_max
        self.clock = clock
        self.cpu_clock = cpu_clock
        self.machine_lags: list[float] = []  # seconds, one per sample
        self.self_max_s = 0.0
        self._max_s = 0.0
        self._job: ticker.Job | None = None
        self._t0 = self._c0 = 0.0
        self._load_start: tuple[float, ...] = ()
        self.threads_max = 0

    def start(self) -> LagSampler:
        """Start sampling: a job of the process's one harness thread (:mod:`labtests.ticker`)."""
        self._load_start = loadavg()
        self._t0, self._c0 = self.clock(), self.cpu_clock()
        self._job = ticker.TICKER.at(self._due(), self._tick, name="timer-lag")
        return self

    @property
    def machine_max_s(self) -> float:
        """The worst machine lag so far (read while the test runs: the leak check's grace)."""
        return self._max_s

    def record(self, lag_s: float, cpu_s: float) -> None:
        """Account one sample: ``lag_s`` late; the process used ``cpu_s`` of CPU meanwhile."""
        lag_s = max(0.0, lag_s)
        machine = max(0.0, lag_s - max(0.0, cpu_s))
        self.self_max_s = max(self.self_max_s, lag_s - machine)
        self.machine_lags.append(machine)
        if machine > self._max_s:
            self._max_s = machine
            if self.on_new_max is not None:
                self.on_new_max(machine)

    def _tick(self) -> float | None:
        """One sample: how much later than asked this wake-up came; when to wake next."""
        t1, c1 = self.clock(), self.cpu_clock()
        self.record(t1 - self._t0 - self.interval_s, c1 - self._c0)
        self.threads_max = max(self.threads_max, threading.active_count())
        self._t0, self._c0 = t1, c1  # the next wait starts now (one clock read less per tick)
        return self._due()

    def _due(self) -> float:
        """When the wait that started at ``_t0`` ends, on the harness thread's clock."""
        return (self._t0 if self.clock is time.monotonic else time.monotonic()) + self.interval_s

    def stop(self) -> LagSummary:
        """Stop sampling (at once: the job is taken off the harness thread) and summarise."""
        if self._job is not None:
            ticker.TICKER.cancel(self._job)
        return self.summary()

    def summary(self) -> LagSummary:
        lags = list(self.machine_lags)
        return LagSummary(
            measured=True, samples=len(lags),
            max_ms=round(1000 * max(lags, default=0.0), 1),
            p99_ms=round(1000 * _percentile(lags, 0.99), 1),
            self_max_ms=round(1000 * self.self_max_s, 1),
            threads_max=self.threads_max,
            loadavg_start=tuple(round(x, 2) for x in self._load_start),
            loadavg_end=tuple(round(x, 2) for x in loadavg()),
        )


class NoSampler:
    """Stands in for the sampler where nothing is measured (simulated time)."""

    machine_max_s = 0.0

    def stop(self) -> LagSummary:
        return LagSummary(measured=False)

    def summary(self) -> LagSummary:
        return LagSummary(measured=False)


Sampler = LagSampler | NoSampler


def simulated() -> bool:
    """Whether a simulation is active in this process (without importing the engine)."""
    state = sys.modules.get("labtests.sim.state")
    return state is not None and getattr(state, "SCHED", None) is not None


def start_sampler(sim: bool = False,
                  on_new_max: Callable[[float], None] | None = None) -> Sampler:
    """The sampler of one test: measuring in real time, a stand-in in simulated time.

    ``on_new_max`` is told every new worst machine lag (see :class:`LagSampler`).
    Module-level so a self-test can replace it (to fake an overloaded machine).
    """
    if sim or simulated():
        return NoSampler()
    return LagSampler(on_new_max=on_new_max).start()


def leak_grace_s(base_s: float, sampler: Sampler) -> float:
    """How long the leak check waits for threads: ``base_s`` plus ten times the machine's lag.

    On an idle machine (lag of a few ms) this is ``base_s`` plus a few tens of ms:
    as strict as before.  When the machine starves the process, a killed Raft's
    threads need that many late wake-ups to see they are killed and return, so the
    wait grows with what was measured -- and stops growing at LEAK_GRACE_CAP_S.
    """
    return min(LEAK_GRACE_CAP_S, base_s + LEAK_GRACE_LAG_FACTOR * sampler.machine_max_s)
