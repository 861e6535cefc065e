"""The last bound on a graded test: its process is ended from C when Python cannot run.

Why: every other bound on a test is Python code -- the per-test watchdog
(pytest-timeout's alarm, handled in the main thread), the bounded cleanup
(:mod:`labtests.watchdog`), the simulation's backstop.  A Raft thread that keeps
Python's interpreter lock keeps all of them from ever running: a long computation
inside one call into C code (``sum(range(10**12))``, a regular expression that
backtracks), or ``sys.setswitchinterval(3600)`` and a loop.  ``raftlab test`` then
waited with no result until something outside killed it (``timeout 200 raftlab
test ...`` ended it with status 124 after 200 s; without it, never).

faulthandler's ``dump_traceback_later`` runs a C thread that needs no interpreter
lock: at its deadline it writes every thread's stack and ends the process with
exit status 1.  The deadline is the watchdog's plus as much again (at least
:data:`MIN_MARGIN_S`), or the simulation's own wall-clock backstop plus that
margin when it is later: whenever Python can run at all, the watchdog, the cleanup
and the backstop act first, so this fires only in a process that could not act on
its own watchdog -- never on a slow machine's correct run.

Where the stacks go: with :data:`ENV_DIR` set (``raftlab test`` sets it to its own
folder), to ``last-bound-<pid>.txt`` there, which the command and xdist's
controller read to word the verdict (:func:`read_dump`); a process that ends
normally removes its empty file.  Otherwise, to the process's standard error.

pytest's faulthandler plugin cancels any pending dump when a test fails (its
``pytest_exception_interact``, there for pdb): the plugin arms the bound again
after it for the time left (:func:`rearm`).  Never armed under ``--pdb`` or
``--trace`` (a debugging session takes what it takes), nor with the watchdog off.
(The pytest side is labtests.plugin's; this module imports nothing of pytest, so that
``raftlab test``'s own process reads the dump without loading it.)

The memory bound (:mod:`labtests.memory_bound`) ends a process through this module too
(:func:`end_process`): its dump starts with :func:`memory_header`'s line instead of
faulthandler's, goes to the same file, and :func:`describe` words either.

A process forked while the bound is armed could never arm one again (faulthandler's
cancel, which arming starts with, would wait for the parent's watchdog thread, which
the copy does not have).  The one fork made during a test is the Raft's, and
labtests/fork_watch.py ends that copy before it runs anything.
"""

from __future__ import annotations

import faulthandler
import os
import time
from pathlib import Path
from typing import IO, NoReturn

ENV_DIR = "RAFTLAB_LAST_BOUND_DIR"
MIN_MARGIN_S = 60.0  # the least time the watchdog's own path gets before the last bound
_PREFIX = "last-bound-"
_MEMORY_HEADER = "Memory bound ("  # how the memory bound's dump starts


def seconds_for(watchdog_s: float) -> float:
    """The last bound of a test whose watchdog is ``watchdog_s`` seconds."""
    return watchdog_s + max(MIN_MARGIN_S, watchdog_s)


def dump_path(folder: str | os.PathLike[str], pid: int) -> Path:
    return Path(folder) / f"{_PREFIX}{pid}.txt"


def read_dump(folder: str | os.PathLike[str] | None, pid: int | None) -> str | None:
    """What the last bound wrote when it ended process ``pid`` (None: it did not)."""
    if folder is None or pid is None:
        return None
    try:
        text = dump_path(folder, pid).read_text(errors="replace")
    except OSError:
        return None
    return text if text.strip() else None


def memory_header(held_mib: int, limit_mib: int) -> str:
    """The first line of the memory bound's dump (:mod:`labtests.memory_bound`)."""
    return f"{_MEMORY_HEADER}{held_mib} MiB > {limit_mib} MiB)!\n"


def memory_dump(text: str) -> str | None:
    """The memory bound's dump in ``text`` (a file the process wrote it to, with other
    stack dumps before it, perhaps): from its header line on; None if there is none."""
    start = text.rfind(_MEMORY_HEADER)
    return text[start:] if start >= 0 else None


def describe(dump: str, process: str = "the test process") -> str:
    """The reason line of a test whose process a bound ended (``dump``: what it wrote,
    which starts with faulthandler's ``Timeout (H:MM:SS)!`` or :func:`memory_header`'s
    line; ``process``: how the verdict names that process)."""
    first = dump.lstrip().split("\n", 1)[0]
    if first.startswith(_MEMORY_HEADER):
        held, _, limit = first.removeprefix(_MEMORY_HEADER).split(")", 1)[0].partition(" > ")
        return (f"raftlab's memory bound ended {process}: it held {held} of memory, over "
                f"its bound of {limit} (--raft-memory-mb, RAFTLAB_MEMORY_MB); most likely the "
                "Raft allocates without end (a log never trimmed, entries appended in a loop): "
                "see the stacks")
    after = "its deadline"
    if first.startswith("Timeout (") and first.count(":") >= 2:
        h, m, sec = first.removeprefix("Timeout (").split(")", 1)[0].split(":")[:3]
        try:
            after = f"{int(h) * 3600 + int(m) * 60 + float(sec):g} s"
        except ValueError:
            pass
    return (f"raftlab's last bound ended {process} after {after}: not even its "
            "watchdog could end the test (most likely a thread kept Python's interpreter "
            "lock: a long call into C code, or sys.setswitchinterval)")


class _Bound:
    """The one armed deadline of this process (faulthandler has a single slot)."""

    def __init__(self) -> None:
        self.deadline: float | None = None  # time.monotonic() value, while armed
        self.required_s = 0.0  # asked for by :func:`require` before the next arm
        self.file: IO[bytes] | None = None  # the dump file, once opened
        self.armed_fd: int | None = None  # where the armed dump goes (None: stderr)

    def _target(self, fallback_fd: int | None) -> int | None:
        folder = os.environ.get(ENV_DIR)
        if self.file is None and folder:
            try:
                self.file = open(dump_path(folder, os.getpid()), "wb")  # noqa: SIM115
            except OSError:
                pass
        return self.file.fileno() if self.file is not None else fallback_fd


_bound = _Bound()


def arm(seconds: float, fallback_fd: int | None) -> None:
    """End this process in ``seconds`` (or what :func:`require` asked, if more) unless
    :func:`disarm` comes first; ``fallback_fd`` receives the stacks where :data:`ENV_DIR`
    is not set (None: standard error)."""
    seconds = max(seconds, _bound.required_s)
    _bound.required_s = 0.0
    _bound.armed_fd = _bound._target(fallback_fd)
    _bound.deadline = time.monotonic() + seconds
    _arm_fd(seconds, _bound.armed_fd)


def require(seconds: float) -> None:
    """This test may legitimately run ``seconds`` from now (the simulation's wall-clock
    backstop plus the margin): the armed deadline, or the next, is at least that."""
    if _bound.deadline is None:
        _bound.required_s = max(_bound.required_s, seconds)
        return
    if seconds > _bound.deadline - time.monotonic():
        _bound.deadline = time.monotonic() + seconds
        _arm_fd(seconds, _bound.armed_fd)


def rearm() -> None:
    """Arm again for the time left (after something cancelled faulthandler's dump)."""
    if _bound.deadline is not None:
        _arm_fd(max(1.0, _bound.deadline - time.monotonic()), _bound.armed_fd)


def disarm() -> None:
    _bound.deadline = None
    _bound.required_s = 0.0
    faulthandler.cancel_dump_traceback_later()


def close() -> None:
    """At the end of the process's session: nothing was dumped, so the file goes."""
    disarm()
    file, _bound.file = _bound.file, None
    if file is not None:
        name = file.name
        file.close()
        try:
            if os.path.getsize(name) == 0:
                os.unlink(name)
        except OSError:
            pass


def end_process(header: str, fallback_fd: int | None, *, dump_file: bool = True) -> NoReturn:
    """Write ``header`` and every thread's stack where the bound's dump goes (``dump_file``
    False: to ``fallback_fd`` itself), then end the process with exit status 1, as
    faulthandler's timeout does (the memory bound's end)."""
    fd = _bound._target(fallback_fd) if dump_file else fallback_fd
    fd = 2 if fd is None else fd
    try:
        os.write(fd, header.encode())
        faulthandler.dump_traceback(file=fd, all_threads=True)
    finally:
        os._exit(1)


def _arm_fd(seconds: float, fd: int | None) -> None:
    if fd is None:
        faulthandler.dump_traceback_later(seconds, exit=True)
    else:
        faulthandler.dump_traceback_later(seconds, exit=True, file=fd)

