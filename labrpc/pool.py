"""One growable thread pool, shared by the network's handlers and the reference Raft's RPCs.

Both the network (one thread per running handler) and a Raft peer (one thread
per outgoing RPC, which may block for seconds and must never hold up the
others) need "run this concurrently with everything else".  A fresh thread per
task costs more CPU than a whole RPC, so threads are reused: the pool grows
whenever no thread is idle, which keeps every task concurrent, and
:meth:`ThreadPool.close` makes each thread exit as soon as its current task
returns, so nothing outlives the test that started it.

It lives in the lowest layer (``labrpc``) so that ``raft`` can use it without
the network depending on anything above it.  Only ``threading`` and ``queue``
are used, looked up at call time, so simulated time can stand in for both.
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable

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
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._closed = False

    def submit(self, task: Task) -> bool:
        """Run ``task`` soon on some pool thread; False (and not run) once closed."""
        with self._lock:
            if self._closed:
                return False
            spawn = self._idle == 0
            if spawn:
                self._threads += 1
                name = f"{self._name}-{self._threads}" if self._numbered else self._name
            else:
                self._idle -= 1
        if spawn:
            threading.Thread(target=self._work, name=name, daemon=True).start()
        self._tasks.put(task)
        return True

    def close(self) -> None:
        """Refuse new tasks and make every thread exit once its current task returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._tasks.put(None)

    @property
    def size(self) -> int:
        """How many threads the pool has started (its high-water mark of concurrency)."""
        with self._lock:
            return self._threads

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            try:
                task()
            except Exception:  # noqa: BLE001 - a bug in a task must not shrink the pool
                traceback.print_exc()
            with self._lock:
                self._idle += 1
