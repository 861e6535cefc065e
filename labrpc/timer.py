"""One thread per network that waits out the delays of asynchronous calls.

Why: a call to an unreachable server fails after a random delay of up to 7 s
(``long_delays``).  With :meth:`labrpc.network.ClientEnd.call` the caller's
thread sleeps through it, and a Raft that sends a heartbeat every 100 ms to a
disconnected peer keeps dozens of threads asleep per peer: 250 at once in
``test_many_elections_2a``.  Every thread takes one of the machine's process
ids (``kernel.pid_max``, 32768 here, shared by every process), and that, not
memory, is what 96-192 concurrent runs ran out of.
:meth:`labrpc.network.ClientEnd.call_async` parks the callback here instead:
one thread and one heap of deadlines, however many calls wait.

A callback runs on this thread, so it must not block for long (the reference
Raft's take its lock briefly).  It runs exactly once: at its deadline, or at
once when its end is deleted or the timer is closed (network cleanup), as the
blocking call's wait ends early then.  Only ``threading`` and ``heapq`` are
used, ``threading`` looked up at the first :meth:`Timer.after`, so simulated time
can stand in for it; a timer never used makes no lock at all, so a network whose
calls all block leaves a simulated run exactly as it was.
"""

from __future__ import annotations

import _thread
import heapq
import itertools
import threading
import time
import traceback
from collections.abc import Callable, Hashable
from typing import Any

from labrpc.wake import real_threading

Callback = Callable[[Any], None]


class Timer:
    """Run ``callback(None)`` after a delay, on one lazily started daemon thread."""

    def __init__(self, name: str = "labrpc-timer") -> None:
        self._name = name
        self._guard = _thread.allocate_lock()  # only guards making _cond, never blocks long
        self._cond: threading.Condition | _Wakeup | None = None
        self._heap: list[tuple[float, int, Hashable, Callback]] = []
        self._seq = itertools.count()  # ties keep submission order
        self._thread: threading.Thread | None = None
        self._closed = False
        self._clock = time.monotonic

    def after(self, delay: float, key: Hashable, callback: Callback) -> None:
        """Run ``callback(None)`` on the timer thread in ``delay`` seconds (at once, on
        this thread, once the timer is closed); ``key`` names the end, for :meth:`fire`."""
        with self._guard:
            if self._cond is None:
                # Real time: a held lock as the wake-up (one waiter, this thread); when
                # threading is patched, a Condition of the patched kind, as always, so a
                # simulated run's schedule (every lock operation) stays exactly the same.
                self._cond = (_Wakeup() if real_threading()
                              else threading.Condition(threading.Lock()))
            cond = self._cond
        with cond:
            if not self._closed:
                heapq.heappush(self._heap, (self._clock() + delay, next(self._seq), key,
                                            callback))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self._name,
                                                     daemon=True)
                    self._thread.start()
                elif self._heap[0][3] is callback:
                    cond.notify()  # the new deadline is the earliest
                return
        _run_one(callback)  # closed: the call fails at once, as after cleanup

    def fire(self, key: Hashable) -> None:
        """Make every callback registered under ``key`` due now (its end was deleted)."""
        cond = self._cond
        if cond is None:
            return  # nothing was ever parked
        with cond:
            now = self._clock()
            changed = False
            for i, (at, seq, k, cb) in enumerate(self._heap):
                if k == key and at > now:
                    self._heap[i] = (now, seq, k, cb)
                    changed = True
            if changed:
                heapq.heapify(self._heap)
                cond.notify()

    def close(self) -> None:
        """Run every pending callback now and let the thread end (network cleanup)."""
        with self._guard:
            self._closed = True
            cond = self._cond
        if cond is None:
            return
        with cond:
            pending, self._heap = self._heap, []
            cond.notify()
        for _, _, _, callback in sorted(pending):
            _run_one(callback)

    def _run(self) -> None:
        cond = self._cond
        assert cond is not None  # made before the thread is started
        while True:
            with cond:
                while True:
                    if not self._heap:
                        if self._closed:
                            return
                        cond.wait()
                        continue
                    wait = self._heap[0][0] - self._clock()
                    if wait <= 0:
                        break
                    cond.wait(wait)
                _, _, _, callback = heapq.heappop(self._heap)
            _run_one(callback)


class _Wakeup:
    """The part of ``threading.Condition`` the timer uses, for its one waiting thread.

    ``wait`` releases the mutex, blocks on a held lock with a timeout and takes the
    mutex again; ``notify`` releases the held lock.  Every deadline costs the timer
    thread one wake-up, and a Condition's ``wait(timeout)`` makes, takes and drops a
    fresh lock each time (``benchmarks/wakeup_cost.py``: 61 us a wake-up for a
    held lock against 78 us for ``Event.wait``, which is a Condition's).  A notify
    with nobody waiting is kept (the next wait returns at once), which the timer's
    loop, re-reading the heap after every wait, turns into one more look.
    """

    __slots__ = ("_mu", "_wake")

    def __init__(self) -> None:
        self._mu = _thread.allocate_lock()
        self._wake = _thread.allocate_lock()
        self._wake.acquire()

    def __enter__(self) -> bool:
        return self._mu.acquire()

    def __exit__(self, *exc: object) -> None:
        self._mu.release()

    def wait(self, timeout: float | None = None) -> None:
        self._mu.release()
        try:
            self._wake.acquire(True, -1 if timeout is None else timeout)
        finally:
            self._mu.acquire()

    def notify(self) -> None:
        try:
            self._wake.release()
        except RuntimeError:
            pass  # already released: a wake-up is pending


def _run_one(callback: Callback) -> None:
    try:
        callback(None)
    except Exception:  # noqa: BLE001 - one broken callback must not stop the others
        traceback.print_exc()
