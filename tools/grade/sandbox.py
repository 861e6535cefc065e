"""The fences around one grading run: a dedicated user, a private view of the files, limits.

Why each piece exists (isolated mode already keeps student code out of the tester's
*memory*; these keep it away from everything else a grade depends on):

* **A dedicated user per run** (:func:`choose_run_user`, only when the grader is
  root).  The peers (the only processes that run student code) get a uid of their
  own, unused by anything else, so they cannot signal or trace the tester, read
  its files (the events file that carries the verdicts to the grader lives in a
  root-only folder), read another submission's staged copy (each is ``0700`` and
  owned by its own run's uid), or escape the end-of-run sweep: every process of
  that uid is killed (:func:`kill_uid`) before the grader writes a result file, a
  double-forked daemon included (a process cannot change its uid back).
* **A private view of the files** (:func:`private_view`, in the run's own mount
  namespace, never the machine's): the submissions folder and the report folder
  are covered with empty ``tmpfs`` mounts, and a root-only directory on the way to
  the interpreter (``/root`` holding pyenv, say) is replaced by a ``tmpfs`` that
  holds only the needed entries, so the run user can start Python without being
  able to look at anything else there.
* **Resource limits** (:class:`RunLimits`): address space, CPU seconds, processes
  (threads count: enforced per uid, so only with a dedicated user), open files,
  file size, no core dumps; the run's output is capped by the supervisor
  (:mod:`tools.grade.isolation`).

Without root the grader falls back to the grader's own user (same limits, the
same sweep through the child subreaper, but a submission can read what the
grader can read); every report says which fence was in place
(:func:`describe_hardening`).  docs/grading.md has the container recipe.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import pwd
import resource
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from labtests import libc

# uids handed to runs: outside the usual ranges of system (< 1000) and human
# (1000-60000) accounts, and below 65536 so that a rootless container maps them.
RUN_UID_BASE = 61000
RUN_UID_COUNT = 2000

CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_NOSUID = 2
MS_NODEV = 4


class SandboxError(OSError):
    """A fence could not be put in place (the run must not start without it)."""


@dataclass(frozen=True)
class RunLimits:
    """Per-process resource limits of a grading run (inherited by every process in it).

    ``nproc`` counts processes *and threads* of the run's uid; the kernel does not
    apply it to root, so it holds only with a dedicated run user.
    """

    memory_mb: int = 16384
    cpu_s: int = 1200
    nproc: int = 4096
    nofile: int = 4096
    fsize_mb: int = 256
    output_mb: int = 8

    def apply(self) -> None:
        """Set the limits on this process (call in the child before exec)."""
        for res, value in ((resource.RLIMIT_AS, self.memory_mb << 20),
                           (resource.RLIMIT_CORE, 0),
                           (resource.RLIMIT_NOFILE, self.nofile),
                           (resource.RLIMIT_FSIZE, self.fsize_mb << 20),
                           (resource.RLIMIT_NPROC, self.nproc)):
            resource.setrlimit(res, (value, value))
        # SIGXCPU at the soft limit, SIGKILL 5 s later at the hard one.
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_s, self.cpu_s + 5))

    def to_json(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class RunUser:
    """A run's uid (gid the same number); ``lease`` is the open lock file that reserves it."""

    uid: int
    gid: int
    lease: int | None = field(default=None, compare=False, repr=False)

    def release(self) -> None:
        """Give the uid back (after every process of it is gone)."""
        if self.lease is not None:
            os.close(self.lease)

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid}"

    @classmethod
    def parse(cls, text: str) -> RunUser:
        uid, _, gid = text.partition(":")
        return cls(int(uid), int(gid or uid))


def process_uids() -> dict[int, int]:
    """pid -> real uid of every process (zombies left out: they can do nothing)."""
    found: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as fh:
                text = fh.read()
        except OSError:
            continue
        state = uid = None
        for line in text.splitlines():
            if line.startswith("State:"):
                state = line.split()[1]
            elif line.startswith("Uid:"):
                uid = int(line.split()[1])
        if uid is not None and state != "Z":
            found[int(entry)] = uid
    return found


def _uid_in_use(uid: int, running: Iterable[int]) -> bool:
    try:
        pwd.getpwuid(uid)
        return True  # an account owns it: not ours to hand out
    except KeyError:
        return uid in running


def _lease_dir() -> Path:
    """Root-only folder of the uid leases, shared by every grader on the machine."""
    base = Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())
    folder = base / "raftlab-grade-uids"
    folder.mkdir(mode=0o700, exist_ok=True)
    st = folder.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
        raise SandboxError(f"{folder} must be a directory owned by root, mode 0700")
    return folder


def _lock(path: Path, how: int, wait_s: float = 0.0) -> int | None:
    """Open ``path`` and flock it (``how``); the fd, or None if still busy after ``wait_s``.

    The kernel drops the lock when the last descriptor of the open file is closed,
    so a process that dies gives back what it held."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, how | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                return None
        time.sleep(0.05)


def _lease(uid: int, wait_s: float = 0.0) -> int | None:
    """Reserve ``uid`` for this process (a lock the kernel drops if we die), or None.

    Two locks per uid: ``<uid>.lock``, held by the grader that owns the run, and
    ``<uid>.run``, held (shared) by every supervisor of a run of that uid for its
    whole life (:func:`hold_run`).  A supervisor can outlive its grader's lease (the
    grader killed, the OOM killer) and still sweeps -- ``kill_uid`` -- at its end,
    so a uid is only handed out again once no supervisor holds it.
    """
    folder = _lease_dir()
    deadline = time.monotonic() + wait_s
    fd = _lock(folder / f"{uid}.lock", fcntl.LOCK_EX, wait_s)
    if fd is None:
        return None
    run = _lock(folder / f"{uid}.run", fcntl.LOCK_EX, max(0.0, deadline - time.monotonic()))
    if run is None:  # an earlier run of this uid is still being swept
        os.close(fd)
        return None
    os.close(run)  # only a test: new supervisors start only for the lease holder
    return fd


def hold_run(user: RunUser) -> int:
    """For a supervisor of ``user``'s run: keep the uid leased while this process lives.

    Returns the fd to keep open (close-on-exec, so what the supervisor starts does
    not hold it).  Raises SandboxError if the lease folder is unusable.
    """
    fd = _lock(_lease_dir() / f"{user.uid}.run", fcntl.LOCK_SH, wait_s=60.0)
    if fd is None:
        raise SandboxError(f"cannot mark uid {user.uid} as in use: its lease is busy")
    return fd


def lease_after_runs(uid: int, timeout_s: float) -> RunUser | None:
    """Lease ``uid`` once no grading run holds it (waiting up to ``timeout_s``), or None.

    Unlike :func:`choose_run_user`, it does not skip a uid with processes: it is for
    checking what is left of a uid's runs -- while the lease is held, no live run
    (another grader on the machine included) has or starts processes of that uid.
    """
    fd = _lease(uid, wait_s=timeout_s)
    return None if fd is None else RunUser(uid, uid, fd)


def choose_run_user(previous: int | None = None) -> tuple[RunUser | None, str]:
    """Reserve a uid for one run (the next free one after ``previous``).

    Returns the user (call :meth:`RunUser.release` when its processes are gone) or
    None and why the fallback applies.  A uid is free when no account owns it, no
    process runs as it, no other grader on the machine holds its lease and no
    supervisor of an earlier run of it is still alive: graders running side by side
    never share a uid, so one's sweep cannot kill the other's peers.
    """
    if os.geteuid() != 0:
        return None, ("the grader is not root: runs use the grader's own user, so a "
                      "submission can read what the grader can read (see docs/grading.md)")
    start = 0 if previous is None else (previous - RUN_UID_BASE + 1) % RUN_UID_COUNT
    try:
        for k in range(RUN_UID_COUNT):
            uid = RUN_UID_BASE + (start + k) % RUN_UID_COUNT
            if _uid_in_use(uid, ()):
                continue
            fd = _lease(uid)
            if fd is None:
                continue
            if uid in process_uids().values():  # left over by a grader that died
                os.close(fd)
                continue
            return RunUser(uid, uid, fd), f"run as the dedicated user {uid}"
    except OSError as exc:
        return None, f"cannot reserve a run user ({exc}): runs use the grader's own user"
    return None, (f"no free uid in {RUN_UID_BASE}-{RUN_UID_BASE + RUN_UID_COUNT - 1}: "
                  "runs use the grader's own user")


def kill_uid(uid: int, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process of ``uid`` until none is left (or ``timeout``); their pids.

    Repeats because a process may fork between the scan and the kill; a run's uid
    is never root and never an account's, so nothing else is touched.
    """
    if uid == 0:
        raise ValueError("refusing to kill every process of root")
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for pid, owner in process_uids().items() if owner == uid]
        if not pids or time.monotonic() > deadline:
            return killed
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def make_private(path: Path, user: RunUser | None) -> None:
    """Give ``path`` (recursively) to the run user, readable by it alone (0700 folders)."""
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            _own(Path(root) / name, user)
    _own(path, user)


def _own(path: Path, user: RunUser | None) -> None:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return
    if user is not None:
        os.chown(path, user.uid, user.gid)
    os.chmod(path, 0o700 if stat.S_ISDIR(st.st_mode) else 0o600)


# -- the run's own mount namespace ------------------------------------------------------

def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def enc(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    libc.call("mount", enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data),
              what=f"mount {source} on {target}", error=SandboxError)


def _searchable_by(path: Path, uid: int, gid: int) -> bool:
    st = path.stat()
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def blocking_dirs(needed: Iterable[Path], user: RunUser) -> dict[Path, set[str]]:
    """Directories the run user cannot enter on the way to ``needed`` -> entries needed in each.

    Every one on the way, not only the first: with a TMPDIR two folders deep in private
    ones (``/tmp/pytest-of-root/pytest-3/.../tmp``), covering the first kept the second
    as it was (a bind mount keeps its mode), the run user still could not enter it, and
    each run failed to import the submission."""
    blocked: dict[Path, set[str]] = {}
    for path in needed:
        path = Path(os.path.realpath(path))
        for parent in reversed(path.parents):  # from / down
            if parent == path:
                break
            if not _searchable_by(parent, user.uid, user.gid):
                child = path.relative_to(parent).parts[0]
                blocked.setdefault(parent, set()).add(child)
    return blocked


def interpreter_paths() -> list[Path]:
    """What a peer's Python needs to reach: the interpreter, its prefixes and sys.path."""
    paths = {Path(os.path.realpath(sys.executable)), Path(sys.prefix), Path(sys.base_prefix),
             Path(sys.exec_prefix)}
    paths.update(Path(p) for p in sys.path if p and os.path.exists(p))
    return sorted(paths)


def private_view(user: RunUser, needed: Sequence[Path], hidden: Sequence[Path]) -> list[str]:
    """Enter a new mount namespace: expose ``needed`` to ``user``, cover ``hidden``.

    Affects only this process and its future children.  Returns notes (what was
    covered, or why a path was left visible).  Raises SandboxError if the namespace
    cannot be made private (then nothing was mounted).
    """
    libc.call("unshare", CLONE_NEWNS, what="unshare(CLONE_NEWNS)", error=SandboxError)
    # Before anything else: no mount made here may propagate to the machine.
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    notes: list[str] = []
    real_needed = [Path(os.path.realpath(p)) for p in needed]
    for folder, entries in sorted(blocking_dirs(real_needed, user).items()):
        _cover_keeping(folder, sorted(entries))
        notes.append(f"{folder}: only {', '.join(sorted(entries))} visible to the run")
    for path in hidden:
        real = Path(os.path.realpath(path))
        if not real.is_dir():
            continue
        if any(n == real or real in n.parents for n in real_needed):
            notes.append(f"{real} left visible: the run needs a path inside it")
            continue
        _mount("tmpfs", str(real), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=64k")
        notes.append(f"{real} hidden from the run")
    return notes


def _cover_keeping(folder: Path, entries: list[str]) -> None:
    """Replace ``folder`` with a world-searchable tmpfs holding only ``entries`` (bind mounts).

    The stash that holds the entries meanwhile must be outside ``folder``: made in the
    temporary directory when that lies inside it (TMPDIR under a root-only folder),
    it vanished under the tmpfs, and the run could not start."""
    base = Path(os.path.realpath(tempfile.gettempdir()))
    if base == folder or folder in base.parents:
        base = folder.parent
    stash = Path(tempfile.mkdtemp(prefix="raftlab-ns-", dir=base))
    try:
        for name in entries:
            (stash / name).mkdir()
            _mount(str(folder / name), str(stash / name), None, MS_BIND | MS_REC)
        _mount("tmpfs", str(folder), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        for name in entries:
            (folder / name).mkdir()
            _mount(str(stash / name), str(folder / name), None, MS_MOVE)
    finally:
        for name in entries:
            try:
                (stash / name).rmdir()
            except OSError:
                pass
        try:
            stash.rmdir()
        except OSError:
            pass


def probe_run_user(user: RunUser, needed: Sequence[Path], hidden: Sequence[Path],
                   timeout: float = 60.0) -> str | None:
    """None if the run user can start the peer template's Python in the private view,
    else why not (then grading falls back to the grader's own user)."""
    code = "import labtests.isolation.template, threading, random, time, queue"
    cmd = [sys.executable, "-m", "tools.grade.isolation", "--memory-mb", "4096",
           "--run-user", str(user), *[f"--hide={p}" for p in hidden],
           "--as-run-user", "--", sys.executable, "-c", code]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              cwd="/", env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                                  p for p in sys.path if p)))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the probe did not run: {exc}"
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        return ("the run user cannot start Python here: "
                + (lines[-1] if lines else f"exit status {proc.returncode}"))
    return None


def describe_hardening(user: RunUser | None, why: str, limits: RunLimits | None) -> str:
    """One line for the reports."""
    head = f"peers run as the dedicated user {user.uid}" if user else why
    if limits is None:
        return head
    return (f"{head}; limits per process: {limits.memory_mb} MiB address space, "
            f"CPU seconds twice the part's budget (at least 120), {limits.nofile} open files, "
            f"{limits.fsize_mb} MiB per "
            f"file, {limits.nproc} processes+threads per run user; output capped at "
            f"{limits.output_mb} MiB")
