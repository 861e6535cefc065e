"""Bounds on what a test may wait for after its body: cleanup, and the process's exit.

Why this module exists: the per-test watchdog fires once, usually in the test
body; the cleanup that follows calls the Raft's ``kill()``, and a ``kill()``
that blocks (the classic 2D bug: the applier holds the lock while it sends on
the apply channel, and ``kill()`` takes that lock) used to block the whole run
with no result.  A thread started by the Raft that never ends (not a daemon)
used to keep the process alive after the last result was printed.  Neither
can be undone from outside in one process (Python cannot stop a thread), so:

* :func:`run_bounded` runs the cleanup in a thread of its own and waits for it
  at most a deadline.  If it does not finish, the caller fails the test with
  every thread's stack (in simulated time: the simulation's report of who
  waits for what, asked through the ``pytest_raftlab_thread_report`` hook, since
  the harness does not import the simulation), and the run goes on.
  In simulated time the "thread" is a simulated one and the deadline virtual;
  the simulation ends every simulated thread when the test ends.
* In real time the threads left blocked are *abandoned*: :func:`abandon`
  names them once, and later tests' leak checks leave them out
  (:func:`abandoned_idents`) instead of blaming the next test.
* :func:`threads_keeping_process_alive` lists the non-daemon threads that
  would make the interpreter wait forever at exit; the plugin reports them
  and ends the process itself once every result is written (docs/harness.md,
  *Cleanup*).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

CLEANUP_DEADLINE_S = 10.0  # how long a test's cleanup (every kill(), closing down) may take
_CAPTURE_SWITCH_INTERVAL_S = 1.0  # the GIL is kept this long at most while stacks are walked
_MAX_STACK_THREADS = 60  # stacks shown in full; beyond that only names (a Raft may start 1000s)


@dataclass(frozen=True)
class Bounded:
    """How a bounded call ended."""

    finished: bool
    elapsed_s: float = 0.0  # how long the caller waited
    error: BaseException | None = None  # what the call raised, if it finished by raising
    interrupted: BaseException | None = None  # what interrupted the wait (Ctrl-C, sim)
    stacks: str = ""  # every thread's stack, when it did not finish


def cleanup_deadline(watchdog_s: float | None) -> float:
    """The cleanup's bound: :data:`CLEANUP_DEADLINE_S`, or the watchdog's if that is shorter.

    A short ``--raft-timeout`` (used by self-tests) shortens the cleanup's bound too,
    so that a run of a broken Raft stays quick.
    """
    if watchdog_s is not None and 0 < watchdog_s < CLEANUP_DEADLINE_S:
        return watchdog_s
    return CLEANUP_DEADLINE_S


ThreadReport = Callable[[str], "str | None"]  # headline -> a report, or None (real threads)


def run_bounded(fn: Callable[[], object], deadline_s: float | Callable[[], float], name: str,
                thread_report: ThreadReport | None = None) -> Bounded:
    """Run ``fn()`` in a daemon thread named ``name``; wait for it at most ``deadline_s``.

    ``deadline_s`` may be a function, asked again every half second of the wait:
    a bound that grows with what is measured meanwhile (the machine's timer lag,
    for a cleanup on a starved machine).

    If the wait itself is interrupted (Ctrl-C, a failure the simulation posts to
    the main thread), the interruption is returned, not raised: the caller still
    has to report and go on.  The call then counts as not finished, unless it had
    finished by then -- and the interruption is returned either way: a Ctrl-C
    that reached another thread is raised in the main one only when its wait
    ends, which is often the very moment the call finished; dropped there, the
    command's stop was lost and the run went on to the next test.
    """
    done = threading.Event()
    outcome: list[BaseException] = []

    def body() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            outcome.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=body, name=name, daemon=True)
    start = time.monotonic()
    try:
        thread.start()
    except RuntimeError:  # "can't start new thread": the machine is out of threads
        body()  # then unbounded, as if there were no watchdog, rather than not at all
    interrupted: BaseException | None = None
    try:
        if callable(deadline_s):
            finished = _wait_within(done, deadline_s, start)
        else:
            finished = done.wait(deadline_s)
    except BaseException as exc:  # noqa: BLE001 - the watchdog or the simulation
        finished, interrupted = done.is_set(), exc
    elapsed = time.monotonic() - start
    if finished:
        return Bounded(True, elapsed, error=outcome[0] if outcome else None,
                       interrupted=interrupted)
    return Bounded(False, elapsed, interrupted=interrupted,
                   stacks=all_stacks(f"{name} had not ended after {elapsed:.1f} s",
                                     thread_report))


def _wait_within(done: threading.Event, bound: Callable[[], float], start: float) -> bool:
    """Wait for ``done`` until ``bound()`` seconds after ``start`` (re-read as it goes)."""
    while True:
        remaining = bound() - (time.monotonic() - start)
        if remaining <= 0:
            return done.is_set()
        if done.wait(min(remaining, 0.5)):
            return True


def all_stacks(headline: str, thread_report: ThreadReport | None = None) -> str:
    """Every thread's stack under ``headline``.

    ``thread_report`` answers first (in simulated time, the simulation's own
    report: each simulated thread, what it waits for, lock cycles); otherwise
    the interpreter's frames of every real thread, by name, as they were at
    one instant (:func:`capture_stacks`), formatted only afterwards.
    """
    if thread_report is not None:
        report = thread_report(headline)
        if report is not None:
            return report
    me = threading.current_thread()  # the harness, waiting: its stack says nothing
    threads = sorted((t for t in threading.enumerate() if t is not me), key=lambda t: t.name)
    captured = capture_stacks()
    abandoned = _abandoned_notes()
    lines = [f"{headline}; stacks of the {len(threads)} threads:"]
    for t in threads[:_MAX_STACK_THREADS]:
        entries = captured.get(t.ident) if t.ident is not None else None
        lines.append("")
        earlier = f", {abandoned[t.ident]}" if t.ident in abandoned else ""
        lines.append(f"thread {t.name!r} (daemon={t.daemon}{earlier}):")
        if entries is not None:
            summary = traceback.StackSummary.from_list(
                [(file, line, func, None) for file, line, func in entries])
            lines.extend(s.rstrip("\n") for s in summary.format())
    if len(threads) > _MAX_STACK_THREADS:
        rest = [t.name for t in threads[_MAX_STACK_THREADS:]]
        lines.append(f"\n... and {len(rest)} more threads: {', '.join(rest[:20])}")
    return "\n".join(lines)


StackEntries = list[tuple[str, int, str]]  # (file, line, function), outermost first
_capture_lock = threading.Lock()


def capture_stacks() -> dict[int, StackEntries]:
    """Every thread's (file, line, function) frames, taken as close to one instant as possible.

    Why not ``traceback.format_stack(frame)`` thread by thread: formatting reads
    source files (I/O, which lets the other threads run), and a frame's
    ``f_lineno`` is read when it is formatted, not when it was captured; a thread
    that moved on meanwhile shows a line it reached later under frames it has
    already left (``run()``'s ``finally`` under a deeper call).  So every frame of
    every thread is walked first -- plain attribute reads, no I/O, no source, with
    the interpreter's switch interval raised so that the walk keeps the GIL -- and
    only the caller formats, afterwards.
    """
    with _capture_lock:  # two captures at once must not restore each other's interval
        interval = sys.getswitchinterval()
        sys.setswitchinterval(max(interval, _CAPTURE_SWITCH_INTERVAL_S))
        try:
            captured: dict[int, StackEntries] = {}
            for ident, frame in sys._current_frames().items():
                entries: StackEntries = []
                f: FrameType | None = frame
                while f is not None:
                    code = f.f_code
                    entries.append((code.co_filename, f.f_lineno or 0, code.co_name))
                    f = f.f_back
                entries.reverse()
                captured[ident] = entries
        finally:
            sys.setswitchinterval(interval)
    return captured


# -- abandoned threads (real time only) ---------------------------------------------------

# thread ident -> (the Thread, "left blocked by test X").  The Thread object is kept
# because an ident alone does not name a thread for long: the OS reuses the ident of
# a thread that ended, and simulated threads are numbered from the same value in
# every simulated run, so a later test's new thread could carry an abandoned one's
# ident -- and be left out of that test's leak check (a simulated run after one
# that abandoned a thread then joined one thread fewer than the same run alone).
_abandoned: dict[int, tuple[threading.Thread, str]] = {}
_abandoned_lock = threading.Lock()


def abandon(threads: list[threading.Thread], test: str) -> list[str]:
    """Remember ``threads`` as left blocked by ``test``; return their names."""
    names = []
    with _abandoned_lock:
        for t in threads:
            if t.ident is not None and t.is_alive():
                _abandoned[t.ident] = (t, f"left blocked by {test}")
                names.append(t.name)
    return names


def abandoned_idents() -> set[int]:
    """Idents of abandoned threads that are still alive (left out of leak checks).

    An entry is forgotten once its thread has ended or its ident belongs to
    another thread: only the very thread that was abandoned is ever left out.
    """
    current = {t.ident: t for t in threading.enumerate()}
    with _abandoned_lock:
        for ident, (thread, _) in list(_abandoned.items()):
            if current.get(ident) is not thread or not thread.is_alive():
                del _abandoned[ident]
        return set(_abandoned)


def _abandoned_notes() -> dict[int, str]:
    """ident -> why, for the abandoned threads still alive (see :func:`abandoned_idents`)."""
    idents = abandoned_idents()
    with _abandoned_lock:
        return {ident: why for ident, (_, why) in _abandoned.items() if ident in idents}


def threads_keeping_process_alive() -> list[threading.Thread]:
    """Non-daemon threads other than the caller's: the interpreter would wait for them at exit."""
    me = threading.current_thread()
    return [t for t in threading.enumerate()
            if t is not me and t is not threading.main_thread() and not t.daemon
            and t.is_alive()]
