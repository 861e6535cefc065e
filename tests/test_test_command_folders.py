"""What ``raftlab test`` leaves in the temporary directory: nothing, with or without ``-n``.

Before: ``raftlab test 2A -n 2`` left ``$TMPDIR/pytest-of-USER/pytest-N`` after every run
(pytest-xdist's controller makes pytest's base folder even when no test uses it; pytest
keeps the last three).  Now pytest's base folder is inside the command's own folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools.test_run.follow import with_base_folder

REPO = Path(__file__).resolve().parent.parent


def _raftlab_test(tmp_path: Path, *args: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp))
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "test", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    return tmp, proc


def test_parallel_workers_leave_nothing_in_the_temporary_directory(tmp_path):
    tmp, proc = _raftlab_test(tmp_path, "2A", "-n", "2", "--sim", "--seed", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed, 0 failed" in proc.stdout
    assert sorted(p.name for p in tmp.iterdir()) == []


def test_a_base_folder_of_the_users_own_is_kept(tmp_path):
    mine = tmp_path / "mine"
    tmp, proc = _raftlab_test(tmp_path, "test_initial_election_2a", "-n", "2", "--sim",
                              "--", "--basetemp", str(mine))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert mine.is_dir()  # pytest-xdist's controller made it where the user said
    assert sorted(p.name for p in tmp.iterdir()) == []


def test_no_base_folder_is_added_where_the_option_would_not_exist():
    folder = Path("/x/pytest")
    assert with_base_folder(["-k", "a"], folder) == ["--basetemp=/x/pytest", "-k", "a"]
    for args in (["-p", "no:tmpdir"], ["-pno:tmpdir"], ["--basetemp=/y"], ["--basetemp", "/y"]):
        assert with_base_folder(args, folder) == args
    # "no:tmpdir" as another option's value is not pytest's -p.
    assert with_base_folder(["-k", "no:tmpdir"], folder)[0] == "--basetemp=/x/pytest"
