"""explore leaves no POSIX named semaphore (``/dev/shm/sem.mp-*``) behind, however it ends.

Found on the lab machine: about 60 ``sem.mp-*`` files in /dev/shm, five per run of the
suite.  explore's worker pools are *spawned* (tools/explore/hashseed.py), and a spawn
pool's queues hold five named semaphores that multiprocessing unlinks only when the
pool is collected or, should the command die first, from its resource tracker -- a
process of the same group, so a SIGKILL of the group (a user, a batch system, a
test's cleanup of a Dask worker running explore's tasks) took the tracker along and
left the five names for good.  Now the names are unlinked as soon as every worker has
opened them (``hashseed.pinned_pool``).

The names checked are the run's own (read from the pool, or from /proc/PID/maps of
the command), so files other processes create meanwhile do not matter.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.explore import hashseed  # noqa: E402

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="POSIX shared memory is /dev/shm")


def _path(name: str) -> Path:
    """Where Linux keeps the named semaphore ``/mp-xyz``: /dev/shm/sem.mp-xyz."""
    return SHM / f"sem.{name.lstrip('/')}"


def _mapped_semaphores(pgid: int) -> set[Path]:
    """The multiprocessing semaphores the processes of group ``pgid`` have open by name.

    Read from /proc/PID/maps of each: a worker that opened ``/mp-xyz`` maps
    /dev/shm/sem.mp-xyz (the creator maps glibc's temporary name, so it is not asked)."""
    from tests.readme_commands import group_members

    found = set()
    for pid in group_members(pgid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith(str(SHM / "sem.mp-")):
                    found.add(Path(fields[5].removesuffix(" (deleted)")))
    return found


def test_a_pinned_pool_works_with_no_semaphore_name_left():
    with hashseed.pinned_executor(2) as pool:
        names = hashseed.semaphore_names(pool)
        assert len(names) == 5, names  # the call queue's three, the result queue's two
        assert [n for n in names if _path(n).exists()] == []
        assert sorted(pool.map(abs, [-3, -1, -2])) == [1, 2, 3]
        assert len(set(pool.map(_pid_after_a_while, range(4)))) == 2  # both workers serve
    assert [n for n in names if _path(n).exists()] == []


def _pid_after_a_while(_: int) -> int:
    time.sleep(0.2)
    return os.getpid()


def test_explore_killed_with_its_process_group_leaves_no_semaphore_name(tmp_path):
    """SIGKILL to the whole group of ``raftlab explore`` (its resource tracker dies with
    it): the named semaphores its pool opened must be gone.  Fails without the unlink in
    ``hashseed.pinned_pool``: the five names of the pool stayed in /dev/shm."""
    out = tmp_path / "out"
    (tmp_path / "tmp").mkdir()  # its scratch folder, which a SIGKILLed group cannot remove
    proc = subprocess.Popen([sys.executable, "-m", "tools.explore", "-n", "400", "-p", "2",
                             "--no-shrink", "-o", str(out)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True,
                            env=dict(os.environ, TMPDIR=str(tmp_path / "tmp")))
    try:
        results = out / "results.jsonl"
        deadline = time.monotonic() + 240
        # A run's result: the pool is up and every worker has opened its semaphores.
        while not (results.exists() and results.read_text().count("\n") >= 2):
            assert proc.poll() is None, "explore ended before it ran anything"
            assert time.monotonic() < deadline, "no result from explore within 240 s"
            time.sleep(0.1)
        opened = _mapped_semaphores(proc.pid)
        assert len(opened) == 5, f"explore's workers have not the pool's five open: {opened}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    left = sorted(str(p) for p in opened if p.exists())
    # A leftover is removed here, so a failure does not leave it on the machine either.
    for p in left:
        with contextlib.suppress(FileNotFoundError):
            Path(p).unlink()
    assert left == [], f"named semaphores left behind by the killed explore: {left}"
