"""A command's private folder under the temporary directory: made held, removed, reclaimed.

Why: every raftlab command keeps its working files (``raftlab test``'s event file and
the child's output, ``stress``'s jobs file, explore's scratch folder, grade's staged
submission) in a fresh ``raftlab-<kind>-*`` folder, and removes it when it ends.  A
command killed outright (SIGKILL, the OOM killer, a closed session's hang-up of a
frozen process) cannot, and nothing else knew the folder was dead: it stayed in /tmp
for good, one per kill -- a student killing a hung run a few times a day fills /tmp
slowly but for ever.  So each folder carries a **lock file** that its command holds
(shared ``flock``) from the folder's first moment; a process it forks holds it too (the
lock belongs to the open file, which a fork shares).  The kernel drops a dead process's
locks, so a folder whose lock can be taken exclusively is used by no live process: the
next command that makes a folder of that kind removes it (:func:`reclaim_stale`).  A
folder whose lock is held is never touched, whatever its age; a folder without a lock
file (an older raftlab's, or another program's) is left alone.

The lock file is made under a temporary name, locked, then renamed to
:data:`LOCK_NAME`, so there is no moment at which another command could find the
folder's lock unlocked while its command lives.  Grade's run folders
(:mod:`tools.grade.runfolder`) are these folders, with supervisors that hold the lock
too.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

LOCK_NAME = ".raftlab-run.lock"


class HeldFolder:
    """A fresh folder, held (shared lock) by this process until removed.

    As a context manager: stale folders of the same kind are reclaimed first, and
    the folder is removed at the end.
    """

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd

    @property
    def lock(self) -> Path:
        """The folder's lock file (a process that must keep the folder alive holds it)."""
        return self.path / LOCK_NAME

    @classmethod
    def create(cls, prefix: str, parent: str | Path | None = None,
               mode: int = 0o700) -> Self:
        """Make ``<parent or tmp>/<prefix>XXXX`` with ``mode``, its lock held from the start."""
        path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        try:
            if mode != 0o700:
                os.chmod(path, mode)
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

    @classmethod
    def fresh(cls, prefix: str, parent: str | Path | None = None) -> Self:
        """:meth:`create`, after reclaiming the dead commands' folders of this kind."""
        reclaim_stale(prefix, parent)
        return cls.create(prefix, parent)

    def remove(self, wait_s: float = 0.0) -> bool:
        """Remove the folder once no other process holds it; whether it is gone.

        Waits up to ``wait_s`` for the other holders (a process still writing in the
        folder).  If the folder cannot be removed whole in that time, it keeps its
        lock file and this process lets go of it: a later command reclaims it.
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
            while not remove_locked(self.path):
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.05)
            return True
        finally:
            self._lock_fd = None
            os.close(fd)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.remove()


def remove_locked(path: Path) -> bool:
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


def reclaim_stale(prefix: str, parent: str | Path | None = None) -> list[Path]:
    """Remove the ``prefix*`` folders of commands that are dead; the folders removed.

    Only folders of this user, with a lock file that no process holds.  Never waits:
    a held folder is skipped.
    """
    base = Path(parent if parent is not None else tempfile.gettempdir())
    removed: list[Path] = []
    try:
        candidates = sorted(base.glob(prefix + "*"))
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
                continue  # a live command (or a process it started) holds it
            if remove_locked(path):
                removed.append(path)
        finally:
            os.close(fd)
    return removed
