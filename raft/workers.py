"""A tiny growable thread pool for outgoing RPCs.

A Raft peer must never make an RPC while holding its lock, and one slow peer
(a call may block for up to 7 s) must not hold up messages to the others, so
every RPC runs on its own thread.  Starting a fresh thread per RPC costs more
CPU than the RPC itself, so threads are reused: the pool grows whenever no
thread is idle (calls still all run concurrently) and :meth:`close` makes each
thread exit as soon as its current call returns.
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable

Task = Callable[[], None]


class SenderPool:
    """Run tasks concurrently on reusable threads named ``name``."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self._threads = 0
        self._closed = False

    def submit(self, task: Task) -> bool:
        """Run ``task`` soon on some pool thread; False once the pool is closed."""
        with self._lock:
            if self._closed:
                return False
            spawn = self._idle == 0
            if spawn:
                self._threads += 1
            else:
                self._idle -= 1
        if spawn:
            threading.Thread(target=self._work, name=self._name, daemon=True).start()
        self._tasks.put(task)
        return True

    def close(self) -> None:
        """Make every thread exit once it has finished its current task."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._threads
        for _ in range(threads):
            self._tasks.put(None)

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            try:
                task()
            except Exception:  # a bug in a task must not shrink the pool silently
                traceback.print_exc()
            with self._lock:
                self._idle += 1
