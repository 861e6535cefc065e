"""Scoring and report formats, from hand-made run results (no test process runs)."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET

from tools.grade.isolation import BUDGET_REASON
from tools.grade.report import gradescope, write_csv, write_reports
from tools.grade.rubric import parse
from tools.grade.score import SubmissionGrade, grade_part, reason_for, summary_row
from tools.stress.backends.base import RunResult


def _run(test: str, job: int, outcome: str = "passed", message: str | None = None):
    return RunResult(job=job, test=test, seed=100 + job, outcome=outcome, duration=1.5,
                     worker="gw0", loadavg=(), message=message,
                     properties={"description": f"Test (2A): {test}"})


def _rubric():
    rubric = parse({"runs": 2, "per_run_timeout_s": 9, "memory_mb": 512,
                    "parts": {"2A": {"budget_s": 10, "tests": {"t1": 3, "t2": 2}}}})
    rubric.parts[0].tests = {"t1": 3.0, "t2": 2.0}
    return rubric


def _grade():
    rubric = _rubric()
    results = {
        "t1": [_run("t1", 0), _run("t1", 2)],
        "t2": [_run("t2", 1), _run("t2", 3, "failed",
                                   "labtests.failures.RaftTestFailure: term 1 has 2 (>1) leaders")],
    }
    part = grade_part(rubric, "2A", results, elapsed_s=4.0)
    grade = SubmissionGrade("alice", "subs/alice", "/x/raft.py", runs=2, parts=[part])
    return rubric, grade


def test_a_test_earns_points_only_if_every_run_passes():
    _rubric_, grade = _grade()
    t1, t2 = grade.parts[0].tests
    assert (t1.points, t2.points) == (3.0, 0.0)
    assert t2.runs_passed == 1 and t2.failures()[0].reason == "term 1 has 2 (>1) leaders"
    assert (grade.score, grade.max_score) == (3.0, 5.0)
    assert grade.parts[0].tests_passed == 1


def test_reasons_name_the_cause():
    def reason(outcome, message):
        return reason_for(_run("t", 0, outcome, message), 9, 512)

    assert reason("passed", None) is None
    assert "hung" in reason("failed", "Failed: Timeout (>9.0s) from pytest-timeout.")
    assert "crashed" in reason("failed", "worker 'gw0' crashed while running 't'")
    assert "memory limit exhausted (512 MiB" in reason("failed", "MemoryError")
    # The harness's bound on memory in use (labtests.memory_bound), in a peer: its line,
    # not the stacks after it.
    bound = ("raftlab's memory bound ended server 0 (peer process 9): it held 2101 MiB of "
             "memory, over its bound of 2048 MiB (--raft-memory-mb, RAFTLAB_MEMORY_MB); ...")
    assert reason("failed", f"{bound}\n\nMemory bound (2101 MiB > 2048 MiB)!\nThread 0x1") == (
        "memory limit exhausted: " + bound)
    assert reason("failed", BUDGET_REASON + " (10 s)").startswith(BUDGET_REASON)
    assert "skipped" in reason("skipped", None)
    # Isolated peers: a peer that ends or misses a deadline is named, with its status.
    ended = "server 1 (peer process 4242) exited with status 0 while the test was running"
    assert reason("failed", ended) == "crashed: a peer process ended during the test: " + ended
    killed = "server 2 (peer process 77) was killed by SIGKILL while the test was running"
    assert reason("failed", killed).startswith("crashed:") and "SIGKILL" in reason(
        "failed", killed)
    late = "server 0 (peer process 9): get_state() did not return within 5 s (a deadlock?)"
    assert reason("failed", late) == "hung: " + late


def test_reports_agree(tmp_path):
    rubric, grade = _grade()
    write_reports(grade, rubric, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["score"] == 3.0 and report["parts"][0]["tests_passed"] == 1
    runs = report["parts"][0]["tests_detail"][1]["run_results"]
    assert [r["outcome"] for r in runs] == ["passed", "failed"]
    gs = json.loads((tmp_path / "results.json").read_text())
    assert gs == gradescope(grade)
    assert gs["score"] == 3.0
    assert [(t["score"], t["max_score"]) for t in gs["tests"]] == [(3.0, 3.0), (0.0, 2.0)]
    assert "term 1 has 2 (>1) leaders" in gs["tests"][1]["output"]
    assert "1/2 runs passed" in gs["tests"][1]["output"]
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failure = suite.findall("testcase")[1].find("failure")
    assert failure is not None and "leaders" in failure.get("message")
    assert "2A" in (tmp_path / "summary.txt").read_text()
    # Every report says on which clock the grade was measured, and whether isolated.
    assert (report["timing"], report["isolated"]) == ("real", False)
    assert "Measured in real time, in-process." in gs["output"]
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert (props["timing"], props["isolated"]) == ("real", "False")
    assert "measured in real time, in-process" in (tmp_path / "summary.txt").read_text()
    grade.timing, grade.isolated = "simulated", False
    write_reports(grade, rubric, tmp_path)
    assert json.loads((tmp_path / "results.json").read_text())["output"].endswith(
        "Measured in simulated time, in-process.")


def test_csv_row_per_submission(tmp_path):
    _rubric_, grade = _grade()
    broken = SubmissionGrade("bob", "subs/bob", "", runs=2, error="not a submission")
    write_csv([grade, broken], ["2A"], tmp_path / "grades.csv")
    rows = list(csv.DictReader(open(tmp_path / "grades.csv", encoding="utf-8")))
    assert rows[0] == summary_row(grade, ["2A"]) | {}
    assert (rows[0]["score"], rows[0]["2A_tests_passed"], rows[0]["failed_tests"]) == \
        ("3", "1/2", "t2")
    assert rows[1]["status"] == "error" and "not a submission" in rows[1]["notes"]
    assert (rows[0]["timing"], rows[0]["isolated"]) == ("real", "no")
