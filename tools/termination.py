"""SIGTERM and SIGHUP end ``raftlab test``, ``stress`` and ``grade`` the way Ctrl-C does.

Why: the command's pytest runs in a child process (for stress and grade in a
session of its own, so that a Ctrl-C in the terminal reaches only the command,
which then stops the runs in order), so the default action of SIGTERM (``kill``, a
batch system's time limit, systemd) or SIGHUP (the terminal closed) would end the
command at once and orphan its child: pytest and its workers kept running, and no
summary was written.  Inside
:func:`stop_signals_as_interrupts` both signals raise :class:`Terminated`, a
:class:`KeyboardInterrupt`, so every path that handles Ctrl-C (cancel the backend,
drain results, write the partial table) handles them too; the exit status then says
which signal it was (128 + its number, as a shell reports a process it killed).
After SIGHUP the standard streams that were the lost terminal go to /dev/null, so
the stop is not cut short by a write error.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
EXIT_CTRL_C = 130  # 128 + SIGINT, what Ctrl-C has always given


class Terminated(KeyboardInterrupt):
    """A stop signal other than Ctrl-C, raised in the main thread like a Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def exit_status(exc: BaseException | None) -> int:
    """The exit status after an interruption: 128 + the signal (130 for Ctrl-C)."""
    return 128 + exc.signum if isinstance(exc, Terminated) else EXIT_CTRL_C


def describe(exc: BaseException | None) -> str:
    """``interrupted`` for Ctrl-C, ``terminated by SIGTERM`` for a stop signal."""
    return f"terminated by {exc.name}" if isinstance(exc, Terminated) else "interrupted"


def _raise(signum: int, _frame: FrameType | None) -> None:
    if signum == signal.SIGHUP:
        _leave_terminal()
    raise Terminated(signum)


def _leave_terminal() -> None:
    """The terminal hung up: writes to it would fail (EIO) and break the orderly stop,
    so the standard streams that are that terminal now go to /dev/null (files and
    pipes are kept: the summary still reaches them)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            try:
                if os.isatty(fd):
                    os.dup2(devnull, fd)
            except OSError:
                pass
    finally:
        os.close(devnull)


@contextmanager
def stop_signals_as_interrupts() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread.

    The previous handlers come back on exit.  Outside the main thread (where Python
    cannot set handlers) it does nothing: the caller then keeps the default actions.
    A SIGHUP that was ignored when the command started (``nohup``) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    for sig in STOP_SIGNALS:
        old = signal.getsignal(sig)
        if sig == signal.SIGHUP and old == signal.SIG_IGN:
            continue
        previous[sig] = old
        signal.signal(sig, _raise)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """While inside, Ctrl-C, SIGTERM and SIGHUP wait; the first one acts as it is left.

    Why: a step that must happen whole -- a finished run counted in the statistics
    *and* written to results.jsonl -- would otherwise be cut in two by the
    KeyboardInterrupt a signal raises between any two bytecodes, and the summary would
    count a run the results file does not have.

    How: each of those signals whose handler is Python code (only those raise between
    bytecodes; a default action ends the process whole) gets a handler that only notes
    it; on leaving, the previous handlers come back and the first signal noted is
    handed to its own, which raises as it would have.  Python runs signal handlers in
    the main thread whichever thread the kernel delivered the signal to, so this holds
    with other threads running -- unlike blocking the signals with
    ``pthread_sigmask``, which is per thread: the kernel then hands a signal sent to
    the process to a thread that does not block it (a CI run of the whole suite,
    with threads left by other tests, saw the block do nothing).  Outside the main
    thread (where handlers cannot be set) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    left = False

    def note(signum: int, frame: FrameType | None) -> None:
        if left:  # a signal while the handlers are being put back: act on it now
            previous[signum](signum, frame)
        else:
            noted.append(signum)

    previous: dict[int, Callable[[int, FrameType | None], object]] = {}
    for sig in (signal.SIGINT, *STOP_SIGNALS):
        handler = signal.getsignal(sig)
        if callable(handler):
            previous[sig] = handler
            signal.signal(sig, note)
    try:
        yield
    finally:
        left = True
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if noted:
            previous[noted[0]](noted[0], None)
