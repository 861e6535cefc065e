"""The rerun planner (tools.stress.reruns) that stress and grade share: its decisions alone.

Which runs are rerun (only inconclusive ones, never a real failure), on how many
workers (half the round before, never below one, never more than the runs), for how
many rounds (at most ``retries``), and how a round's results are named back by
their planned jobs.  The end-to-end behaviour is in test_stress_overload.py and
test_grade_verdicts.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tools.stress.backends.base import Job, RunResult
from tools.stress.reruns import Reruns, inconclusive_jobs

LATE = "inconclusive (machine overloaded: timers late by 900 ms)"


def _result(job: Job, outcome: str, index: int | None = None) -> RunResult:
    return RunResult(job=job.index if index is None else index, test=job.test, seed=job.seed,
                     outcome=outcome, duration=0.1, worker="gw0", loadavg=(),
                     message=LATE if outcome == "inconclusive" else None)


def _jobs(n: int, first: int = 0) -> list[Job]:
    return [Job(first + i, f"labtests/test_2a.py::t{i}", 1000 + i) for i in range(n)]


def test_only_inconclusive_runs_are_picked_in_the_order_of_the_results():
    jobs = _jobs(6)
    outcomes = ["passed", "inconclusive", "failed", "error", "skipped", "inconclusive"]
    results = [_result(j, o) for j, o in zip(jobs, outcomes, strict=True)]
    assert inconclusive_jobs(jobs, reversed(results)) == [jobs[5], jobs[1]]


def test_results_of_jobs_not_in_the_round_are_ignored():
    jobs = _jobs(3)
    stray = _result(Job(99, "labtests/test_2a.py::x", 5), "inconclusive")
    assert inconclusive_jobs(jobs[:1], [_result(jobs[0], "inconclusive"), stray]) == [jobs[0]]


def test_workers_halve_each_round_and_stop_after_retries():
    jobs = _jobs(20)
    planner = Reruns(workers=16, retries=3)
    seen = []
    results = [_result(j, "inconclusive") for j in jobs]
    while (plan := planner.next_round(jobs, results)) is not None:
        seen.append((plan.number, plan.workers, len(plan.jobs)))
    assert seen == [(1, 8, 20), (2, 4, 20), (3, 2, 20)]
    assert planner.next_round(jobs, results) is None  # no rounds left, ever


def test_workers_never_exceed_the_runs_to_do_nor_drop_below_one():
    jobs = _jobs(3)
    planner = Reruns(workers=64, retries=5)
    plans = [planner.next_round(jobs[:n], [_result(j, "inconclusive") for j in jobs[:n]])
             for n in (3, 1, 1, 1)]
    assert [p.workers for p in plans if p] == [3, 1, 1, 1]


def test_the_count_follows_the_round_before_not_the_start():
    """After a round shrank to 2 workers for 2 runs, 10 runs do not get 32 back."""
    jobs = _jobs(10)
    planner = Reruns(workers=64, retries=3)
    first = planner.next_round(jobs[:2], [_result(j, "inconclusive") for j in jobs[:2]])
    second = planner.next_round(jobs, [_result(j, "inconclusive") for j in jobs])
    assert (first.workers, second.workers) == (2, 1)


def test_no_round_when_nothing_is_inconclusive_or_retries_is_zero():
    jobs = _jobs(2)
    assert Reruns(8, 2).next_round(jobs, [_result(j, "failed") for j in jobs]) is None
    assert Reruns(8, 0).next_round(jobs, [_result(j, "inconclusive") for j in jobs]) is None
    with pytest.raises(ValueError, match="retries must be at least 0"):
        Reruns(8, -1)


def test_a_round_renumbers_for_the_backend_and_names_results_by_planned_job():
    jobs = _jobs(5, first=40)
    results = [_result(j, "inconclusive" if j.index % 2 else "passed") for j in jobs]
    plan = Reruns(4, 2).next_round(jobs, results)
    assert [j.index for j in plan.jobs] == [41, 43]
    assert plan.renumbered == [Job(0, jobs[1].test, jobs[1].seed),
                               Job(1, jobs[3].test, jobs[3].seed)]
    back = plan.planned(_result(plan.renumbered[1], "passed"))
    assert (back.job, back.test, back.seed, back.outcome) == (43, jobs[3].test, jobs[3].seed,
                                                              "passed")


def test_the_note_is_the_one_both_commands_print():
    jobs = _jobs(3)
    plan = Reruns(8, 2).next_round(jobs, [_result(j, "inconclusive") for j in jobs])
    assert plan.note() == ("rerun 3 inconclusive run(s) with the same seeds on 3 worker(s) "
                           "(rerun 1 of at most 2)")
    assert plan.note("2A: ").startswith("2A: rerun 3 inconclusive run(s)")


def test_the_planner_pulls_in_neither_stress_command_nor_display():
    """grade imports it: it must not drag stress's command, display or rich along."""
    code = ("import sys, tools.stress.reruns\n"
            "bad = [m for m in ('tools.stress.command', 'tools.stress.display', 'rich')"
            " if m in sys.modules]\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"
