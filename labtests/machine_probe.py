"""One timer-lag probe for many forked test processes, instead of one in each.

Why: the harness judges a failure *inconclusive* when the machine made timers
late (:mod:`labtests.overload`), and measures that lateness with a probe that
wakes every 50 ms (:mod:`labtests.timing`).  One wake-up of a Python thread
costs 75-135 us of CPU on the 2-core machine of issue 19, so with 192 forked
stress workers the probes alone took about half a core -- 3 840 wake-ups a
second that measured the same thing 192 times: how late the machine runs a
process that sleeps.  Here one small process (:class:`MachineProbe`) takes that
measurement for all of them and writes every sample to memory the workers
share with it; a worker's test reads the samples taken while it ran
(:class:`SharedLagView`), which costs nothing while the test runs.

What is measured is the same quantity as before: how much later than asked a
fixed-interval sleep returned, minus the CPU the probing process used
meanwhile (its own, here: nothing but the probe).  A process that sleeps and
wakes is delayed by the operating system alike whichever process it is, so a
worker's Raft sees the machine's lag the probe records.  What the shared probe
cannot see is lateness inside one worker -- its threads waiting for the GIL
behind each other -- which the per-process probe set apart as the process's
own and never counted as the machine's anyway (``timer_lag_self_max_ms`` is
therefore not measured with it).

Who uses it: the local stress backend (``tools/stress/backends/forked.py``),
which starts the probe before it forks its workers and installs it, so every
worker inherits both the shared memory and :func:`installed`.  Everything else
(``pytest``, ``raftlab test``, xdist and Dask workers) keeps the per-process
probe.

Memory layout (little-endian): a 64-bit count of samples written, then
:data:`SLOTS` slots of (64-bit sample number, 64-bit float monotonic time, 64-bit
float machine lag in seconds); sample ``k`` lives in slot ``k % SLOTS``.  One
writer; a reader checks each slot's sample number, so a slot overwritten while
it read is skipped instead of misread.  ``time.monotonic`` is the same clock in
every process of the machine (CLOCK_MONOTONIC), so sample times compare with a
worker's own.
"""

from __future__ import annotations

import mmap
import os
import signal
import struct
import threading
import time

from labtests import ticker
from labtests.isolation.procs import die_with_parent
from labtests.timing import SAMPLE_INTERVAL_S, LagSummary, loadavg, percentile

SLOTS = 1 << 14  # 13.6 minutes of 50 ms samples: longer than any test (the watchdog is 180 s)
_COUNT = struct.Struct("<Q")
_SLOT = struct.Struct("<Qdd")
THREADS_INTERVAL_S = 0.5  # a worker's own thread count (see SharedLagView) is read this often
STALE_S = 5.0  # a test this long with no sample at all means the probe is gone


class MachineProbe:
    """The probe process and the memory it writes its samples to.

    :meth:`start` forks it (from a process with one thread: the stress session
    before it forks its workers); it dies with its parent (``PR_SET_PDEATHSIG``)
    and at :meth:`stop`.
    """

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._mem = mmap.mmap(-1, _COUNT.size + SLOTS * _SLOT.size)  # MAP_SHARED, anonymous
        self.pid: int | None = None

    # -- the writer (the probe process) ----------------------------------------------------

    def start(self) -> MachineProbe:
        """Fork the probe process; returns at once in the parent."""
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the probe: never returns into the caller's code
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                die_with_parent()
                if os.getppid() == parent:
                    self._loop()
            finally:
                os._exit(0)
        self.pid = pid
        return self

    def _loop(self) -> None:
        """Sleep a fixed interval, over and over; write how late each sleep returned."""
        interval = self.interval_s
        t0, c0 = time.monotonic(), time.process_time()
        k = 0
        while True:
            time.sleep(interval)
            t1, c1 = time.monotonic(), time.process_time()
            lateness = t1 - t0 - interval
            self.write(k, t1, max(0.0, lateness - max(0.0, c1 - c0)))
            k += 1
            t0, c0 = t1, c1

    def write(self, k: int, t: float, lag_s: float) -> None:
        """Store sample ``k`` (slot first, then the count readers go by)."""
        _SLOT.pack_into(self._mem, _COUNT.size + (k % SLOTS) * _SLOT.size, k, t, lag_s)
        _COUNT.pack_into(self._mem, 0, k + 1)

    def stop(self) -> None:
        """End the probe process and reap it (idempotent)."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    # -- the readers (the workers) --------------------------------------------------------

    def count(self) -> int:
        """How many samples have been written so far."""
        return _COUNT.unpack_from(self._mem, 0)[0]

    def samples(self, first: int, stop: int | None = None) -> list[tuple[float, float]]:
        """(time, machine lag s) of samples ``first`` .. ``stop - 1`` still in memory."""
        end = self.count() if stop is None else stop
        out = []
        for k in range(max(first, end - SLOTS), end):
            seq, t, lag = _SLOT.unpack_from(self._mem, _COUNT.size + (k % SLOTS) * _SLOT.size)
            if seq == k:  # else overwritten meanwhile (the reader fell SLOTS behind)
                out.append((t, lag))
        return out


_INSTALLED: MachineProbe | None = None


def install(probe: MachineProbe | None) -> None:
    """Make ``start_sampler`` read ``probe`` in this process and its forks (None: stop)."""
    global _INSTALLED
    _INSTALLED = probe


def installed() -> MachineProbe | None:
    return _INSTALLED


class SharedLagView:
    """One test's sampler when a :class:`MachineProbe` is installed: the probe's samples
    taken while the test ran.  Same interface as :class:`labtests.timing.LagSampler`.

    The one thing a worker still measures itself is how many threads it has
    (``threads_max``: the overload verdict excuses a ``can't start new thread``
    only for a process that had few), read every :data:`THREADS_INTERVAL_S` by a
    job of its harness thread -- two wake-ups a second instead of twenty.
    """

    def __init__(self, probe: MachineProbe) -> None:
        self.probe = probe
        self.threads_max = 0
        self._first = 0
        self._job: ticker.Job | None = None
        self._load_start: tuple[float, ...] = ()
        self._t_start = 0.0

    def start(self) -> SharedLagView:
        self._load_start = loadavg()
        self._t_start = time.monotonic()
        self._first = self.probe.count()
        self._count_threads()
        self._job = ticker.TICKER.at(time.monotonic() + THREADS_INTERVAL_S, self._tick,
                                     name="thread-count")
        return self

    def _count_threads(self) -> None:
        self.threads_max = max(self.threads_max, threading.active_count())

    def _tick(self) -> float:
        self._count_threads()
        return time.monotonic() + THREADS_INTERVAL_S

    def _lags(self) -> list[float]:
        return [lag for _, lag in self.probe.samples(self._first)]

    @property
    def machine_max_s(self) -> float:
        """The worst machine lag so far (read while the test runs: the leak check's grace)."""
        return max(self._lags(), default=0.0)

    def stop(self) -> LagSummary:
        if self._job is not None:
            ticker.TICKER.cancel(self._job)
            self._job = None
        self._count_threads()
        return self.summary()

    def summary(self) -> LagSummary:
        lags = self._lags()
        if not lags and time.monotonic() - self._t_start > STALE_S:
            # The probe wrote nothing for a whole test: it is gone (killed, or never ran).
            # Nothing was measured, so no failure of this test can be excused as overload.
            return LagSummary(measured=False)
        return LagSummary(
            measured=True, samples=len(lags),
            max_ms=round(1000 * max(lags, default=0.0), 1),
            p99_ms=round(1000 * percentile(lags, 0.99), 1),
            self_max_ms=0.0, threads_max=self.threads_max, probe="machine",
            loadavg_start=tuple(round(x, 2) for x in self._load_start),
            loadavg_end=tuple(round(x, 2) for x in loadavg()),
        )
