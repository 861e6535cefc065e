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
used, ``threading`` looked up when the timer is made, so simulated time can
stand in for it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import traceback
from collections.abc import Callable, Hashable
from typing import Any

Callback = Callable[[Any], None]


class Timer:
    """Run ``callback(None)`` after a delay, on one lazily started daemon thread."""

    def __init__(self, name: str = "labrpc-timer") -> None:
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Hashable, Callback]] = []
        self._seq = itertools.count()  # ties keep submission order
        self._thread: threading.Thread | None = None
        self._closed = False
        self._clock = time.monotonic

    def after(self, delay: float, key: Hashable, callback: Callback) -> None:
        """Run ``callback(None)`` on the timer thread in ``delay`` seconds (at once, on
        this thread, once the timer is closed); ``key`` names the end, for :meth:`fire`."""
        with self._cond:
            if not self._closed:
                heapq.heappush(self._heap, (self._clock() + delay, next(self._seq), key,
                                            callback))
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=self._name,
                                                     daemon=True)
                    self._thread.start()
                elif self._heap[0][3] is callback:
                    self._cond.notify()  # the new deadline is the earliest
                return
        _run_one(callback)  # closed: the call fails at once, as after cleanup

    def fire(self, key: Hashable) -> None:
        """Make every callback registered under ``key`` due now (its end was deleted)."""
        with self._cond:
            now = self._clock()
            changed = False
            for i, (at, seq, k, cb) in enumerate(self._heap):
                if k == key and at > now:
                    self._heap[i] = (now, seq, k, cb)
                    changed = True
            if changed:
                heapq.heapify(self._heap)
                self._cond.notify()

    def close(self) -> None:
        """Run every pending callback now and let the thread end (network cleanup)."""
        with self._cond:
            self._closed = True
            pending, self._heap = self._heap, []
            self._cond.notify()
        for _, _, _, callback in sorted(pending):
            _run_one(callback)

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if not self._heap:
                        if self._closed:
                            return
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - self._clock()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                _, _, _, callback = heapq.heappop(self._heap)
            _run_one(callback)


def _run_one(callback: Callback) -> None:
    try:
        callback(None)
    except Exception:  # noqa: BLE001 - one broken callback must not stop the others
        traceback.print_exc()
