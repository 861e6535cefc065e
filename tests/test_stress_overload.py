"""``raftlab stress`` and overload: inconclusive runs counted apart and rerun, ``-p auto``,
``-p 0`` refused.

A scripted backend plays an overloaded machine (runs that come back inconclusive a
given number of times); one end-to-end run uses the real harness with the fake-lag
plugin of tests/overload_plugins, and one calibrates with real probes.
"""

from __future__ import annotations

import io
import os
import sys
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from labtests.overload import EXIT_INCONCLUSIVE, LAG_BOUND_MS
from tests.test_stress import NO_HARNESS, run_stress
from tools.stress import calibrate as cal
from tools.stress import command as stress
from tools.stress.backends.base import RunResult
from tools.stress.planning import plan_jobs
from tools.stress.results import results_of

REPO = Path(__file__).resolve().parents[1]
TOYS = Path(__file__).parent / "toys"
PLUGINS = Path(__file__).parent / "overload_plugins"


class OverloadedBackend:
    """Each seed in ``late`` comes back inconclusive that many times, then passes."""

    def __init__(self, late: dict[int, int], fail: set[int] = frozenset()) -> None:
        self.late = dict(late)
        self.fail = fail
        self.rounds: list[list[int]] = []

    def run(self, jobs, on_result):
        self.rounds.append([job.seed for job in jobs])
        for job in jobs:
            if self.late.get(job.seed, 0) > 0:
                self.late[job.seed] -= 1
                outcome, msg = "inconclusive", ("inconclusive (machine overloaded: timers late "
                                                "by 900 ms): expected one leader, got none")
                props = {"timer_lag_max_ms": 900.0, "verdict": "inconclusive"}
            elif job.seed in self.fail:
                outcome, msg, props = "failed", "term 2 has 2 (>1) leaders", {}
            else:
                outcome, msg, props = "passed", None, {"timer_lag_max_ms": 3.0}
            on_result(RunResult(job.index, job.test, job.seed, outcome, 0.5, "fake",
                                (1.0, 1.0, 1.0), msg, "log" if msg else None, props))

    def cancel(self):
        pass


def _main(argv: list[str], backend, cwd: Path) -> tuple[int, str]:
    out = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        rc = stress.main(argv + ["--no-live", *NO_HARNESS], backend=backend,
                         console=Console(file=out, width=200, no_color=True))
    finally:
        os.chdir(old)
    return rc, out.getvalue()


@pytest.fixture
def fake_suite(tmp_path: Path) -> Path:
    root = tmp_path / "suite"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_x.py").write_text("def test_a():\n    pass\n")
    return root


def _planned(n: int) -> list[int]:
    return [j.seed for j in plan_jobs(["test_x.py::test_a"], n, seed=7, sequential=False)]


def test_inconclusive_runs_are_counted_apart_and_rerun_until_conclusive(fake_suite, tmp_path):
    seeds = _planned(6)
    backend = OverloadedBackend({seeds[1]: 1, seeds[4]: 2})
    rc, text = _main(["test_x.py", "-n", "6", "-p", "4", "--seed", "7", "-o",
                      str(tmp_path / "o")], backend, fake_suite)
    assert rc == 0, text
    # Round 1: all six; round 2: the two inconclusive ones; round 3: the one still late.
    assert backend.rounds == [seeds, [seeds[1], seeds[4]], [seeds[4]]]
    assert "rerun 2 inconclusive run(s) with the same seeds on 2 worker(s) (rerun 1 of at most 2)" \
        in text
    assert "rerun 1 inconclusive run(s) with the same seeds on 1 worker(s) (rerun 2 of at most 2)" \
        in text
    assert "0 of 6 failed" in text  # the bound is over the six conclusive runs
    assert "inconclusive: 0 run(s) still inconclusive after reruns (3 inconclusive attempt(s)" \
        in text
    rows = results_of(tmp_path / "o" / "results.jsonl")
    assert Counter(r["outcome"] for r in rows) == {"passed": 6, "inconclusive": 3}
    late = [r for r in rows if r["seed"] == seeds[4]]
    assert [(r["outcome"], r["attempt"]) for r in late] == [
        ("inconclusive", 1), ("inconclusive", 2), ("passed", 3)]
    assert all(r["job"] == 4 for r in late)  # reruns keep the planned job's index
    assert "6/6" in text  # the table: six conclusive of six planned


def test_runs_still_inconclusive_after_the_retries_exit_6_not_1(fake_suite, tmp_path):
    seeds = _planned(3)
    backend = OverloadedBackend({seeds[0]: 99})
    rc, text = _main(["test_x.py", "-n", "3", "-p", "2", "--seed", "7", "--retries", "1", "-o",
                      str(tmp_path / "o")], backend, fake_suite)
    assert rc == EXIT_INCONCLUSIVE == 6, text
    assert len(backend.rounds) == 2  # one rerun, as asked
    assert "0 of 2 failed" in text
    assert "inconclusive: 1 run(s) still inconclusive after reruns" in text
    assert "2/3" in text and "Inconcl." in text
    rows = results_of(tmp_path / "o" / "results.jsonl")
    assert [r["outcome"] for r in rows if r["seed"] == seeds[0]] == ["inconclusive"] * 2
    log = Path(next(r["log"] for r in rows if r["outcome"] == "inconclusive")).read_text()
    assert "inconclusive (machine overloaded: timers late by 900 ms)" in log
    assert not (tmp_path / "o" / "rerun.sh").exists()  # not failures: nothing to debug


def test_a_real_failure_still_fails_next_to_inconclusive_runs(fake_suite, tmp_path):
    seeds = _planned(4)
    backend = OverloadedBackend({seeds[0]: 99}, fail={seeds[2]})
    rc, text = _main(["test_x.py", "-n", "4", "-p", "2", "--seed", "7", "--retries", "0", "-o",
                      str(tmp_path / "o")], backend, fake_suite)
    assert rc == 1, text
    assert len(backend.rounds) == 1  # --retries 0: no rerun
    assert "1 of 3 failed" in text and "(>1) leaders" in text


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_non_positive_or_bad_worker_counts_are_errors(value, capsys):
    with pytest.raises(SystemExit) as exc:
        stress.main(["2A", "-p", value, "--no-live"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "-p/--workers" in err and ("at least 1" in err or "not a number" in err)


def test_auto_workers_needs_the_local_backend(capsys):
    with pytest.raises(SystemExit):
        stress.main(["2A", "-p", "auto", "--backend", "dask", "--scheduler", "tcp://x:1"])
    assert "local backend only" in capsys.readouterr().err


# --- calibration ------------------------------------------------------------------------


def _scripted(lags: dict[int, float]):
    tried = []

    def step(n, impl, seed):
        tried.append(n)
        lag = next(v for k, v in sorted(lags.items()) if n <= k)
        return cal.Step(n, lags_ms=[lag] * n)
    return step, tried


def test_calibration_ramps_then_splits_the_difference():
    step, tried = _scripted({48: 50.0, 64: 150.0, 10_000: 900.0})
    result = cal.calibrate(cores=2, max_workers=900, impl=None, step_fn=step)
    assert tried == [2, 4, 8, 16, 32, 64, 128, 96]
    assert result.workers == 64
    assert result.reason == (f"64 concurrent probes kept timer lag below the "
                             f"{LAG_BOUND_MS:.0f} ms inconclusive bound; 96 did not")


def test_calibration_stops_at_the_number_of_runs_and_at_one():
    step, tried = _scripted({10_000: 10.0})
    assert cal.calibrate(cores=2, max_workers=12, impl=None, step_fn=step).workers == 12
    assert tried == [2, 4, 8, 12]
    step, _ = _scripted({10_000: LAG_BOUND_MS})
    one = cal.calibrate(cores=2, max_workers=12, impl=None, step_fn=step)
    assert one.workers == 1 and "1 worker" in one.reason


def test_a_failing_raft_does_not_drive_the_count_down_a_missing_probe_does():
    ok_lag_but_failing = cal.Step(8, lags_ms=[5.0] * 8, failures=["expected one leader"] * 8)
    assert ok_lag_but_failing.held(LAG_BOUND_MS)
    assert "8 failed (expected one leader)" in ok_lag_but_failing.describe(LAG_BOUND_MS)
    crashed = cal.Step(8, lags_ms=[5.0] * 7, missing=["probe exited -9 without a result"])
    assert not crashed.held(LAG_BOUND_MS)


def test_real_probes_measure_lag_and_report_failures():
    """Two real probes of the bundled Raft and two of a Raft that never elects."""
    good = cal.run_step(2, None, seed=3)
    assert good.workers == 2 and len(good.lags_ms) == 2 and not good.missing, good
    assert not good.failures, good
    bad = cal.run_step(2, str(TOYS / "never_elects.py"), seed=3)
    assert len(bad.failures) == 2 and "expected one leader" in bad.failures[0], bad


def test_stress_auto_prints_the_count_it_chose_and_why(monkeypatch, tmp_path):
    step, tried = _scripted({4: 20.0, 10_000: 400.0})
    monkeypatch.setattr(stress, "calibrate",
                        lambda *a, **k: cal.calibrate(*a, **k, step_fn=step))
    seen = {}

    class Recorder(OverloadedBackend):
        pass

    def fake_make_backend(name, options, *, workers=1, **kw):
        seen["workers"] = workers
        return Recorder({})
    monkeypatch.setattr(stress, "make_backend", fake_make_backend)
    monkeypatch.setattr(stress, "machine_cores", lambda: 2)
    out = io.StringIO()
    rc = stress.main(["labtests/test_2a.py::test_initial_election_2a", "-n", "20", "-p", "auto",
                      "-o", str(tmp_path / "o"), "--no-live"],
                     console=Console(file=out, width=200, no_color=True))
    text = out.getvalue()
    assert rc == 0, text
    assert seen["workers"] == 4 and tried == [2, 4, 8, 6]
    assert "workers auto: calibrating with concurrent runs of test_initial_election_2a" in text
    assert "8 concurrent probes: worst timer lag 400 ms in 0.0 s -> too many" in text
    assert ("workers auto: 4 -- 4 concurrent probes kept timer lag below the 200 ms "
            "inconclusive bound; 6 did not") in text


# --- end to end: the real harness on a machine faked as overloaded --------------------------


def test_stress_reruns_a_real_inconclusive_run_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("RAFTLAB_TEST_FAKE_LAG_MS", "800")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(PLUGINS), *filter(None, [os.environ.get("PYTHONPATH")])]))
    out = tmp_path / "o"
    rc, text = run_stress(["labtests/test_2a.py::test_initial_election_2a", "-n", "1",
                           "-p", "1", "--retries", "1", "--impl", str(TOYS / "never_elects.py"),
                           "-o", str(out), "--no-live", "--", "-p", "fake_lag"], cwd=REPO)
    assert rc == EXIT_INCONCLUSIVE, text
    rows = results_of(out / "results.jsonl")
    assert [(r["outcome"], r["attempt"]) for r in rows] == [
        ("inconclusive", 1), ("inconclusive", 2)], text
    assert rows[0]["message"].startswith("inconclusive (machine overloaded: timers late by ")
    assert rows[0]["message"].endswith("expected one leader, got none")
    assert rows[0]["properties"]["timer_lag_max_ms"] >= 800
    assert "rerun 1 inconclusive run(s) with the same seeds on 1 worker(s)" in text
    assert sys.executable  # the runs used this interpreter's raftlab


KILLER_SUITE = '''
import os, signal, time
from pathlib import Path

def test_a():
    pass

def test_kills_pytest():
    # The first run kills the xdist controller (the worker's parent), as an overloaded
    # machine's crash does; the restarted session's runs pass.  It waits until stress
    # has recorded test_a's 3 runs: a worker's lines still on their way to a session
    # killed under load would be lost, and the session would have made no progress.
    marker = Path(os.environ["RAFTLAB_TEST_MARKER"])
    results = Path(os.environ["RAFTLAB_TEST_RESULTS"])
    if not marker.exists():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
                results.exists() and results.read_text().count("\\n") >= 3):
            time.sleep(0.05)
        marker.touch()
        os.kill(os.getppid(), signal.SIGKILL)
'''


def test_pytest_dying_part_way_is_restarted_for_the_runs_without_a_result(tmp_path, monkeypatch):
    root = tmp_path / "suite"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_k.py").write_text(KILLER_SUITE)
    monkeypatch.setenv("RAFTLAB_TEST_MARKER", str(tmp_path / "killed"))
    out = tmp_path / "o"
    monkeypatch.setenv("RAFTLAB_TEST_RESULTS", str(out / "results.jsonl"))
    rc, text = run_stress(["test_k.py", "-n", "3", "-p", "1", "-s", "--seed", "5", "-o",
                           str(out), "--no-live", *NO_HARNESS], cwd=root)
    assert (tmp_path / "killed").exists()
    assert rc == 0, text
    rows = results_of(out / "results.jsonl")
    assert sorted(r["job"] for r in rows) == list(range(6))  # each planned run once
    assert all(r["outcome"] == "passed" for r in rows)
    assert "restarted it for the 3 run(s) without a result (restart 1 of at most 3)" in text
