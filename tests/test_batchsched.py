"""Batch scheduling (labtests/batchsched.py): the harness runs the test's thread under
``SCHED_BATCH``, which every thread the test starts inherits -- the Raft's included --
and which survives exec (isolated peers); a policy someone chose is left alone."""

from __future__ import annotations

import os

import pytest

from labtests import batchsched
from tests.thread_settings_support import (
    here_in_a_thread_and_in_a_child,
    in_thread,
    raft_threads_of_a_graded_test,
)

linux_only = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="a Linux policy")


@linux_only
def test_the_policy_is_set_for_the_thread_and_inherited_by_threads_and_exec():
    def body():
        # Whatever an earlier test left in this process's threads: start from the default.
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        before = batchsched.current_policy()
        assert batchsched.run_as_batch() is True
        assert batchsched.run_as_batch() is True  # again: already so
        return before, *here_in_a_thread_and_in_a_child("batchsched", "current_policy")

    before, now, child_thread, child_proc = in_thread(body)
    assert before == os.SCHED_OTHER
    assert now == child_thread == child_proc == os.SCHED_BATCH


@linux_only
def test_a_policy_someone_chose_is_left_alone():
    def body():
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # as `chrt -i 0` would
        return batchsched.run_as_batch(), batchsched.current_policy()

    assert in_thread(body) == (False, os.SCHED_IDLE)  # the thread ends with its policy


def test_where_there_is_no_such_policy_nothing_changes_and_nothing_raises(monkeypatch):
    monkeypatch.delattr(os, "SCHED_BATCH", raising=False)
    assert batchsched.run_as_batch() is False


@linux_only
def test_a_refusing_kernel_changes_nothing_and_raises_nothing(monkeypatch):
    def refusing(*args):  # noqa: ANN002, ANN202
        raise PermissionError("seccomp says no")

    monkeypatch.setattr(os, "sched_setscheduler", refusing)
    assert in_thread(lambda: (os.sched_getscheduler(0) == os.SCHED_OTHER
                               and batchsched.run_as_batch())) is False
    monkeypatch.setattr(os, "sched_getscheduler", refusing)
    assert batchsched.current_policy() is None


@linux_only
def test_a_real_time_graded_test_runs_every_raft_thread_as_batch(tmp_path):
    seen = raft_threads_of_a_graded_test(tmp_path)["threads"]
    assert {policy for _, _, policy, _ in seen} == {os.SCHED_BATCH}, seen
