"""One string-hash seed for every run of explore and for every replay.

Why: Python salts the hash of ``str`` and ``bytes`` per process (unless
``PYTHONHASHSEED`` is set when the interpreter starts), so the order in which a
set or a dict built from hashes iterates strings changes from process to
process.  A Raft that iterates a set of peer names or method names then takes
another path in a replay (a fresh process) than in the run explore found, and
"replays exactly" would hold only by luck.  So explore's runs happen in
interpreters started with ``PYTHONHASHSEED`` = :data:`HASH_SEED` (the local
worker processes, and the child process of each Dask worker thread); the seed is
recorded in each finding's JSON, and ``--replay`` runs in an interpreter started
with the recorded seed (:data:`HASH_SEED` for files written before it was
recorded).

The hash seed can only be chosen when an interpreter starts, so the workers are
*spawned* (a fresh interpreter), not forked, with the variable set just for
that start (:func:`pinned_context`); each run is then forked from a worker
(:mod:`tools.explore.guard`) and inherits its seed.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing.context as mp_context
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tools.scratch import HeldFolder
from tools.termination import interrupts_deferred

HASH_SEED = 0  # PYTHONHASHSEED of every run explore makes
KEY = "hash_seed"  # the field of a finding's JSON that records it

_environ_lock = threading.Lock()  # os.environ is changed only while a worker starts


# Stop signals, held while a process is spawned: see _PinnedProcess._Popen.
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class _PinnedProcess(mp_context.SpawnProcess):
    """A spawned process whose interpreter starts with ``PYTHONHASHSEED`` set."""

    hash_seed = HASH_SEED
    spawned: list[Any] | None = None  # its context's record of what it started

    @staticmethod
    def _Popen(process_obj: Any) -> Any:  # noqa: N802 - multiprocessing's name
        """Start the interpreter with the hash seed set, stop signals held, and record it.

        Why held, here: a stop signal in the middle of the spawn left a child that had
        not got all of its start-up data ("EOFError: Ran out of input" under the
        command's last line, seen beside a loaded run of the explore tests), and one
        that came between the spawn and the pool's table of workers left a worker that
        no stop could find.  Held, the signal is acted on once the process is started
        and recorded in its context (:func:`kill_workers` kills what is recorded).

        Why held in the child too: a Ctrl-C at the terminal reaches the whole process
        group, and a worker interpreter still importing when it came died of it with a
        traceback of its own ("Fatal Python error: init_import_site", spawn_main's
        frames) under the command's one line -- 3 of 17 Ctrl-Cs as the workers started.
        The mask stays across fork and exec; the process ignores Ctrl-C and then lets the
        signals through (:meth:`run`), as multiprocessing's resource tracker starts."""
        # The mask is per thread, and Python runs a signal's handler in the main thread
        # whichever thread the kernel gave the signal to: with the pool's own threads
        # running, a Ctrl-C still raised in the middle of the spawn ("EOFError: Ran out
        # of input" once in a CI run: test_a_stop_signal_as_the_workers_start[ctrl-c-to-
        # group]).  So the handlers wait as well (tools/termination.py); the mask stays
        # for what the child inherits.
        with _environ_lock, interrupts_deferred():
            before = os.environ.get("PYTHONHASHSEED")
            os.environ["PYTHONHASHSEED"] = str(process_obj.hash_seed)
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            try:
                popen = mp_context.SpawnProcess._Popen(process_obj)
                if process_obj.spawned is not None:
                    process_obj.spawned.append(popen)
                return popen
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
                if before is None:
                    os.environ.pop("PYTHONHASHSEED", None)
                else:
                    os.environ["PYTHONHASHSEED"] = before

    def __getstate__(self) -> dict[str, Any]:
        """What the spawned process gets of this object: not the record (its parent's)."""
        state = dict(self.__dict__)
        state.pop("spawned", None)
        return state

    def run(self) -> None:
        """In the process: Ctrl-C is its command's to act on (:meth:`_Popen`)."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        super().run()


class _PinnedContext(mp_context.SpawnContext):
    """The ``spawn`` context, with every process started under one hash seed, and a
    record of every process it started (``spawned``: their ``Popen`` objects)."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = seed
        self.spawned: list[Any] = []

    def Process(self, *args: Any, **kwargs: Any) -> _PinnedProcess:  # type: ignore[override]  # noqa: N802
        proc = _PinnedProcess(*args, **kwargs)
        proc.hash_seed = self.seed
        proc.spawned = self.spawned
        return proc


def pinned_context(seed: int = HASH_SEED) -> mp_context.SpawnContext:
    """A multiprocessing context (for ``ProcessPoolExecutor(mp_context=...)``) whose
    processes start with ``PYTHONHASHSEED=seed`` and ignore Ctrl-C from their start:
    their command stops them (:class:`_PinnedProcess`)."""
    return _PinnedContext(seed)


@contextlib.contextmanager
def pinned_executor(workers: int, seed: int = HASH_SEED) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``workers`` spawned with ``PYTHONHASHSEED=seed``, for a ``with`` block.

    On leaving it the pool is shut down and the resource tracker it brought along is
    stopped (:func:`stop_resource_tracker`), so a command that used it ends with no
    process of its left behind.
    """
    pool = pinned_pool(workers, seed)
    try:
        yield pool
    except BaseException:  # e.g. a stop signal: the run in a worker is not waited for
        kill_workers(pool)
        raise
    finally:
        pool.shutdown(cancel_futures=True)
        remove_scratch(pool)
        stop_resource_tracker()


START_TIMEOUT = 120.0  # s for every worker to start; beyond it the names stay (tracked)


def pinned_pool(workers: int, seed: int = HASH_SEED,
                scratch_in: str | None = None) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes spawned with ``PYTHONHASHSEED=seed``, all started,
    whose semaphores have no name left in ``/dev/shm``; its scratch folder
    (:func:`remove_scratch`) is made in ``scratch_in`` (default: the temporary directory).

    Why: a ``spawn`` pool's queues hold five POSIX named semaphores (``sem.mp-*``),
    which the workers open by name when they start.  They were unlinked only when the
    pool was collected, or -- if this process died first -- by multiprocessing's
    resource tracker; when the whole process group was SIGKILLed (a user or a batch
    system killing the command, a test's cleanup killing a Dask worker), the tracker
    died with it and the five names stayed until the machine rebooted (about 60 of
    them had gathered on the lab machine).  So every worker is started now (each
    checks in; none is idle before all have, so each check-in starts a new one) and
    the names are then unlinked: the semaphores live on in the processes that opened
    them and vanish with the last of them, however it ends.  A pool never starts a
    process after that (``ProcessPoolExecutor`` replaces no worker: the pool breaks).
    Should the workers not start in time, the names stay to the tracker, as before.

    The workers ignore Ctrl-C from their start (:class:`_PinnedProcess`) and die with
    the thread that started them (:func:`_worker_start`), so start the pool from a
    thread that lives as long as its use.  The
    command that owns the pool stops them when it is stopped (:func:`kill_workers`), so
    a Ctrl-C at the terminal, which reaches the whole process group, gives that
    command's words, not a traceback per worker; and a command killed alone (``kill
    -9``) takes its workers with it.  A stop signal while the workers start kills them
    and their names are unlinked: the signal's exception goes on to the caller with no
    process of the pool left.
    """
    scratch = HeldFolder.fresh(SCRATCH_PREFIX, scratch_in)
    pool = ProcessPoolExecutor(workers, mp_context=pinned_context(seed), initializer=_worker_start,
                               initargs=(os.getpid(), str(scratch.path)))
    pool.raftlab_scratch = scratch  # type: ignore[attr-defined]
    ready = tempfile.mkdtemp(prefix="raftlab-pool-", dir=scratch.path)
    try:
        futures = [pool.submit(_check_in, ready, workers, START_TIMEOUT)
                   for _ in range(workers)]
        pids = {f.result(timeout=START_TIMEOUT + 30) for f in futures}
    except Exception:  # noqa: BLE001 - a broken pool says so at its first real task
        pids = set()
    except BaseException:  # a stop signal (KeyboardInterrupt): no worker left behind
        kill_workers(pool)
        unlink_semaphore_names(pool)  # no process of the pool uses them any more
        pool.shutdown(wait=False, cancel_futures=True)
        remove_scratch(pool)
        raise
    finally:
        shutil.rmtree(ready, ignore_errors=True)
    if len(pids) == workers:
        unlink_semaphore_names(pool)
    return pool


SCRATCH_PREFIX = "raftlab-explore-pool-"  # a pool's scratch folder (a held one: tools/scratch.py)


def remove_scratch(pool: ProcessPoolExecutor) -> None:
    """Remove the pool's scratch folder, where its runs make their work folders
    (:data:`tools.explore.guard.RUNS_DIR`); once its workers are gone (shut down, or
    killed and reaped).

    Why: a run removes its own work folder when it ends, but a stop signal SIGKILLs
    the workers (:func:`kill_workers`), so the runs in flight never did: every stop
    left one ``raftlab-explore-run-*`` folder per worker in /tmp (60 of them after an
    hour of this session's stop tests).  A command killed outright cannot remove it
    either: it is a held folder (:mod:`tools.scratch`), which the next explore reclaims."""
    scratch = getattr(pool, "raftlab_scratch", None)
    if scratch is not None:
        scratch.remove()


def _worker_start(parent: int, scratch: str) -> None:
    """In a worker, before its first task: the worker dies with the command's thread
    that started it (``kill -9`` of the command alone left the workers waiting for
    tasks for good: they are in no session of their own, but nothing ended them).
    Where the kernel cannot do that, nothing changes.  (Ctrl-C the worker ignores from
    its start: :class:`_PinnedProcess`.)"""
    from labtests.isolation import procs
    from tools.explore import guard

    procs.die_with(parent)
    guard.RUNS_DIR = scratch


def kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGKILL ``pool``'s worker processes (ours, by pid) and reap them: those in its
    table, and every process its pinned context started (one spawned as a stop signal
    came may not be in the table yet).

    Why: a stop signal must end the command promptly, and a run in a worker may go on
    for up to its ``--run-timeout``; ``shutdown`` would wait for it.  A guarded run's
    forked child dies with its worker (:mod:`tools.explore.guard`).  The pool is
    broken afterwards: shut it down (``wait=False`` is prompt).
    """
    procs = list((getattr(pool, "_processes", None) or {}).values())
    popens = list(getattr(getattr(pool, "_mp_context", None), "spawned", None) or ())
    for worker in [*procs, *popens]:  # a Process or a Popen: both have kill()
        with contextlib.suppress(OSError, ValueError, AttributeError):
            worker.kill()
    for proc in procs:
        with contextlib.suppress(OSError, ValueError, AssertionError):
            proc.join(5)
    for popen in popens:
        with contextlib.suppress(OSError, ValueError):
            popen.wait(5)


def _check_in(ready: str, workers: int, timeout: float) -> int:
    """In a worker: say it started, then wait until all ``workers`` have (so none is
    idle before every one was started).  Returns this worker's pid."""
    with open(os.path.join(ready, str(os.getpid())), "w"):
        pass
    deadline = time.monotonic() + timeout
    while len(os.listdir(ready)) < workers and time.monotonic() < deadline:
        time.sleep(0.005)
    return os.getpid()


def semaphore_names(pool: ProcessPoolExecutor) -> list[str]:
    """The names of the named semaphores of ``pool``'s queues (``/mp-...``: in /dev/shm
    as ``sem.mp-...`` until unlinked)."""
    from multiprocessing import synchronize

    names = []
    for queue in (getattr(pool, "_call_queue", None), getattr(pool, "_result_queue", None)):
        for value in vars(queue).values() if queue is not None else ():
            if isinstance(value, synchronize.SemLock) and value._semlock.name:
                names.append(value._semlock.name)
    return names


def unlink_semaphore_names(pool: ProcessPoolExecutor) -> None:
    """Unlink the names of ``pool``'s semaphores now, and tell the resource tracker and
    the semaphores' own finalizers (which would unlink them again, and fail) to forget
    them.  Only once every process that needs them has opened them: :func:`pinned_pool`.
    ``_finalizer_registry`` and ``_semlock`` are private, present in 3.11-3.13."""
    import _multiprocessing
    from multiprocessing import resource_tracker, synchronize, util

    names = set(semaphore_names(pool))
    registry = getattr(util, "_finalizer_registry", {})
    for finalizer in list(registry.values()):
        args = getattr(finalizer, "_args", None) or ()
        if (getattr(finalizer, "_callback", None) is synchronize.SemLock._cleanup
                and args and args[0] in names):
            finalizer.cancel()
    for name in sorted(names):
        with contextlib.suppress(FileNotFoundError):
            _multiprocessing.sem_unlink(name)
        resource_tracker.unregister(name, "semaphore")


TRACKER_STOP_S = 2.0  # s for the tracker to end once told; it takes milliseconds


def stop_resource_tracker(within_s: float = TRACKER_STOP_S) -> None:
    """End the resource tracker that spawned workers brought along, and wait for it --
    at most ``within_s``, then SIGKILL it.

    A ``spawn`` context starts multiprocessing's resource tracker (a child process
    that cleans up the pool's semaphores); it ends by itself only once this process
    has exited, so ``raftlab explore`` would leave it behind for a moment, running in
    its process group.  Stopping it here, after the pool, makes the command end clean.
    Its own ``_stop`` waits without a bound for it to see the end of its pipe, which
    never comes while another process holds the pipe: a worker being spawned as a stop
    signal came (not yet in the pool's table, so not killed) inherited it, and the
    command hung there for good (6 hangs in a loop of SIGTERMs as the workers start).  Uses the
    tracker's private ``_lock``, ``_fd`` and ``_pid`` (3.11-3.13); without them nothing
    is done.
    """
    from multiprocessing import resource_tracker

    from labtests.isolation import procs

    tracker = getattr(resource_tracker, "_resource_tracker", None)
    lock = getattr(tracker, "_lock", None)
    if tracker is None or lock is None or not hasattr(tracker, "_fd"):
        return
    with lock:
        fd, pid = tracker._fd, getattr(tracker, "_pid", None)
        if fd is None or pid is None:
            return  # not running
        os.close(fd)  # the end of its pipe, as far as this process goes: it exits
        tracker._fd = None
        if procs.wait_exit(pid, within_s) is None:
            procs.kill(pid)
            with contextlib.suppress(ChildProcessError):  # already reaped
                os.waitpid(pid, 0)
        tracker._pid = None


def current() -> int | None:
    """This interpreter's hash seed, if it was pinned when it started; None if random."""
    if not sys.flags.hash_randomization:
        return 0  # PYTHONHASHSEED=0 turns randomization off: the seed is 0
    value = os.environ.get("PYTHONHASHSEED", "")
    return int(value) if value.isdigit() else None


def recorded(data: dict[str, Any]) -> int:
    """The hash seed a finding's JSON records (:data:`HASH_SEED` for older files)."""
    value = data.get(KEY, HASH_SEED)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 4294967295:
        raise ValueError(f"{KEY} must be an integer from 0 to 4294967295, not {value!r}")
    return value


def with_hash_seed(schedule_text: str, seed: int = HASH_SEED) -> str:
    """A schedule's JSON text (``Schedule.dumps``) with the hash seed recorded first."""
    if not schedule_text.startswith("{"):
        raise ValueError("not a JSON object")
    text = f'{{"{KEY}": {int(seed)}, ' + schedule_text[1:]
    json.loads(text)  # still one JSON document
    return text
