"""Patch ``threading``, ``queue``, ``time`` and ``random`` for one simulated run.

Code under test looks these names up when it calls them (``threading.Lock()``,
``time.monotonic()``), so replacing the module attributes for the duration of
a test is enough; everything is restored afterwards.  ``threading.Thread``
stays the real class (``isinstance`` and subclasses keep working): its
``start``, ``join`` and ``is_alive`` methods are patched so that a thread
started by a simulated thread becomes a simulated thread.

Every patched function first checks that its caller is the simulation's OS
thread; any other OS thread (pytest-xdist's I/O thread, say) gets the real
behaviour.

What escapes the patching (and so stays in real time):

* names bound before activation with ``from time import monotonic`` and the
  like (the stdlib's own ``threading._time`` and ``queue.time`` are patched;
  labrpc, raft and labtests import modules, not names, so nothing of theirs
  escapes);
* primitives created before activation (a module-level lock) stay real; they
  work as long as no thread blocks on one held by another simulated thread;
* ``_thread`` used directly, ``os.urandom``/``random.SystemRandom``,
  ``time.thread_time``/``process_time`` (CPU clocks stay real on purpose).

Refused with :class:`SimUnsupported` when reached from a simulated thread:
``socket.socket``, ``subprocess.Popen``, ``os.system``, ``os.fork``,
``select.select`` (they would block the whole simulation in real time).
"""

from __future__ import annotations

import os
import queue
import random
import select
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from greenlet import GreenletExit

from labtests.sim import interp, state
from labtests.sim import primitives as P
from labtests.sim.scheduler import Scheduler, SimUnsupported
from labtests.sim.task import DONE, Task

MONOTONIC_BASE = 1000.0  # what time.monotonic() reads when a simulation starts
EPOCH_BASE = 1_700_000_000.0  # what time.time() reads when a simulation starts
PERF_BASE = 100.0

_get_ident = interp.os_thread_ident
_real = {
    "sleep": time.sleep, "monotonic": time.monotonic, "monotonic_ns": time.monotonic_ns,
    "time": time.time, "time_ns": time.time_ns, "perf_counter": time.perf_counter,
    "perf_counter_ns": time.perf_counter_ns,
}
_real_current_thread = threading.current_thread
_real_enumerate = threading.enumerate
_real_get_ident = threading.get_ident
_real_get_native_id = threading.get_native_id
_real_start = threading.Thread.start
_real_join = threading.Thread.join
_real_is_alive = threading.Thread.is_alive
_real_seed = random.seed
_real_random_init = random.Random.__init__


def _sim() -> Scheduler | None:
    """The scheduler if the caller is a simulated thread."""
    s = state.SCHED
    if s is not None and _get_ident() == s.os_ident:
        return s
    return None


# -- time -------------------------------------------------------------------------


def sleep(seconds: float) -> None:
    __tracebackhide__ = True
    s = _sim()
    if s is None:
        return _real["sleep"](seconds)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    s.sleep(seconds)
    return None


def monotonic() -> float:
    s = _sim()
    return MONOTONIC_BASE + s.read_clock() if s is not None else _real["monotonic"]()


def monotonic_ns() -> int:
    s = _sim()
    if s is None:
        return _real["monotonic_ns"]()
    return int(round((MONOTONIC_BASE + s.read_clock()) * 1e9))


def perf_counter() -> float:
    s = _sim()
    return PERF_BASE + s.read_clock() if s is not None else _real["perf_counter"]()


def perf_counter_ns() -> int:
    s = _sim()
    if s is None:
        return _real["perf_counter_ns"]()
    return int(round((PERF_BASE + s.read_clock()) * 1e9))


def time_() -> float:
    s = _sim()
    return EPOCH_BASE + s.read_clock() if s is not None else _real["time"]()


def time_ns() -> int:
    s = _sim()
    if s is None:
        return _real["time_ns"]()
    return int(round((EPOCH_BASE + s.read_clock()) * 1e9))


# -- threads ----------------------------------------------------------------------


def current_thread() -> threading.Thread:
    s = _sim()
    return s.current.thread if s is not None else _real_current_thread()


def get_ident() -> int:
    s = _sim()
    return s.current.ident if s is not None else _real_get_ident()


def get_native_id() -> int:
    s = _sim()
    return s.current.ident if s is not None else _real_get_native_id()


def enumerate_() -> list[threading.Thread]:
    s = _sim()
    real = _real_enumerate()
    if s is None:
        return real
    seen = {id(t) for t in real}
    return real + [
        t.thread for t in s.tasks.values() if t.state != DONE and id(t.thread) not in seen
    ]


def active_count() -> int:
    return len(enumerate_())


def _thread_body(task: Task) -> None:
    """What a simulated thread's greenlet runs: Thread.run, excepthook, bookkeeping."""
    thread = task.thread
    s: Scheduler = state.SCHED
    try:
        thread.run()
    except GreenletExit:
        pass
    except BaseException as exc:  # noqa: BLE001 - reported like a real thread's exception
        # SystemExit too, as a real thread does: threading's default hook ignores it.
        try:
            interp.report_thread_exception(thread, exc)
        except GreenletExit:
            pass
    finally:
        s.finish_task(task)
        interp.mark_stopped(thread)


def thread_start(self: threading.Thread) -> None:
    s = _sim()
    if s is None:
        return _real_start(self)
    if self.ident is not None:  # asserts that Thread.__init__ was called, as start() does
        raise RuntimeError("threads can only be started once")
    task = s.spawn(self, _thread_body)
    self._sim_task = task  # type: ignore[attr-defined]
    interp.mark_started(self, task.ident)
    return None


def thread_join(self: threading.Thread, timeout: float | None = None) -> None:
    __tracebackhide__ = True
    task = getattr(self, "_sim_task", None)
    s = _sim()
    if task is None or s is None:
        if s is not None and _real_is_alive(self):
            raise SimUnsupported(
                f"a simulated thread joined the real thread {self.name!r}; only threads "
                "started inside the simulation can be joined there")
        return _real_join(self, timeout)
    if task is s.current:
        raise RuntimeError("cannot join current thread")
    if task.state == DONE:
        return None
    me = s.current
    task.joiners.append(me)
    try:
        if timeout is not None and timeout <= 0:
            s.yield_now()
        else:
            s.block("join", task, timeout)
    finally:
        if me in task.joiners:
            task.joiners.remove(me)
    return None


def thread_is_alive(self: threading.Thread) -> bool:
    task = getattr(self, "_sim_task", None)
    if task is None:
        return _real_is_alive(self)
    P.note_poll()  # a loop on is_alive() is a poll like any other
    return task.state != DONE


# -- random -------------------------------------------------------------------------


def random_seed(a: Any = None, version: int = 2) -> None:
    """``random.seed()`` without an argument draws from the simulation's seed, not the OS."""
    s = _sim()
    if a is None and s is not None:
        a = s.rng.getrandbits(64)
    _real_seed(a, version)


def random_init(self: random.Random, x: Any = None) -> None:
    s = _sim()
    if x is None and s is not None:
        x = s.rng.getrandbits(64)
    _real_random_init(self, x)


# -- refusals -------------------------------------------------------------------------


def _refuse(what: str) -> Any:
    def guard(*args: Any, **kwargs: Any) -> Any:
        raise SimUnsupported(
            f"{what} cannot run in simulated time (it would block every simulated thread "
            "in real time); run this test without --sim")

    return guard


def _guarded(real: Any, what: str) -> Any:
    refuse = _refuse(what)

    def guard(*args: Any, **kwargs: Any) -> Any:
        if _sim() is not None:
            return refuse()
        return real(*args, **kwargs)

    return guard


def _guarded_class(real: type, what: str) -> type:
    refuse = _refuse(what)

    class Guarded(real):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if _sim() is not None:
                refuse()
            super().__init__(*args, **kwargs)

    Guarded.__name__ = real.__name__
    Guarded.__qualname__ = real.__qualname__
    return Guarded


# -- the patch table -----------------------------------------------------------------


def _table() -> list[tuple[Any, str, Any]]:
    return [
        (threading, "Lock", P.Lock),
        (threading, "RLock", P.RLock),
        (threading, "Condition", P.Condition),
        (threading, "Event", P.Event),
        (threading, "Semaphore", P.Semaphore),
        (threading, "BoundedSemaphore", P.BoundedSemaphore),
        (threading, "current_thread", current_thread),
        (threading, "enumerate", enumerate_),
        (threading, "active_count", active_count),
        (threading, "get_ident", get_ident),
        (threading, "get_native_id", get_native_id),
        *interp.patch_entries(monotonic, current_thread),
        (threading.Thread, "start", thread_start),
        (threading.Thread, "join", thread_join),
        (threading.Thread, "is_alive", thread_is_alive),
        (queue, "SimpleQueue", P.SimpleQueue),
        (time, "sleep", sleep),
        (time, "monotonic", monotonic),
        (time, "monotonic_ns", monotonic_ns),
        (time, "perf_counter", perf_counter),
        (time, "perf_counter_ns", perf_counter_ns),
        (time, "time", time_),
        (time, "time_ns", time_ns),
        (random, "seed", random_seed),
        (random.Random, "__init__", random_init),
        (socket, "socket", _guarded_class(socket.socket, "socket.socket")),
        (subprocess, "Popen", _guarded_class(subprocess.Popen, "subprocess.Popen")),
        (os, "system", _guarded(os.system, "os.system")),
        (os, "fork", _guarded(os.fork, "os.fork")),
        (select, "select", _guarded(select.select, "select.select")),
    ]


_MISSING = object()


@contextmanager
def patched() -> Iterator[None]:
    """Install the simulated primitives; restore the real ones on exit."""
    saved = []
    try:
        for obj, name, value in _table():
            saved.append((obj, name, obj.__dict__.get(name, _MISSING)))
            setattr(obj, name, value)
        yield
    finally:
        for obj, name, old in reversed(saved):
            if old is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, old)


def is_patched() -> bool:
    return threading.Lock is P.Lock
