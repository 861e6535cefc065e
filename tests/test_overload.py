"""Overload is measured, not blamed on the student: timer lag, the inconclusive verdict.

What a hostile or unlucky run does to the verdict:

* a machine that makes timers late turns a failure into *inconclusive*, with
  exit status 6 -- faked in-process, and for real by stopping the test
  process with SIGSTOP (the operating system not running it is exactly what
  overload is);
* a passing run stays a pass however late the timers;
* a safety violation (two leaders in one term) stays a failure however late;
* a Raft that burns the CPU itself cannot excuse itself: its own lateness is
  not the machine's;
* on a quiet machine every broken toy of the self-tests still fails, never
  inconclusive;
* the leak check waits longer only by what was measured, and still fails a
  leaking Raft.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from labtests import overload, timing
from labtests.context import THREAD_GRACE_S, TestContext
from labtests.failures import RaftTestFailure
from labtests.impl_loader import load
from labtests.timing import LagSampler, LagSummary, NoSampler, leak_grace_s
from tests.inconclusive_support import RETRIES, rerun_while_inconclusive
from tests.test_selftest import CASES, Run

TOYS = Path(__file__).parent / "toys"
PLUGINS = Path(__file__).parent / "overload_plugins"
pytestmark = pytest.mark.selftest


# --- the sampler and the verdict, in process ---------------------------------------------


def test_machine_lag_is_lateness_minus_the_processs_own_cpu():
    s = LagSampler()
    s.record(0.300, 0.0)  # late, and the process did not run: the machine's
    s.record(0.500, 0.500)  # late while the process used the CPU the whole time: its own
    s.record(0.400, 0.100)  # mixed: 300 ms of it the machine's
    s.record(-0.001, 0.0)  # early (clock granularity) counts as 0
    summary = s.summary()
    assert summary.measured and summary.samples == 4
    assert summary.max_ms == 300.0
    assert summary.self_max_ms == 500.0
    assert summary.p99_ms == 300.0


def test_real_sampler_reports_little_lag_and_stops_at_once():
    s = LagSampler(interval_s=0.01).start()
    time.sleep(0.3)
    t0 = time.monotonic()
    summary = s.stop()
    assert time.monotonic() - t0 < 1.0  # it waits on an event, not a sleep
    assert summary.samples >= 1
    assert summary.loadavg_start and summary.loadavg_end
    assert not any(t.name == "raftlab-timer-lag" for t in threading.enumerate())
    props = dict(summary.properties())
    assert {"timer_lag_max_ms", "timer_lag_p99_ms", "loadavg_start", "loadavg_end"} <= set(props)


def test_simulated_time_measures_nothing():
    assert isinstance(timing.start_sampler(sim=True), NoSampler)
    assert NoSampler().stop() == LagSummary(measured=False)
    assert not overload.overloaded(LagSummary(measured=False, max_ms=10_000))
    from labtests.sim import activate

    with activate(1):
        assert timing.simulated()
        assert isinstance(timing.start_sampler(), NoSampler)
    assert not timing.simulated()


def test_verdict_needs_lag_beyond_the_bound_and_a_failure_timing_can_explain():
    late = LagSummary(measured=True, max_ms=overload.LAG_BOUND_MS + 50)
    quiet = LagSummary(measured=True, max_ms=overload.LAG_BOUND_MS - 1)
    liveness = "expected one leader, got none"
    assert overload.is_inconclusive(late, liveness)
    assert not overload.is_inconclusive(quiet, liveness)
    for safety in ("term 3 has 2 (>1) leaders", "committed values do not match",
                   "apply error: server 1 apply out of order 5", "4 committed but no majority",
                   "args.x: threading.Lock cannot cross a network",
                   "uncaught exception in thread 'ticker': ValueError()"):
        assert not overload.is_inconclusive(late, safety), safety
    assert overload.verdict_text(late) == (
        f"inconclusive (machine overloaded: timers late by {late.max_ms:.0f} ms)")


def test_leak_grace_follows_measured_lag_and_is_capped():
    idle = NoSampler()
    assert leak_grace_s(THREAD_GRACE_S, idle) == THREAD_GRACE_S
    s = LagSampler()
    s.record(0.2, 0.0)
    assert leak_grace_s(THREAD_GRACE_S, s) == pytest.approx(THREAD_GRACE_S + 2.0)
    s.record(100.0, 0.0)
    assert leak_grace_s(THREAD_GRACE_S, s) == timing.LEAK_GRACE_CAP_S
    own = LagSampler()
    own.record(5.0, 5.0)  # a CPU hog's own lateness buys it no grace
    assert leak_grace_s(THREAD_GRACE_S, own) == THREAD_GRACE_S


class _FixedLag(NoSampler):
    def __init__(self, lag_s: float) -> None:
        self.machine_max_s = lag_s


def _finish_with_a_slow_thread(monkeypatch, lag_s: float, thread_s: float) -> str | None:
    monkeypatch.setattr(timing, "start_sampler",
                        lambda sim=False, on_new_max=None: _FixedLag(lag_s))
    ctx = TestContext("leak", 1, load(None))
    done = threading.Event()
    slow = threading.Thread(target=done.wait, args=(thread_s,), name="slow-to-end")
    slow.start()
    try:
        ctx.finish(body_failed=False)
        return None
    except RaftTestFailure as exc:
        return str(exc)
    finally:
        done.set()
        slow.join()


def test_leak_check_stays_strict_on_a_quiet_machine(monkeypatch):
    message = _finish_with_a_slow_thread(monkeypatch, lag_s=0.0, thread_s=THREAD_GRACE_S + 2.0)
    assert message is not None and "threads still running after cleanup: slow-to-end" in message


def test_leak_check_waits_longer_when_timers_were_late(monkeypatch):
    # 0.4 s of measured lag: grace 1.5 + 4 s, enough for a thread that needs 3 s.
    assert _finish_with_a_slow_thread(monkeypatch, lag_s=0.4, thread_s=3.0) is None


# --- whole pytest runs against toys ---------------------------------------------------------


def _env(fake_lag_ms: float | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    if fake_lag_ms is not None:
        env["RAFTLAB_TEST_FAKE_LAG_MS"] = str(fake_lag_ms)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(PLUGINS), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _pytest(tmp_path: Path, impl: str | None, select: str, fake_lag_ms: float | None = None,
            extra: tuple[str, ...] = ()) -> list[str]:
    xml = tmp_path / f"{select}-{fake_lag_ms}.xml"
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "labtests", "-k", select,
           "-p", "no:cacheprovider", "-p", "no:xdist", "--junitxml", str(xml), *extra]
    if impl is not None:
        cmd += ["--raft-impl", str(TOYS / f"{impl}.py")]
    if fake_lag_ms is not None:
        cmd += ["-p", "fake_lag"]
    return cmd


def _cases(xml: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """test name -> (outcome, properties) from a JUnit XML file."""
    out = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        failed = case.find("failure") is not None or case.find("error") is not None
        out[case.get("name", "")] = ("failed" if failed else "passed", props)
    return out


def _run(tmp_path: Path, impl: str | None, select: str, fake_lag_ms: float | None = None
         ) -> tuple[int, str, dict[str, tuple[str, dict[str, str]]]]:
    cmd = _pytest(tmp_path, impl, select, fake_lag_ms)
    proc = subprocess.run(cmd, cwd=tmp_path, env=_env(fake_lag_ms), capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr, _cases(Path(cmd[cmd.index("--junitxml")
                                                                          + 1]))


def test_a_liveness_failure_on_an_overloaded_machine_is_inconclusive(tmp_path):
    rc, out, cases = _run(tmp_path, "never_elects", "test_initial_election_2a", fake_lag_ms=750)
    outcome, props = cases["test_initial_election_2a"]
    assert outcome == "failed" and props["verdict"] == "inconclusive", out
    assert float(props["timer_lag_max_ms"]) >= 750
    assert rc == overload.EXIT_INCONCLUSIVE, out
    late = float(props["timer_lag_max_ms"])
    assert f"inconclusive (machine overloaded: timers late by {late:.0f} ms)" in out
    assert "1 inconclusive" in out  # pytest's own summary line counts it apart


def test_a_passing_run_stays_a_pass_however_late_the_timers(tmp_path):
    rc, out, cases = _run(tmp_path, None, "test_initial_election_2a", fake_lag_ms=2000)
    outcome, props = cases["test_initial_election_2a"]
    assert rc == 0 and outcome == "passed", out
    assert "verdict" not in props and float(props["timer_lag_max_ms"]) >= 2000


def test_a_safety_violation_stays_a_failure_however_late_the_timers(tmp_path):
    rc, out, cases = _run(tmp_path, "two_leaders", "test_initial_election_2a", fake_lag_ms=2000)
    outcome, props = cases["test_initial_election_2a"]
    assert rc == 1 and outcome == "failed" and "verdict" not in props, out
    assert "(>1) leaders" in out


def test_a_stopped_process_is_measured_as_overloaded(tmp_path):
    """Real lag, no fake: SIGSTOP the test process for 1.5 s while the test runs."""
    cmd = _pytest(tmp_path, "never_elects", "test_initial_election_2a", extra=("-s",))
    env = _env(None) | {"PYTHONUNBUFFERED": "1"}  # see the Test line when it is printed
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the Test (2A) line is printed when the body begins
            lines.append(line)
            if "Test (2A)" in line:
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(1.5)
        proc.send_signal(signal.SIGCONT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(lines) + rest
    outcome, props = _cases(Path(cmd[cmd.index("--junitxml") + 1]))["test_initial_election_2a"]
    assert outcome == "failed" and props.get("verdict") == "inconclusive", out
    assert float(props["timer_lag_max_ms"]) >= 1000, props
    assert proc.returncode == overload.EXIT_INCONCLUSIVE, out


def _inconclusive_tests(out) -> dict[str, float]:
    """The failed tests of a toy's run reported inconclusive, with the lag that made them so."""
    return {test: float(props.get("timer_lag_max_ms", "nan"))
            for test, props in out.properties.items()
            if test in out.failures and props.get("verdict") == overload.INCONCLUSIVE}


def test_on_a_quiet_machine_every_broken_toy_still_fails(tmp_path):
    """The self-tests' broken toys (tests/toys), run as there: failures, never inconclusive.

    On a loaded machine (another test suite beside this one) a toy's failure may rightly
    read inconclusive: then the lag it reports must be over the bound (the verdict was
    earned, not a bug), and the toy runs again, alone, until it fails conclusively --
    at most ``inconclusive_support.RETRIES`` more times.  A toy that reads inconclusive on every try
    fails this test, as does one whose inconclusive verdict the lag does not explain.
    """
    # "passes" is a passing run; "leaks_thread" gives a warning, not a failure, for a Raft
    # other than the bundled one.  Every other case is a toy that must fail.
    cases = {name: case for name, case in CASES.items() if name not in ("passes", "leaks_thread")}
    runs = {}
    for start in range(0, len(cases), 4):  # four at a time: quiet, as the verdict needs
        batch = {name: Run(case, tmp_path, name)
                 for name, case in list(cases.items())[start:start + 4]}
        for run in batch.values():
            run.outcome()
        runs.update(batch)
    for name, run in runs.items():
        out = rerun_while_inconclusive(
            run.outcome(), _inconclusive_tests,
            lambda attempt, name=name: Run(cases[name], tmp_path,
                                           f"{name}-retry{attempt}").outcome(), name)
        assert out.failures, f"{name}: the toy no longer fails\n{out.output}"
        for test, props in out.properties.items():
            if test in out.failures:
                assert props.get("verdict") != "inconclusive", (
                    f"{name}: {test} reported inconclusive (lag {props.get('timer_lag_max_ms')} "
                    f"ms, own {props.get('timer_lag_self_max_ms')} ms), also when run again "
                    f"alone {RETRIES} times\n{out.output}")
        assert out.returncode == 1, f"{name}: exit {out.returncode}\n{out.output}"


def test_out_of_threads_is_the_machines_fault_only_with_few_threads_of_our_own():
    msg = "uncaught exception in thread 'raft-S1-ticker': RuntimeError(\"can't start new thread\")"
    few = LagSummary(measured=True, max_ms=900.0, threads_max=60)
    many = LagSummary(measured=True, max_ms=900.0, threads_max=overload.many_threads())
    quiet = LagSummary(measured=True, max_ms=5.0, threads_max=60)
    assert overload.is_inconclusive(few, msg)
    assert not overload.is_inconclusive(many, msg)  # a Raft that leaks threads: its own fault
    assert not overload.is_inconclusive(quiet, msg)  # a quiet machine: not overload
    # The reference Raft's peak in test_many_elections_2a at 1 s of lag (96 parallel runs):
    # the machine's fault wherever the machine allows the usual 32768 pids or more.
    if (overload.machine_thread_limit() or 0) >= 32768:
        assert overload.is_inconclusive(
            LagSummary(measured=True, max_ms=1011.7, threads_max=1120), msg)
    s = LagSampler(interval_s=0.01).start()
    time.sleep(0.1)
    assert s.stop().threads_max >= 2  # the sampler and this thread, at least


# --- failures timing can never explain (NEVER_TIMING), one test each --------------------------

_LATE = LagSummary(measured=True, max_ms=overload.LAG_BOUND_MS * 5)


def _codec_error(value: object) -> str:
    from labrpc.codec import CodecError, encode

    with pytest.raises(CodecError) as info:
        encode(value, "args")
    return str(info.value)


def test_an_argument_that_cannot_cross_the_network_is_never_inconclusive():
    # The codec's own words, then the tester's wording of the same error (labtests.config).
    inner = _codec_error({"mu": threading.Lock()})
    assert "cannot cross a network" in inner, inner
    tester = f"RPC Raft.request_vote from server 0 to server 1 cannot cross the network: {inner}"
    for message in (inner, tester):
        assert not overload.is_inconclusive(_LATE, message), message
        assert not overload.timing_can_explain(message)


def test_an_implementation_that_cannot_be_imported_is_never_inconclusive(tmp_path):
    # The loader's own words (found by the machine-probe self-test: a missing file was
    # reported as inconclusive on a machine whose timers were late).
    from labtests.impl_loader import load

    impl = load(str(tmp_path / "missing.py"))
    assert impl.error is not None and "cannot import the Raft implementation" in impl.error
    assert not overload.is_inconclusive(_LATE, impl.error)
    assert not overload.timing_can_explain(impl.error)


def test_a_value_that_cannot_be_encoded_is_never_inconclusive():
    inner = _codec_error({"view": memoryview(b"raft")})  # pickle itself refuses it
    assert "cannot be encoded" in inner, inner
    tester = f"RPC Raft.append_entries from server 2 to server 0 cannot cross the network: {inner}"
    for message in (inner, tester):
        assert not overload.is_inconclusive(_LATE, message), message


def test_a_cleanup_that_did_not_end_is_never_inconclusive():
    message = ("cleanup did not end within 10 s: a kill() that does not return (or a Raft "
               "thread it waits for) blocks it; the stacks below show where")
    assert not overload.is_inconclusive(_LATE, message)
    # The control: the same lag does excuse a liveness failure.
    assert overload.is_inconclusive(_LATE, "expected one leader, got none")


@pytest.mark.parametrize(("toy", "words"), [
    ("lock_in_args", "cannot cross the network"),
    ("reply_codec", "cannot cross"),
    ("kill_blocks", "cleanup did not end"),
])
def test_an_overloaded_run_failing_for_a_reason_timing_cannot_explain_stays_a_failure(
        tmp_path, toy, words):
    """Whole runs with every timer 750 ms late: the verdict is a failure, not inconclusive."""
    rc, out, cases = _run(tmp_path, toy, "test_initial_election_2a", fake_lag_ms=750)
    outcome, props = cases["test_initial_election_2a"]
    assert float(props["timer_lag_max_ms"]) >= 750, props
    assert outcome == "failed" and props.get("verdict") != "inconclusive", out[-3000:]
    assert words in out, out[-3000:]
    assert rc == 1, out[-3000:]
