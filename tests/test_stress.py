"""Tests of ``raftlab stress`` against a tiny fake suite (no Raft timing involved).

The fake suite lives in ``tmp_path`` with its own conftest that mimics the harness
contract (``--seed``/``RAFTLAB_SEED``, ``--raft-impl``, ``--raft-debug``, the seed in
``user_properties``); the real harness plugin is switched off there with
``-p no:raftlab`` so its options do not clash.  Outcomes depend on the seed only, so
each test knows exactly which runs must fail.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from labtests.options import HarnessOptions
from labtests.rerun import rerun_command
from tools import selection
from tools.stress import command as stress
from tools.stress.backends.base import Job, RunOptions, RunResult
from tools.stress.backends.pytest_runs import write_jobs_file
from tools.stress.planning import plan_jobs
from tools.stress.pytest_plugin import job_index_of, strip_job_id
from tools.stress.results import rerun_for, results_of
from tools.stress.stats import bound_sentence, failure_rate_upper_bound
from tools.test_command import build_parser, command_args

TOYS = Path(__file__).parent / "toys_stress"
REPO = Path(__file__).resolve().parents[1]

CONFTEST = '''
import importlib.util, os, random, sys
import pytest

def pytest_addoption(parser):
    parser.addoption("--seed", type=int, default=None)
    parser.addoption("--raft-impl", default=None)
    parser.addoption("--raft-debug", action="store_true")

def pytest_addhooks(pluginmanager):
    # The harness's seed hook, which the stress plugin answers for each repetition.
    from labtests import hookspecs
    pluginmanager.add_hookspecs(hookspecs)

@pytest.fixture
def seed(request, record_property):
    s = request.config.getoption("seed")
    if s is None:
        s = request.config.hook.pytest_raftlab_test_seed(item=request.node)
    if s is None:
        s = random.randrange(1, 2**31)
    record_property("seed", s)
    if request.config.getoption("raft_debug"):
        print(f"000000 TEST -- begin with seed {s}", file=sys.stderr)
        print(f"000003 VOTE S1 granted vote to S0", file=sys.stderr)
    return s

@pytest.fixture
def impl(request):
    path = request.config.getoption("raft_impl")
    spec = importlib.util.spec_from_file_location("toy_impl", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
'''

SUITE = '''
import time

def test_passes(seed):
    assert seed > 0

def test_flaky(seed):
    assert seed % 3 != 0, f"unlucky seed {seed}"

def test_leader(seed, impl):
    rf = impl.make()
    assert rf.get_state()[1], "expected one leader, got none"

def test_slow(seed):
    time.sleep(0.4)
'''

NO_HARNESS = ["--", "-p", "no:raftlab"]


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    root = tmp_path / "suite"
    root.mkdir()
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "conftest.py").write_text(CONFTEST)
    (root / "test_fake.py").write_text(SUITE)
    return root


def run_stress(argv: list[str], cwd: Path) -> tuple[int, str]:
    out = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        rc = stress.main(argv, console=Console(file=out, width=200, no_color=True))
    finally:
        os.chdir(old)
    return rc, out.getvalue()


# --- pure parts ---

def test_failure_rate_bounds():
    assert bound_sentence(0, 300) == "0 of 300 failed: failure rate < 1.0 % at 95 % confidence"
    assert failure_rate_upper_bound(0, 300) == pytest.approx(1 - 0.05 ** (1 / 300))
    # Clopper-Pearson one-sided 95 % for 1 of 10 is 0.3942 (textbook value).
    assert failure_rate_upper_bound(1, 10) == pytest.approx(0.3942, abs=1e-4)
    assert failure_rate_upper_bound(10, 10) == 1.0
    assert bound_sentence(3, 300).startswith("3 of 300 failed (1.0 %): failure rate < 2.")


def test_plan_jobs_interleaves_with_distinct_reproducible_seeds():
    jobs = plan_jobs(["a", "b"], 3, seed=42, sequential=False)
    assert [j.test for j in jobs] == ["a", "b"] * 3
    assert len({j.seed for j in jobs}) == 6
    assert jobs == plan_jobs(["a", "b"], 3, seed=42, sequential=False)
    seq = plan_jobs(["a", "b"], 3, seed=42, sequential=True)
    assert [j.test for j in seq] == ["a"] * 3 + ["b"] * 3
    assert [j.index for j in seq] == list(range(6))


def test_selection_follows_the_one_rule():
    args = selection.pytest_selection(["2A", "test_backup_2b"], "not slow", None)
    assert args[:2] == ["-k", "not slow"]
    expected = [t.node_id() for t in selection.resolve(["2A", "backup_2b"])]
    assert args[2:] == expected and len(expected) == 4
    assert all(a.endswith(("_2a", "test_backup_2b")) for a in args[2:])
    assert selection.pytest_selection(["x/test_a.py::t"], None, "part2a") == [
        "-m", "part2a", "x/test_a.py::t"]
    # Within one's own suite (paths given), names pick tests as -k alternatives.
    assert selection.pytest_selection(["x/test_a.py", "t1", "t2"], "not slow", None) == [
        "-k", "(t1 or t2) and (not slow)", "x/test_a.py"]
    with pytest.raises(selection.SelectionError, match="'backup' .*valid: a part"):
        selection.pytest_selection(["backup"], None, None)


def test_job_ids_in_node_ids():
    assert strip_job_id("f.py::t[stress3]", 3) == "f.py::t"
    assert strip_job_id("f.py::t[a-stress12]", 12) == "f.py::t[a]"
    assert strip_job_id("f.py::t[stress1-a]", 1) == "f.py::t[a]"
    assert job_index_of("f.py::t[a-stress12]") == 12
    assert job_index_of("f.py::t[a]") is None


def test_rerun_command_is_one_quoted_shell_line(tmp_path):
    opts = RunOptions(harness=HarnessOptions(impl="my raft.py"), rootdir=tmp_path)
    cmd = rerun_for("t.py::test_x[a b]", 99, opts)
    assert cmd.startswith(f"cd {tmp_path} && ")
    assert "'t.py::test_x[a b]' --seed=99 '--raft-impl=my raft.py' --raft-debug" in cmd
    # A graded test reruns through the one rerun builder, debug log on.
    graded = rerun_for("labtests/test_2b.py::test_backup_2b", 99, opts)
    assert graded == rerun_command("test_backup_2b", 99, opts.harness, debug=True)
    assert graded.startswith("raftlab test test_backup_2b --seed 99 ")


class ListBackend:
    """A backend that answers from a list: shows the CLI needs nothing xdist-specific."""

    def __init__(self, fail_seeds: set[int]) -> None:
        self.fail_seeds = fail_seeds
        self.cancelled = False

    def run(self, jobs, on_result):
        for job in jobs:
            failed = job.seed in self.fail_seeds
            on_result(RunResult(job.index, job.test, job.seed, "failed" if failed else "passed",
                                0.5, "fake", (0.1, 0.1, 0.1), "boom" if failed else None,
                                "log text" if failed else None))

    def cancel(self):
        self.cancelled = True


def test_cli_runs_any_backend(suite, tmp_path, monkeypatch):
    planned = plan_jobs(["test_fake.py::test_passes"], 4, seed=5, sequential=False)
    backend = ListBackend({planned[2].seed})
    monkeypatch.chdir(suite)
    buf = io.StringIO()
    rc = stress.main(["test_fake.py::test_passes", "-n", "4", "-p", "1", "--seed", "5",
                      "-o", str(tmp_path / "out"), "--no-live", *NO_HARNESS],
                     console=Console(file=buf, width=200, no_color=True), backend=backend)
    out = buf.getvalue()
    assert rc == 1
    assert "1 of 4 failed (25.0 %)" in out
    rows = results_of(tmp_path / "out" / "results.jsonl")
    assert [r["seed"] for r in rows] == [j.seed for j in planned]
    log = Path(rows[2]["log"]).read_text()
    assert f"seed:     {planned[2].seed}" in log and "log text" in log


# --- the real xdist backend on the fake suite ---

def test_stress_on_fake_suite_keeps_failures_and_rerun_reproduces(suite, tmp_path):
    out = tmp_path / "out"
    rc, text = run_stress(["test_fake.py", "-k", "passes or flaky", "-n", "6", "-p", "2",
                           "--seed", "11", "-o", str(out), "--no-live", *NO_HARNESS], cwd=suite)
    rows = results_of(out / "results.jsonl")
    assert len(rows) == 12
    by_test = {t: [r for r in rows if r["test"] == f"test_fake.py::{t}"]
               for t in ("test_passes", "test_flaky")}
    assert all(r["outcome"] == "passed" for r in by_test["test_passes"])
    # The planned seed reached the test (its outcome is a function of the seed).
    planned = {j.seed for j in plan_jobs(
        ["test_fake.py::test_flaky", "test_fake.py::test_passes"], 6, 11, False)}
    assert {r["seed"] for r in rows} == planned
    for r in by_test["test_flaky"]:
        assert r["outcome"] == ("failed" if r["seed"] % 3 == 0 else "passed"), r
        assert r["worker"].startswith("gw") and len(r["loadavg"]) == 3
    expected_failures = sum(r["seed"] % 3 == 0 for r in by_test["test_flaky"])
    assert expected_failures > 0, "pick a base seed that yields a failure"
    assert rc == 1
    assert f"{expected_failures} of 12 failed" in text
    assert "cores" in text and "load average" in text
    failed = next(r for r in rows if r["outcome"] == "failed")
    log = Path(failed["log"]).read_text()
    assert f"unlucky seed {failed['seed']}" in log
    rerun = next(line for line in log.splitlines() if line.startswith("rerun:"))[9:].strip()
    assert (out / "rerun.sh").read_text().count("\n") == 2 * expected_failures
    again = subprocess.run(rerun, shell=True, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1, again.stdout
    assert f"unlucky seed {failed['seed']}" in again.stdout
    assert "000003 VOTE S1 granted vote to S0" in again.stdout  # debug log on in the rerun


def test_failing_toy_implementation(suite, tmp_path):
    out = tmp_path / "out"
    rc, text = run_stress(["test_fake.py", "test_leader", "-n", "3", "-p", "1", "--seed", "3",
                           "--impl", str(TOYS / "failing_raft.py"), "-o", str(out),
                           "--no-live", *NO_HARNESS], cwd=suite)
    assert rc == 1
    assert "3 of 3 failed (100.0 %)" in text
    rows = results_of(out / "results.jsonl")
    assert [r["outcome"] for r in rows] == ["failed"] * 3
    assert all(r["message"].startswith("AssertionError: expected one leader") for r in rows)
    rerun = (out / "rerun.sh").read_text().splitlines()[1]
    assert "failing_raft.py" in rerun
    again = subprocess.run(rerun, shell=True, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "expected one leader" in again.stdout
    ok, _ = run_stress(["test_fake.py", "test_leader", "-n", "2", "-p", "1", "--impl",
                        str(TOYS / "good_raft.py"), "-o", str(tmp_path / "ok"), "--archive",
                        "--no-live", *NO_HARNESS], cwd=suite)
    assert ok == 0
    assert len(list((tmp_path / "ok" / "passed").iterdir())) == 2  # --archive kept them


def test_bad_selection_is_a_usage_error(suite, tmp_path):
    rc, _ = run_stress(["test_fake.py", "-k", "no_such_test", "-o", str(tmp_path / "o"),
                        "--no-live", *NO_HARNESS], cwd=suite)
    assert rc == 2


def test_unknown_graded_selector_is_a_usage_error_naming_it(tmp_path, capsys):
    # "backup" is only part of a test's name: refused before anything runs, not run as -k.
    rc, _ = run_stress(["backup", "-o", str(tmp_path / "o"), "--no-live"], cwd=tmp_path)
    assert rc == 2
    err = capsys.readouterr().err
    assert "unknown part or test 'backup'" in err and "valid: a part" in err
    assert not (tmp_path / "o").exists()


def test_ctrl_c_prints_partial_table_and_leaves_valid_results(suite, tmp_path):
    """The interrupt goes out as soon as the first run's result is on disk, and 60 runs
    of 0.4 s on one worker leave at least 23 s of work after it: however loaded the
    machine, the interrupt lands while runs remain (no fixed wait to race against)."""
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.stress", "test_fake.py", "test_slow", "-n", "60", "-p", "1",
         "-o", str(out), "--no-live", *NO_HARNESS],
        cwd=suite, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results = out / "results.jsonl"
    try:
        deadline = time.monotonic() + 300  # start-up only: generous for a loaded machine
        while not (results.exists() and results.read_text().count("\n") >= 1):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "no run finished in 300 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        text, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, text
    assert "INTERRUPTED after" in text and "raftlab stress results" in text
    rows = results_of(results)  # every line parses
    assert 1 <= len(rows) < 60
    assert all(r["outcome"] == "passed" for r in rows)
    assert f"{len(rows)}/60" in text


@pytest.mark.parametrize("plugin", ["tools.stress.pytest_plugin", "tools.stress_plugin"])
def test_the_plugin_runs_jobs_under_its_new_and_old_names(suite, tmp_path, plugin):
    events = tmp_path / "events.jsonl"
    jobs = tmp_path / "jobs.json"
    write_jobs_file(jobs, events, [Job(0, "test_fake.py::test_flaky", 3),
                                   Job(1, "test_fake.py::test_flaky", 4)], keep_passing=False)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", plugin, "--stress-jobs",
                           str(jobs), "-q", "-p", "no:raftlab", "test_fake.py"],
                          cwd=suite, capture_output=True, text=True, timeout=120)
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(r["job"], r["seed"], r["outcome"]) for r in rows] == [
        (0, 3, "failed"), (1, 4, "passed")], proc.stdout + proc.stderr
    assert "unlucky seed 3" in rows[0]["message"]


def test_job_dataclass_is_what_backends_receive():
    job = Job(0, "t.py::x", 5)
    assert (job.index, job.test, job.seed) == (0, "t.py::x", 5)


def test_real_harness_failing_toy_keeps_log_and_reruns(tmp_path):
    """End to end with the graded 2A suite: the harness honours our seed and impl."""
    out = tmp_path / "out"
    rc, text = run_stress(
        ["labtests/test_2a.py::test_initial_election_2a", "-n", "1", "-p", "1",
         "--impl", str(TOYS / "failing_raft.py"), "-o", str(out), "--no-live"], cwd=REPO)
    assert rc == 1, text
    (row,) = results_of(out / "results.jsonl")
    assert row["outcome"] == "failed" and "expected one leader" in row["message"]
    log = Path(row["log"]).read_text()
    assert f"seed:     {row['seed']}" in log and "[stress" not in log.split("rerun:")[1]
    rerun = next(ln for ln in log.splitlines() if ln.startswith("rerun:"))[9:].strip()
    assert rerun.startswith("raftlab test test_initial_election_2a --seed ")
    # ``raftlab`` is installed next to this interpreter (a venv that may not be activated).
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    again = subprocess.run(rerun, shell=True, capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PATH=path))
    assert again.returncode == 1
    assert f"seed {row['seed']}" in again.stdout  # the harness ran with the same seed
    assert "TEST -- begin: Test (2A): initial election" in again.stdout  # debug log on


@pytest.mark.parametrize("workers", ["1", "2"])  # one pytest; two forked workers
def test_a_forked_copy_of_a_run_records_nothing(tmp_path, workers):
    """tests/toys/forked_copy_passes.py: a copy of the test process (the Raft forks it)
    passes its copy of the run after the real run failed.  Only the real runs are
    recorded (the forked backend's own workers still report: they are re-armed)."""
    out = tmp_path / "out"
    rc, text = run_stress(
        ["labtests/test_2a.py::test_initial_election_2a", "-n", "2", "-p", workers,
         "--impl", str(REPO / "tests" / "toys" / "forked_copy_passes.py"), "-o", str(out),
         "--no-live"], cwd=REPO)
    assert rc == 1, text
    rows = results_of(out / "results.jsonl")
    # One row per attempt of each planned run: a copy's report would repeat an attempt.
    # (On a loaded machine a run may be inconclusive first and rerun: attempt 2, ...)
    attempts = {job: sorted(r["attempt"] for r in rows if r["job"] == job)
                for job in {r["job"] for r in rows}}
    assert sorted(attempts) == [0, 1], rows
    for job, seen in attempts.items():
        assert seen == list(range(1, len(seen) + 1)), rows
        for row in rows:
            if row["job"] == job and row["attempt"] < len(seen):
                assert row["outcome"] == "inconclusive", row
            elif row["job"] == job:
                assert row["outcome"] == "failed" and "expected one leader" in row["message"], row


@pytest.mark.parametrize("toy, workers, how", [
    ("exits_zero", "1", "exit status 0"),
    ("sigkills_self", "2", "signal SIGKILL (9)"),
])
def test_a_run_that_ends_its_forked_worker_fails_and_the_runs_after_it_still_run(
        tmp_path, toy, workers, how):
    """The Raft ends its process in the middle of a run (the local backend's forked
    workers): the runs had no result and stress ended with a backend error (exit 3,
    ``pytest exited with status 0 after 0 of 2 runs``).  Now the run fails, naming how
    its process ended, and a new worker takes the runs its process had not started."""
    out = tmp_path / "out"
    rc, text = run_stress(
        ["labtests/test_2a.py::test_initial_election_2a",
         "labtests/test_2a.py::test_re_election_2a", "-n", "2", "-p", workers,
         "--impl", str(REPO / "tests" / "toys" / f"{toy}.py"),
         "-o", str(out), "--no-live"], cwd=REPO)
    assert rc == 1, text
    rows = results_of(out / "results.jsonl")
    assert sorted(r["job"] for r in rows) == [0, 1, 2, 3], rows
    for row in rows:
        assert row["outcome"] == "failed", row
        assert re.fullmatch(r"the run's process \(forked worker gw[01]\) ended with "
                            + re.escape(how) + " while this run was running",
                            row["message"]), row


@pytest.mark.parametrize("harness", [
    HarnessOptions(),
    HarnessOptions(impl="/some where/my raft.py", sim=True),
    HarnessOptions(impl="myraft", isolate=True),
])
def test_every_rerun_command_is_one_raftlab_test_accepts(harness):
    """What a stress log or grade report tells the user to run must parse, with the same
    options: the rerun builder and ``raftlab test`` cannot drift apart."""
    cmd = rerun_for("labtests/test_2c.py::test_figure8_2c", 7, RunOptions(harness=harness))
    argv = shlex.split(cmd)
    assert argv[:2] == ["raftlab", "test"]
    opts = build_parser().parse_args(argv[2:])
    assert (opts.selectors, opts.seed, opts.impl, opts.sim, opts.isolate, opts.debug) == (
        ["test_figure8_2c"], 7, harness.impl, harness.sim, harness.isolate, True)
    assert command_args(opts, [])[0].endswith("test_2c.py::test_figure8_2c")


def test_a_failing_result_taker_ends_the_session_it_was_following(suite):
    """``on_result`` raising (or a stop signal in the follow loop) ended the backend's
    ``run`` but left its pytest session -- in a session of its own -- running the other
    runs unwatched until the command exited."""
    from tests.session_procs import left_after
    from tools.stress.backends.factory import make_backend

    backend = make_backend("local", RunOptions(rootdir=suite, pytest_args=("-p", "no:raftlab")),
                           workers=1)
    jobs = plan_jobs(["test_fake.py::test_slow"], 40, seed=1, sequential=False)  # ~16 s

    def on_result(result):  # noqa: ANN001, ANN202
        raise RuntimeError("the display broke")

    with pytest.raises(RuntimeError, match="the display broke"):
        backend.run(jobs, on_result)
    pid = backend._proc.pid
    assert backend._proc.returncode is not None  # waited for, not just signalled
    assert left_after({pid}, 10) == {}, "the runs' session is still alive"
