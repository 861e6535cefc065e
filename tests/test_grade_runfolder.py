"""The private run folders of ``raftlab grade`` in /tmp: a grader killed outright (SIGKILL)
cannot remove its folder (the staged code, 0700, the run user's); the next grade run
does -- and never a folder that a live grader or a live run supervisor still uses.

Load-proof: whether a folder is in use is a lock the kernel drops when its holder
dies, and each step waits for the process it needs (no sleeps, no timing bounds
beyond generous start-up limits)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.grade_support import wait_for_a_finished_run, why_no_run_user
from tests.session_procs import killed_on_exit, left_after, sessions_of
from tools.grade.runfolder import RunFolder, reclaim_stale
from tools.scratch import LOCK_NAME

REPO = Path(__file__).resolve().parents[1]
MAKE_AND_WAIT = ("import sys, time\nfrom pathlib import Path\n"
                 "from tools.grade.runfolder import RunFolder\n"
                 "f = RunFolder.make(Path(sys.argv[1]))\n"
                 "(f.path / 'code').mkdir(mode=0o700)\n"
                 "(f.path / 'code' / 'raft.py').write_text('secret')\n"
                 "print(f.path, flush=True)\ntime.sleep(600)\n")


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO))


def _folder_of_a_killed_grader(tmp: Path) -> Path:
    """A run folder whose maker was SIGKILLed (as a grader killed mid-run)."""
    proc = subprocess.Popen([sys.executable, "-c", MAKE_AND_WAIT, str(tmp)], env=_env(),
                            stdout=subprocess.PIPE, text=True)
    with killed_on_exit(proc):
        path = Path(proc.stdout.readline().strip())
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    assert (path / "code" / "raft.py").exists()
    return path


def test_only_the_run_folders_of_dead_grade_runs_are_reclaimed(tmp_path):
    """Removed: the folder of a killed grader.  Kept: the folder of a live grader (this
    process), one whose grader is dead but whose run's supervisor still sweeps
    (``--hold``), one without a lock file (an older raftlab: not ours to judge), and
    a symbolic link.  Once the supervisor is gone, its folder goes too."""
    live = RunFolder.make(tmp_path)
    dead = _folder_of_a_killed_grader(tmp_path)
    swept = _folder_of_a_killed_grader(tmp_path)
    unknown = tmp_path / "raftlab-grade-older"
    unknown.mkdir()
    link = tmp_path / "raftlab-grade-link"
    link.symlink_to(unknown)
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "tools.grade.isolation", "--memory-mb", "2048",
         f"--hold={swept / LOCK_NAME}", "--", sys.executable, "-c",
         "import time; print('up', flush=True); time.sleep(600)"],
        env=_env(), cwd=tmp_path, stdout=subprocess.PIPE, text=True,
        start_new_session=True)
    with killed_on_exit(supervisor):
        assert supervisor.stdout.readline().strip() == "up"  # it holds the lock by now
        assert reclaim_stale(tmp_path) == [dead]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            p.name for p in (live.path, swept, unknown, link))
        supervisor.send_signal(signal.SIGTERM)  # it kills its run, sweeps, exits
        supervisor.wait(timeout=120)
        supervisor.stdout.close()
    assert reclaim_stale(tmp_path) == [swept]
    assert live.path.exists() and unknown.is_dir() and link.is_symlink()
    assert live.remove()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([unknown.name, link.name])


def test_a_supervisor_does_not_start_a_run_in_a_reclaimed_folder(tmp_path):
    """A supervisor started just as its grader died, when the folder is already gone:
    it must not run the command (exit 125, the command never ran)."""
    dead = _folder_of_a_killed_grader(tmp_path)
    assert reclaim_stale(tmp_path) == [dead]
    marker = tmp_path / "ran"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.grade.isolation", "--memory-mb", "2048",
         f"--hold={dead / LOCK_NAME}", "--", sys.executable, "-c",
         f"open({str(marker)!r}, 'w').close()"],
        env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 125, proc.stderr
    assert "cannot hold the run folder" in proc.stderr
    assert not marker.exists()


def test_a_grade_run_killed_outright_leaves_a_folder_the_next_one_removes(
        tmp_path, monkeypatch):
    """``raftlab grade`` SIGKILLed mid-run: its supervisor sweeps the run, but nothing
    can remove the private run folder then.  It is kept while the grader lives (a
    reclaim during the run removes nothing), and the next grader removes it and says
    so.  Before, it stayed in /tmp for good."""
    import io

    from rich.console import Console

    from tools.grade.grader import Catalog, Grader
    from tools.grade.rubric import parse, resolve

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    log = tmp_path / "grade.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.grade", "raft", "--only", "2A", "--runs", "300",
             "--sim", "-p", "2", "-o", str(tmp_path / "report"), "--seed", "5"],
            cwd=tmp_path, env=dict(_env(), TMPDIR=str(tmp)), stdout=out,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    with killed_on_exit(proc):
        wait_for_a_finished_run(proc, log)
        folders = sorted(tmp.glob("raftlab-grade-*"))
        assert len(folders) == 1, folders
        assert reclaim_stale(tmp) == []  # in use: never removed
        sessions = sessions_of(proc.pid)
        proc.kill()
        proc.wait(timeout=60)
    left = left_after(sessions, 120)  # the supervisor sweeps the run (PR_SET_PDEATHSIG)
    assert left == {}, f"left behind: {left}"
    assert folders[0].is_dir()  # nothing could remove it
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    test = "test_initial_election_2a"
    catalog = Catalog(REPO, [f"labtests/test_2a.py::{test}"])
    rubric = resolve(parse({"runs": 1, "parts": {"2A": {"budget_s": 60, "tests": {test: 5}}}}),
                     catalog.by_part)
    grader = Grader(rubric, catalog, workers=1, base_seed=1, sim=True,
                    console=Console(file=io.StringIO()))
    assert grader.reclaimed == folders
    assert list(tmp.glob("raftlab-grade-*")) == []


NO_RUN_USER = why_no_run_user()


@pytest.mark.skipif(NO_RUN_USER is not None, reason=f"needs root: {NO_RUN_USER}")
def test_a_run_folder_under_a_root_only_tmpdir_is_reachable_by_the_run_user(tmp_path):
    """TMPDIR inside a folder the run user cannot enter (pytest's own tmp_path is 0700,
    and so is /root): the run's private view covers that folder with a tmpfs keeping
    only the way to the run folder.  The supervisor stashed the entries to keep in a
    temporary folder made *inside* the folder it then covered, so the stash vanished
    under the tmpfs and every run failed ("mount ...: No such file or directory",
    exit 125, 0 points)."""
    from tools.grade.sandbox import choose_run_user

    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    tmp = closed / "tmp"
    tmp.mkdir(mode=0o755)
    folder = RunFolder.make(tmp)
    user, _why = choose_run_user()
    assert user is not None
    try:
        work = folder.path / "work"
        work.mkdir(mode=0o700)
        os.chown(work, user.uid, user.gid)
        proc = subprocess.run(
            [sys.executable, "-m", "tools.grade.isolation", "--memory-mb", "2048",
             "--run-user", str(user), f"--hold={folder.lock}", "--as-run-user", "--",
             sys.executable, "-c", "import os; open('written', 'w').close(); "
             "print(os.getuid(), os.getcwd())"],
            env=dict(_env(), TMPDIR=str(tmp)), cwd=work, capture_output=True, text=True,
            timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.split() == [str(user.uid), str(work)]
        assert (work / "written").exists()
        assert sorted(p.name for p in tmp.iterdir()) == [folder.path.name]  # no stash left
    finally:
        assert folder.remove()
        user.release()
