"""The grader and the verdicts that are not plain passes or fails.

* an inconclusive run (the machine was overloaded) is rerun with the same seed on
  fewer workers, a bounded number of times, and counted; a rerun that passes
  replaces it, one that never becomes conclusive is never scored silently: its
  test earns no points and every report says why;
* a failure that matches a known artifact of the lab's tests stays a failure and
  is counted apart;
* a failed run's bundle is kept in the report folder, bounded per signature, and
  linked from the report.

Driven by scripted backends (no test process runs) and hand-made results.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from labtests.artifacts import ARTIFACT_KEY
from tools.grade import command as grade_command
from tools.grade import report as reports
from tools.grade.grader import INCONCLUSIVE_RETRIES, Grader
from tools.grade.report import gradescope, write_reports
from tools.grade.rubric import parse
from tools.grade.score import SubmissionGrade, grade_part, reason_for
from tools.stress.backends.base import Job, RunResult

LATE = "inconclusive (machine overloaded: timers late by 812 ms): expected one leader, got none"


class Scripted:
    """A backend whose runs end as ``script(seed, attempt)`` says (attempts per seed)."""

    def __init__(self, script: Callable[[int, int], str | None], seen: dict[int, int],
                 workers: int, log: list[int]) -> None:
        self.script, self.seen = script, seen
        log.append(workers)

    def run(self, jobs: Sequence[Job], on_result: Callable[[RunResult], None]) -> None:
        for job in jobs:
            self.seen[job.seed] = self.seen.get(job.seed, 0) + 1
            outcome = self.script(job.seed, self.seen[job.seed])
            if outcome is None:  # the run never reports (the budget ran out, say)
                continue
            message = {"inconclusive": LATE, "failed": "term 1 has 2 (>1) leaders"}.get(outcome)
            on_result(RunResult(job=job.index, test=job.test, seed=job.seed, outcome=outcome,
                                duration=0.1, worker="gw0", loadavg=(), message=message))

    def cancel(self) -> None:
        pass


def _grader(workers: int = 8) -> Grader:
    grader = Grader.__new__(Grader)  # no run users, catalog or rubric needed here
    grader.workers = workers
    grader.console = Console(file=io.StringIO(), width=200)
    return grader


def _rerun(script, jobs, workers=8):
    grader, grade = _grader(workers), SubmissionGrade("s", "s", "raft", runs=1)
    seen: dict[int, int] = {}
    used: list[int] = []
    first = [RunResult(job=j.index, test=j.test, seed=j.seed, duration=0.1, worker="gw0",
                       loadavg=(), outcome=script(j.seed, 1),
                       message=LATE if script(j.seed, 1) == "inconclusive" else None)
             for j in jobs]
    for job in jobs:
        seen[job.seed] = 1
    results, attempts = grader._rerun_inconclusive(
        "2A", jobs, first, lambda n: Scripted(script, seen, n, used), 1.0, 5.0, grade)
    return results, attempts, grade, used, seen


def test_inconclusive_runs_are_rerun_with_the_same_seed_on_half_the_workers():
    jobs = [Job(i, f"labtests/test_2a.py::t{i}", 100 + i) for i in range(4)]
    script = {
        100: lambda a: "passed",
        101: lambda a: "inconclusive" if a == 1 else "passed",  # conclusive on its rerun
        102: lambda a: "inconclusive",  # never conclusive
        103: lambda a: "failed",  # a real failure: never rerun
    }
    results, attempts, grade, used, seen = _rerun(lambda s, a: script[s](a), jobs)
    assert [r.outcome for r in results] == ["passed", "passed", "inconclusive", "failed"]
    assert [r.job for r in results] == [0, 1, 2, 3]
    assert seen == {100: 1, 101: 2, 102: 1 + INCONCLUSIVE_RETRIES, 103: 1}
    assert attempts == {1: 2, 2: 1 + INCONCLUSIVE_RETRIES}
    assert used == [2, 1]  # half the workers, then half again (at most one per run)
    assert grade.inconclusive_attempts == 1 + 1 + INCONCLUSIVE_RETRIES
    assert len(grade.rerun_notes) == INCONCLUSIVE_RETRIES
    assert "rerun 2 inconclusive run(s) with the same seeds" in grade.rerun_notes[0]


def test_a_rerun_that_did_not_happen_leaves_the_run_inconclusive_not_failed():
    jobs = [Job(0, "labtests/test_2a.py::t", 7)]
    results, attempts, grade, _used, _seen = _rerun(
        lambda s, a: "inconclusive" if a == 1 else None, jobs)
    assert results[0].outcome == "inconclusive" and results[0].message == LATE
    assert attempts == {} and grade.inconclusive_attempts == 1


def test_no_inconclusive_run_means_no_rerun():
    jobs = [Job(0, "labtests/test_2a.py::t", 7)]
    results, attempts, grade, used, _seen = _rerun(lambda s, a: "failed", jobs)
    assert used == [] and attempts == {} and grade.rerun_notes == []
    assert grade.verdict_notes() == []


def _rubric():
    rubric = parse({"runs": 2, "per_run_timeout_s": 9, "memory_mb": 512,
                    "parts": {"2A": {"budget_s": 10, "tests": {"t1": 3, "t2": 2}}}})
    rubric.parts[0].tests = {"t1": 3.0, "t2": 2.0}
    return rubric


def _res(job: int, outcome: str, message: str | None = None, **props) -> RunResult:
    return RunResult(job=job, test=f"t{job}", seed=100 + job, outcome=outcome, duration=1.0,
                     worker="gw0", loadavg=(), message=message, properties=dict(props))


def test_a_run_still_inconclusive_earns_no_points_and_every_report_says_why(tmp_path):
    rubric = _rubric()
    results = {"t1": [_res(0, "passed"), _res(2, "inconclusive", LATE)],
               "t2": [_res(1, "passed"), _res(3, "passed")]}
    part = grade_part(rubric, "2A", results, 4.0, attempts={2: 3})
    grade = SubmissionGrade("bob", "bob", "raft.py", runs=2, parts=[part],
                            inconclusive_attempts=3)
    t1 = part.tests[0]
    assert not t1.passed and t1.points == 0 and t1.inconclusive == 1
    run = t1.runs[1]
    assert run.attempts == 3 and run.reason is not None
    assert "machine's fault, not the submission's" in run.reason and "regrade" in run.reason
    notes = grade.verdict_notes()
    assert any("1 run(s) stayed inconclusive" in n and "regrade" in n for n in notes), notes
    write_reports(grade, rubric, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["inconclusive"]["attempts"] == 3
    assert report["inconclusive"]["still_inconclusive_runs"] == 1
    assert report["parts"][0]["tests_detail"][0]["runs_inconclusive"] == 1
    assert any("stayed inconclusive" in n for n in report["notes"])
    assert "stayed inconclusive" in (tmp_path / "summary.txt").read_text()
    assert "stayed inconclusive" in gradescope(grade)["output"]
    assert "attempt 3: the earlier ones were inconclusive" in reports.test_output(t1, 2)


def test_a_known_artifact_stays_a_failure_and_is_counted_apart(tmp_path):
    rubric = _rubric()
    msg = "labtests.failures.RaftTestFailure: one(101) failed to reach agreement"
    results = {"t1": [_res(0, "passed"), _res(2, "failed", msg,
                                              **{ARTIFACT_KEY: "deposed-leader"})],
               "t2": [_res(1, "passed"), _res(3, "failed", msg)]}
    part = grade_part(rubric, "2A", results, 4.0)
    grade = SubmissionGrade("eve", "eve", "raft.py", runs=2, parts=[part])
    t1, t2 = part.tests
    assert not t1.passed and t1.artifacts == 1 and t2.artifacts == 0
    assert t1.runs[1].artifact == "deposed-leader" and t2.runs[1].artifact is None
    assert reason_for(results["t1"][1], 9, 512).startswith(
        "known artifact of the lab's tests (deposed-leader): one(101) failed")
    assert grade.artifacts == 1
    assert any("1 failed run(s) match a known artifact" in n for n in grade.verdict_notes())
    write_reports(grade, rubric, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["known_artifacts"] == 1
    assert report["parts"][0]["tests_detail"][0]["run_results"][1]["artifact"] == \
        "deposed-leader"


def _packed(check: str = "one") -> dict:
    return {"name": "b", "cut": [], "files": {
        "meta.json": json.dumps({"check": check}), "failure.txt": "boom\n",
        "../../escape.txt": "no"}}


def test_failed_runs_bundles_are_kept_bounded_and_linked(tmp_path):
    grader = _grader()
    grade = SubmissionGrade("s", "s", "raft", runs=1)
    kept = []
    for i in range(5):
        res = _res(i, "failed", f"one({i}) failed to reach agreement")
        kept.append(grader._keep_bundle(grade, res, f"rerun {i}", _packed(), tmp_path,
                                        f"t{i}-run1-s{100 + i}"))
    other = grader._keep_bundle(grade, _res(9, "failed", "term 3 has 2 (>1) leaders"), "r",
                                _packed("check_one_leader"), tmp_path, "t9-run1-s109")
    assert kept[:3] == [f"bundles/t{i}-run1-s{100 + i}" for i in range(3)]
    assert kept[3:] == [None, None] and other == "bundles/t9-run1-s109"
    folder = tmp_path / kept[0]
    assert (folder / "failure.txt").read_text() == "boom\n"
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path.parent / "escape.txt").exists()
    groups = grade.groups.ordered()
    assert [g.count for g in groups] == [5, 1] and groups[0].signature.check == "one"
    assert grade.groups.not_kept == 2
    # Without a bundle (a run that crashed before writing one): grouped, nothing kept.
    assert grader._keep_bundle(grade, _res(7, "failed", "crashed"), "r", None, tmp_path,
                               "t7") is None
    rubric = _rubric()
    part = grade_part(rubric, "2A", {"t1": [_res(0, "failed", "one(1) failed to reach "
                                                 "agreement")], "t2": []}, 1.0,
                      bundles={("t1", 0): kept[0]})
    grade.parts = [part]
    write_reports(grade, rubric, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["parts"][0]["tests_detail"][0]["run_results"][0]["bundle"] == kept[0]
    assert report["failure_groups"][0]["bundles"] == kept[:3]
    assert f"failure bundle (timeline, events, logs): {kept[0]}" in reports.test_output(
        part.tests[0], 1)
    assert "failure groups (3 signature(s)" in (tmp_path / "summary.txt").read_text()


def test_grade_keeps_each_failed_runs_bundle_and_groups_them(tmp_path, monkeypatch):
    """End to end in simulated time: the two-bug toy's failed runs, bundles linked."""

    here = Path(__file__).parent
    monkeypatch.setenv("PYTHONPATH", str(here / "bundle_plugins"))
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p fake_bundle")  # fills in if the harness did not
    out = io.StringIO()
    rc = grade_command.main([str(here / "toys_stress" / "two_bugs.py"), "--only",
                             "test_basic_agree_2b", "--runs", "4", "--sim", "-o",
                             str(tmp_path / "g")], console=Console(file=out, width=200))
    assert rc == grade_command.EXIT_LOST, out.getvalue()
    report = json.loads((tmp_path / "g" / "report.json").read_text())
    runs = report["parts"][0]["tests_detail"][0]["run_results"]
    assert [r["outcome"] for r in runs] == ["failed"] * 4, runs
    groups = report["failure_groups"]
    assert sum(g["count"] for g in groups) == 4
    # Every group keeps up to three bundles (the seeds decide how the four runs split).
    assert all(len(g["bundles"]) == min(3, g["count"]) for g in groups), groups
    linked = [run["bundle"] for run in runs if run["bundle"]]
    assert sorted(linked) == sorted(b for g in groups for b in g["bundles"])
    for rel in linked:
        folder = tmp_path / "g" / rel
        assert (folder / "meta.json").exists() and (folder / "failure.txt").exists(), rel
    assert {g["message"] for g in groups} <= {
        "apply error: server <n> apply out of order <n>",
        "apply error: commit index=<n> server=<n> <cmd> != server=<n> <cmd>"}
    assert report["inconclusive"]["attempts"] == 0 and report["known_artifacts"] == 0
