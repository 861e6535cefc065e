"""Which file descriptors a test opened and left open (for the pipe-leak tests).

Counting ``/proc/self/fd`` is not enough: a descriptor an earlier test left for the garbage
collector can close in the middle of a test and hide a leaked one (CI saw ``17 == 19``).  A
descriptor is named here by its number *and* the file it refers to (device, inode), so one
that closed and one that a new pipe took over under the same number never compare equal.
"""

from __future__ import annotations

import os

FdId = tuple[int, int, int]


def open_fds() -> set[FdId]:
    """Every descriptor open now, as (number, device, inode)."""
    found: set[FdId] = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            st = os.fstat(int(name))
        except OSError:  # the directory listdir itself had open, closed since
            continue
        found.add((int(name), st.st_dev, st.st_ino))
    return found


def opened_since(before: set[FdId]) -> set[FdId]:
    """Descriptors open now that were not open (as that same file) at ``before``."""
    return open_fds() - before
