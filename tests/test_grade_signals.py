"""SIGTERM and SIGHUP to ``raftlab grade`` end it like Ctrl-C, with no process left.

Grade's runs are under a supervisor in a session of its own that dies with the
grader (``PR_SET_PDEATHSIG``), so a bare SIGTERM left no process even before; but
the grader then vanished without a word and with no exit status of its own.  Now
the signal is a Ctrl-C: the running tests are stopped and swept, the grader says
so, and exits with 128 + the signal.  Load-proof: the signal goes out once the
first run's line is printed, and 3 x 300 simulated runs on 2 workers leave far
more work than any machine finishes in between.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.grade_support import wait_for_a_finished_run, why_no_run_user
from tests.session_procs import killed_on_exit, left_after, sessions_of

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_stop_signal_ends_grade_like_ctrl_c_and_leaves_no_process(tmp_path, sig):
    log = tmp_path / "grade.log"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.grade", "raft", "--only", "2A", "--runs", "300",
             "--sim", "-p", "2", "-o", str(tmp_path / "report"), "--seed", "5"],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    with killed_on_exit(proc):
        wait_for_a_finished_run(proc, log)
        sessions = sessions_of(proc.pid)
        assert len(sessions) >= 2, "the runs should be in a session of their own"
        proc.send_signal(sig)
        proc.wait(timeout=120)
    text = log.read_text()
    name = signal.Signals(sig).name
    assert proc.returncode == 128 + sig, text[-3000:]
    assert f"raftlab grade: terminated by {name}; the running tests were stopped" in text
    left = left_after(sessions, 30)  # the supervisor may still be sweeping its run
    assert left == {}, f"left behind: {left}\n{text[-3000:]}"


# --- A stop signal between a result and its record (in-process, runs faked) ----------
#
# These grade the installed reference Raft with ``run_part`` replaced by a stand-in that
# returns passed runs at once (no pytest), and send a signal to this very process at a
# chosen moment: the handler acts on the next bytecode, so the moment is exact on any
# machine, loaded or not.

PARTS_GRADED = {"2A": ["test_initial_election_2a"], "2B": ["test_basic_agree_2b"]}


def _catalog():
    from tools.grade.grader import Catalog

    return Catalog(REPO, [f"labtests/test_{part.lower()}.py::{test}"
                          for part, tests in PARTS_GRADED.items() for test in tests])


def _rubric(catalog):
    from tools.grade.rubric import parse, resolve

    rubric = parse({"runs": 2, "parts": {
        part: {"budget_s": 60, "tests": {t: 5 for t in tests}}
        for part, tests in PARTS_GRADED.items()}})
    return resolve(rubric, catalog.by_part)


def _signal_here(sig=signal.SIGTERM):
    os.kill(os.getpid(), sig)  # Python runs its handler at the next bytecode, here


def _signal_while_scoring(monkeypatch, part: str, sig) -> None:  # noqa: ANN001
    """Send ``sig`` to this process as the grader starts scoring ``part`` (its runs done)."""
    from tools.grade import grader

    real_grade_part = grader.grade_part

    def grade_part(rubric, scored, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if scored == part:
            _signal_here(sig)
        return real_grade_part(rubric, scored, *args, **kwargs)

    monkeypatch.setattr(grader, "grade_part", grade_part)


@pytest.fixture
def faked_runs(monkeypatch):
    """``run_part`` returns every job passed, at once; ``calls`` lists the parts run.
    ``on_run`` (settable) is called with the part's first test as a part is run."""
    from tools.grade import grader
    from tools.stress.backends.base import RunResult

    state = {"calls": [], "on_run": None}

    def run_part(jobs, backend, budget_s, stall_s, on_result=None):  # noqa: ANN001, ANN202
        test = jobs[0].test.rsplit("::", 1)[-1]
        state["calls"].append(test)
        if state["on_run"] is not None:
            state["on_run"](test)
        return [RunResult(job=j.index, test=j.test, seed=j.seed, outcome="passed",
                          duration=0.5, worker="w", loadavg=(), message=None, properties={})
                for j in jobs], 1.0

    monkeypatch.setattr(grader, "run_part", run_part)
    return state


def _grader(catalog):
    import io

    from rich.console import Console

    from tools.grade.grader import Grader

    return Grader(_rubric(catalog), catalog, workers=1, base_seed=7, sim=True,
                  console=Console(file=io.StringIO(), width=200, color_system=None))


REPORT_FILES = ("report.json", "results.json", "junit.xml", "summary.txt")


def _whole_report(folder: Path) -> dict:
    """report.json, after checking that every report file is there and parses."""
    import json
    import xml.etree.ElementTree as ET

    missing = [f for f in REPORT_FILES if not (folder / f).exists()]
    assert missing == [], f"missing: {missing}; there: {sorted(os.listdir(folder))}"
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    suite = ET.parse(folder / "junit.xml").getroot().find("testsuite")
    assert results["score"] == report["score"]
    assert int(suite.get("tests")) == sum(len(p["tests_detail"]) for p in report["parts"])
    assert "total" in (folder / "summary.txt").read_text(encoding="utf-8")
    return report


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
@pytest.mark.parametrize("moment", ["scoring the last part", "writing the reports"])
def test_a_stop_signal_after_the_last_runs_waits_until_the_report_is_written(
        tmp_path, monkeypatch, faked_runs, moment, sig):
    """Every run of the submission has finished: a SIGTERM or Ctrl-C now (while the last
    part is scored, or between two report files) must wait until the reports are
    written whole, then stop the grader.  Raised there, it lost the whole grade (no
    report), or left report.json without results.json and junit.xml."""
    from tools.grade import report
    from tools.termination import Terminated, stop_signals_as_interrupts

    if moment == "scoring the last part":
        _signal_while_scoring(monkeypatch, "2B", sig)
    else:
        real_gradescope = report.gradescope

        def gradescope(grade):  # noqa: ANN001, ANN202
            _signal_here(sig)
            return real_gradescope(grade)

        monkeypatch.setattr(report, "gradescope", gradescope)
    catalog = _catalog()
    out = tmp_path / "report"
    with stop_signals_as_interrupts(), pytest.raises(KeyboardInterrupt) as stopped:
        _grader(catalog).grade("raft", out, name=None)
    assert (stopped.value.signum if isinstance(stopped.value, Terminated)
            else signal.SIGINT) == sig
    assert faked_runs["calls"] == ["test_initial_election_2a", "test_basic_agree_2b"]
    report_json = _whole_report(out)
    assert (report_json["score"], report_json["max_score"]) == (10, 10)
    assert [p["name"] for p in report_json["parts"]] == ["2A", "2B"]


def test_a_stop_signal_during_the_runs_leaves_no_report_of_an_earlier_grading(
        tmp_path, faked_runs, capsys, monkeypatch):
    """Regrading into a folder that holds an earlier grade, stopped during the runs: the
    folder must not keep the earlier report.json / results.json (the earlier logs/ are
    gone already, and a Gradescope upload would take the old score); the last words say
    that no report was written, and the exit status is 128 + SIGTERM."""
    import json

    from tools.grade import command

    out = tmp_path / "report"
    out.mkdir()
    for name in REPORT_FILES:
        (out / name).write_text(json.dumps({"score": 99}), encoding="utf-8")

    def stop_in_2b(test):  # noqa: ANN001, ANN202
        if test == "test_basic_agree_2b":
            _signal_here()

    faked_runs["on_run"] = stop_in_2b
    catalog = _catalog()
    monkeypatch.setattr(command.Catalog, "collect", classmethod(lambda cls: catalog))
    monkeypatch.setattr(command, "load", lambda path: _rubric(catalog))
    rc = command.main(["raft", "--sim", "-o", str(out), "--seed", "3"])
    err = capsys.readouterr().err
    assert rc == 128 + signal.SIGTERM, err
    assert faked_runs["calls"] == ["test_initial_election_2a", "test_basic_agree_2b"]
    assert [f for f in REPORT_FILES if (out / f).exists()] == [], sorted(os.listdir(out))
    assert "raftlab grade: terminated by SIGTERM; the running tests were stopped" in err
    assert "no report was written" in err, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_that_waited_for_the_reports_says_no_test_was_running(
        tmp_path, faked_runs, capsys, monkeypatch, sig):
    """A signal while the last part is scored waits until the reports are written: no
    test was running then, and the last words must say so (they said "the running
    tests were stopped", as after a stop during the runs) and that the reports were
    written."""
    from tools.grade import command

    _signal_while_scoring(monkeypatch, "2B", sig)
    catalog = _catalog()
    monkeypatch.setattr(command.Catalog, "collect", classmethod(lambda cls: catalog))
    monkeypatch.setattr(command, "load", lambda path: _rubric(catalog))
    out = tmp_path / "report"
    rc = command.main(["raft", "--sim", "-o", str(out), "--seed", "3"])
    err = capsys.readouterr().err
    assert rc == 128 + sig, err
    _whole_report(out)
    name = "interrupted" if sig == signal.SIGINT else "terminated by SIGTERM"
    assert (f"raftlab grade: {name}; no test was running; the submission's reports were "
            f"written before the stop: {out}") in err, err
    assert "the running tests were stopped" not in err, err


def _batch(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "subs"
    for name in names:
        (folder / name).mkdir(parents=True)
        (folder / name / "raft.py").write_text("from raft import *\n", encoding="utf-8")
    return folder


def test_a_stop_signal_after_a_batch_submission_is_graded_waits_for_its_grades_csv_row(
        tmp_path, faked_runs, capsys, monkeypatch):
    """The last submission of a batch is graded and its reports written; a SIGTERM as its
    table is printed must not cost its row in grades.csv (written only after the table,
    it was lost), and the last words say how many submissions were graded."""
    import csv

    from tools.grade import command, grader

    real_table = grader.table

    def table(grade):  # noqa: ANN001, ANN202
        if grade.name == "bob":
            _signal_here()
        return real_table(grade)

    monkeypatch.setattr(grader, "table", table)
    catalog = _catalog()
    monkeypatch.setattr(command.Catalog, "collect", classmethod(lambda cls: catalog))
    monkeypatch.setattr(command, "load", lambda path: _rubric(catalog))
    out = tmp_path / "grades"
    rc = command.main(["--batch", str(_batch(tmp_path, ["alice", "bob"])), "--sim",
                       "-o", str(out), "--seed", "3"])
    err = capsys.readouterr().err
    assert rc == 128 + signal.SIGTERM, err
    with open(out / "grades.csv", encoding="utf-8") as fh:
        rows = {r["submission"]: r["score"] for r in csv.DictReader(fh)}
    assert rows == {"alice": "10", "bob": "10"}
    for name in rows:
        _whole_report(out / name)
    # No test ran when the signal came: the words must not say tests were stopped.
    assert "raftlab grade: terminated by SIGTERM; no test was running; 2 of 2 submission(s) " \
        "graded" in err, err
    assert "the running tests were stopped" not in err, err


def test_a_batch_stopped_during_its_first_runs_keeps_no_earlier_batchs_grades(
        tmp_path, faked_runs, capsys, monkeypatch):
    """A batch regraded into the folder of an earlier one and stopped during the first
    submission's runs: grades.csv must not keep the earlier batch's rows (it did: it
    was first rewritten after a submission), nor the submission's folder its report."""
    import csv
    import json

    from tools.grade import command

    out = tmp_path / "grades"
    (out / "alice").mkdir(parents=True)
    (out / "alice" / "report.json").write_text(json.dumps({"score": 99}), encoding="utf-8")
    (out / "grades.csv").write_text("submission,score\nalice,99\nbob,99\n", encoding="utf-8")

    def stop_in_alice(test):  # noqa: ANN001, ANN202
        _signal_here()

    faked_runs["on_run"] = stop_in_alice
    catalog = _catalog()
    monkeypatch.setattr(command.Catalog, "collect", classmethod(lambda cls: catalog))
    monkeypatch.setattr(command, "load", lambda path: _rubric(catalog))
    rc = command.main(["--batch", str(_batch(tmp_path, ["alice", "bob"])), "--sim",
                       "-o", str(out), "--seed", "3"])
    err = capsys.readouterr().err
    assert rc == 128 + signal.SIGTERM, err
    assert faked_runs["calls"] == ["test_initial_election_2a"]
    with open(out / "grades.csv", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert list(reader) == []
        assert reader.fieldnames[:3] == ["submission", "status", "score"]
    assert not (out / "alice" / "report.json").exists()
    assert "none of the 2 submission(s) was graded to the end" in err, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_a_stop_signal_while_the_tests_are_collected_ends_grade_in_words(
        tmp_path, capsys, monkeypatch, sig):
    """Stopped before any run (collecting the graded tests): the grader says so and exits
    130 / 128 + N.  A Ctrl-C there ended it with a Python traceback."""
    from tools.grade import command

    def collect(cls):  # noqa: ANN001, ANN202
        _signal_here(sig)
        return _catalog()

    monkeypatch.setattr(command.Catalog, "collect", classmethod(collect))
    rc = command.main(["raft", "--sim", "-o", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert rc == 128 + sig, err
    name = "interrupted" if sig == signal.SIGINT else "terminated by SIGTERM"
    assert f"raftlab grade: {name}" in err, err
    assert not (tmp_path / "report").exists()


def test_a_stop_signal_as_a_part_starts_cancels_its_runs(monkeypatch):
    """A SIGTERM just as run_part has started the backend's thread (before it watched
    the runs) must cancel the backend: it escaped run_part with the runs going on."""
    import threading

    from tools.grade import isolation
    from tools.stress.backends.base import Job
    from tools.termination import Terminated, stop_signals_as_interrupts

    class Backend:
        def __init__(self):  # noqa: ANN204
            self.cancelled = threading.Event()
            self.running = threading.Event()

        def run(self, jobs, on_result):  # noqa: ANN001, ANN202
            self.running.set()
            self.cancelled.wait(60)  # the runs go on until cancelled

        def cancel(self):  # noqa: ANN202
            self.cancelled.set()

    class SignalOnStart(threading.Thread):
        def start(self):  # noqa: ANN202
            super().start()
            _signal_here()

    monkeypatch.setattr(isolation.threading, "Thread", SignalOnStart)
    backend = Backend()
    jobs = [Job(0, "labtests/test_2a.py::test_initial_election_2a", 1)]
    with stop_signals_as_interrupts(), pytest.raises(Terminated):
        isolation.run_part(jobs, backend, budget_s=600, stall_s=600)
    cancelled = backend.cancelled.is_set()
    backend.cancel()  # (without the fix, its thread would wait a minute)
    assert cancelled


@pytest.mark.parametrize("error", [SystemExit(1), BrokenPipeError(32, "Broken pipe")],
                         ids=["rich's exit on a broken pipe", "BrokenPipeError"])
def test_a_progress_line_that_cannot_be_shown_costs_no_run(error):
    """The progress line of a finished run is shown from the backend's thread; when it
    cannot be (stdout a pipe whose reader left: ``raftlab grade ... | head``, where rich
    raises SystemExit(1)), the runs must still count.  It failed every later run of
    the part ("the test process failed: 1"): the bundled Raft got 0/15 on 2A."""
    from tools.grade import isolation
    from tools.stress.backends.base import Job, RunResult

    test = "labtests/test_2a.py::test_initial_election_2a"
    jobs = [Job(i, test, 10 + i) for i in range(3)]

    class Backend:
        def run(self, jobs, on_result):  # noqa: ANN001, ANN202
            for job in jobs:
                on_result(RunResult(job=job.index, test=test, seed=job.seed, outcome="passed",
                                    duration=0.1, worker="w", loadavg=(), message=None,
                                    properties={}))

        def cancel(self):  # noqa: ANN202
            pass

    shown = []

    def show(result):  # noqa: ANN001, ANN202
        shown.append(result.job)
        raise error

    results, _elapsed = isolation.run_part(jobs, Backend(), budget_s=600, stall_s=600,
                                           on_result=show)
    assert [(r.job, r.outcome, r.message) for r in results] == [
        (0, "passed", None), (1, "passed", None), (2, "passed", None)]
    assert shown == [0]  # not tried again once it failed


def test_a_failed_rewrite_of_grades_csv_keeps_the_previous_one(tmp_path):
    """grades.csv is rewritten after every submission of a batch: a write cut short (the
    disk full, the grader killed) must leave the previous file whole, not truncated
    to the bytes written so far (it was emptied first, losing every earlier grade).
    The cut is a real one: a file-size limit makes the write fail part-way (EFBIG;
    Python ignores SIGXFSZ)."""
    import csv
    import resource

    from tools.grade import report
    from tools.grade.score import SubmissionGrade

    path = tmp_path / "grades.csv"
    grades = [SubmissionGrade(name=f"student{i}", source="s", impl="raft", runs=1)
              for i in range(200)]
    report.write_csv(grades[:1], ["2A"], path)
    before = path.read_bytes()
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 100, limit[1]))
    try:
        with pytest.raises(OSError):
            report.write_csv(grades, ["2A"], path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
    assert path.read_bytes() == before
    with open(path, encoding="utf-8") as fh:
        assert [r["submission"] for r in csv.DictReader(fh)] == ["student0"]
    assert sorted(os.listdir(tmp_path)) == ["grades.csv"]  # no temporary file left


# --- More stop signals while the grader cleans up after a stop ------------------------

NO_RUN_USER = why_no_run_user()


@pytest.mark.skipif(NO_RUN_USER is not None, reason=f"needs root: {NO_RUN_USER}")
@pytest.mark.parametrize("signals", [
    (signal.SIGTERM, signal.SIGINT),
    (signal.SIGINT, signal.SIGINT, signal.SIGHUP),
], ids=["SIGTERM then Ctrl-C", "Ctrl-C three times and SIGHUP"])
def test_more_stop_signals_during_the_clean_up_leave_no_process_and_no_run_folder(
        tmp_path, monkeypatch, faked_runs, signals):
    """A stop during the runs, then a second signal as the grader kills the run user's
    processes (and a third as it removes the private run folder): the clean-up must
    still happen whole -- no process of the run user left, the uid given back, no
    ``raftlab-grade-*`` folder left with the staged code -- and the stop that
    propagates is the first signal's.  The second signal cut the clean-up short: the
    run user's process and the folder stayed."""
    import shutil
    import tempfile

    from tools.grade import grader, sandbox
    from tools.grade.sandbox import lease_after_runs, process_uids
    from tools.termination import Terminated, stop_signals_as_interrupts

    first, *later = signals
    leases = tmp_path / "uids"  # this test's own: no other grader takes the uid back
    leases.mkdir(mode=0o700)
    monkeypatch.setattr(sandbox, "_lease_dir", lambda: leases)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # where the run folder is made
    catalog = _catalog()
    g = _grader(catalog)
    g.run_users = True  # a dedicated run user, as in real-time grading as root
    started = []

    def start_peer_then_stop(test):  # noqa: ANN001, ANN202
        uid = g._last_uid
        started.append((uid, subprocess.Popen(["sleep", "600"], user=uid, group=uid,
                                              start_new_session=True)))
        _signal_here(first)

    faked_runs["on_run"] = start_peer_then_stop
    sent = []
    real_kill_uid, real_rmtree = grader.kill_uid, shutil.rmtree

    def kill_uid_hurried(uid, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if later and not sent:
            sent.append(later[0])
            _signal_here(later[0])
        return real_kill_uid(uid, *args, **kwargs)

    def rmtree_hurried(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        if "raftlab-grade-" in str(path) and len(sent) < len(later):
            for sig in later[len(sent):]:
                sent.append(sig)
                _signal_here(sig)
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(grader, "kill_uid", kill_uid_hurried)
    monkeypatch.setattr(shutil, "rmtree", rmtree_hurried)
    try:
        with stop_signals_as_interrupts(), pytest.raises(KeyboardInterrupt) as stopped:
            g.grade("raft", tmp_path / "report", name=None)
        # What the grader left, before this test kills anything (zombies do not count).
        alive = [pid for pid, owner in process_uids().items()
                 if owner in {uid for uid, _proc in started}]
    finally:
        for uid, proc in started:
            real_kill_uid(uid)
            proc.wait(timeout=30)
    assert len(started) == 1
    uid, peer = started[0]
    assert sent == list(later)  # every later signal came during the clean-up
    assert list(tmp.iterdir()) == []  # no run folder (the staged code) left
    assert alive == [], "the run user's process outlived the clean-up"
    assert peer.returncode == -signal.SIGKILL
    again = lease_after_runs(uid, 0)
    assert again is not None, "the run user's uid was not given back"
    again.release()
    assert (stopped.value.signum if isinstance(stopped.value, Terminated)
            else signal.SIGINT) == first  # the first signal keeps its say
    assert g.stopped_runs
