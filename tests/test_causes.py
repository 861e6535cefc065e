"""Precise causes: a test fails with the real reason, not with what it provoked later.

Toys in ``tests/toys/`` that never elect a leader and swallow their own RPC
errors (as a Raft sending from a pool does): an RPC argument holding a lock, a
reply holding a lambda, a call to Go's method name, a Go-style two-parameter
handler.  Without the harness's help each fails as ``expected one leader, got
none``; here each must fail with the codec's field path or the unknown-method
message (and for the handler, why it was left out), in real time and in
simulated time alike.  Also: what a crashed instance's calls do (counted,
throttled, ended at cleanup) and bounded output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from labtests import test_2a
from labtests.context import TestContext
from labtests.driver import run_graded
from labtests.failures import FailureChannel, RaftTestFailure
from labtests.impl_loader import load
from labtests.output import bound_text, cut_marker, summarize_names

TOYS = Path(__file__).parent / "toys"
MODES = [pytest.param(False, id="real-time"), pytest.param(True, id="sim")]

LOCK = (r"^RPC Raft\.request_vote from server \d to server \d cannot cross the network: "
        r"args\['mu'\]: threading\.Lock cannot cross a network$")
REPLY = (r"^RPC Raft\.request_vote from server \d to server \d cannot cross the network: "
         r"reply\['on_grant'\]: function .*<lambda> cannot cross a network$")
UNKNOWN = (r"^RPC Raft\.RequestVote from server \d to server \d failed: unknown method "
           r"'RequestVote' in 'Raft\.RequestVote' \(did you mean 'request_vote'\?\); "
           r"service 'Raft' has request_vote, start$")
GO_STYLE = (r"^RPC Raft\.request_vote from server \d to server \d failed: unknown method "
            r"'request_vote' in 'Raft\.request_vote': Raft\.request_vote was left out because "
            r"request_vote takes 2 parameters; handlers take one args object and return the "
            r"reply \(service 'Raft' has start\)$")


def _failure(toy: str, sim: bool) -> str:
    if sim:
        pytest.importorskip("greenlet")
    with pytest.raises(RaftTestFailure) as info:
        run_graded(test_2a.test_initial_election_2a, 11, str(TOYS / f"{toy}.py"), sim=sim)
    return str(info.value)


@pytest.mark.parametrize("sim", MODES)
@pytest.mark.parametrize(
    ("toy", "pattern"),
    [("lock_in_args", LOCK), ("reply_codec", REPLY), ("unknown_method", UNKNOWN),
     ("go_style_handler", GO_STYLE)],
)
def test_swallowed_rpc_error_is_the_failure_message(toy, pattern, sim):
    message = _failure(toy, sim)
    first = message.splitlines()[0]
    assert re.match(pattern, first), message
    assert "expected one leader" not in message  # the effect does not hide the cause


def test_first_cause_of_each_kind_is_kept_and_later_ones_are_not_repeated():
    channel = FailureChannel()
    channel.record_cause("codec", "codec one")
    channel.record_cause("codec", "codec two")
    channel.record("expected one leader, got none")
    channel.record_cause("unknown-method", "unknown one")
    assert channel.first_message() == "codec one\nalso: unknown one"


def test_a_cause_after_another_failure_is_added_to_the_message():
    channel = FailureChannel()
    channel.record("apply error: something")
    channel.record_cause("codec", "args.x: threading.Lock cannot cross a network")
    assert channel.first_message() == (
        "apply error: something\nalso: args.x: threading.Lock cannot cross a network"
    )


def test_a_huge_failure_message_is_bounded():
    channel = FailureChannel()
    channel.record("RPC handler raised ValueError(" + "x" * 5_000_000 + ")")
    message = channel.first_message()
    assert len(message) < 20_000
    assert message.startswith("RPC handler raised ValueError(") and "raftlab cut" in message


# -- a crashed instance's calls (docs/harness.md, Crash and restart) -------------------------


def test_killed_raft_that_keeps_calling_is_counted_and_throttled_not_spinning():
    """After crash1 the old instance's ends stay, disabled: each call is counted and fails
    after the unreachable-target delay (0-7 s with long delays), as in the lab.  Deleting
    them instead (the old harness) made each call fail at once, uncounted: a Raft that
    retries without checking kill() spun, millions of attempts a second."""
    impl = load(str(TOYS / "retries_after_kill.py"))
    assert impl.error is None, impl.error
    stop = impl.module.STOP
    stop.clear()
    ctx = TestContext("retries-after-kill", 5, impl)
    try:
        cfg = ctx.make_config(3, False, False)
        time.sleep(0.5)
        old = cfg.rafts[0]
        assert old.attempts >= 1  # it was calling while alive
        cfg.crash1(0)
        with cfg.mu:  # counts from now on come from the crashed instance only
            attempts0, total0 = old.attempts, cfg.rpc_total()
        time.sleep(2.0)
        attempts = old.attempts - attempts0
        counted = cfg.rpc_total() - total0
        assert 1 <= counted <= 30, (counted, attempts)  # ~2 s / mean 3.5 s per failed call
        assert attempts <= counted <= attempts + 1  # every attempt counted (one in flight)
    finally:
        stop.set()
        t0 = time.monotonic()
        ctx.finish(body_failed=True)
    assert time.monotonic() - t0 < 10  # cleanup ended the 0-7 s wait at once
    assert ctx.warnings == [], ctx.warnings  # and nothing was left running
    assert not [t for t in threading.enumerate() if t.name.startswith("toy-campaign")]


# -- bounded output ------------------------------------------------------------------------


def test_bound_text_keeps_short_text_and_cuts_the_middle_of_long_text():
    assert bound_text("short", 10, 10) == "short"
    lines = [f"line {k:06d}" for k in range(100_000)]
    text = "\n".join(lines) + "\n"
    bounded = bound_text(text, 1_000, 2_000)
    head, marker, tail = bounded.partition("[... raftlab cut ")
    assert marker and head.startswith("line 000000\n") and head.endswith("\n")
    assert tail.rstrip().endswith("line 099999")
    kept = [ln for ln in bounded.splitlines() if ln.startswith("line ")]
    assert all(ln in set(lines) for ln in kept)  # no line shown half
    cut_lines = 100_000 - len(kept)
    cut_chars = len(text) - sum(len(ln) + 1 for ln in kept)
    assert cut_marker(cut_chars, cut_lines) in bounded
    assert len(bounded) <= 1_000 + 2_000 + 100
    with pytest.raises(ValueError):
        bound_text("x", -1, 0)


def test_bound_text_without_newlines_still_bounds():
    bounded = bound_text("y" * 1_000_000, 100, 100)
    assert bounded.startswith("y" * 100) and bounded.endswith("y" * 100)
    assert "raftlab cut 999800 characters (0 lines)" in bounded


def test_summarize_names_lists_a_few_and_counts_the_rest():
    assert summarize_names(["a", "b", "c"]) == "a, b, c"
    names = [f"toy-thread-{k}" for k in range(8000)]
    summary = summarize_names(names)
    assert summary == ("toy-thread-0, toy-thread-1, toy-thread-2, toy-thread-3, toy-thread-4 "
                       "and 7995 more (8000 in all)")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}


def test_fifty_megabytes_of_output_are_bounded_in_the_report(tmp_path):
    """The failing toy prints 50 MB; the terminal and the JUnit report keep its first and
    last part and say how much was cut, and the verdict is the lab's message."""
    xml = tmp_path / "out.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "labtests", "-k", "test_initial_election_2a",
         "--raft-impl", str(TOYS / "prints_a_lot.py"), "-p", "no:cacheprovider",
         "-p", "no:xdist", "--junitxml", str(xml), "-o", "junit_logging=all"],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert len(proc.stdout) < 500_000, len(proc.stdout)
    assert "first line of a very long output from server 0" in proc.stdout
    assert "last line of the very long output" in proc.stdout
    assert re.search(r"raftlab cut \d{8} characters \(\d+ lines\)", proc.stdout)
    assert "expected one leader, got none" in proc.stdout
    assert xml.stat().st_size < 500_000
    case = next(ET.parse(xml).getroot().iter("testcase"))
    assert "expected one leader, got none" in case.find("failure").get("message", "")


ISOLATED = {
    "lock_in_args": LOCK[1:-1],
    "unknown_method": UNKNOWN[1:-1],
    "go_style_handler": GO_STYLE[1:-1],
}


def test_isolated_peers_report_the_same_causes(tmp_path):
    """With --isolate the peer process reports the codec error through the tester's
    network, which also reports the unknown method with the reason a method was left
    out: the same messages as in-process (all runs at once)."""
    procs = {}
    for toy in ISOLATED:
        procs[toy] = subprocess.Popen(
            [sys.executable, "-m", "pytest", "--pyargs", "labtests", "-k",
             "test_initial_election_2a", "--isolate", "--raft-impl", str(TOYS / f"{toy}.py"),
             "-p", "no:cacheprovider", "-p", "no:xdist", "--junitxml", str(tmp_path / toy)],
            cwd=tmp_path, env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        for toy, pattern in ISOLATED.items():
            out, _ = procs[toy].communicate(timeout=180)
            assert procs[toy].returncode == 1, out[-3000:]
            case = next(ET.parse(tmp_path / toy).getroot().iter("testcase"))
            message = case.find("failure").get("message", "")
            assert re.search(pattern, message.splitlines()[0]), message
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
