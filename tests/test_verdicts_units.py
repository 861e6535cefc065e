"""The pieces behind "no run without a result", in process and fast.

``labtests.watchdog`` (a bounded call, every thread's stack, abandoned
threads), ``labtests.verdicts`` (reason, exit status, the lab's lines) and the
parent side of ``raftlab test`` (``tools.test_run``: the run's state from the
child's events, what it prints when the child ended early).
"""

from __future__ import annotations

import io
import json
import signal
import threading
from pathlib import Path

import pytest

from labtests import watchdog
from labtests.failures import RaftTestFailure
from labtests.options import HarnessOptions
from labtests.verdicts import Props, exit_description, failure_reason, verdict_lines
from tools.test_run.display import Display
from tools.test_run.follow import EventReader, wants_pytest_output
from tools.test_run.state import RunState

# -- labtests.watchdog ---------------------------------------------------------------------


def test_a_call_that_returns_in_time_is_finished_and_keeps_its_error():
    done = watchdog.run_bounded(lambda: None, 5.0, "quick")
    assert done.finished and done.error is None and done.stacks == ""
    failed = watchdog.run_bounded(lambda: 1 / 0, 5.0, "raises")
    assert failed.finished and isinstance(failed.error, ZeroDivisionError)


def toy_blocked_here(event: threading.Event) -> None:
    event.wait()


def test_a_call_that_blocks_is_abandoned_with_every_threads_stack():
    release = threading.Event()
    try:
        res = watchdog.run_bounded(lambda: toy_blocked_here(release), 0.2, "stuck-cleanup")
        assert not res.finished and res.interrupted is None
        assert 0.2 <= res.elapsed_s < 5.0
        assert res.stacks.startswith("stuck-cleanup had not ended after 0.")
        assert "thread 'stuck-cleanup' (daemon=True):" in res.stacks
        assert "in toy_blocked_here" in res.stacks
        assert "thread 'MainThread'" not in res.stacks  # the waiting harness says nothing
    finally:
        release.set()


def test_a_bound_that_grows_while_waiting_lets_a_slow_call_finish():
    """The cleanup's bound follows the lag measured during the wait (a starved machine)."""
    release = threading.Event()
    lag_seen = threading.Event()

    def slow() -> None:
        lag_seen.set()  # meanwhile the machine is measured to lag: the bound grows
        release.wait(0.8)

    grown = watchdog.run_bounded(slow, lambda: 3.0 if lag_seen.is_set() else 0.3, "late")
    assert grown.finished and 0.8 <= grown.elapsed_s < 3.0
    try:
        fixed = watchdog.run_bounded(lambda: toy_blocked_here(release), lambda: 0.3, "stuck")
        assert not fixed.finished and 0.3 <= fixed.elapsed_s < 3.0  # a stuck call still is
    finally:
        release.set()


def test_the_hook_report_replaces_the_real_threads_stacks():
    release = threading.Event()
    try:
        res = watchdog.run_bounded(lambda: toy_blocked_here(release), 0.05, "sim-cleanup",
                                   thread_report=lambda headline: f"SIM REPORT: {headline}")
        assert res.stacks.startswith("SIM REPORT: sim-cleanup had not ended after ")
    finally:
        release.set()


def test_an_interrupted_wait_is_returned_not_raised():
    release = threading.Event()

    def interrupt() -> None:
        raise KeyboardInterrupt  # stands for the watchdog's exception in the waiting thread

    old = threading.Event.wait

    def wait(self, timeout=None):  # the harness's wait is the one with the 5 s deadline
        if timeout == 5.0:
            interrupt()
        return old(self, timeout)

    threading.Event.wait = wait  # type: ignore[method-assign]
    try:
        res = watchdog.run_bounded(lambda: toy_blocked_here(release), 5.0, "interrupted")
    finally:
        threading.Event.wait = old  # type: ignore[method-assign]
        release.set()
    assert not res.finished and isinstance(res.interrupted, KeyboardInterrupt)


def _ctrl_c_to_this_thread_then(seconds: float) -> None:
    """A Ctrl-C the kernel handed to this thread (not the main one), then more work.

    The signal goes out once the main thread waits for this one (0.2 s in): before, it
    would be raised where ``Thread.start`` waits for the thread to run."""
    threading.Event().wait(0.2)
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)
    threading.Event().wait(seconds)


def test_a_ctrl_c_raised_as_the_call_finishes_is_returned_not_dropped():
    """A Ctrl-C that reached another thread is raised in the main one only when its wait
    ends -- the moment the call finished.  It used to be dropped there (finished, no
    interruption), and the command's stop was lost: the run went on to the next test."""
    res = watchdog.run_bounded(lambda: _ctrl_c_to_this_thread_then(0.3), 5.0, "ctrl-c")
    assert res.finished and isinstance(res.interrupted, KeyboardInterrupt)


def test_a_ctrl_c_during_a_cleanup_that_finishes_still_stops_the_run(monkeypatch):
    """TestContext.finish raises the Ctrl-C after a cleanup that ended (no verdict on
    the test: the user stopped the run), instead of returning as if nothing happened."""
    from labtests.context import TestContext
    from labtests.impl_loader import load

    ctx = TestContext("ctrl-c-in-cleanup", 1, load(None))
    # Ends 0.3 s in, within the harness's first 0.5 s wait, which its end then wakes.
    monkeypatch.setattr(ctx, "_cleanup_configs", lambda: _ctrl_c_to_this_thread_then(0.1))
    with pytest.raises(KeyboardInterrupt):
        ctx.finish(body_failed=False)


def test_abandoned_threads_are_named_then_forgotten_once_they_end():
    release = threading.Event()
    t = threading.Thread(target=toy_blocked_here, args=(release,), name="toy-left", daemon=True)
    t.start()
    assert watchdog.abandon([t], "test_x") == ["toy-left"]
    assert t.ident in watchdog.abandoned_idents()
    stacks = watchdog.all_stacks("now")
    assert "thread 'toy-left' (daemon=True, left blocked by test_x):" in stacks
    release.set()
    t.join(5)
    assert t.ident not in watchdog.abandoned_idents()


def test_only_non_daemon_threads_keep_the_process_alive():
    release = threading.Event()
    daemon = threading.Thread(target=toy_blocked_here, args=(release,), daemon=True)
    other = threading.Thread(target=toy_blocked_here, args=(release,), daemon=False)
    daemon.start()
    other.start()
    try:
        alive = watchdog.threads_keeping_process_alive()
        assert other in alive and daemon not in alive
    finally:
        release.set()
        other.join(5)
        daemon.join(5)


@pytest.mark.parametrize("watchdog_s, expected", [(180.0, 10.0), (4.0, 4.0), (0.0, 10.0),
                                                  (None, 10.0)])
def test_the_cleanup_bound_follows_a_shorter_watchdog(watchdog_s, expected):
    assert watchdog.cleanup_deadline(watchdog_s) == expected


# -- labtests.verdicts ---------------------------------------------------------------------

def test_the_reason_is_the_labs_message_alone_or_the_exceptions_type():
    assert failure_reason(RaftTestFailure("expected one leader, got none\nmore")) == \
        "expected one leader, got none"
    with pytest.raises(pytest.fail.Exception) as info:
        pytest.fail("Timeout (>3.0s) from pytest-timeout.")
    assert failure_reason(info.value) == "Timeout (>3.0s) from pytest-timeout."
    assert failure_reason(ZeroDivisionError("division by zero")) == \
        "ZeroDivisionError: division by zero"
    assert failure_reason(KeyError()) == "KeyError"
    assert len(failure_reason(RaftTestFailure("x" * 10_000))) == 300


def test_exit_statuses_and_signals_are_named():
    assert exit_description(0) == "exit status 0"
    assert exit_description(3) == "exit status 3"
    assert exit_description(-signal.SIGKILL) == "signal SIGKILL (9)"
    assert exit_description(-signal.SIGSEGV) == "signal SIGSEGV (11)"


def test_failure_lines_carry_reason_then_seed_and_one_rerun():
    props = Props([("seed", 9), ("description", "Test (2B): agreement"),
                   ("reason", "one(1) failed to reach agreement")])
    lines = [text for text, _ in verdict_lines("labtests/test_2b.py::test_basic_agree_2b",
                                               props, "failed", "call", HarnessOptions())]
    assert lines[0] == "Test (2B): agreement ..."
    assert lines[1] == "  ... FAILED -- one(1) failed to reach agreement"
    assert lines[2] == "  seed 9; rerun with: raftlab test test_basic_agree_2b --seed 9"
    assert lines[3].startswith("  or: ") and len(lines) == 4
    inconclusive = Props([*props.pairs, ("verdict", "inconclusive"), ("timer_lag_max_ms", 312.4)])
    line = verdict_lines("x::test_basic_agree_2b", inconclusive, "failed", "call",
                         HarnessOptions())[1][0]
    assert line == ("  ... inconclusive (machine overloaded: timers late by 312 ms) -- "
                    "one(1) failed to reach agreement")


def test_passed_lines_are_the_labs_with_its_warnings_first():
    props = Props([("seed", 1), ("description", "Test (2A): initial election"),
                   ("lab_warning", "warning: term changed even though there were no failures"),
                   ("time", 3.5), ("peers", 3), ("rpcs", 62), ("bytes", 14804), ("commits", 0)])
    lines = verdict_lines("a::test_initial_election_2a", props, "passed", "call",
                          HarnessOptions())
    assert [t for t, _ in lines] == [
        "Test (2A): initial election ...",
        "warning: term changed even though there were no failures"
        "  ... Passed --   3.5  3   62   14804    0",
    ]


# -- tools.test_run ------------------------------------------------------------------------

A, B, C = ("labtests/test_2a.py::test_initial_election_2a",
           "labtests/test_2a.py::test_re_election_2a",
           "labtests/test_2a.py::test_many_elections_2a")


def _report(nodeid: str, when: str, outcome: str, props=()) -> dict:
    return {"event": "report", "nodeid": nodeid, "when": when, "outcome": outcome,
            "props": [list(p) for p in props], "longrepr": "", "sections": []}


def _run_events(events: list[dict]) -> RunState:
    state = RunState()
    for event in events:
        state.apply(event)
    return state


def test_a_child_that_dies_mid_test_leaves_that_test_running_and_the_rest_not_run():
    state = _run_events([
        {"event": "collected", "tests": [A, B, C]},
        {"event": "start", "nodeid": A}, {"event": "seed", "nodeid": A, "seed": 4},
        _report(A, "setup", "passed"), _report(A, "call", "passed", [("seed", 4)]),
        _report(A, "teardown", "passed"),
        {"event": "start", "nodeid": B}, {"event": "seed", "nodeid": B, "seed": 5},
        _report(B, "setup", "passed"),
    ])
    assert [t.nodeid for t in state.running()] == [B]
    assert state.not_run() == [C]
    assert state.counts() == {"passed": 1}
    out = io.StringIO()
    display = Display(HarnessOptions(), passthrough=False, out=out, colour=False)
    display.ended_early(state, -signal.SIGKILL)
    display.summary(state, crashed=True, elapsed_s=1.0)
    text = out.getvalue().splitlines()
    assert text[0] == "test_re_election_2a ..."
    assert text[1] == ("  ... FAILED -- the test process ended with signal SIGKILL (9) while "
                       "this test was running")
    assert text[2] == "  seed 5; rerun with: raftlab test test_re_election_2a --seed 5"
    assert text[4] == "not run (the test process had ended): test_many_elections_2a"
    assert text[5] == "1 passed, 1 failed, 1 not run in 1.0s"


def test_a_death_after_the_body_says_so():
    state = _run_events([
        {"event": "collected", "tests": [A]}, {"event": "start", "nodeid": A},
        _report(A, "setup", "passed"), _report(A, "call", "passed", [("seed", 4)]),
    ])
    out = io.StringIO()
    Display(HarnessOptions(), passthrough=False, out=out).ended_early(state, 0)
    assert "ended with exit status 0 after this test's body, during its cleanup" in \
        out.getvalue()


def test_an_xdist_crash_report_ends_the_test():
    state = _run_events([
        {"event": "collected", "tests": [A]}, {"event": "start", "nodeid": A},
        _report(A, "???", "failed", [("seed", 3), ("reason", "worker gw0 ended")]),
        {"event": "finish", "exitstatus": 1},
    ])
    assert state.running() == [] and state.counts() == {"failed": 1}


def test_the_event_reader_returns_only_complete_lines(tmp_path: Path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps({"event": "start", "nodeid": A}) + "\n" + '{"event": "rep')
    reader = EventReader(path)
    assert reader.read() == [{"event": "start", "nodeid": A}]
    with open(path, "a") as f:
        f.write('ort"}\n')
    assert reader.read() == [{"event": "report"}]
    assert reader.read() == []


@pytest.mark.parametrize("extra, wanted", [
    ([], False), (["-x"], False), (["-v"], True), (["-vv"], True), (["-s"], True),
    (["-sv"], True), (["--capture=no"], True), (["-k", "vote"], False), (["-xq"], False),
])
def test_pytest_output_only_when_asked(extra, wanted):
    assert wants_pytest_output(extra) is wanted
