"""Processes the code under test started in the test process, found after cleanup and
ended.

Why: the lab's Raft runs in threads (``threading``, ``time``, ``queue``, ``random``),
but nothing stops one from calling ``os.fork()`` or starting a program.  A program
started from ``make()`` (``sleep 3600`` through ``subprocess``) outlived the run.  The
rule for threads holds for processes: after a test, every process it started has
ended.  So the test process's children are read when a test starts and again after
its cleanup; a new one still running once the leak check's grace is over is killed
and reaped here, and named in the test's report.  (A fork of the test process is
worse -- a copy that runs the harness too -- and is ended at once instead:
labtests/fork_watch.py.)

Only direct children: a leftover's own children are re-parented to init when it is
killed (it shares the test process's group, so no group kill is safe).

Reading the children costs one small ``/proc/self/task/<tid>/children`` file per
thread of the test process (a few hundred microseconds), not a scan of every
process of the machine; the scan is the fallback where the kernel lacks that file.
"""
from __future__ import annotations

import os
import select
import time

# labtests.isolation.procs is imported where it is used: a run that never isolates and
# never finds a stray never loads the isolation package (tests/test_startup_imports.py).


def live_children() -> set[int]:
    """The pids of this process's children that have not ended (zombies left out)."""
    pids: set[int] = set()
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        tasks = []
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                pids.update(int(p) for p in f.read().split())
        except FileNotFoundError:  # the thread ended, or the kernel has no such file
            if not os.path.exists(f"/proc/self/task/{tid}"):
                continue
            from labtests.isolation import procs

            return {pid for pid, state in procs.children().items() if state != "Z"}
        except OSError:
            continue
    return {pid for pid in pids if _state(pid) not in (None, "Z")}


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:].split()[0].decode()


def describe(pid: int) -> str:
    """``pid 123 (its command line)``; a copy of this very process is called that."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        with open("/proc/self/cmdline", "rb") as f:
            own = f.read()
    except OSError:
        return f"pid {pid}"
    if cmdline == own:
        return f"pid {pid} (a copy of the test process: the Raft called os.fork())"
    text = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    if len(text) > 80:
        text = text[:77] + "..."
    return f"pid {pid} ({text})"


def leftovers(baseline: set[int], grace_s: float) -> list[int]:
    """The children started since ``baseline`` still running after ``grace_s`` seconds
    of real time; returns as soon as none is left.

    Waits with ``select`` in rounds, not ``time``: in simulated time ``time`` is the
    simulation's, and a real process needs real time to end."""
    rounds = max(1, round(grace_s / _ROUND_S))
    for _ in range(rounds):
        left = sorted(live_children() - baseline)
        if not left:
            return left
        select.select([], [], [], _ROUND_S)
    return sorted(live_children() - baseline)


_ROUND_S = 0.05


def end(pids: list[int], wait_s: float = 5.0) -> None:
    """SIGKILL and reap ``pids`` (children of this process).  Bounded: a process in an
    uninterruptible wait (a hung disk) dies only when that wait ends; it is then left to
    be reaped by whoever waits for it, rather than hanging the run."""
    from labtests.isolation import procs

    for pid in pids:
        procs.kill(pid)
    deadline = time.monotonic() + wait_s
    for pid in pids:
        procs.wait_exit(pid, max(0.0, deadline - time.monotonic()))
