"""Known artifacts of the lab's tests are named on the failure, never turned into a pass.

The detectors are pure functions (driven here with hand-made observations), and
the harness applies them where the pattern can occur: ``one(cmd, n, retry=False)``
given to a deposed leader, and a 2D apply-order failure caused by two instances of
one server sharing the tester's counter.  Scripted toy peers make each situation
happen exactly, so the tests are deterministic (docs/harness.md, Known artifacts).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from labtests.artifacts import (
    ARTIFACT_KEY,
    DEPOSED_LEADER,
    LATE_APPLY,
    deposed_leader_submission,
    late_apply_after_restart,
)
from labtests.context import TestContext
from labtests.failures import RaftTestFailure
from labtests.impl_loader import load
from raft.api import ApplyMsg

TOYS = Path(__file__).parent / "toys"


# -- the detectors ------------------------------------------------------------------------


def test_deposed_leader_is_detected_only_for_a_higher_term_leader():
    # server 1 took the command in term 3; server 2 claims leadership in term 4
    found = deposed_leader_submission(1, 3, {0: (4, False), 2: (4, True)})
    assert found is not None and found.name == DEPOSED_LEADER
    assert "server 1 accepted it in term 3" in found.explanation
    assert "server 2 claimed leadership in the higher term 4" in found.explanation
    # the highest claim is named when several peers claim
    found = deposed_leader_submission(0, 1, {1: (2, True), 2: (3, True)})
    assert found is not None and "server 2" in found.explanation and "term 3" in found.explanation


@pytest.mark.parametrize(
    "claims",
    [
        {},  # nobody else connected
        {0: (4, False), 2: (4, False)},  # others moved on, but nobody claims leadership
        {0: (3, True)},  # a second leader in the SAME term: a real bug, not this artifact
        {0: (2, True)},  # another leader in a lower term: the submission went to the newest
        {1: (9, True)},  # the accepting server itself is not "another" claim
    ],
)
def test_no_deposed_leader_artifact_without_the_exact_pattern(claims):
    assert deposed_leader_submission(1, 3, claims) is None


def test_annotation_keeps_the_labs_line_first():
    artifact = late_apply_after_restart(2, 13, 11)
    text = artifact.annotate("apply error: server 2 apply out of order, expected index 11, got 13")
    lines = text.splitlines()
    assert lines[0] == "apply error: server 2 apply out of order, expected index 11, got 13"
    assert f"known artifact of the lab's tests, '{LATE_APPLY}'" in lines[1]
    assert "the verdict stands" in lines[1]


# -- in the harness -----------------------------------------------------------------------


@pytest.fixture
def scripted():
    impl = load(str(TOYS / "scripted.py"))
    assert impl.error is None, impl.error
    saved = dict(impl.module.STATE)
    yield impl
    impl.module.STATE.clear()
    impl.module.STATE.update(saved)


def _one_without_retry(impl, state) -> tuple[str, str | None]:
    impl.module.STATE.update(state)
    ctx = TestContext("artifact-one", 3, impl)
    try:
        cfg = ctx.make_config(3, False, False)
        with pytest.raises(RaftTestFailure) as info:
            cfg.one(101, 3, False)  # one() tries server 1 first
        return str(info.value), ctx.failures.artifact
    finally:
        ctx.finish(body_failed=True)


def test_one_given_to_a_deposed_leader_names_the_artifact(scripted):
    message, artifact = _one_without_retry(
        scripted, {0: (2, False), 1: (1, True), 2: (2, True)}
    )
    assert message.splitlines()[0] == "one(101) failed to reach agreement"
    assert "known artifact of the lab's tests, 'deposed-leader-submission'" in message
    assert "server 1 accepted it in term 1 while server 2 claimed leadership in the higher " \
           "term 2" in message
    assert artifact == DEPOSED_LEADER


def test_one_given_to_the_only_leader_is_a_plain_failure(scripted):
    message, artifact = _one_without_retry(
        scripted, {0: (1, False), 1: (1, True), 2: (1, False)}
    )
    assert message == "one(101) failed to reach agreement"
    assert artifact is None


def _wait_failed(ctx: TestContext) -> None:
    deadline = time.monotonic() + 10
    while not ctx.failures.failed:
        assert time.monotonic() < deadline, "the reader never reported"
        time.sleep(0.01)


def _wait_applied(cfg, server: int, index: int) -> None:
    deadline = time.monotonic() + 10
    while cfg.last_applied[server] < index:
        assert time.monotonic() < deadline, f"server {server} never applied index {index}"
        time.sleep(0.001)


def _put(rf, index: int) -> None:
    assert rf.apply_ch.put(ApplyMsg(command_valid=True, command=100 + index,
                                    command_index=index))


def test_late_apply_of_a_crashed_instance_after_restart_names_the_artifact(scripted):
    ctx = TestContext("artifact-late-apply", 4, scripted)
    try:
        cfg = ctx.make_config(3, False, True)
        old = cfg.rafts[0]
        _put(old, 1)
        _put(old, 2)
        cfg.start1(0, cfg.applier_snap)  # crash and restart server 0
        new = cfg.rafts[0]
        _put(new, 1)  # the new instance starts over (nothing was persisted)
        # put() returns once the tester's reader has the message, which may be before
        # it has applied it: wait, so that the late apply below meets "expected 2".
        _wait_applied(cfg, 0, 1)
        _put(old, 3)  # ... and the crashed one delivers one more, in its own order
        _wait_failed(ctx)
        message = ctx.failures.first_message()
        assert message.splitlines()[0] == (
            "apply error: server 0 apply out of order, expected index 2, got 3"
        )
        assert f"'{LATE_APPLY}'" in message
        assert ctx.failures.artifact == LATE_APPLY
    finally:
        ctx.finish(body_failed=True)


def test_out_of_order_apply_of_one_instance_is_a_plain_failure(scripted):
    ctx = TestContext("artifact-plain-order", 4, scripted)
    try:
        cfg = ctx.make_config(3, False, True)
        _put(cfg.rafts[1], 1)
        _put(cfg.rafts[1], 3)
        _wait_failed(ctx)
        assert ctx.failures.first_message().startswith(
            "apply error: server 1 apply out of order, expected index 2, got 3\n"
        )
        assert "known artifact" not in ctx.failures.first_message()
        assert ctx.failures.artifact is None
    finally:
        ctx.finish(body_failed=True)


def test_the_artifact_is_a_property_of_the_failed_test_report(tmp_path):
    """Through pytest: still a failure, with ``raftlab_artifact`` in the JUnit report."""
    (tmp_path / "test_deposed.py").write_text(textwrap.dedent("""
        def test_deposed(make_config):
            cfg = make_config(3, False, False)
            cfg.impl.module.STATE.update({0: (2, False), 1: (1, True), 2: (2, True)})
            cfg.begin("Test (X): deposed leader")
            cfg.one(101, 3, False)
            cfg.end()
        """))
    xml = tmp_path / "out.xml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "test_deposed.py", "--raft-impl",
         str(TOYS / "scripted.py"), "-p", "no:cacheprovider", "-p", "no:xdist",
         "--junitxml", str(xml)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    case = next(ET.parse(xml).getroot().iter("testcase"))
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert props.get(ARTIFACT_KEY) == DEPOSED_LEADER, props
    assert case.find("failure") is not None
