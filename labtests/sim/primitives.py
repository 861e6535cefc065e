"""Simulated threading and queue primitives that block through the scheduler.

Each class stands in for its ``threading``/``queue`` namesake while a
simulation is active (see :mod:`labtests.sim.patch`).  Blocking calls hand
control to the scheduler; timeouts are virtual seconds.  Constructed from a
thread outside the simulation (another OS thread, or after it ended), the
class returns the real primitive instead, so foreign threads keep working.

Condition, Event and Semaphore subclass the real classes so that
``isinstance`` (e.g. labrpc's codec refusing to send a Condition) still holds;
locks cannot be subclassed, so they refuse pickling with the real message.
Locks remember the thread holding them and where they were created, for the
deadlock report.
"""

from __future__ import annotations

import queue as _queue
import threading as _threading
from collections import deque
from typing import Any

from labtests.sim import interp, state
from labtests.sim.scheduler import Scheduler
from labtests.sim.task import BLOCKED, Task

_RealLock = _threading.Lock
_RealRLock = _threading.RLock
_RealCondition = _threading.Condition
_RealEvent = _threading.Event
_RealSemaphore = _threading.Semaphore
_RealBoundedSemaphore = _threading.BoundedSemaphore
_RealSimpleQueue = _queue.SimpleQueue
_get_ident = interp.os_thread_ident


def _sched() -> Scheduler:
    """The active scheduler, if the caller is a simulated thread; else an error."""
    s = state.SCHED
    if s is None or _get_ident() != s.os_ident:
        raise RuntimeError(
            "a simulated lock/condition/queue was used outside its simulation "
            "(from another OS thread, or after the simulated test ended)"
        )
    return s


def _in_sim() -> bool:
    s = state.SCHED
    return s is not None and _get_ident() == s.os_ident and not s.dying


def note_poll() -> None:
    """A non-blocking operation a spinning thread may repeat: count it (spin guard).

    After enough of them without a switch the scheduler makes the thread sleep
    a little virtual time, as preemption would let real time pass; see
    :meth:`labtests.sim.scheduler.Scheduler.poll`.
    """
    s = state.SCHED
    if s is not None and not s.dying and _get_ident() == s.os_ident:
        s.poll()


def _where(depth: int) -> str:
    """``file:line`` of the frame ``depth`` levels above this function's caller."""
    f = interp.caller_frame(depth)
    return "?" if f is None else f"{f.f_code.co_filename}:{f.f_lineno}"


def _remaining(s: Scheduler, deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - s.now, 0.0)


def _timeout_deadline(s: Scheduler, blocking: bool, timeout: float) -> float | None:
    if not blocking:
        if timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        return s.now
    if timeout < 0 and timeout != -1:
        raise ValueError("timeout value must be a non-negative number")
    return None if timeout == -1 else s.now + timeout


class Lock:
    """``threading.Lock``: may be released by any thread."""

    labrpc_refused_as = "threading.Lock"  # labrpc.codec refuses it like the real one
    __slots__ = ("_locked", "_owner", "_waiters", "_where", "__weakref__")

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not _in_sim():
            return _RealLock()
        return object.__new__(cls)

    def __init__(self) -> None:
        self._locked = False
        self._owner: Task | None = None
        self._waiters: deque[Task] = deque()
        self._where = _where(2)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        __tracebackhide__ = True
        if not self._locked:
            self._locked = True
            s = state.SCHED
            self._owner = s.current if s is not None else None
            if state.SYNC is not None:
                state.sync_acquire(self)
            return True
        s = _sched()
        deadline = _timeout_deadline(s, blocking, timeout)
        if deadline is not None and deadline <= s.now:
            return False
        me = s.current
        while True:
            self._waiters.append(me)
            try:
                ok = s.block("lock", self, _remaining(s, deadline))
            finally:
                if me in self._waiters:
                    self._waiters.remove(me)
            if not self._locked:
                self._locked = True
                self._owner = me
                if state.SYNC is not None:
                    state.sync_acquire(self)
                return True
            if not ok:
                return False

    def release(self) -> None:
        __tracebackhide__ = True
        self._release()
        note_poll()

    def _release(self) -> None:
        """Release without counting a poll (a Condition's wait must not switch here)."""
        if not self._locked:
            raise RuntimeError("release unlocked lock")
        if state.SYNC is not None:
            state.sync_release(self)
        self._locked = False
        self._owner = None
        if self._waiters:
            _sched().wake(self._waiters.popleft())

    def locked(self) -> bool:
        note_poll()
        return self._locked

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _at_fork_reinit(self) -> None:
        self._locked = False
        self._owner = None
        self._waiters.clear()

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle '_thread.lock' object")

    def __repr__(self) -> str:
        status = "locked" if self._locked else "unlocked"
        return f"<{status} simulated _thread.lock object created at {self._where}>"


def _me() -> Any:
    """The current simulated thread, or (outside the simulation) the OS thread id."""
    s = state.SCHED
    if s is not None and _get_ident() == s.os_ident:
        return s.current
    return _get_ident()


class RLock:
    """``threading.RLock``: re-entrant, released only by its owner.

    Outside its simulation (e.g. a logging handler's lock used after the test)
    it still works as long as it never has to wait.
    """

    labrpc_refused_as = "threading.RLock"  # labrpc.codec refuses it like the real one
    __slots__ = ("_owner", "_count", "_waiters", "_where", "__weakref__")

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not _in_sim():
            return _RealRLock()
        return object.__new__(cls)

    def __init__(self) -> None:
        self._owner: Task | None = None
        self._count = 0
        self._waiters: deque[Task] = deque()
        self._where = _where(2)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        __tracebackhide__ = True
        me = _me()
        if self._owner is None:
            self._owner = me
            self._count = 1
            if state.SYNC is not None:
                state.sync_acquire(self)
            return True
        if self._owner == me:
            self._count += 1
            if state.SYNC is not None:
                state.sync_acquire(self)
            return True
        s = _sched()
        deadline = _timeout_deadline(s, blocking, timeout)
        if deadline is not None and deadline <= s.now:
            return False
        return self._wait_acquire(s, me, deadline, 1)

    def _wait_acquire(self, s: Scheduler, me: Task, deadline: float | None, count: int) -> bool:
        __tracebackhide__ = True
        while True:
            if self._owner is None:
                self._owner = me
                self._count = count
                if state.SYNC is not None:
                    state.sync_acquire(self)
                return True
            self._waiters.append(me)
            try:
                ok = s.block("lock", self, _remaining(s, deadline))
            finally:
                if me in self._waiters:
                    self._waiters.remove(me)
            if self._owner is None:
                self._owner = me
                self._count = count
                if state.SYNC is not None:
                    state.sync_acquire(self)
                return True
            if not ok:
                return False

    def release(self) -> None:
        __tracebackhide__ = True
        if self._owner is None or self._owner != _me():
            raise RuntimeError("cannot release un-acquired lock")
        if state.SYNC is not None:
            state.sync_release(self)
        self._count -= 1
        if self._count == 0:
            self._owner = None
            if self._waiters:
                _sched().wake(self._waiters.popleft())
        note_poll()

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _is_owned(self) -> bool:
        return self._owner is not None and self._owner == _me()

    def _release_save(self) -> tuple[int, Task | None]:
        count, owner = self._count, self._owner
        if state.SYNC is not None:
            for _ in range(count):
                state.sync_release(self)
        self._count = 0
        self._owner = None
        if self._waiters:
            _sched().wake(self._waiters.popleft())
        return count, owner

    def _acquire_restore(self, saved: tuple[int, Task | None]) -> None:
        __tracebackhide__ = True
        s = _sched()
        self._wait_acquire(s, s.current, None, saved[0])

    def _at_fork_reinit(self) -> None:
        self._owner = None
        self._count = 0
        self._waiters.clear()

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle '_thread.RLock' object")

    def __repr__(self) -> str:
        owner = getattr(self._owner, "name", self._owner)
        return (f"<simulated RLock owner={owner!r} count={self._count} "
                f"created at {self._where}>")


def _owned_by_current(lock: Any, s: Scheduler) -> bool:
    if isinstance(lock, RLock):
        return lock._owner is s.current
    if isinstance(lock, Lock):
        return lock._locked
    return True  # a foreign lock type: trust the caller


class Condition(_RealCondition):
    """``threading.Condition`` over a simulated lock (an RLock by default)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not _in_sim():
            return _RealCondition(*args, **kwargs)
        return object.__new__(cls)

    def __init__(self, lock: Any = None) -> None:  # noqa: D107 - same as threading
        if lock is None:
            lock = RLock()
        self._lock = lock
        self.acquire = lock.acquire
        self.release = lock.release
        self._cwaiters: deque[Task] = deque()

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *args: object) -> None:
        return self._lock.__exit__(*args)

    def __repr__(self) -> str:
        return f"<simulated Condition({self._lock}, {len(self._cwaiters)})>"

    def _is_owned(self) -> bool:
        return _owned_by_current(self._lock, _sched())

    def wait(self, timeout: float | None = None) -> bool:
        __tracebackhide__ = True
        s = _sched()
        if not _owned_by_current(self._lock, s):
            raise RuntimeError("cannot wait on un-acquired lock")
        me = s.current
        lock = self._lock
        if isinstance(lock, RLock):
            saved: Any = lock._release_save()
        elif isinstance(lock, Lock):
            lock._release()  # no switch between releasing and becoming a waiter
            saved = None
        else:
            lock.release()
            saved = None
        self._cwaiters.append(me)
        try:
            ok = s.block("condition", self, timeout)
        finally:
            if me in self._cwaiters:
                self._cwaiters.remove(me)
            if saved is not None:
                lock._acquire_restore(saved)
            else:
                lock.acquire()
        return ok

    def wait_for(self, predicate: Any, timeout: float | None = None) -> Any:
        __tracebackhide__ = True
        s = _sched()
        deadline = None if timeout is None else s.now + timeout
        result = predicate()
        while not result:
            if deadline is not None:
                remaining = deadline - s.now
                if remaining <= 0:
                    break
                self.wait(remaining)
            else:
                self.wait()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        s = _sched()
        if not _owned_by_current(self._lock, s):
            raise RuntimeError("cannot notify on un-acquired lock")
        waiters = self._cwaiters
        while n > 0 and waiters:
            task = waiters.popleft()
            if task.waiting is self and task.state == BLOCKED:
                s.wake(task)
                n -= 1

    def notify_all(self) -> None:
        self.notify(len(self._cwaiters))

    notifyAll = notify_all  # noqa: N815 - threading's alias


class Event(_RealEvent):
    """``threading.Event``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not _in_sim():
            return _RealEvent()
        return object.__new__(cls)

    def __init__(self) -> None:
        self._flag = False
        self._ewaiters: list[Task] = []

    def __repr__(self) -> str:
        return f"<simulated Event: {'set' if self._flag else 'unset'}>"

    def is_set(self) -> bool:
        note_poll()
        if self._flag and state.SYNC is not None:
            state.sync_acquire(self)
        return self._flag

    isSet = is_set  # noqa: N815 - threading's alias

    def set(self) -> None:
        if state.SYNC is not None:
            state.sync_release(self)
        self._flag = True
        if self._ewaiters:
            s = _sched()
            for task in self._ewaiters:
                s.wake(task)
            self._ewaiters.clear()

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: float | None = None) -> bool:
        __tracebackhide__ = True
        if self._flag:
            if state.SYNC is not None:
                state.sync_acquire(self)
            return True
        s = _sched()
        if timeout is not None and timeout <= 0:
            s.yield_now()
            return self._flag
        me = s.current
        self._ewaiters.append(me)
        try:
            s.block("event", self, timeout)
        finally:
            if me in self._ewaiters:
                self._ewaiters.remove(me)
        if self._flag and state.SYNC is not None:
            state.sync_acquire(self)
        return self._flag

    def _at_fork_reinit(self) -> None:
        self._ewaiters.clear()


class Semaphore(_RealSemaphore):
    """``threading.Semaphore``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not _in_sim():
            return _RealSemaphore(*args, **kwargs)
        return object.__new__(cls)

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._value = value
        self._swaiters: deque[Task] = deque()

    def __repr__(self) -> str:
        return f"<simulated {type(self).__name__} value={self._value}>"

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        __tracebackhide__ = True
        if self._value > 0:
            self._value -= 1
            return True
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify timeout for non-blocking acquire")
            return False
        s = _sched()
        deadline = None if timeout is None else s.now + timeout
        me = s.current
        while self._value == 0:
            remaining = _remaining(s, deadline)
            if remaining is not None and remaining <= 0:
                return False
            self._swaiters.append(me)
            try:
                s.block("semaphore", self, remaining)
            finally:
                if me in self._swaiters:
                    self._swaiters.remove(me)
        self._value -= 1
        return True

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        self._value += n
        if self._swaiters:
            s = _sched()
            for _ in range(min(n, len(self._swaiters))):
                s.wake(self._swaiters.popleft())

    def __exit__(self, *args: object) -> None:
        self.release()


class BoundedSemaphore(Semaphore, _RealBoundedSemaphore):
    """``threading.BoundedSemaphore``."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not _in_sim():
            return _RealBoundedSemaphore(*args, **kwargs)
        return object.__new__(cls)

    def __init__(self, value: int = 1) -> None:
        Semaphore.__init__(self, value)
        self._initial_value = value

    def release(self, n: int = 1) -> None:
        if self._value + n > self._initial_value:
            raise ValueError("Semaphore released too many times")
        Semaphore.release(self, n)


class SimpleQueue(_RealSimpleQueue):
    """``queue.SimpleQueue``: an unbounded FIFO whose ``get`` may block."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if not _in_sim():
            return _RealSimpleQueue()
        return _RealSimpleQueue.__new__(cls)

    def __init__(self) -> None:
        self._items: deque[Any] = deque()
        self._qwaiters: deque[Task] = deque()

    def __repr__(self) -> str:
        return f"<simulated SimpleQueue of {len(self._items)}>"

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if state.SYNC is not None:
            state.sync_release(self)
        self._items.append(item)
        if self._qwaiters:
            _sched().wake(self._qwaiters.popleft())

    def put_nowait(self, item: Any) -> None:
        self.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        __tracebackhide__ = True
        if self._items:
            if state.SYNC is not None:
                state.sync_acquire(self)
            return self._items.popleft()
        if not block:
            raise _queue.Empty
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        s = _sched()
        deadline = None if timeout is None else s.now + timeout
        me = s.current
        while not self._items:
            remaining = _remaining(s, deadline)
            if remaining is not None and remaining <= 0:
                raise _queue.Empty
            self._qwaiters.append(me)
            try:
                s.block("queue", self, remaining)
            finally:
                if me in self._qwaiters:
                    self._qwaiters.remove(me)
        item = self._items.popleft()
        if state.SYNC is not None:
            state.sync_acquire(self)
        if self._items and self._qwaiters:
            s.wake(self._qwaiters.popleft())  # pass on a wake-up this get did not need
        return item

    def get_nowait(self) -> Any:
        return self.get(False)

    def empty(self) -> bool:
        note_poll()
        return not self._items

    def qsize(self) -> int:
        note_poll()
        return len(self._items)

    def __reduce__(self) -> Any:
        raise TypeError("cannot pickle '_queue.SimpleQueue' object")
