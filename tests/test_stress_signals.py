"""SIGTERM and SIGHUP to ``raftlab stress`` end it like Ctrl-C: no process left behind.

The runs' pytest lives in a session of its own, so before this a SIGTERM killed the
command alone and orphaned pytest and its forked workers (seen with ``--race``),
with no summary.  Each test starts a real ``--sim`` stress of the graded 2A tests in
a new session, waits for the first result on disk, sends the signal, and checks:
the exit status is 128 + the signal, the partial table was printed and written,
results.jsonl parses, and no process of the command's session or of any session
its children started is alive afterwards (read from /proc).

Load-proof as the Ctrl-C test: 3 x 1,000 simulated runs on 2 workers are over a
minute of CPU on an idle machine, and the signal goes out as soon as the first
result is written; a loaded machine only makes the remaining work longer.  A
SIGKILL, which no handler sees, still leaves nothing: pytest dies with the command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.session_procs import killed_on_exit, left_after, sessions_of
from tools.termination import (
    EXIT_CTRL_C,
    Terminated,
    describe,
    exit_status,
    stop_signals_as_interrupts,
)

REPO = Path(__file__).resolve().parents[1]
RUNS_PER_TEST = 1000


def _stress(out: Path) -> subprocess.Popen[str]:
    # Its temporary files in the test's folder: a command killed outright cannot remove
    # its own (raftlab-stress-* stayed in the machine's /tmp).
    (out.parent / "tmp").mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(out.parent / "tmp"))
    return subprocess.Popen(
        [sys.executable, "-m", "tools.stress", "2A", "-n", str(RUNS_PER_TEST), "-p", "2",
         "--sim", "-o", str(out), "--no-live", "--seed", "11"],
        cwd=out.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


def _wait_first_result(proc: subprocess.Popen[str], results: Path) -> None:
    deadline = time.monotonic() + 300  # start-up only: generous for a loaded machine
    while not (results.exists() and results.read_text().count("\n") >= 1):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "no run finished in 300 s"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_ends_stress_like_ctrl_c_and_leaves_no_process(tmp_path, sig):
    out = tmp_path / "out"
    results = out / "results.jsonl"
    with killed_on_exit(_stress(out)) as proc:
        _wait_first_result(proc, results)
        # The command's session, and every session its children made (pytest's own).
        sessions = sessions_of(proc.pid)
        assert len(sessions) >= 2, "the runs' pytest should be in a session of its own"
        proc.send_signal(sig)
        text, _ = proc.communicate(timeout=120)
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, text[-3000:]
    left = left_after(sessions, 5)
    assert left == {}, f"left behind: {left}\n{text[-3000:]}"
    assert f"terminated by {name}: stopping runs" in text
    assert f"INTERRUPTED (terminated by {name}) after" in text
    rows = [json.loads(line) for line in results.read_text().splitlines()]  # each line parses
    assert 1 <= len(rows) < 3 * RUNS_PER_TEST
    assert all(r["outcome"] == "passed" for r in rows), [r["message"] for r in rows]
    summary = (out / "summary.txt").read_text()
    assert f"INTERRUPTED (terminated by {name}) after {len(rows)} of {3 * RUNS_PER_TEST}" \
        in summary


def test_a_killed_stress_takes_its_pytest_and_workers_with_it(tmp_path):
    """SIGKILL leaves no handler to run: pytest dies with the command (PR_SET_PDEATHSIG,
    set before its exec), and its forked workers with pytest."""
    out = tmp_path / "out"
    with killed_on_exit(_stress(out)) as proc:
        _wait_first_result(proc, out / "results.jsonl")
        sessions = sessions_of(proc.pid)
        assert len(sessions) >= 2, "the runs' pytest should be in a session of its own"
        proc.kill()
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = left_after(sessions, 10)
    assert left == {}, f"left behind: {left}"
    # Its folder stays (no handler ran) -- until the next stress reclaims it.
    tmp = tmp_path / "tmp"
    assert [p.name[:15] for p in tmp.iterdir()] == ["raftlab-stress-"]
    again = subprocess.run(
        [sys.executable, "-m", "tools.stress", "initial_election_2a", "-n", "1", "--sim",
         "-o", str(tmp_path / "again"), "--no-live"], cwd=tmp_path, capture_output=True,
        text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(tmp)))
    assert again.returncode == 0, again.stdout + again.stderr
    assert list(tmp.iterdir()) == []


def test_the_handlers_raise_terminated_and_are_restored():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    with pytest.raises(Terminated) as caught, stop_signals_as_interrupts():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs at the next bytecode; never reached
    assert caught.value.signum == signal.SIGTERM
    assert isinstance(caught.value, KeyboardInterrupt)  # every Ctrl-C path handles it
    assert {s: signal.getsignal(s) for s in before} == before


def test_an_ignored_sighup_stays_ignored():
    """Under nohup the command must not start dying of a hang-up."""
    old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with stop_signals_as_interrupts():
            assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, signal.SIG_IGN)
    finally:
        signal.signal(signal.SIGHUP, old)


def test_exit_status_and_words():
    assert exit_status(KeyboardInterrupt()) == EXIT_CTRL_C == 130
    assert exit_status(Terminated(signal.SIGTERM)) == 143
    assert exit_status(Terminated(signal.SIGHUP)) == 129
    assert describe(KeyboardInterrupt()) == "interrupted"
    assert describe(Terminated(signal.SIGTERM)) == "terminated by SIGTERM"


@pytest.mark.parametrize("other_thread", [False, True], ids=["alone", "beside-a-thread"])
def test_a_stop_signal_waits_until_a_finished_run_is_recorded_whole(other_thread):
    """``interrupts_deferred``: a SIGTERM arriving while a run is being recorded (counted,
    then written) acts only once both are done, never between them; and it is not lost.
    ``beside-a-thread``: as in ``raftlab stress`` (its backend thread) or a pytest
    process with threads left by other tests -- where blocking the signal in the main
    thread did nothing, since the kernel handed it to the other thread (a CI run of the
    whole suite failed so)."""
    from tools.termination import Terminated, interrupts_deferred, stop_signals_as_interrupts

    release = threading.Event()
    helper = threading.Thread(target=release.wait, name="other-thread")
    if other_thread:
        helper.start()
    steps: list[str] = []
    try:
        with stop_signals_as_interrupts():
            with pytest.raises(Terminated) as stopped:
                with interrupts_deferred():
                    steps.append("counted")
                    os.kill(os.getpid(), signal.SIGTERM)
                    for _ in range(1000):  # many bytecodes, where a handler would have run
                        pass
                    time.sleep(0.05)  # and a wait, which a signal interrupts
                    steps.append("written")
                steps.append("after")  # the signal acts as the block is left
    finally:
        release.set()
        if other_thread:
            helper.join()
    assert steps == ["counted", "written"]
    assert stopped.value.signum == signal.SIGTERM


def test_ctrl_c_waits_too_and_the_handlers_come_back():
    """A Ctrl-C inside the block raises KeyboardInterrupt as it is left; afterwards the
    handlers are the ones from before, and a block without a signal raises nothing."""
    from tools.termination import interrupts_deferred, stop_signals_as_interrupts

    with stop_signals_as_interrupts():
        before = {sig: signal.getsignal(sig)
                  for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        with interrupts_deferred():
            pass
        steps: list[str] = []
        with pytest.raises(KeyboardInterrupt) as stopped:
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
                steps.append("written")
        after = {sig: signal.getsignal(sig) for sig in before}
    assert type(stopped.value) is KeyboardInterrupt
    assert steps == ["written"]
    assert after == before


def test_a_run_taken_off_the_queue_is_recorded_before_a_stop_signal_acts(tmp_path, monkeypatch):
    """A SIGTERM arriving just as the main loop takes a finished run off the backend's
    queue waits until that run is recorded; raised there, it dropped the run from both
    the summary and results.jsonl."""
    import io
    import queue as queue_module
    import types

    from rich.console import Console

    from tools.stress import command
    from tools.stress.backends.base import Job, RunOptions, RunResult
    from tools.stress.run import StressRun
    from tools.termination import Terminated, stop_signals_as_interrupts

    test = "labtests/test_2a.py::test_initial_election_2a"
    jobs = [Job(i, test, 10 + i) for i in range(2)]
    run = StressRun(jobs, RunOptions(rootdir=REPO), tmp_path / "o",
                    Console(file=io.StringIO()), 1, 1)

    class SignalAsARunIsTaken(queue_module.Queue):
        def get(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            item = super().get(*args, **kwargs)
            if isinstance(item, RunResult):
                os.kill(os.getpid(), signal.SIGTERM)
            return item

    monkeypatch.setattr(command, "queue", types.SimpleNamespace(
        Queue=SignalAsARunIsTaken, Empty=queue_module.Empty))

    class Backend:
        cancelled = threading.Event()

        def run(self, jobs, on_result):  # noqa: ANN001, ANN202
            on_result(RunResult(job=0, test=test, seed=10, outcome="passed", duration=1.0,
                                worker="w", loadavg=(), message=None, properties={}))
            self.cancelled.wait(60)  # the second run is still going when the stop comes

        def cancel(self):  # noqa: ANN202
            self.cancelled.set()

    with stop_signals_as_interrupts():
        state = command._run_round(run, Backend(), jobs, False, Console(file=io.StringIO()))
    run.close()
    assert isinstance(state.stop, Terminated) and Backend.cancelled.is_set()
    assert [r.job for r in state.results] == [0]
    assert run.stats[test].runs == 1
    assert len((tmp_path / "o" / "results.jsonl").read_text().splitlines()) == 1


def test_a_signal_while_the_handlers_are_put_back_is_not_swallowed_later(monkeypatch):
    """A Ctrl-C that lands while ``interrupts_deferred`` puts the handlers back raises
    there and cuts the restoring short: the handlers not yet put back must still act on
    their signals afterwards (they noted them into a list nobody read: a SIGTERM
    afterwards was swallowed)."""
    from tools import termination
    from tools.termination import Terminated, interrupts_deferred, stop_signals_as_interrupts

    real_signal = signal.signal
    fired: list[bool] = []

    def restoring(sig, handler):  # noqa: ANN001, ANN202
        old = real_signal(sig, handler)
        if sig == signal.SIGINT and handler is signal.default_int_handler and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)  # acts at once: the restoring is cut short
        return old

    with stop_signals_as_interrupts():
        with pytest.raises(KeyboardInterrupt) as first:
            with interrupts_deferred():
                monkeypatch.setattr(termination.signal, "signal", restoring)
        monkeypatch.undo()
        assert fired and type(first.value) is KeyboardInterrupt
        with pytest.raises(Terminated):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler raises here at the latest


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_while_the_tests_are_collected_ends_stress_in_words(
        tmp_path, capsys, monkeypatch, sig):
    """Stopped before any run (collecting the tests): stress says so and exits 130 /
    128 + N.  A Ctrl-C there ended it with a Python traceback (main caught only
    SIGTERM/SIGHUP's Terminated)."""
    from tools.stress import command

    def collect(selection):  # noqa: ANN001, ANN202
        os.kill(os.getpid(), sig)  # Python runs its handler at the next bytecode, here
        raise AssertionError("the signal did not stop the collection")

    monkeypatch.setattr(command, "collect", collect)
    rc = command.main(["-k", "2A", "-n", "1", "--sim", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 128 + sig, err
    name = "interrupted" if sig == signal.SIGINT else "terminated by SIGTERM"
    assert f"raftlab stress: {name}" in err, err
