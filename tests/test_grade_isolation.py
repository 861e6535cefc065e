"""The per-part watchdog of ``raftlab grade`` with a fake backend (no processes), and the
limits wrapper in a real subprocess."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from tools.grade.isolation import BUDGET_REASON, run_part
from tools.stress.backends.base import BackendError, Job, RunResult


def _result(job: Job, outcome: str = "passed") -> RunResult:
    return RunResult(job=job.index, test=job.test, seed=job.seed, outcome=outcome,
                     duration=0.1, worker="gw0", loadavg=())


class FakeBackend:
    """Reports the first ``finish`` jobs (plus noise), then hangs until cancelled."""

    GRACE = 0.1

    def __init__(self, finish: int, error: Exception | None = None) -> None:
        self.finish = finish
        self.error = error
        self.cancelled = threading.Event()
        self.cancels = 0

    def run(self, jobs, on_result):
        for job in jobs[: self.finish]:
            on_result(_result(job))
            on_result(_result(job, "failed"))  # a repeated report of a job is ignored
        on_result(RunResult(job=999, test="x", seed=1, outcome="failed", duration=0,
                            worker="gw0", loadavg=()))  # so is an unknown job
        if self.error is not None:
            raise self.error
        self.cancelled.wait(10)
        on_result(_result(jobs[-1]))  # finished after the stop: keeps the stop's reason

    def cancel(self):
        self.cancels += 1
        self.cancelled.set()


JOBS = [Job(i, f"labtests/test_2a.py::t{i % 2}", 100 + i) for i in range(4)]


def test_budget_exhausted_fails_the_remaining_runs():
    backend = FakeBackend(finish=2)
    results, elapsed = run_part(JOBS, backend, budget_s=0.5, stall_s=30)
    assert [r.outcome for r in results] == ["passed", "passed", "failed", "failed"]
    assert all(r.message.startswith(BUDGET_REASON) for r in results[2:])
    assert backend.cancels >= 1 and 0.5 <= elapsed < 5


def test_a_stalled_run_is_killed_with_a_reason():
    results, _ = run_part(JOBS, FakeBackend(finish=1), budget_s=60, stall_s=0.5)
    assert results[0].outcome == "passed"
    assert all("the grader killed the tests" in r.message for r in results[1:])


def test_backend_error_becomes_the_reason_of_missing_runs():
    backend = FakeBackend(finish=3, error=BackendError("pytest exited with status 4\nusage"))
    seen: list[RunResult] = []
    results, _ = run_part(JOBS, backend, budget_s=60, stall_s=30, on_result=seen.append)
    assert len(seen) == 3
    assert results[3].message == "the test process failed: pytest exited with status 4 (usage)"


@pytest.mark.parametrize("module", ["tools.grade.isolation",
                                    "tools.grade_isolation"])  # the old name still works
def test_limits_wrapper_sets_rlimits_and_execs(module):
    code = ("import resource, os; print(resource.getrlimit(resource.RLIMIT_AS)[0] >> 20, "
            "resource.getrlimit(resource.RLIMIT_CORE)[0], os.environ['MALLOC_ARENA_MAX'])")
    out = subprocess.run([sys.executable, "-m", module, "--memory-mb", "700",
                          "--", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["700", "0", "2"]
