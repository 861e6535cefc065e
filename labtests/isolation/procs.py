"""Process plumbing for isolated peers: prctl, exit statuses, and reaping strays.

Linux only.  Why each piece exists:

* ``PR_SET_PDEATHSIG(SIGKILL)`` in every peer (and in the template): if the
  tester dies, however it dies, its peers die with it.
* ``PR_SET_CHILD_SUBREAPER`` in the tester: every process a peer leaves behind
  (a child, a double-forked daemon in its own session) is re-parented to the
  tester when its parent exits, instead of to init, so the tester can find it
  with one scan of ``/proc`` and kill it before the next test starts.
* :func:`wait_exit` waits for one child with a deadline through a pidfd, so
  the tester learns the exact exit status or signal of a peer and never blocks
  on a peer that will not die.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import threading
import time
from collections.abc import Callable

from labtests import libc

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, arg: int) -> None:
    libc.call("prctl", option, arg, 0, 0, 0, what=f"prctl({option}, {arg})")


def die_with_parent() -> None:
    """Get SIGKILL when the parent exits (set in the child, after fork)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def die_with(parent: int) -> None:
    """In a child already running Python: get SIGKILL when ``parent`` ends, and exit at
    once if it ended before the call took effect.  Where the kernel cannot (not Linux),
    nothing changes."""
    try:
        die_with_parent()
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(0)


def dies_with(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` for a child that must not outlive ``parent`` (the caller's pid).

    The child gets SIGKILL when the thread that started it ends, however it ends
    (SIGKILL and the OOM killer included), so start it from a thread that lives as
    long as the process.  If the parent died before the prctl took effect, the
    child exits at once instead of running orphaned.  libc is loaded here, in the
    parent: the child only calls (loading a library between fork and exec can
    deadlock on a lock another thread of the parent held at the fork).
    """
    prctl = libc.function("prctl")
    if prctl is None:
        raise OSError(errno.ENOSYS, "prctl: not in this process's C library (Linux only)")

    def preexec() -> None:
        libc.checked(prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0),
                     f"prctl({PR_SET_PDEATHSIG}, {int(signal.SIGKILL)})")
        if os.getppid() != parent:
            os._exit(1)
    return preexec


def become_subreaper() -> None:
    """Adopt every orphaned descendant of this process (idempotent)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def describe_status(status: int) -> str:
    """A wait status in words: ``exited with status 0``, ``was killed by SIGKILL``."""
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        core = " (core dumped)" if os.WCOREDUMP(status) else ""
        return f"was killed by {name}{core}"
    return f"ended with wait status {status:#x}"


def wait_exit(pid: int, timeout: float, pidfd: int | None = None) -> int | None:
    """Reap child ``pid`` within ``timeout`` seconds; its wait status, or None.

    None means it is still running (or is not our child any more).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done == pid:
            return status
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        if pidfd is not None:
            select.select([pidfd], [], [], left)
        else:
            time.sleep(min(left, 0.005))


def kill(pid: int, sig: int = signal.SIGKILL) -> None:
    """Send a signal, ignoring a process that is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _stat_fields(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process from /proc, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(b")") + 2:].split()
    return rest[0].decode(), int(rest[1])


def children(parent: int | None = None) -> dict[int, str]:
    """Every live or zombie child of ``parent`` (default: this process): pid -> state."""
    parent = os.getpid() if parent is None else parent
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None and fields[1] == parent:
            found[int(entry)] = fields[0]
    return found


def parent_of(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return None if fields is None else fields[1]


def reap_strays(
    keep: Callable[[], set[int]], lock: threading.Lock, timeout: float = 5.0
) -> list[int]:
    """Kill and reap every child of this process not in ``keep()``; return their pids.

    Run it in a subreaper after the peers are gone: killing a stray re-parents
    its own children to us, so it repeats until a scan finds nothing (or the
    timeout passes, against a fork bomb).  Each scan-and-kill holds ``lock``,
    which whoever starts new children to keep holds while it registers them.
    """
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        with lock:
            spare = keep()
            strays = {pid: st for pid, st in children().items() if pid not in spare}
            for pid, state in strays.items():
                if state != "Z":
                    kill(pid)
                    killed.append(pid)
        if not strays or time.monotonic() > deadline:
            return killed
        for pid in strays:
            try:
                os.waitpid(pid, 0 if time.monotonic() < deadline else os.WNOHANG)
            except ChildProcessError:
                pass
            except OSError as exc:  # pragma: no cover - EINTR is retried by Python
                if exc.errno != errno.EINTR:
                    raise
