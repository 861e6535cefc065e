"""What one wake-up of a sleeping Python thread costs in CPU on this machine.

Why: in a 2A run most threads do almost nothing each time they wake (send one
heartbeat, take one timer-lag sample), so the wake-up itself -- the kernel timer,
the futex, the context switch, taking the GIL back, running cold code -- is most
of their CPU.  This prints the thread CPU (``time.thread_time``) per wake-up of
``time.sleep``, ``Lock.acquire(timeout=)`` and ``Event.wait``, and of the harness's
own timer-lag probe (a job of :mod:`labtests.ticker`), all at the probe's interval,
and of labrpc's timer thread (:mod:`labrpc.timer`) waiting on a ``Condition`` (as
before session 6, and still when ``threading`` is patched) or on a held lock (real
time since session 6), one callback due every interval.

Usage::

    python benchmarks/wakeup_cost.py [--interval 0.05] [--n 60]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time


def per_wakeup_us(fn, n: int) -> float:
    """Thread CPU per call of ``fn`` (which waits once), in a thread of its own."""
    out: dict[str, float] = {}

    def run() -> None:
        t0 = time.thread_time()
        for _ in range(n):
            fn()
        out["cpu"] = time.thread_time() - t0

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return 1e6 * out["cpu"] / n


def probe_us(interval: float, n: int) -> float:
    """Thread CPU per tick of the harness's timer-lag probe (its thread's whole CPU / ticks)."""
    from labtests import ticker
    from labtests.timing import LagSampler

    cpu: dict[str, float] = {}
    loop = ticker.Ticker._loop

    def timed(self, worker):  # noqa: ANN001, ANN202 - wraps Ticker._loop
        t0 = time.thread_time()
        try:
            loop(self, worker)
        finally:
            cpu["h"] = cpu.get("h", 0.0) + time.thread_time() - t0

    ticker.Ticker._loop = timed  # type: ignore[method-assign]
    try:
        sampler = LagSampler(interval_s=interval).start()
        time.sleep(interval * n)
        ticks = sampler.stop().samples
    finally:
        ticker.Ticker._loop = loop  # type: ignore[method-assign]
    return 1e6 * cpu["h"] / max(1, ticks)


def timer_us(interval: float, n: int, condition: bool) -> float:
    """Thread CPU per callback of labrpc's timer thread, callbacks ``interval`` apart."""
    from labrpc.timer import Timer

    timer = Timer("bench-timer")
    if condition:
        timer._cond = threading.Condition(threading.Lock())
    cpu: dict[str, float] = {}
    done = threading.Event()
    run = Timer._run

    def timed(self):  # noqa: ANN001, ANN202 - wraps Timer._run on this timer only
        t0 = time.thread_time()
        try:
            run(self)
        finally:
            cpu["t"] = time.thread_time() - t0

    timer._run = timed.__get__(timer)  # type: ignore[method-assign]
    for k in range(1, n + 1):
        timer.after(k * interval, "bench", (lambda _r: done.set()) if k == n else (lambda _r: None))
    done.wait(n * interval + 10)
    timer.close()
    timer._thread.join(5)
    return 1e6 * cpu["t"] / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--n", type=int, default=60)
    args = parser.parse_args(argv)
    lock = threading.Lock()
    lock.acquire()
    event = threading.Event()
    rows = [
        ("time.sleep", per_wakeup_us(lambda: time.sleep(args.interval), args.n)),
        ("Lock.acquire(timeout=)", per_wakeup_us(lambda: lock.acquire(timeout=args.interval),
                                                 args.n)),
        ("Event.wait(timeout)", per_wakeup_us(lambda: event.wait(args.interval), args.n)),
        ("timer-lag probe tick", probe_us(args.interval, args.n)),
        ("labrpc timer, Condition", timer_us(args.interval, args.n, condition=True)),
        ("labrpc timer, held lock", timer_us(args.interval, args.n, condition=False)),
    ]
    for name, us in rows:
        print(f"{name:<24} {us:7.1f} us of CPU per wake-up (every {args.interval * 1000:g} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
