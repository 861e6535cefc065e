"""Which processes a command and the sessions it started still have, read from /proc.

For the tests that stop ``raftlab stress`` and ``raftlab grade`` with a signal: the
runs' pytest (and grade's supervisor) are in sessions of their own, so "no process
left" means no live process in the command's session or in any session one of its
descendants made.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, session id) of a process, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[3])


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def in_sessions(sessions: set[int]) -> dict[int, str]:
    """Live (non-zombie) processes whose session is one of ``sessions``: pid -> state."""
    found = {}
    for pid in _all_pids():
        st = stat(pid)
        if st is not None and st[2] in sessions and st[0] != "Z":
            found[pid] = st[0]
    return found


def descendants(root: int) -> set[int]:
    parents = {pid: st[1] for pid in _all_pids() if (st := stat(pid)) is not None}
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def sessions_of(root: int) -> set[int]:
    """The session of ``root`` (when it leads one) and of every live descendant."""
    return {root} | {st[2] for pid in descendants(root) if (st := stat(pid)) is not None}


def left_after(sessions: set[int], seconds: float) -> dict[int, str]:
    """What is still alive in ``sessions`` after up to ``seconds`` (a killed process may
    still be on its way out): pid -> state, empty when all are gone."""
    deadline = time.monotonic() + seconds
    while in_sessions(sessions) and time.monotonic() < deadline:
        time.sleep(0.05)
    return in_sessions(sessions)


@contextmanager
def killed_on_exit(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Never leave the command under test running past its test, whatever failed."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
