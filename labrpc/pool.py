"""One growable thread pool, shared by the network's handlers and the reference Raft's RPCs.

Both the network (one thread per running handler) and a Raft peer (one thread
per outgoing RPC, which may block for seconds and must never hold up the
others) need "run this concurrently with everything else".  A fresh thread per
task costs more CPU than a whole RPC, so threads are reused: the pool grows
whenever no thread is idle, which keeps every task concurrent, and
:meth:`ThreadPool.close` makes each thread exit as soon as its current task
returns, so nothing outlives the test that started it.

How an idle thread is woken (:mod:`labrpc.wake`): in real time, by one byte
written to a pipe that every idle thread of the pool reads, because waking a
thread through a pipe costs a third of waking it through a lock on a
multi-core machine (measured: ``benchmarks/labrpc_bench.py``); the pool's pipe
is closed by the last thread to exit.  When ``threading`` is patched
(simulated time, the race detector), with the patched ``queue.SimpleQueue``,
so those tools see every hand-off.  The choice is made once, when the pool is
made.

It lives in the lowest layer (``labrpc``) so that ``raft`` can use it without
the network depending on anything above it.  Only ``threading`` and ``queue``
are used, looked up at call time, so simulated time can stand in for both.
"""

from __future__ import annotations

import os
import queue
import threading
import traceback
from collections import deque
from collections.abc import Callable

from labrpc.wake import real_threading

Task = Callable[[], None]


class ThreadPool:
    """Run tasks concurrently on reusable daemon threads.

    Threads are named ``name``, or ``name-1``, ``name-2``... with
    ``numbered=True`` (a thread's name is what a leak report or a stack dump
    shows, so it should say whose thread it is).
    """

    def __init__(self, name: str, *, numbered: bool = False) -> None:
        self._name = name
        self._numbered = numbered
        self._lock = threading.Lock()
        # One entry per thread waiting for a task.  A list, so that in real time an idle
        # thread adds itself with one atomic append and no lock (submit takes one under
        # its lock); under patched threading the append stays inside the lock, as the
        # simulation's schedule counts every lock operation.
        self._idlers: list[None] = []
        self._threads = 0  # threads started
        self._live = 0  # threads not yet exited
        self._closed = False
        # Real time: tasks in a deque, one byte in the pipe per task for an idle thread.
        # Patched threading: a SimpleQueue of the patched kind, and no pipe.
        self._pipe: tuple[int, int] | None = None
        self._deque: deque[Task | None] = deque()
        self._queue: queue.SimpleQueue[Task | None] | None = (
            None if real_threading() else queue.SimpleQueue()
        )

    def submit(self, task: Task) -> bool:
        """Run ``task`` soon on some pool thread; False (and not run) once closed."""
        write_end = None
        with self._lock:
            if self._closed:
                return False
            spawn = not self._idlers
            if spawn:
                self._threads += 1
                self._live += 1
                number = self._threads
                if self._queue is None and self._pipe is None:
                    self._pipe = os.pipe()
            else:
                self._idlers.pop()
            if self._queue is not None:
                self._queue.put(task)  # a new thread too takes its first task from the queue
                first: Task | None = None
            elif spawn:
                first = task  # handed straight to the new thread: no byte needed
            else:
                self._deque.append(task)
                write_end = self._pipe[1]
        if write_end is not None:
            # Outside the lock (a thread woken on this core must not wait for it).  The
            # pipe stays open: no thread exits before it has read this task's byte.
            os.write(write_end, b"\0")
        if spawn:
            name = f"{self._name}-{number}" if self._numbered else self._name
            threading.Thread(target=self._work, args=(first,), name=name, daemon=True).start()
        return True

    def _next(self) -> Task | None:
        """Wait for a task handed to this idle thread; ``None`` means exit."""
        if self._queue is not None:
            return self._queue.get()
        os.read(self._pipe[0], 1)  # one byte per task handed; the deque has it already
        return self._deque.popleft()

    def close(self) -> None:
        """Refuse new tasks and make every thread exit once its current task returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in range(self._threads):  # one None for each thread, idle or busy
                if self._queue is not None:
                    self._queue.put(None)
                else:
                    self._deque.append(None)
                    os.write(self._pipe[1], b"\0")
            if self._live == 0:
                self._close_pipe()

    @property
    def _idle(self) -> int:
        """How many threads are waiting for a task (for tests and debugging)."""
        return len(self._idlers)

    @property
    def size(self) -> int:
        """How many threads the pool has started (its high-water mark of concurrency)."""
        with self._lock:
            return self._threads

    def _work(self, task: Task | None) -> None:
        try:
            if task is None:
                task = self._next()
            # Once per thread, not per task.  The pipe (real time) was made before the
            # first thread started and is closed only after the last one exits.
            lock, idle, tasks, read, pipe = (self._lock, self._idlers, self._deque, os.read,
                                             self._pipe)
            while task is not None:
                try:
                    task()
                except Exception:  # noqa: BLE001 - a bug in a task must not shrink the pool
                    traceback.print_exc()
                task = None  # no reference to a finished task while idle
                if pipe is None:  # patched threading: the queue
                    with lock:
                        idle.append(None)
                    task = self._next()
                else:  # _next inlined: this runs once per task
                    idle.append(None)
                    read(pipe[0], 1)
                    task = tasks.popleft()
        finally:
            with self._lock:
                self._live -= 1
                if self._live == 0 and self._closed:
                    self._close_pipe()

    def _close_pipe(self) -> None:
        """Close the pipe once no thread can read it (called with ``_lock`` held)."""
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None
