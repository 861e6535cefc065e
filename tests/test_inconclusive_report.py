"""What a student sees of an inconclusive test: why it was not judged, how to rerun it,
and its captured output, on every surface that shows a failure's.

* the explanation itself (labtests.verdicts): the measured lag and the bound (or the
  simulation starved of CPU), that the Raft was not judged, what to do;
* ``pytest --pyargs labtests``: an INCONCLUSIVE section after FAILURES, in the same
  form (headline, traceback, captured output), with the explanation and the rerun
  commands; also through pytest-xdist, and for a simulated run starved of CPU (the
  fake run queue of tests/test_sim_limits.py); none with ``--tb=no``;
* ``raftlab test``: the details of the test carry the explanation (the rerun
  commands are the lab's lines just above), and one line under the summary;
* ``raftlab stress``: the log of an inconclusive run carries the explanation and the
  run's output; the summary lists a few runs with their log and rerun command.

A machine is faked overloaded by tests/overload_plugins/fake_lag.py (its first timer
sample 750 ms late); the toy never elects a leader, so every test fails, inconclusive.
Whatever the real machine adds only makes the lag larger, so no figure is asserted
exactly.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from labtests.options import HarnessOptions
from labtests.overload import DETAIL_KEY, EXIT_INCONCLUSIVE, INCONCLUSIVE, LAG_BOUND_MS, VERDICT_KEY
from labtests.plugin import show_inconclusive
from labtests.verdicts import (
    RERUN_SECTION,
    VERDICT_SECTION,
    inconclusive_explanation,
    inconclusive_sections,
)
from tests.test_sim_limits import _pytest_sim
from tests.test_stress import run_stress
from tools.stress.backends.base import RunResult
from tools.stress.display import inconclusive_lines
from tools.stress.results import results_of
from tools.test_run.display import Display
from tools.test_run.state import RunState

REPO = Path(__file__).resolve().parents[1]
TOYS = Path(__file__).parent / "toys"
PLUGINS = Path(__file__).parent / "overload_plugins"
NEVER_ELECTS = str(TOYS / "never_elects.py")
TEST = "test_initial_election_2a"
LATE = re.compile(r"inconclusive \(machine overloaded: timers late by (\d+) ms\)")
pytestmark = pytest.mark.selftest


def _overloaded_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "RAFTLAB_"))}
    env["RAFTLAB_TEST_FAKE_LAG_MS"] = "750"
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PLUGINS), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _assert_explains(text: str) -> None:
    """The explanation is there, with a lag over the bound."""
    found = LATE.search(text)
    assert found and float(found.group(1)) >= LAG_BOUND_MS, text
    assert f"{found.group(0)}: the Raft was not judged." in text, text
    assert f"bound of {LAG_BOUND_MS:.0f} ms" in text, text
    assert "This failure counts neither as a failure nor as a pass." in text, text
    assert "What to do: rerun it on a quieter machine" in text, text


# --- the explanation ----------------------------------------------------------------------


def test_the_explanation_says_lag_bound_not_judged_and_what_to_do():
    props = {VERDICT_KEY: INCONCLUSIVE, "timer_lag_max_ms": 812.4, "seed": 7}
    text = inconclusive_explanation(props)
    assert text is not None
    assert text.splitlines()[0] == ("inconclusive (machine overloaded: timers late by 812 ms): "
                                    "the Raft was not judged.")
    _assert_explains(text)
    sections = dict(inconclusive_sections(f"labtests/test_2a.py::{TEST}", props,
                                          HarnessOptions(impl=NEVER_ELECTS)))
    assert sections[VERDICT_SECTION] == text
    assert sections[RERUN_SECTION].startswith(
        f"seed 7; rerun with: raftlab test {TEST} --seed 7 --impl {NEVER_ELECTS}")
    assert f"pytest --pyargs labtests -k {TEST} --seed 7" in sections[RERUN_SECTION]


def test_a_starved_simulation_is_explained_as_such_and_a_judged_test_not_at_all():
    detail = "the simulated run got 0.1 s of CPU in 3 s of wall time"
    text = inconclusive_explanation({VERDICT_KEY: INCONCLUSIVE, DETAIL_KEY: detail})
    assert text is not None
    assert text.startswith(f"inconclusive (machine overloaded: {detail}): the Raft was not "
                           "judged.\nThe simulation's wall-clock backstop ended this run")
    assert "What to do: rerun it on a quieter machine" in text
    assert "timers late" not in text
    for judged in ({}, {"timer_lag_max_ms": 900.0, "seed": 1}, {VERDICT_KEY: "failed"}):
        assert inconclusive_explanation(judged) is None
        assert inconclusive_sections("a::t", judged, HarnessOptions()) == []


# --- pytest ---------------------------------------------------------------------------------


def _pytest(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pytest", "--pyargs", "labtests", "-k", TEST,
           "-p", "no:cacheprovider", "-p", "fake_lag", "--raft-impl", NEVER_ELECTS, *extra]
    return subprocess.run(cmd, cwd=tmp_path, env=_overloaded_env(), capture_output=True,
                          text=True, timeout=300)


def _section(out: str, start: str, end: str) -> str:
    assert start in out, out
    return out[out.index(start):out.index(end, out.index(start))]


@pytest.mark.parametrize("xdist", [(), ("-n", "1")], ids=["one-process", "xdist"])
def test_pytest_shows_an_inconclusive_section_as_it_shows_failures(tmp_path, xdist):
    proc = _pytest(tmp_path, *(xdist or ("-p", "no:xdist")))
    out = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_INCONCLUSIVE, out
    assert "= FAILURES =" not in out
    section = _section(out, "= INCONCLUSIVE =", "inconclusive in ")
    assert re.search(rf"_{{3,}} {TEST} _{{3,}}", section), section  # the headline
    assert "E       labtests.failures.RaftTestFailure: expected one leader, got none" in section
    assert re.search(r"-+ Captured stdout call -+\nTest \(2A\): initial election \.\.\.",
                     section), section
    verdict = _section(section, f" {VERDICT_SECTION} ", f" {RERUN_SECTION} ")
    _assert_explains(verdict)
    seed = re.search(rf"seed (\d+); rerun with: raftlab test {TEST} --seed (\d+)", section)
    assert seed and seed.group(1) == seed.group(2), section
    assert f"pytest --pyargs labtests -k {TEST} --seed {seed.group(1)}" in section


def test_pytest_explains_a_starved_simulated_run_in_its_inconclusive_section():
    proc = _pytest_sim("--sim-cpu-limit", "0.2", "--sim-wall-limit", "0.3", plugin=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_INCONCLUSIVE, out
    section = _section(out, "= INCONCLUSIVE =", "inconclusive in ")
    assert "E       labtests.sim.scheduler.SimOverloaded: wall-clock backstop" in section
    verdict = _section(section, f" {VERDICT_SECTION} ", f" {RERUN_SECTION} ")
    assert re.search(r"inconclusive \(machine overloaded: the simulated run got [0-9.]+ s of "
                     r"CPU in \d+ s of wall time\): the Raft was not judged\.\nThe simulation's "
                     "wall-clock backstop ended this run", verdict), verdict
    assert "What to do: rerun it on a quieter machine" in verdict
    assert f"raftlab test {TEST} --seed 1 --impl " in section and " --sim" in section


def test_pytest_tb_no_leaves_the_inconclusive_section_out_as_it_does_failures(tmp_path):
    proc = _pytest(tmp_path, "-p", "no:xdist", "--tb=no")
    out = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_INCONCLUSIVE, out
    assert "1 inconclusive" in out and "INCONCLUSIVE =" not in out, out


class _Terminal:
    """What show_inconclusive uses of pytest's terminal reporter, recording what it writes."""

    def __init__(self, reports: dict[str, list], **options) -> None:
        self.reports = reports
        defaults = {"tbstyle": "auto", "showcapture": "all", "no_summary": False}
        self.config = SimpleNamespace(getoption=lambda name, default=None: {
            **defaults, **options}.get(name, default))
        self.lines: list[str] = []

    def getreports(self, name: str) -> list:
        return self.reports.get(name, [])

    def write_sep(self, sep: str, title: str, **markup) -> None:
        self.lines.append(f"{sep * 3} {title} {sep * 3}")

    def write_line(self, line: str, **markup) -> None:
        self.lines.append(line)


def _inconclusive_report(nodeid: str, when: str = "call", sections=()) -> SimpleNamespace:
    return SimpleNamespace(
        nodeid=nodeid, when=when, head_line=nodeid.rsplit("::", 1)[-1],
        longreprtext="E   expected one leader, got none", sections=list(sections),
        user_properties=[(VERDICT_KEY, INCONCLUSIVE), ("timer_lag_max_ms", 700.0)])


def test_the_inconclusive_section_follows_tb_show_capture_and_teardown_like_failures():
    nodeid = f"labtests/test_2a.py::{TEST}"
    call = _inconclusive_report(nodeid, sections=[("Captured stdout call", "out\n"),
                                                  (VERDICT_SECTION, "why\n")])
    teardown = _inconclusive_report(nodeid, "teardown", [("Captured log teardown", "bye\n")])
    reports = {INCONCLUSIVE: [call], "": [teardown]}
    tr = _Terminal(reports)
    show_inconclusive(tr)  # no _tw: the traceback's text
    assert tr.lines == ["=== INCONCLUSIVE ===", f"___ {TEST} ___",
                        "E   expected one leader, got none",
                        "--- Captured stdout call ---", "out", f"--- {VERDICT_SECTION} ---",
                        "why", "--- Captured log teardown ---", "bye"]
    tr = _Terminal(reports, showcapture="stdout")
    show_inconclusive(tr)
    assert [ln for ln in tr.lines if ln.startswith("---")] == ["--- Captured stdout call ---"]
    tr = _Terminal(reports, tbstyle="line")
    show_inconclusive(tr)
    assert tr.lines == ["=== INCONCLUSIVE ===",
                        f"{nodeid}: inconclusive (machine overloaded: timers late by 700 ms)"]
    for quiet in ({"tbstyle": "no"}, {"no_summary": True}):
        tr = _Terminal(reports, **quiet)
        show_inconclusive(tr)
        assert tr.lines == [], quiet
    tr = _Terminal({})
    show_inconclusive(tr)
    assert tr.lines == []


# --- raftlab test ---------------------------------------------------------------------------


def test_raftlab_test_shows_why_in_the_details_and_a_line_under_the_summary(tmp_path):
    code = "import sys; from tools.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, "test", TEST, "--impl", NEVER_ELECTS, "--", "-p",
         "fake_lag"],
        cwd=tmp_path, env=_overloaded_env(), capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == EXIT_INCONCLUSIVE, out
    lab = re.search(rf"  seed (\d+); rerun with: raftlab test {TEST} --seed (\d+)", out)
    assert lab and lab.group(1) == lab.group(2), out
    details = _section(out, f"---- details of {TEST} ----", f"---- end of {TEST} ----")
    assert "E       labtests.failures.RaftTestFailure: expected one leader, got none" in details
    assert "---- Captured stdout call ----\nTest (2A): initial election ..." in details
    _assert_explains(_section(details, f"---- {VERDICT_SECTION} ----", "---- raftlab timeline"))
    assert f"---- {RERUN_SECTION} ----" not in details  # the lab's lines just above have it
    assert "0 passed, 0 failed, 1 inconclusive in " in out
    assert re.search(rf"\ninconclusive: {TEST} failed while the machine was overloaded "
                     rf"\(timers late by up to \d+ ms, bound {LAG_BOUND_MS:.0f} ms\): the Raft "
                     r"was not judged on them", out), out


def test_raftlab_test_names_a_starved_simulation_under_the_summary():
    name = f"labtests/test_2a.py::{TEST}"
    props = [["seed", 3], [VERDICT_KEY, INCONCLUSIVE], [DETAIL_KEY, "0.1 s of CPU in 3 s"]]
    state = RunState()
    for when, outcome in (("setup", "passed"), ("call", "failed"), ("teardown", "passed")):
        state.apply({"event": "report", "nodeid": name, "when": when, "outcome": outcome,
                     "props": props if when == "call" else [], "longrepr": "", "sections": []})
    out = io.StringIO()
    Display(HarnessOptions(), passthrough=False, out=out, colour=False).summary(
        state, crashed=False, elapsed_s=2.0)
    assert out.getvalue().splitlines() == [
        "0 passed, 0 failed, 1 inconclusive in 2.0s",
        f"inconclusive: {TEST} failed while the machine was overloaded (the simulation got "
        "too little CPU): the Raft was not judged on them (see each one's 'raftlab verdict' "
        "above); rerun them on a quieter machine, with the commands above"]


# --- raftlab stress -------------------------------------------------------------------------


def _result(job: int, seed: int) -> RunResult:
    return RunResult(job, f"labtests/test_2a.py::{TEST}", seed, "inconclusive", 5.0, "gw0",
                     (1.0, 1.0, 1.0), "inconclusive (machine overloaded: timers late by "
                     "750 ms): expected one leader, got none", "log")


def test_the_stress_summary_lists_a_few_inconclusive_runs_with_log_and_rerun(tmp_path):
    folder = tmp_path / "inconclusive"
    runs = [(_result(j, 100 + j), folder / f"s{100 + j}.log", f"raftlab test {TEST} --seed "
             f"{100 + j}") for j in range(5)]
    lines = inconclusive_lines(runs, folder, shown=2)
    assert lines[0] == (f"inconclusive runs (5): not judged, the machine was overloaded; logs "
                        f"in {folder} (each says why, with the run's output); rerun one alone "
                        "on a quieter machine:")
    assert lines[1:] == [
        f"  test_2a.py::{TEST} seed 100: inconclusive (machine overloaded: timers late by "
        "750 ms): expected one leader, got none",
        f"    log:   {folder / 's100.log'}",
        f"    rerun: raftlab test {TEST} --seed 100",
        f"  test_2a.py::{TEST} seed 101: inconclusive (machine overloaded: timers late by "
        "750 ms): expected one leader, got none",
        f"    log:   {folder / 's101.log'}",
        f"    rerun: raftlab test {TEST} --seed 101",
        "  ... and 3 more"]
    no_log = inconclusive_lines([(_result(0, 1), None, "rerun-it")], folder)
    assert no_log[1:] == [f"  test_2a.py::{TEST} seed 1: inconclusive (machine overloaded: "
                          "timers late by 750 ms): expected one leader, got none",
                          "    rerun: rerun-it"]
    assert inconclusive_lines([], folder) == []


def test_a_stress_runs_log_explains_why_it_was_not_judged(tmp_path, monkeypatch):
    for key, value in _overloaded_env().items():
        if key in ("RAFTLAB_TEST_FAKE_LAG_MS", "PYTHONPATH"):
            monkeypatch.setenv(key, value)
    out = tmp_path / "o"
    rc, text = run_stress([f"labtests/test_2a.py::{TEST}", "-n", "1", "-p", "1",
                           "--retries", "0", "--impl", NEVER_ELECTS, "-o", str(out),
                           "--no-live", "--", "-p", "fake_lag"], cwd=REPO)
    assert rc == EXIT_INCONCLUSIVE, text
    (row,) = results_of(out / "results.jsonl")
    assert row["outcome"] == "inconclusive", row
    log = Path(row["log"]).read_text(encoding="utf-8")
    assert log.startswith(f"test:     labtests/test_2a.py::{TEST}\nseed:     {row['seed']}\n")
    assert f"rerun:    raftlab test {TEST} --seed {row['seed']} " in log
    assert "----- Captured stdout call -----\nTest (2A): initial election ..." in log
    _assert_explains(_section(log, f"----- {VERDICT_SECTION} -----", "----- failure (call)"))
    assert RERUN_SECTION not in log  # the header has the rerun command, debug log on
    assert "expected one leader, got none" in log.split("----- failure (call) -----")[1]
    # No path to a timeline that the run's end removed: it says it was not kept, and why.
    assert "----- raftlab timeline -----" in log, log
    timeline = log.split("----- raftlab timeline -----")[1].split("\n-----")[0]
    assert "not kept for a run that was not judged (inconclusive)" in timeline, timeline
    assert "raftlab-bundles" not in log
