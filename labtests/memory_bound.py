"""The memory bound: a test process that comes to hold more memory than it may is ended,
and the verdict says so.

Why: a Raft that allocates without end -- a follower that appends the same entries in
a loop, a log that is never trimmed, a thread that fills a list -- made the test
process grow until the machine swapped and the kernel's out-of-memory killer ended
some process, not always this one.  ``raftlab test`` gave no verdict in the meantime
and a student's machine stopped answering.  (``raftlab grade`` had its own limit on
each process's address space.)

Why not an address-space limit (``RLIMIT_AS``, ``RLIMIT_DATA``): a correct Raft's
address space follows its thread count (8 MiB of stack reserved per thread) and the
machine's core count (glibc reserves 64 MiB per malloc arena, up to eight per core),
not what it uses: ``--race`` over 2A and 2B had 449 threads and 3.6 GiB of data
mappings at a resident size of 52 MB; the whole lab under ``--race`` 7 GiB of address
space at 95 MB; 2C's churn tests 1.3 GiB at 46 MB.  Any address-space limit low
enough to protect a laptop fails correct runs on a many-core machine.  What the bound
watches is the process's resident size (``/proc/self/statm``, :func:`resident_mib`):
the largest peak measured for a correct run is 309 MB (the whole lab in one process
under ``--sim --race --raft-debug``), against a default bound of 2 GiB.

How: one thread of its own per process reads it, at most once a second and more often
as the bound comes near (:func:`next_look_s`).  Started with ``_thread``, not
``threading``: simulated time patches ``threading`` (the thread must run in real time
beside the simulation), and the harness's leak checks and stack dumps list
``threading``'s threads (this one belongs to no test).  Above the bound it writes a
header and every thread's stack where the last bound writes its own
(:func:`labtests.last_bound.end_process`: ``raftlab test``, xdist's controller and
stress read them to word the verdict; an isolated peer's go to the stack file its
tester reads) and ends the process with exit status 1: the memory cannot be taken back
from a Raft's thread, so nothing else in the process could run safely.  A Raft that
fills memory faster than :data:`FILL_MIB_PER_S` is seen past the bound by what it
filled since the last look.

The watcher runs Python code, so it needs the interpreter lock: a Raft thread that
keeps it is the last bound's case (:mod:`labtests.last_bound`).  After ``fork()`` the
child has no watcher; :func:`watch`, called at the start of every graded test, starts
one in a process that has none (stress's forked workers).
"""

from __future__ import annotations

import _thread
import os
import resource
import sys
from typing import Any

from labtests import last_bound

_RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: KiB on Linux, bytes on macOS
_PAGE = os.sysconf("SC_PAGE_SIZE")
# How often the watcher looks follows the room left: a Python thread filled memory at
# 0.9 GiB/s here (4 MiB pieces, every page written; small objects are slower), so
# assuming twice that, the next look comes before the bound can be reached -- at most
# once a second far from it (a wake-up of an idle thread cost 120 us of CPU on the lab
# VM: a test process must not pay that ten times a second for nothing).
FILL_MIB_PER_S = 2048
LOOK_S = (0.05, 1.0)  # the shortest and the longest time between two looks


def resident_mib() -> int:
    """This process's resident size now, in MiB.

    Not ``getrusage``'s peak: the kernel carries a process's peak across ``fork`` and
    ``exec``, so a test process started by one that once held 3 GiB (an editor, a
    notebook, a big CI runner) would read 3 GiB before it allocated anything
    (measured: a child started by a parent that had peaked at 311 MB read 311 MB as its
    own peak at 10 MB resident).  Where there is no ``/proc`` (macOS), the peak it is.
    """
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE >> 20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _RSS_UNIT >> 20


def next_look_s(held_mib: int, limit_mib: int) -> float:
    """Seconds until the next look, ``held_mib`` of ``limit_mib`` being held now."""
    return min(LOOK_S[1], max(LOOK_S[0], (limit_mib - held_mib) / FILL_MIB_PER_S))


class _Watcher:
    """This process's watcher: its bound, where its stacks go, and whether it goes on."""

    def __init__(self) -> None:
        self.pid: int | None = None  # the process whose watcher runs (None: none runs)
        self.limit_mb = 0
        self.fallback_fd: int | None = None
        self.dump_file = True  # False: the stacks go to fallback_fd (an isolated peer's)
        self.generation = 0  # a watcher of an older generation ends at its next look
        self.wake: Any = None  # the running watcher sleeps on it; stop() releases it


_watcher = _Watcher()


def watch(limit_mb: int, fallback_fd: int | None, *, dump_file: bool = True) -> None:
    """Keep this process under ``limit_mb`` MiB of resident memory (0: no bound).

    The stacks go where the last bound's go (its folder's file, else ``fallback_fd``);
    with ``dump_file`` False always to ``fallback_fd`` (an isolated peer's stack file,
    which its tester reads).
    """
    _watcher.limit_mb = limit_mb
    _watcher.fallback_fd = fallback_fd
    _watcher.dump_file = dump_file
    if limit_mb <= 0:
        stop()
        return
    if _watcher.pid == os.getpid():
        return  # already watching (the limit just set is read at its next look)
    _watcher.generation += 1
    _watcher.pid = os.getpid()
    # A real lock (simulated time patches threading's, not _thread's), held: the watcher
    # waits on it with a timeout, and stop() releases it to end the wait at once.
    _watcher.wake = _thread.allocate_lock()
    _watcher.wake.acquire()
    try:
        _thread.start_new_thread(_loop, (_watcher.generation, _watcher.wake))
    except RuntimeError:
        # Out of threads (a Raft that leaked them in an earlier test): this test runs
        # unwatched -- raising here would end the whole run in pytest's INTERNALERROR --
        # and the next test's watch() tries again.
        _watcher.pid = None


def stop() -> None:
    """End this process's watcher (at once: its wait is cut short)."""
    _watcher.pid = None
    _watcher.generation += 1
    wake, _watcher.wake = _watcher.wake, None
    if wake is not None:
        try:
            wake.release()
        except RuntimeError:
            pass  # released already


def _loop(generation: int, wake: Any) -> None:
    while _watcher.generation == generation:
        held = resident_mib()
        limit = _watcher.limit_mb
        if 0 < limit < held:
            last_bound.end_process(last_bound.memory_header(held, limit), _watcher.fallback_fd,
                                   dump_file=_watcher.dump_file)
        if wake.acquire(timeout=next_look_s(held, limit)):
            return  # stop() released it
