"""One CPU per test process: a graded test's threads share one core while it runs.

Why: under CPython's GIL only one thread of a process runs Python at a time, yet
on an idle multi-core machine Linux wakes a blocked thread on the idle core at
once.  There it finds the GIL held by the thread that woke it, blocks again, and
is woken a second time when the GIL is released: every hand-off between two
threads costs two wake-ups and a trip between cores.  A commit of the 2C churn
test passes a message along a chain of threads (the client, the leader's
replicator, the network's workers, the followers' handlers, the appliers, the
tester's readers), so that was most of its CPU: on the 2-core VM of issue 19 a
steady 5-peer cluster took 1.5-1.6 ms of CPU and 32 context switches per commit,
and 0.66-0.76 ms and 13 switches with the process held to one core (docs/
performance.md, "Session 11").  On one core, with :mod:`labtests.batchsched`'s
policy, a woken thread waits until the running one blocks, then takes the free
GIL: one wake-up per hand-off.  The test gets as much CPU as before: one core is
all a Python process can use at a time anyway.

Which core: the one with the fewest other raftlab test processes pinned to it now
(a small registry file, one line per pinned process, under a lock), the current
one on a tie, so that ``raftlab stress -p 2`` or two pytest-xdist workers on a
2-core machine get a core each.  Load from other programs is not in the registry:
if the machine makes this process's timers late (the timer-lag probe of
:mod:`labtests.timing` measures it every 50 ms) by :data:`RELEASE_LAG_S` or more,
the pin is released at once and the kernel may move the threads again for the
rest of the test.  That bound is a tenth of the lag that makes a failure
inconclusive (:mod:`labtests.overload`), so a pin never costs a correct Raft its
timing, and the probe that decides is itself on the pinned core.

Real time only (a simulation runs one thread at a time).  With isolated peers the
tester's own process is pinned (its network, proxies and appliers hand messages
along threads under one GIL just the same: a 2B run took 4-13 % less CPU and 18 %
fewer switches), while the peers, processes of their own, keep the CPUs the tester
had before its pin (:func:`mask_for_children`), so they still spread over the
cores.  Linux only; where the process may use a single CPU already (``taskset``, a
container's cpuset), or the registry cannot be used, nothing changes.  A mask set
with ``taskset`` is kept: the pin is one of its CPUs, and the release restores it.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

# Machine lag (s) at which the pin is released for the rest of the test: a tenth of
# labtests.overload.LAG_BOUND_MS; an idle machine measures a few ms.
RELEASE_LAG_S = 0.020
# Passes over the process's threads when widening: a thread started from a pinned
# one during a pass is pinned too, and the next pass sees it.
_RELEASE_PASSES = 5
ENDED = "test ended"  # the release at the end of a test
# The registry's lock is held for microseconds; a holder stopped under it costs a
# test its pin, never its start.
LOCK_WAIT_S = 0.5
# A few hundred processes write ~3 kB; code under test may write anything there.
REGISTRY_MAX_BYTES = 1 << 16


_in_force: CpuPin | None = None  # this process's pin while it holds


def mask_for_children() -> frozenset[int] | None:
    """The CPUs for a child process that must not share the test's one CPU.

    While a pin holds, the mask this process had before it; None otherwise (a child
    started then inherits the process's own mask, which is already the wide one).
    """
    pin = _in_force
    return pin.wide if pin is not None and not pin.released else None


def registry_path() -> Path:
    """The registry of pinned test processes: per user, in memory where there is /dev/shm."""
    base = Path("/dev/shm")
    if not base.is_dir():
        base = Path(tempfile.gettempdir())
    return base / f"raftlab-cpu-pins-{os.getuid()}"


class CpuPin:
    """This process's threads held to one CPU; :meth:`release` lets them go again."""

    def __init__(self, cpu: int, wide: set[int], registry: Path) -> None:
        self.cpu = cpu
        self.wide = frozenset(wide)  # the mask to restore
        self.registry = registry
        self.released = False
        self.release_reason: str | None = None
        self._registered = True  # our line is in the registry
        self._lock = threading.Lock()

    def describe(self) -> str:
        """``cpu 1``, or ``cpu 1, released early: timers late by 25 ms`` (a test's record)."""
        reason = self.release_reason
        if reason is None or reason == ENDED:
            return f"cpu {self.cpu}"
        return f"cpu {self.cpu}, released early: {reason}"

    def lag_seen(self, machine_lag_s: float) -> None:
        """The timer-lag probe's new worst machine lag: release the pin if it is too late."""
        if machine_lag_s >= RELEASE_LAG_S and not self.released:
            # On the harness thread, whose jobs must not block: the registry only if its
            # lock is free now (the end of the test tries again).
            self.release(f"timers late by {machine_lag_s * 1000:.0f} ms", wait=False)

    def release(self, reason: str = ENDED, wait: bool = True) -> None:
        """Give every thread of the process its former CPUs back, and leave the registry.

        Idempotent and thread-safe: the probe's thread and the test's cleanup may
        both call it; a later call only retries leaving the registry.  ``wait``:
        wait up to :data:`LOCK_WAIT_S` for the registry's lock, else try once.
        Never raises.
        """
        with self._lock:
            first = not self.released
            if first:
                self.released = True
                self.release_reason = reason
        if first:
            global _in_force
            if _in_force is self:
                _in_force = None
            _set_every_thread(self.wide)
        with self._lock:
            if not self._registered:
                return
            self._registered = not _update_registry(
                self.registry, lambda entries: entries.pop(os.getpid(), None),
                LOCK_WAIT_S if wait else 0.0)


def pin_process(registry: Path | None = None) -> CpuPin | None:
    """Hold every thread of this process (and those it starts later) to one CPU.

    Returns the pin, or None where nothing was changed: not Linux, a single
    allowed CPU, a registry that cannot be opened, or a kernel that refused.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        wide = os.sched_getaffinity(0)
    except OSError:
        return None
    if len(wide) < 2:
        return None
    registry = registry if registry is not None else registry_path()
    here = _current_cpu()
    chosen: list[int] = []

    def choose(entries: dict[int, int]) -> None:
        counts = {cpu: 0 for cpu in wide}
        for pid, cpu in entries.items():
            if pid != os.getpid() and cpu in counts:
                counts[cpu] += 1
        fewest = min(counts.values())
        ties = sorted(cpu for cpu, n in counts.items() if n == fewest)
        cpu = here if here in ties else ties[0]
        entries[os.getpid()] = cpu
        chosen.append(cpu)

    if not _update_registry(registry, choose):
        return None
    pin = CpuPin(chosen[0], wide, registry)
    global _in_force
    _in_force = pin
    if not _set_every_thread({pin.cpu}):
        pin.release("the kernel refused")
        return None
    return pin


def _set_every_thread(cpus: set[int] | frozenset[int]) -> bool:
    """Set the CPU mask of every thread of this process; False if the kernel refused."""
    for _ in range(_RELEASE_PASSES):
        changed = False
        try:
            tids = [int(tid) for tid in os.listdir("/proc/self/task")]
        except OSError:
            tids = [0]
        for tid in tids:
            try:
                if os.sched_getaffinity(tid) != cpus:
                    os.sched_setaffinity(tid, cpus)
                    changed = True
            except ProcessLookupError:  # the thread ended meanwhile
                continue
            except OSError:
                return False
        if not changed:
            return True
    return True


def _current_cpu() -> int | None:
    """The CPU the calling thread runs on (field 39 of its stat), or None."""
    try:
        with open("/proc/thread-self/stat") as f:
            stat = f.read()
        return int(stat[stat.rindex(")") + 2:].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def _lock(fd: int, wait_s: float) -> bool:
    """Take the registry's lock within ``wait_s``; False if it stays taken.

    Bounded because the holder may be stopped (Ctrl-Z, a debugger) inside its few
    microseconds under the lock: a test then runs unpinned rather than never.
    """
    deadline = time.monotonic() + wait_s
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.02)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _update_registry(path: Path, change: Callable[[dict[int, int]], object],
                     wait_s: float = LOCK_WAIT_S) -> bool:
    """Under the registry's lock: read it (live processes only), ``change`` it, write it.

    Lines are ``pid cpu``; an unreadable line is dropped.  False if the file cannot
    be opened, is not this user's, or cannot be locked within ``wait_s`` or written.
    """
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_uid != os.getuid():
            return False
        if not _lock(fd, wait_s):
            return False
        with os.fdopen(os.dup(fd), "r+") as f:
            entries: dict[int, int] = {}
            for line in f.read(REGISTRY_MAX_BYTES).splitlines():
                fields = line.split()
                if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                    pid, cpu = int(fields[0]), int(fields[1])
                    if _alive(pid):
                        entries[pid] = cpu
            change(entries)
            f.seek(0)
            f.truncate()
            f.write("".join(f"{pid} {cpu}\n" for pid, cpu in entries.items()))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing the last descriptor of the open file drops the lock
