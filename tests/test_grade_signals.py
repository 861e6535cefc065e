"""SIGTERM and SIGHUP to ``raftlab grade`` end it like Ctrl-C, with no process left.

Grade's runs are under a supervisor in a session of its own that dies with the
grader (``PR_SET_PDEATHSIG``), so a bare SIGTERM left no process even before; but
the grader then vanished without a word and with no exit status of its own.  Now
the signal is a Ctrl-C: the running tests are stopped and swept, the grader says
so, and exits with 128 + the signal.  Load-proof: the signal goes out once the
first run's line is printed, and 3 x 300 simulated runs on 2 workers leave far
more work than any machine finishes in between.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.session_procs import killed_on_exit, left_after, sessions_of

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_ends_grade_like_ctrl_c_and_leaves_no_process(tmp_path, sig):
    log = tmp_path / "grade.log"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.grade", "raft", "--only", "2A", "--runs", "300",
             "--sim", "-p", "2", "-o", str(tmp_path / "report"), "--seed", "5"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    with killed_on_exit(proc):
        deadline = time.monotonic() + 300  # start-up only: generous for a loaded machine
        while " seed " not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no run finished in 300 s"
            time.sleep(0.05)
        sessions = sessions_of(proc.pid)
        assert len(sessions) >= 2, "the runs should be in a session of their own"
        proc.send_signal(sig)
        proc.wait(timeout=120)
    text = log.read_text()
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, text[-3000:]
    assert f"raftlab grade: terminated by {name}; the running tests were stopped" in text
    left = left_after(sessions, 30)  # the supervisor may still be sweeping its run
    assert left == {}, f"left behind: {left}\n{text[-3000:]}"
