"""Run pytest in a child process and follow its events to the end, whatever the end.

The parent never runs a test itself, so nothing a Raft does can stop it from
printing a verdict: when the child ends before its session finished (it
called ``os._exit``, was killed by a signal, crashed), the test that was
running fails with the exit status or signal named, the tests not yet run are
listed as not run, and the exit status is non-zero.

Nor can the command end without its child: Ctrl-C, SIGTERM and SIGHUP stop the
child (it reports, the command says which test was stopped and which did not run,
prints the summary and exits with 128 + the signal), a second stop signal kills
it, and if the command itself is killed
outright the child gets SIGKILL from the kernel (``PR_SET_PDEATHSIG``), so no
pytest is left running graded code with nobody reading its verdict.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labtests import last_bound
from labtests.isolation.procs import dies_with
from labtests.options import HarnessOptions
from tools.scratch import HeldFolder
from tools.termination import (
    describe,
    exit_status,
    interrupts_deferred,
    stop_signals_as_interrupts,
)
from tools.test_run.channel import ENV_DOORBELL, ENV_EVENTS
from tools.test_run.display import Display
from tools.test_run.state import RunState

POLL_S = 0.05  # how often the parent looks for new events and the child's end, without a pidfd
LOOK_ANYWAY_S = 1.0  # with one: the longest sleep, even with no doorbell rung
EXIT_ENDED_EARLY = 1  # pytest's "tests failed": a test did fail (the one that was running)
EVENTS_PLUGIN = "tools.test_run.events"
CHILD_STOP = "tools.test_run.child_stop"
PYTEST_ERRORS = (2, 3, 4)  # interrupted, internal error, usage error


class EventReader:
    """Reads the complete lines appended to the events file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""

    def read(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        events = []
        for raw in lines:
            try:
                events.append(json.loads(raw))
            except ValueError:
                continue  # a line cut by the child's death cannot be half-trusted
        return events


# ``python -m pytest``, except that the events plugin is imported before the current
# directory goes on sys.path: a student's own ``tools`` package there must not take
# the place of raftlab's.  The directory is then put back, as ``python -m`` does, so
# an implementation named by module (``--impl mypkg.raft``) is found there as before.
# First of all, its Ctrl-C (:mod:`tools.test_run.child_stop`): one stop; and a stop that
# came before pytest's session took it over (loading pytest, its plugins, its options)
# ends the child with pytest's status for it, not a traceback of pytest's start-up.
_CHILD_CODE = (
    "import sys\n"
    "cwd = sys.path.pop(0)\n"
    f"from {CHILD_STOP} import install, EXIT_INTERRUPTED\n"
    "try:\n"
    "    install()\n"
    f"    import {EVENTS_PLUGIN} as events\n"
    "    sys.path.insert(0, cwd)\n"
    "    import pytest\n"
    "    status = pytest.main(sys.argv[1:], plugins=[events])\n"
    "except KeyboardInterrupt:\n"
    "    status = EXIT_INTERRUPTED\n"
    "sys.exit(status)\n"
)


class Wakeup:
    """What the parent sleeps on between two looks at the events file and the child.

    Why: looking every :data:`POLL_S` cost the command about 4 ms of CPU per second
    of a run on the lab's VM (a wake-up, a file read and a ``waitpid`` twenty times
    a second): about 1.4 s over the whole lab, for a display that changes a few
    times per test.  With the child's pidfd (Linux 5.3+) and the doorbell
    (:class:`~tools.test_run.channel.Doorbell`) the parent sleeps until the child
    rings or ends -- at most :data:`LOOK_ANYWAY_S`, so that a bell gone quiet (the
    code under test closed the child's end) delays the display by a second at
    most, never the verdict.  Without a pidfd, or once every write end of the
    doorbell is closed while the child lives: a look every :data:`POLL_S`.

    It owns the doorbell's pipe: :meth:`spawn` starts the child with its end (the
    number in its environment, the descriptor passed on) and keeps none of it here;
    :meth:`close` (or the ``with`` block's end) closes the rest.
    """

    def __init__(self) -> None:
        bell, child_end = os.pipe()
        os.set_blocking(bell, False)
        os.set_blocking(child_end, False)  # the child must never wait on the bell
        self.bell: int | None = bell
        self._child_end: int | None = child_end
        self.pidfd: int | None = None
        self._pid: int | None = None
        self._fds = [bell, child_end]
        # The child closed its end of the bell while it lived: code under test closed
        # descriptors it had not opened (raftlab's channel and the child's output with
        # them), which is then the one clue to why the child ended without a word.
        self.closed_by_child = False

    def spawn(self, args: list[str], env: dict[str, str],
              **popen_kwargs: Any) -> subprocess.Popen[bytes]:
        """Start the child with the doorbell's write end (``ENV_DOORBELL`` names it),
        then close ours, so that the child's closing shows here as the end of the pipe,
        and watch the child's end of life through its pidfd."""
        child_end = self._child_end
        if child_end is None:
            raise RuntimeError("this Wakeup already started its child (or was closed)")
        proc = subprocess.Popen(args, env={**env, ENV_DOORBELL: str(child_end)},
                                pass_fds=(child_end,), **popen_kwargs)
        self._close(child_end)
        self._child_end = None
        self._pid = proc.pid
        if hasattr(os, "pidfd_open"):
            try:
                self.pidfd = os.pidfd_open(proc.pid)
                self._fds.append(self.pidfd)
            except OSError:  # an older kernel, or a seccomp filter
                self.pidfd = None
        return proc

    def wait(self) -> None:
        """Return when there may be something new (events, or the child's end)."""
        if self.pidfd is None or self.bell is None:
            time.sleep(POLL_S)
            return
        readable, _, _ = select.select([self.bell, self.pidfd], [], [], LOOK_ANYWAY_S)
        if self.bell in readable:
            try:
                rung = os.read(self.bell, 65536)
            except BlockingIOError:
                rung = b"."
            if not rung:  # no write end left: look on our own from now on
                self.bell = None
                self.closed_by_child = self._pid is not None and not _exiting(self._pid)

    def _close(self, fd: int | None) -> None:
        if fd is not None and fd in self._fds:
            self._fds.remove(fd)
            os.close(fd)

    def close(self) -> None:
        while self._fds:
            os.close(self._fds.pop())
        self.bell = self._child_end = self.pidfd = None

    def __enter__(self) -> Wakeup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def child_command(pytest_args: list[str]) -> list[str]:
    return [sys.executable, "-c", _CHILD_CODE, *pytest_args]


def with_base_folder(pytest_args: list[str], folder: Path) -> list[str]:
    """``pytest_args`` with pytest's base temporary folder inside the command's own.

    Why: pytest-xdist's controller (``raftlab test -n N``) makes pytest's base folder even
    when no test asks for a temporary path; left to pytest, that is
    ``$TMPDIR/pytest-of-USER/pytest-N``, one per run, the last three kept for good.
    Inside the command's folder it goes when the command ends.  A ``--basetemp`` of the
    user's own is kept, and none is added when pytest's tmpdir plugin is disabled
    (``-p no:tmpdir``: the option would not exist).
    """
    previous = ""
    for arg in pytest_args:
        if arg == "--basetemp" or arg.startswith("--basetemp="):
            return pytest_args
        if arg == "-pno:tmpdir" or (previous == "-p" and arg == "no:tmpdir"):
            return pytest_args
        previous = arg
    return [f"--basetemp={folder}", *pytest_args]


def run(pytest_args: list[str], options: HarnessOptions, *, passthrough: bool,
        display: Display | None = None) -> int:
    """Run the child pytest with ``pytest_args``; print as it goes; return the exit status."""
    display = display or Display(options, passthrough)
    state = RunState()
    start = time.monotonic()
    # Held (tools/scratch.py): a folder of a killed command is reclaimed by the next.
    with HeldFolder.fresh("raftlab-test-") as tmp:
        events = Path(tmp) / "events.jsonl"
        events.touch()
        out_path, err_path = Path(tmp) / "stdout.txt", Path(tmp) / "stderr.txt"
        with open(out_path, "wb") as out, open(err_path, "wb") as err, \
                stop_signals_as_interrupts():
            with Wakeup() as wakeup:
                proc = wakeup.spawn(
                    child_command(with_base_folder(pytest_args, Path(tmp) / "pytest")),
                    {**os.environ, ENV_EVENTS: str(events), last_bound.ENV_DIR: tmp},
                    stdout=None if passthrough else out, stderr=None if passthrough else err,
                    preexec_fn=_child_setup(os.getpid()))
                returncode, stop = _follow(proc, EventReader(events), state, display, wakeup)
        elapsed = time.monotonic() - start
        # pytest refused to start (a usage error, an internal error before the session):
        # its own message says why, and no test was running.
        refused = state.header is None and returncode in PYTEST_ERRORS
        # Stopped (Ctrl-C, SIGTERM, SIGHUP): the child ended because it was told to, not
        # by anything the Raft did, so no test is blamed for it.
        terminated = stop is not None
        crashed = state.exitstatus is None and not refused and not terminated
        if not passthrough:
            # pytest's own words matter when it could not run the tests (a usage or
            # internal error, a file that does not import); after a crash they hold
            # only its progress lines (the test's output died in its capture).
            if (not crashed and not terminated and returncode not in (0, 1, 5, 6)) \
                    or state.collect_errors:
                display.child_output("output of the test process",
                                     out_path.read_text(errors="replace"))
            display.child_output("stderr of the test process",
                                 err_path.read_text(errors="replace"))
        # The stacks the last bound wrote, if it is what ended the child.
        bound_dump = last_bound.read_dump(tmp, proc.pid) if crashed else None
    if crashed:
        display.ended_early(state, returncode, channel_closed=wakeup.closed_by_child,
                            last_bound_dump=bound_dump)
    if terminated:
        display.stopped(state, describe(stop))
    if not refused and (crashed or not passthrough):
        display.summary(state, crashed, elapsed)
    if terminated:
        return exit_status(stop)
    if crashed:
        return EXIT_ENDED_EARLY if returncode in (0, EXIT_ENDED_EARLY) or returncode < 0 \
            else returncode
    return returncode


def _exiting(pid: int) -> bool:
    """Whether process ``pid`` is ending or gone: the kernel closes an ending process's
    descriptors only after marking it exiting (``PF_EXITING`` in /proc's flags), so a
    descriptor closed by a process that is not marked was closed by the process itself."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return True
    fields = data[data.rfind(b")") + 2:].split()  # state, ppid, pgrp, session, tty, tpgid, flags
    return fields[0] in (b"Z", b"X") or bool(int(fields[6]) & _PF_EXITING)


_PF_EXITING = 0x4  # include/linux/sched.h


def _child_setup(parent: int) -> Callable[[], None]:
    """What the child runs before pytest: die with the command, and hear SIGINT.

    SIGINT is how the command stops it; a command started with SIGINT ignored (a
    background job of a script: ``raftlab test ... &``, then ``kill``) would pass the
    ignoring on, and the child would run the whole suite to its end.  It is blocked
    until the child's first line has made it one stop (:mod:`tools.test_run.child_stop`).
    """
    die = dies_with(parent)

    def setup() -> None:
        die()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    return setup


def _follow(proc: subprocess.Popen[bytes], reader: EventReader, state: RunState,
            display: Display, wakeup: Wakeup) -> tuple[int, KeyboardInterrupt | None]:
    """Show events until the child has ended and every event it wrote was read.

    Returns the child's exit status and the first interruption, if any.  A first
    interruption of any kind is passed on to the child as SIGINT: pytest then stops
    and reports.  SIGTERM and SIGHUP (:class:`~tools.termination.Terminated`) were
    sent to the command only, and so may a SIGINT have been (``kill -INT``); a Ctrl-C
    at the terminal reached the child too, which takes the two as one stop
    (:mod:`tools.test_run.child_stop`).  A second interruption kills the child.
    """
    interrupts = 0
    stop: KeyboardInterrupt | None = None
    while True:
        try:
            # One sleep, then one look (:class:`Wakeup`); ``proc.wait(timeout=...)``
            # would poll with sleeps from 0.5 ms doubling up to the timeout, about
            # seven wake-ups per call -- seconds of CPU over a whole lab.
            wakeup.wait()
            # A stop signal waits until the events read are folded and shown: raised
            # inside, it would lose those the reader had already passed (a stop line
            # naming no running test: seen once on a loaded machine).  The child's end
            # is looked at before the events: once it has ended, this one read has
            # everything it wrote.
            with interrupts_deferred():
                returncode = proc.poll()
                for event in reader.read():
                    state.apply(event)
                    display.event(event, state)
            if returncode is not None:
                return returncode, stop
        except KeyboardInterrupt as exc:
            interrupts += 1
            stop = stop or exc
            if interrupts > 1:
                proc.kill()
            elif proc.poll() is None:
                proc.send_signal(signal.SIGINT)


def wants_pytest_output(extra: list[str]) -> bool:
    """Did the user ask for pytest's own output (verbosity or no capture) after ``--``?"""
    for arg in extra:
        if arg in ("-s", "--verbose", "--capture=no") or arg.startswith("--capture"):
            return True
        if arg.startswith("-v") and set(arg[1:]) == {"v"}:
            return True
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2 \
                and set(arg[1:]) <= set("vsxq") and ("v" in arg or "s" in arg):
            return True  # combined short flags such as -sv or -xv
    return False
