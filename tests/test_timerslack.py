"""Timer slack (labtests/timerslack.py): the harness lets the kernel coalesce timer
wake-ups by giving the test's thread 1 ms of slack, which every thread the test
starts inherits -- the Raft's included -- and which survives exec (isolated peers)."""

from __future__ import annotations

import sys

import pytest

from labtests import libc, timerslack
from tests.thread_settings_support import (
    here_in_a_thread_and_in_a_child,
    in_thread,
    raft_threads_of_a_graded_test,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")


@linux_only
def test_the_slack_is_set_for_the_thread_and_inherited_by_threads_and_exec():
    def body():
        # Whatever an earlier test left in this process's threads: start from another value.
        assert timerslack.coalesce_timers(123_000) is True
        before = timerslack.current_slack_ns()
        assert timerslack.coalesce_timers() is True
        return before, *here_in_a_thread_and_in_a_child("timerslack", "current_slack_ns")

    before, now, child_thread, child_proc = in_thread(body)
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
    seen = raft_threads_of_a_graded_test(tmp_path)["threads"]
    assert {slack for _, slack, _, _ in seen} == {timerslack.TIMER_SLACK_NS}, seen
