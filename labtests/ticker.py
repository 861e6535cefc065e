"""One harness thread per process for the periodic checks of the running test.

Why: the timer-lag probe (:mod:`labtests.timing`, every 50 ms) and the timeline
sampler's supervisor (:mod:`labtests.timeline.sampler`, every second) each had a
thread of their own, started and ended with every test.  A thread costs a pid and
about 0.1-0.15 ms of CPU to start, and every wake-up of a Python thread costs tens
of microseconds; at a hundred concurrent test processes on two cores that is CPU
the Raft under test does not get.  Here both are *jobs* of one thread with a heap
of due times: one wake-up when jobs fall due together, none between tests.

Rules for a job: it must not block (it runs on the one thread every other job
shares) and it says when it wants to run next (an absolute :func:`time.monotonic`
time) or ``None`` to end.  A job that raises ends; its exception is kept on the
job (:attr:`Job.error`), never propagated to the test.  Work that may block (a
Raft's ``get_state()``) stays on threads of its own.

The thread exists only while a job is scheduled: when the last job ends or is
cancelled it ends too (:meth:`Ticker.cancel` waits for that), so a test's leak
check and the unit tests that count threads see no harness thread left behind.
After ``fork()`` the child starts empty (the parent's thread is not in it).
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections.abc import Callable

THREAD_NAME = "raftlab-harness"
JOIN_S = 1.0  # jobs never block, so the thread ends at once; bounded all the same


class Job:
    """A scheduled callback: ``fn() -> next due time (monotonic) | None``."""

    __slots__ = ("cancelled", "error", "fn", "name", "runs")

    def __init__(self, fn: Callable[[], float | None], name: str) -> None:
        self.fn = fn
        self.name = name
        self.cancelled = False
        self.error: BaseException | None = None
        self.runs = 0


class _Worker:
    """One incarnation of the harness thread; retired when no job is left."""

    __slots__ = ("retired", "thread", "wake")

    def __init__(self) -> None:
        self.retired = False
        # Released by whoever schedules an earlier job or retires the thread; a held
        # lock waited on with a timeout is the cheapest timed wake-up Python has.
        self.wake = threading.Lock()
        self.wake.acquire()
        self.thread: threading.Thread | None = None

    def signal(self) -> None:
        try:
            self.wake.release()
        except RuntimeError:
            pass  # already released: a wake-up is pending


class Ticker:
    """A heap of due jobs run by one daemon thread (see the module docstring)."""

    def __init__(self, name: str = THREAD_NAME) -> None:
        self.name = name
        self._reset()

    def _reset(self) -> None:
        self._mu = threading.Lock()
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = 0
        self._worker: _Worker | None = None
        self._running: Job | None = None  # popped from the heap, being run now
        self._ran = threading.Condition(self._mu)  # notified when a job's run ends
        self._cancelling = 0  # how many cancel() calls wait on _ran
        self.threads_started = 0  # for tests and benchmarks: incarnations of the thread

    # -- the API ------------------------------------------------------------------------

    def at(self, due: float, fn: Callable[[], float | None], name: str = "job") -> Job:
        """Run ``fn`` on the harness thread at monotonic time ``due``, then as it says.

        Raises ``RuntimeError`` if the thread cannot be started (the machine is out
        of threads), like starting a thread of one's own would.
        """
        job = Job(fn, name)
        with self._mu:
            self._push(due, job)
            worker = self._worker
            if worker is None:
                worker = self._worker = _Worker()
                thread = threading.Thread(target=self._loop, args=(worker,), name=self.name,
                                          daemon=True)
                worker.thread = thread
                try:
                    thread.start()
                except RuntimeError:
                    self._worker = None
                    self._heap.clear()
                    raise
                self.threads_started += 1
            elif self._heap[0][2] is job:
                worker.signal()  # due before what the thread waits for now
        return job

    def cancel(self, job: Job) -> None:
        """Run ``job`` no more; once this returns it does not run (a run under way has
        ended, unless this is called from the harness thread itself).  If it was the
        last job, the thread ends before this returns."""
        join = None
        me = threading.current_thread()
        with self._mu:
            job.cancelled = True
            worker = self._worker
            if self._running is job and worker is not None and worker.thread is not me:
                self._cancelling += 1
                try:
                    self._ran.wait_for(lambda: self._running is not job, JOIN_S)
                finally:
                    self._cancelling -= 1
            before = len(self._heap)
            self._heap = [entry for entry in self._heap if entry[2] is not job]
            if len(self._heap) != before:
                heapq.heapify(self._heap)
            if not self._heap and self._running in (None, job):
                join = self._retire()
        if join is not None and join is not me and join.ident:
            join.join(JOIN_S)

    def jobs(self) -> list[str]:
        """The names of the jobs scheduled now (for tests and error messages)."""
        with self._mu:
            return [entry[2].name for entry in sorted(self._heap)]

    # -- the thread ---------------------------------------------------------------------

    def _push(self, due: float, job: Job) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, job))

    def _retire(self) -> threading.Thread | None:
        """Lock held: end the current thread (it exits when it next looks)."""
        worker, self._worker = self._worker, None
        if worker is None:
            return None
        worker.retired = True
        worker.signal()
        return worker.thread

    def _loop(self, worker: _Worker) -> None:
        clock = time.monotonic
        while True:
            job = None
            with self._mu:
                if worker.retired:
                    return
                heap = self._heap
                if heap:
                    due = heap[0][0]
                    wait = due - clock()
                    if wait <= 0:
                        job = self._running = heapq.heappop(heap)[2]
                else:  # nothing left (a job ended itself): this thread is done
                    self._retire()
                    return
            if job is None:
                worker.wake.acquire(timeout=wait)
                continue
            try:
                job.runs += 1
                nxt = job.fn()
            except BaseException as exc:  # noqa: BLE001 - a job's failure ends only that job
                job.error, nxt = exc, None
            with self._mu:
                if self._running is job:
                    self._running = None
                    if self._cancelling:
                        self._ran.notify_all()
                if nxt is not None and not job.cancelled and not worker.retired:
                    self._push(nxt, job)


TICKER = Ticker()
os.register_at_fork(after_in_child=TICKER._reset)  # the parent's thread is not in the child
