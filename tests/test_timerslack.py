"""Timer slack (labtests/timerslack.py): the harness lets the kernel coalesce timer
wake-ups by giving the test's thread 1 ms of slack, which every thread the test
starts inherits -- the Raft's included -- and which survives exec (isolated peers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from labtests import libc, timerslack

REPO = Path(__file__).resolve().parents[1]
PLUGINS = Path(__file__).parent / "overload_plugins"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")


def _in_thread(fn):  # noqa: ANN001, ANN202 - runs fn in a fresh thread, returns its result
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


@linux_only
def test_the_slack_is_set_for_the_thread_and_inherited_by_threads_and_exec():
    def body():
        # Whatever an earlier test left in this process's threads: start from another value.
        assert timerslack.coalesce_timers(123_000) is True
        before = timerslack.current_slack_ns()
        assert timerslack.coalesce_timers() is True
        child_thread = _in_thread(timerslack.current_slack_ns)
        child_proc = subprocess.run(
            [sys.executable, "-c", "from labtests import timerslack;"
             " print(timerslack.current_slack_ns())"],
            capture_output=True, text=True, cwd=REPO, check=True).stdout.strip()
        return before, timerslack.current_slack_ns(), child_thread, int(child_proc)

    before, now, child_thread, child_proc = _in_thread(body)
    assert before == 123_000
    assert now == child_thread == child_proc == timerslack.TIMER_SLACK_NS


def test_where_there_is_no_such_setting_nothing_changes_and_nothing_raises(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert timerslack.coalesce_timers() is False
    assert timerslack.current_slack_ns() is None

    def refusing(*args):  # noqa: ANN002, ANN202
        raise OSError("no prctl here")

    monkeypatch.setattr(sys, "platform", "linux")
    with libc.replaced("prctl", refusing):
        assert timerslack.coalesce_timers() is False
        assert timerslack.current_slack_ns() is None


@linux_only
def test_a_real_time_graded_test_runs_every_raft_thread_with_the_slack(tmp_path):
    out = tmp_path / "slack.json"
    env = dict(os.environ, RAFTLAB_TEST_SLACK_OUT=str(out), PYTHONPATH=os.pathsep.join(
        [str(PLUGINS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "record_slack",
         "--pyargs", "labtests", "-k", "test_initial_election_2a"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seen = json.loads(out.read_text())
    assert len(seen) == 6, seen  # 3 peers: a ticker and an applier each
    assert {slack for _, slack, _ in seen} == {timerslack.TIMER_SLACK_NS}, seen
