"""The private per-run folder in /tmp (``raftlab-grade-*``): made, held, removed, reclaimed.

Why: a grading run stages the submission and its scratch folder in a fresh folder
under the temporary directory (code and work, each 0700 and owned by the run's
user).  The grader removes it after the run; but a grader killed outright
(SIGKILL, the OOM killer, a power cut of the session) cannot, and nothing else
knew the folder was dead: it stayed, holding a student's code, forever.  So each
folder carries a **lock file** that every process using the folder holds (shared
``flock``): the grader from the folder's first moment, and each run's supervisor
(``--hold``, :mod:`.isolation`) to its last sweep.  The kernel drops a dead
process's locks, so a folder whose lock can be taken exclusively is used by no
live grader and no live supervisor: the next grade run removes it
(:func:`reclaim_stale`).  A folder whose lock is held is never touched, whatever
its age; a folder without a lock file (made by an older raftlab) is left alone.

The lock file is made under a temporary name, locked, then renamed to
:data:`LOCK_NAME`, so there is no moment at which another grader could find the
folder's lock unlocked while its grader lives.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path

PREFIX = "raftlab-grade-"
LOCK_NAME = ".raftlab-run.lock"
REMOVE_WAIT_S = 60.0  # supervisors' last sweep: 10 + 10 + 5 s, with a margin for load


class RunFolder:
    """A fresh private run folder, held (shared lock) by this process until removed."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd

    @property
    def lock(self) -> Path:
        """The lock file a supervisor of this folder's runs holds (``--hold``)."""
        return self.path / LOCK_NAME

    @classmethod
    def create(cls, parent: Path | None = None) -> RunFolder:
        """Make ``<tmp>/raftlab-grade-XXXX`` (0711: the run user may enter, not list)."""
        path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
        try:
            os.chmod(path, 0o711)
            fd, temporary = tempfile.mkstemp(prefix=".lock-", dir=path)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                os.rename(temporary, path / LOCK_NAME)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return cls(path, fd)

    def remove(self, wait_s: float = REMOVE_WAIT_S) -> bool:
        """Remove the folder once no supervisor of its runs is alive; whether it is gone.

        Waits up to ``wait_s`` for the supervisors (a stopped run's may still be
        sweeping, and a process it has not killed yet could still write in the
        folder).  If the folder cannot be removed whole in that time, it keeps its
        lock file and this process lets go of it: a later grade run reclaims it.
        Bounded, safe to call again.
        """
        fd = self._lock_fd
        if fd is None:
            return not self.path.exists()
        deadline = time.monotonic() + wait_s
        try:
            while True:
                try:  # from shared to exclusive: only this process still uses the folder
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        return False
                    time.sleep(0.05)
            while not _remove_locked(self.path):
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
            return True
        finally:
            self._lock_fd = None
            os.close(fd)


def _remove_locked(path: Path) -> bool:
    """Remove ``path`` (whose lock this process holds exclusively), the lock file last,
    so that a folder left half-removed can still be reclaimed.  Whether it is gone."""
    try:
        entries = list(os.scandir(path))
    except FileNotFoundError:
        return True
    except OSError:
        return False
    for entry in entries:
        if entry.name == LOCK_NAME:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except FileNotFoundError:
            pass
        except OSError:
            return False  # e.g. a file written meanwhile (directory not empty): again
    try:
        os.unlink(path / LOCK_NAME)
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def hold(lock: Path) -> int:
    """For a supervisor: hold ``lock`` (shared) while this process lives; the fd.

    Raises OSError if the folder is gone or being reclaimed (its grader is dead):
    the run must not start then.
    """
    fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(f"{lock.parent} is being removed: its grader is no longer running"
                      ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def reclaim_stale(parent: Path | None = None) -> list[Path]:
    """Remove the run folders of grade runs that are dead; the folders removed.

    Only folders of this user, with a lock file that no process holds: no live
    grader and no live supervisor uses them.  Never waits: a held folder is skipped.
    """
    base = Path(parent if parent is not None else tempfile.gettempdir())
    removed: list[Path] = []
    try:
        candidates = sorted(base.glob(PREFIX + "*"))
    except OSError:
        return removed
    for path in candidates:
        try:
            st = path.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                continue
            fd = os.open(path / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            continue  # no lock file: not ours to judge
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live grader or supervisor holds it
            if _remove_locked(path):
                removed.append(path)
        finally:
            os.close(fd)
    return removed
